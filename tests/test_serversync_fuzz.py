"""The envelope parser of the WSUS protocol's upstream side under Hypothesis: random bytes, random XML, and near-valid
SOAP envelopes (every operation, with parameters of the right names but random shapes and values, with and without a
real sync cookie) posted to a running ``upmirror serve``. Each answer is a success, a 4xx for what is not SOAP, or a
SOAP fault (HTTP 500) whose detail carries one of the protocol's ErrorCodes and a one-line message: never a
traceback, never InternalServerError. The server keeps answering afterwards."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from xml.sax.saxutils import escape

import pytest
from defusedxml.ElementTree import fromstring
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.cli import upmirror
from tests.support.upmirror_server import Reply, UpmirrorServer, add_token
from tests.support.wsus import SYNC_PATH, WsusDownstream

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
SYNC_NS = "http://www.microsoft.com/SoftwareDistribution"
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OPERATIONS = (
    "GetAuthConfig",
    "GetCookie",
    "GetConfigData",
    "GetRevisionIdList",
    "GetUpdateData",
    "GetUpdateDecryptionData",
    "GetDeployments",
    "DownloadFiles",
    "GetDriverIdList",
    "GetDriverSetData",
    "GetRelatedRevisionsForUpdates",
    "Ping",
)
# The ErrorCodes a downstream's bad input may get (MS-WSUSSS 2.2.9.1); InternalServerError would be a bug here.
INPUT_FAULTS = {"InvalidParameters", "InvalidCookie", "InvalidAuthorizationCookie", "IncompatibleProtocolVersion"}
INPUT_FAULTS |= {"FileDigestsMissing"}
NAMES = (
    "cookie",
    "filter",
    "Anchor",
    "GetConfig",
    "Get63LanguageOnly",
    "Categories",
    "Classifications",
    "Languages",
    "IdAndDelta",
    "LanguageAndDelta",
    "Id",
    "Delta",
    "updateIds",
    "UpdateIdentity",
    "UpdateID",
    "RevisionNumber",
    "fileDigestList",
    "base64Binary",
    "deploymentAnchor",
    "syncAnchor",
    "configAnchor",
    "protocolVersion",
    "oldCookie",
    "authCookies",
    "AuthorizationCookie",
    "PlugInId",
    "CookieData",
    "driverSetIds",
    "computerIds",
    "installedNonLatestDrivers",
    "Expiration",
    "EncryptedData",
)
values = (
    st.text(max_size=40)
    | st.uuids().map(str)
    | st.integers(-(2**40), 2**40).map(str)
    | st.sampled_from(["true", "false", "", "1.20", "AAAA", "not base64!", "2026-11-30T12:00:00Z"])
    | st.binary(max_size=30).map(lambda b: base64.b64encode(b).decode())
)


def xml_text(value: str) -> str:
    """``value`` as XML character data (characters XML 1.0 cannot carry at all are dropped)."""
    kept = "".join(c for c in value if c in "\t\n\r" or (" " <= c <= "\ud7ff") or ("\ue000" <= c <= "\ufffd"))
    return escape(kept)


elements = st.recursive(
    st.tuples(st.sampled_from(NAMES), values).map(lambda nv: f"<{nv[0]}>{xml_text(nv[1])}</{nv[0]}>"),
    lambda inner: st.tuples(st.sampled_from(NAMES), st.lists(inner, max_size=4)).map(
        lambda nc: f"<{nc[0]}>{''.join(nc[1])}</{nc[0]}>"
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[UpmirrorServer, str]]:
    directory = tmp_path_factory.mktemp("root")
    done = upmirror("catalog", "generate", directory, "--updates", "60", "--content-size", "2M", "--seed", "4")
    assert done.returncode == 0, done.stderr
    with UpmirrorServer(directory, token=add_token(directory)) as running:
        cookie = WsusDownstream(running.url, running.token).authenticate()
        real = (
            f"<cookie><Expiration>{cookie.Expiration.isoformat()}</Expiration>"
            f"<EncryptedData>{base64.b64encode(cookie.EncryptedData).decode()}</EncryptedData></cookie>"
        )
        yield running, real
        assert ping(running).status == 200, "the server keeps answering after all of it"


def ping(server: UpmirrorServer) -> Reply:
    return post(server, envelope("GetAuthConfig", ""))


def envelope(operation: str, inner: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP}"><soap:Body>'
        f'<{operation} xmlns="{SYNC_NS}">{inner}</{operation}></soap:Body></soap:Envelope>'
    ).encode()


def post(server: UpmirrorServer, body: bytes) -> Reply:
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{SYNC_NS}/Operation"'}
    return server.call("POST", SYNC_PATH, body, headers=headers)


def assert_answered_as_the_protocol_says(reply: Reply) -> None:
    text = reply.body.decode(errors="replace")
    assert "Traceback" not in text
    if reply.status == 200:
        return
    if 400 <= reply.status < 500:
        assert text.strip(), "a 4xx carries a message"
        return
    assert reply.status == 500, (reply.status, text[:300])
    fault = fromstring(reply.body).find(f"{{{SOAP}}}Body/{{{SOAP}}}Fault")
    assert fault is not None, text[:300]
    code = fault.findtext("detail/ErrorCode")
    assert code in INPUT_FAULTS, text[:500]
    message = fault.findtext("faultstring") or ""
    assert message.strip(), "a fault says what was wrong"
    assert "\n" not in message.strip(), message


@FUZZ
@given(body=st.binary(max_size=300))
def test_random_bytes_are_not_soap(server: tuple[UpmirrorServer, str], body: bytes) -> None:
    assert_answered_as_the_protocol_says(post(server[0], body))


@FUZZ
@given(
    inner=st.lists(elements, max_size=4).map("".join), operation=st.sampled_from(OPERATIONS), with_cookie=st.booleans()
)
def test_near_valid_envelopes_get_the_protocols_faults(
    server: tuple[UpmirrorServer, str], inner: str, operation: str, with_cookie: bool
) -> None:
    running, cookie = server
    reply = post(running, envelope(operation, (cookie if with_cookie else "") + inner))
    assert_answered_as_the_protocol_says(reply)


@FUZZ
@given(
    identities=st.lists(
        st.tuples(st.uuids().map(str) | st.text(max_size=40), st.integers(-5, 2**33) | st.text(max_size=5)),
        max_size=120,
    ),
    operation=st.sampled_from(["GetUpdateData", "GetUpdateDecryptionData", "GetRelatedRevisionsForUpdates"]),
)
def test_update_identities_of_any_shape_and_number(
    server: tuple[UpmirrorServer, str], identities: list[tuple[str, object]], operation: str
) -> None:
    running, cookie = server
    listed = "".join(
        f"<UpdateIdentity><UpdateID>{xml_text(str(i))}</UpdateID><RevisionNumber>{xml_text(str(r))}</RevisionNumber>"
        "</UpdateIdentity>"
        for i, r in identities
    )
    reply = post(running, envelope(operation, f"{cookie}<updateIds>{listed}</updateIds>"))
    assert_answered_as_the_protocol_says(reply)


def test_a_valid_call_among_them_still_succeeds(server: tuple[UpmirrorServer, str]) -> None:
    running, cookie = server
    reply = post(running, envelope("GetUpdateData", f"{cookie}<updateIds></updateIds>"))
    assert reply.status == 200, reply.body[:300]
