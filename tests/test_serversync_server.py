"""``upmirror serve`` as a WSUS upstream (MS-WSUSSS), driven by an independent SOAP client: zeep builds every request
from a WSDL written from the specification (tests/fixtures/wsusss/) and checks every answer against its types.
Expected sets come from the served store's records and the filter rule in tests/catalog_rules.py."""

from __future__ import annotations

import base64
import hashlib
import http.client
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zeep
import zeep.exceptions
from defusedxml import ElementTree

from tests.catalog_rules import expected_answer, latest_records
from tests.support.cli import ok
from tests.support.servers import make_root
from tests.support.upmirror_server import UpmirrorServer, add_token
from tests.support.wsus import AUTH_PATH, SYNC_PATH, WsusDownstream, fault_code
from upmirror import content_relative_path, wsus
from upmirror.model import DriverSet, FilterItem, RevisionsRequest
from upmirror.store import Store


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, UpmirrorServer, str]]:
    root = make_root(tmp_path_factory.mktemp("uss") / "root", updates=400, content="8M", seed=21)
    token = add_token(root, "wsus-branch")
    with UpmirrorServer(root, token=token) as server:
        yield root, server, token


def test_authorization_needs_a_token_unless_anonymous_sync_is_on(served: tuple[Path, UpmirrorServer, str]) -> None:
    _, server, token = served
    anonymous = WsusDownstream(server.url, None)
    with pytest.raises(zeep.exceptions.Fault) as raised:
        anonymous.authenticate()
    assert fault_code(raised) == "InvalidAuthorizationCookie"
    cookie = WsusDownstream(server.url, token).authenticate()
    assert cookie.Expiration.timestamp() > time.time() + 3600  # the WSUS lifetime: 240 minutes
    assert cookie.EncryptedData


def test_a_forged_or_missing_cookie_is_refused_and_the_server_keeps_serving(
    served: tuple[Path, UpmirrorServer, str],
) -> None:
    _, server, token = served
    downstream = WsusDownstream(server.url, token)
    cookie = downstream.authenticate()
    forged = bytearray(cookie.EncryptedData)
    forged[5] ^= 0x01
    for bad in ({"Expiration": cookie.Expiration, "EncryptedData": bytes(forged)}, None):
        with pytest.raises(zeep.exceptions.Fault) as raised:
            downstream.sync.GetConfigData(cookie=bad, configAnchor=None)
        assert fault_code(raised) == "InvalidCookie"
    assert downstream.sync.GetConfigData(cookie=cookie, configAnchor=None).MaxNumberOfUpdatesPerRequest == 100


def test_config_data_offers_the_languages_updates_come_in_and_the_limits(
    served: tuple[Path, UpmirrorServer, str],
) -> None:
    root, server, token = served
    downstream = WsusDownstream(server.url, token)
    config = downstream.sync.GetConfigData(cookie=downstream.authenticate(), configAnchor=None)
    offered = {(item.LanguageID, item.ShortLanguage) for item in config.LanguageUpdateList.ServerSyncLanguageData}
    with Store.open(root / "upmirror.db") as store:
        codes = {language for update in latest_records(store) for language in update.languages}
    assert (0, "all") in offered
    assert (1033, "en") in offered
    assert {short for _, short in offered} == codes | {"all"}
    assert config.MaxNumberOfUpdatesPerRequest == 100
    assert config.ProtocolVersion == "1.20"
    assert config.NewConfigAnchor.split(",")[0].isdigit()


def test_revision_lists_follow_the_filter_and_the_anchor(served: tuple[Path, UpmirrorServer, str]) -> None:
    root, server, token = served
    downstream = WsusDownstream(server.url, token)
    cookie = downstream.authenticate()
    with Store.open(root / "upmirror.db") as store:
        records, categories = latest_records(store), store.categories()

    configuration = downstream.sync.GetRevisionIdList(
        cookie=cookie, filter={"GetConfig": True, "Get63LanguageOnly": False, "Anchor": None}
    )
    assert {item.UpdateID for item in configuration.NewRevisions.UpdateIdentity} == {c.id for c in categories}

    def listing(anchor: str | None, delta: bool) -> tuple[str, set[tuple[str, int]]]:
        answer = downstream.sync.GetRevisionIdList(
            cookie=cookie,
            filter={
                "Anchor": anchor,
                "GetConfig": False,
                "Get63LanguageOnly": False,
                "Categories": {"IdAndDelta": [{"Id": wsus.WINDOWS_FAMILY, "Delta": delta}]},
                "Classifications": {"IdAndDelta": [{"Id": wsus.SECURITY_UPDATES, "Delta": delta}]},
                "Languages": {"LanguageAndDelta": [{"Id": 1033, "Delta": delta}]},
            },
        )
        listed = answer.NewRevisions.UpdateIdentity if answer.NewRevisions else []
        return answer.Anchor, {(item.UpdateID, item.RevisionNumber) for item in listed}

    anchor, first = listing(None, False)
    expected = expected_answer(
        records,
        categories,
        RevisionsRequest(
            products=[FilterItem(wsus.WINDOWS_FAMILY, False)],
            classifications=[FilterItem(wsus.SECURITY_UPDATES, False)],
            languages=[FilterItem("en", False)],
        ),
        changed=None,
    )
    revisions = {(u.id, u.revision) for u in records}
    assert first == expected.revisions | {ref for ref in revisions if ref[0] in expected.expired}
    assert first, "the catalog has Windows security updates in English"
    # Nothing changed since: the anchor passed back with Delta lists nothing; Delta=false lists everything again.
    assert listing(anchor, True)[1] == set()
    assert listing(anchor, False)[1] == first

    # Products without classifications list nothing: the filter is an AND.
    answer = downstream.sync.GetRevisionIdList(
        cookie=cookie,
        filter={
            "GetConfig": False,
            "Get63LanguageOnly": False,
            "Categories": {"IdAndDelta": [{"Id": wsus.WINDOWS_FAMILY, "Delta": False}]},
        },
    )
    assert not answer.NewRevisions or not answer.NewRevisions.UpdateIdentity


@pytest.mark.parametrize(
    ("anchor", "code"), [("not an anchor", "InvalidParameters"), ("999999999,2026-01-01 00:00:00.000", "ServerChanged")]
)
def test_a_bad_or_foreign_anchor_gets_the_fault_the_protocol_defines(
    served: tuple[Path, UpmirrorServer, str], anchor: str, code: str
) -> None:
    _, server, token = served
    downstream = WsusDownstream(server.url, token)
    with pytest.raises(zeep.exceptions.Fault) as raised:
        downstream.sync.GetRevisionIdList(
            cookie=downstream.authenticate(), filter={"Anchor": anchor, "GetConfig": True, "Get63LanguageOnly": False}
        )
    assert fault_code(raised) == code


def test_a_batch_above_the_limit_is_invalid_parameters(served: tuple[Path, UpmirrorServer, str]) -> None:
    root, server, token = served
    downstream = WsusDownstream(server.url, token)
    with Store.open(root / "upmirror.db") as store:
        refs = [{"UpdateID": u.id, "RevisionNumber": u.revision} for u in latest_records(store)[:101]]
    with pytest.raises(zeep.exceptions.Fault) as raised:
        downstream.sync.GetUpdateData(cookie=downstream.authenticate(), updateIds={"UpdateIdentity": refs})
    assert fault_code(raised) == "InvalidParameters"
    assert "101" in raised.value.message or "101" in str(raised.value.detail.findtext("Message"))


def test_decryption_data_answers_updates_without_encrypted_files_with_none_and_checks_its_input(
    served: tuple[Path, UpmirrorServer, str],
) -> None:
    root, server, token = served
    downstream = WsusDownstream(server.url, token)
    cookie = downstream.authenticate()
    with Store.open(root / "upmirror.db") as store:
        plain = next(u for u in latest_records(store) if u.files and not any(f.encrypted for f in u.files))
    answer = downstream.sync.GetUpdateDecryptionData(
        cookie=cookie, updateIds={"UpdateIdentity": [{"UpdateID": plain.id, "RevisionNumber": plain.revision}]}
    )
    (entry,) = answer.ServerSyncUpdateFileDecryption
    assert (entry.UpdateId.UpdateID, entry.UpdateId.RevisionNumber) == (plain.id, plain.revision)
    assert not (entry.FileDecryptionData and entry.FileDecryptionData.ServerSyncFileDecryption)
    unknown = {"UpdateID": "00000000-0000-4000-8000-0000000000aa", "RevisionNumber": 1}
    too_many = [{"UpdateID": plain.id, "RevisionNumber": plain.revision}] * 501
    for asked in ([unknown], too_many):
        with pytest.raises(zeep.exceptions.Fault) as raised:
            downstream.sync.GetUpdateDecryptionData(cookie=cookie, updateIds={"UpdateIdentity": asked})
        assert fault_code(raised) == "InvalidParameters"


def test_driver_sets_are_listed_for_computer_ids_and_answered_as_stored(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root", updates=30, content="1M", seed=5)
    kept = DriverSet(id="0d6f2c1a-0000-4000-8000-000000000001", xml='<Set Model="a &lt; b"/>')
    gone = DriverSet(id="0d6f2c1a-0000-4000-8000-000000000002", xml="<Set/>")
    with Store.open(root / "upmirror.db") as store:
        store.take_driver_sets([kept, gone], [])
        before = store.anchor()
        store.take_driver_sets([], [gone.id])
    token = add_token(root, "wsus-branch")
    with UpmirrorServer(root, token=token) as server:
        downstream = WsusDownstream(server.url, token)
        cookie = downstream.authenticate()
        computer = {"IdAndDelta": [{"Id": "8c2f5b1e-3a4d-4e6f-9a0b-1c2d3e4f5a6b", "Delta": False}]}
        listing = downstream.sync.GetDriverIdList(cookie=cookie, filter={"ComputerIds": computer})
        assert listing.NewDriverSets.guid == [kept.id]
        without_computers = downstream.sync.GetDriverIdList(cookie=cookie, filter={})
        assert not (without_computers.NewDriverSets and without_computers.NewDriverSets.guid)
        since = downstream.sync.GetDriverIdList(
            cookie=cookie, filter={"Anchor": f"{before},2026-01-01 00:00:00.000", "ComputerIds": computer}
        )
        assert since.RemovedDriverSets.guid == [gone.id]
        assert not (since.NewDriverSets and since.NewDriverSets.guid)

        answer = downstream.sync.GetDriverSetData(
            cookie=cookie, driverSets={"guid": [kept.id, gone.id, "0d6f2c1a-0000-4000-8000-0000000000ff"]}
        )
        (only,) = answer.ServerSyncDriverSetData
        assert (only.DriverSetId, only.DriverSetXml) == (kept.id, kept.xml)
        for bad in ([kept.id] * 101, ["not-a-guid"]):
            with pytest.raises(zeep.exceptions.Fault) as raised:
                downstream.sync.GetDriverSetData(cookie=cookie, driverSets={"guid": bad})
            assert fault_code(raised) == "InvalidParameters"


def test_deployments_carry_the_servers_approvals_and_declines(
    tmp_path: Path,
) -> None:
    root = make_root(tmp_path / "root", updates=60, content="1M", seed=4)
    token = add_token(root)
    with Store.open(root / "upmirror.db") as store:
        ids = sorted(u.id for u in latest_records(store) if not u.expired)
    ok("updates", "approve", "--dir", root, *ids[:3])
    ok("updates", "decline", "--dir", root, ids[3])
    with UpmirrorServer(root, token=token) as server:
        downstream = WsusDownstream(server.url, token)
        cookie = downstream.authenticate()
        result = downstream.sync.GetDeployments(cookie=cookie, deploymentAnchor=None, syncAnchor=None)
        assert {d.UpdateId for d in result.Deployments.ServerSyncDeployment} == set(ids[:3])
        assert set(result.HiddenUpdates.guid) == {ids[3]}
        assert {g.Name for g in result.Groups.ServerSyncTargetGroup} >= {"All Computers"}
        ok("updates", "reinstate", "--dir", root, ids[3])
        later = downstream.sync.GetDeployments(cookie=cookie, deploymentAnchor=result.Anchor, syncAnchor=None)
        assert not later.Deployments or not later.Deployments.ServerSyncDeployment
        assert not later.HiddenUpdates or not later.HiddenUpdates.guid


def test_download_files_knows_the_servers_files_and_refuses_unknown_digests(
    served: tuple[Path, UpmirrorServer, str],
) -> None:
    root, server, token = served
    downstream = WsusDownstream(server.url, token)
    cookie = downstream.authenticate()
    with Store.open(root / "upmirror.db") as store:
        known = next(f for u in latest_records(store) if not u.expired for f in u.files)
    assert (root / "content" / content_relative_path(known.sha1, known.extension)).is_file()
    downstream.sync.DownloadFiles(cookie=cookie, fileDigestList={"base64Binary": [bytes.fromhex(known.sha1)]})
    with pytest.raises(zeep.exceptions.Fault) as raised:
        downstream.sync.DownloadFiles(cookie=cookie, fileDigestList={"base64Binary": [bytes(20)]})
    assert fault_code(raised) == "FileDigestsMissing"


def test_ping_and_related_revisions(served: tuple[Path, UpmirrorServer, str]) -> None:
    _, server, token = served
    downstream = WsusDownstream(server.url, token)
    assert downstream.sync.Ping(pingLevel=0).SuccessFlag is True
    related = downstream.sync.GetRelatedRevisionsForUpdates(
        cookie=downstream.authenticate(), updateIDs={"guid": [wsus.SECURITY_UPDATES]}
    )
    assert related is None or not related.UpdateIdentity


def raw_post(server: UpmirrorServer, path: str, body: bytes) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "text/xml; charset=utf-8"})
        reply = connection.getresponse()
        return reply.status, reply.read()
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"this is not XML", 400),
        (b"<?xml version='1.0'?><notsoap/>", 400),
        (b'<!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>', 400),
        (
            b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
            b'<NoSuchOperation xmlns="http://www.microsoft.com/SoftwareDistribution"/></soap:Body></soap:Envelope>',
            500,
        ),
        (
            b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
            b'<GetUpdateData xmlns="http://www.microsoft.com/SoftwareDistribution"><cookie><Expiration>x'
            b"</Expiration><EncryptedData>%%%</EncryptedData></cookie></GetUpdateData></soap:Body></soap:Envelope>",
            500,
        ),
    ],
)
def test_malformed_requests_get_a_4xx_or_a_fault_and_never_a_traceback(
    served: tuple[Path, UpmirrorServer, str], body: bytes, status: int
) -> None:
    _, server, token = served
    got, answer = raw_post(server, SYNC_PATH, body)
    assert got == status
    if status == 500:
        assert b"<ErrorCode>" in answer
    assert b"Traceback" not in answer
    assert WsusDownstream(server.url, token).sync.Ping(pingLevel=0).SuccessFlag is True


def test_the_authorization_service_answers_at_the_doubled_slash_real_downstreams_use(
    served: tuple[Path, UpmirrorServer, str],
) -> None:
    _, server, token = served
    envelope = (
        b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
        b'<GetAuthorizationCookie xmlns="http://www.microsoft.com/SoftwareDistribution/Server/DssAuthWebService">'
        b"<accountName>branch</accountName></GetAuthorizationCookie></soap:Body></soap:Envelope>"
    )
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(
            "POST",
            "/" + AUTH_PATH,
            body=envelope,
            headers={"Content-Type": "text/xml; charset=utf-8", "Authorization": f"Bearer {token}"},
        )
        reply = connection.getresponse()
        answer = reply.read()
    finally:
        connection.close()
    assert reply.status == 200, answer
    assert b"<PlugInId>DssTargeting</PlugInId>" in answer
    assert base64.b64decode(answer.split(b"<CookieData>")[1].split(b"</CookieData>")[0])


UPD = "{http://schemas.microsoft.com/msus/2002/12/Update}"


def read_blob(entry: Any, scratch: Path) -> Any:
    """The update XML of one ServerSyncUpdateData, read by Python's own XML parser; a compressed one is unpacked by
    cabextract first (independent readers of both formats)."""
    if entry.XmlUpdateBlobCompressed is None:
        return ElementTree.fromstring(entry.XmlUpdateBlob.encode())
    cabinet = scratch / f"{entry.Id.UpdateID}.cab"
    cabinet.write_bytes(entry.XmlUpdateBlobCompressed)
    out = scratch / entry.Id.UpdateID
    subprocess.run(["cabextract", "-q", "-d", str(out), str(cabinet)], check=True, capture_output=True)
    (member,) = list(out.iterdir())
    return ElementTree.fromstring(member.read_bytes().decode("utf-16-le").encode())


def test_update_data_carries_each_record_as_update_xml_with_its_files(
    served: tuple[Path, UpmirrorServer, str], tmp_path: Path
) -> None:
    root, server, token = served
    downstream = WsusDownstream(server.url, token)
    cookie = downstream.authenticate()
    with Store.open(root / "upmirror.db") as store:
        records = {u.id: u for u in latest_records(store)}
        categories = {c.id: c for c in store.categories()}
    # The biggest updates (most files) first, so some answers are above the size WSUS compresses at.
    chosen = sorted(records.values(), key=lambda u: -len(u.files))[:100]
    answer = downstream.sync.GetUpdateData(
        cookie=cookie, updateIds={"UpdateIdentity": [{"UpdateID": u.id, "RevisionNumber": u.revision} for u in chosen]}
    )
    entries = answer.updates.ServerSyncUpdateData
    assert [e.Id.UpdateID for e in entries] == [u.id for u in chosen]
    assert any(e.XmlUpdateBlobCompressed is not None for e in entries), "large updates are sent compressed"
    urls = {u.FileDigest.hex(): u for u in answer.fileUrls.ServerSyncUrlData}  # zeep decodes base64Binary
    for entry, update in zip(entries, chosen, strict=True):
        xml = read_blob(entry, tmp_path)
        identity = xml.find(f"{UPD}UpdateIdentity")
        assert (identity.get("UpdateID"), int(identity.get("RevisionNumber"))) == (update.id, update.revision)
        assert xml.find(f"{UPD}LocalizedPropertiesCollection/{UPD}LocalizedProperties/{UPD}Title").text == update.title
        state = xml.find(f"{UPD}Properties").get("PublicationState")
        assert state == ("Expired" if update.expired else "Published")
        groups = [
            {i.get("UpdateID") for i in group.findall(f"{UPD}UpdateIdentity")}
            for group in xml.findall(f"{UPD}Relationships/{UPD}Prerequisites/{UPD}AtLeastOne")
            if group.get("IsCategory") == "true"
        ]
        assert set(update.products) in groups
        assert {update.classification} in groups
        files = {base64.b64decode(f.get("Digest")).hex(): f for f in xml.findall(f"{UPD}Files/{UPD}File")}
        assert set(files) == {f.sha1 for f in update.files}
        listed = {d.hex() for d in (entry.FileDigestList.base64Binary if entry.FileDigestList else [])}
        assert listed == set(files)
        for ref in update.files:
            element = files[ref.sha1]
            assert (element.get("FileName"), int(element.get("Size"))) == (ref.name, ref.size)
            extra = element.find(f"{UPD}AdditionalDigest")
            assert base64.b64decode(extra.text).hex() == ref.sha256
            assert extra.get("Algorithm") == "SHA256"
            url = urls[ref.sha1].UssUrl
            assert url == f"{server.url}/Content/{content_relative_path(ref.sha1, ref.extension)}"
    # A file named by its URL is served, with the bytes its digest names.
    some = next(f for u in chosen if not u.expired for f in u.files)
    reply = server.call("GET", urls[some.sha1].UssUrl.removeprefix(server.url))
    assert reply.status == 200
    assert hashlib.sha1(reply.body).hexdigest() == some.sha1

    # Categories come as updates of type Category with their parent as an IsCategory prerequisite.
    product = next(c for c in categories.values() if c.kind == "product")
    answer = downstream.sync.GetUpdateData(
        cookie=cookie, updateIds={"UpdateIdentity": [{"UpdateID": product.id, "RevisionNumber": 1}]}
    )
    xml = read_blob(answer.updates.ServerSyncUpdateData[0], tmp_path)
    assert xml.find(f"{UPD}Properties").get("UpdateType") == "Category"
    parents = [i.get("UpdateID") for i in xml.iter(f"{UPD}UpdateIdentity")][1:]
    assert parents == [product.parent]
    with pytest.raises(zeep.exceptions.Fault) as raised:
        downstream.sync.GetUpdateData(
            cookie=cookie, updateIds={"UpdateIdentity": [{"UpdateID": product.id, "RevisionNumber": 7}]}
        )
    assert fault_code(raised) == "InvalidParameters"
