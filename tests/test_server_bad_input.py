"""Bad input at every endpoint of a running ``upmirror serve``: random bytes, random MessagePack documents, near-valid
records with wrong values, odd anchors, paths and Range headers. The answer is always a clear 4xx with a one-line
message (or a success for input that happens to be valid), never a 500 or a traceback."""

from __future__ import annotations

import http.client
import socket
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.support.cli import upmirror
from tests.support.upmirror_server import Reply, UpmirrorServer, add_token
from upmirror import wsus
from upmirror.model import FilterItem, RevisionRef, RevisionsRequest, RevisionsResponse, UpdatesRequest

POST_ENDPOINTS = ("/api/v1/revisions", "/api/v1/updates", "/api/v1/approvals", "/api/v1/drivers")
# The client API: devices report their inventory and ask for their updates.
CLIENT_ENDPOINTS = ("/api/v1/client/inventory", "/api/v1/client/updates")
# Characters allowed in a header value (aiohttp's HTTP parser itself refuses control characters).
HEADER_CHARACTERS = string.ascii_letters + string.digits + string.punctuation + " "
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpmirrorServer]:
    directory = tmp_path_factory.mktemp("root")
    done = upmirror("catalog", "generate", directory, "--updates", "60", "--content-size", "2M", "--seed", "2")
    assert done.returncode == 0, done.stderr
    with UpmirrorServer(directory, token=add_token(directory)) as running:
        yield running


def assert_clear(reply: Reply, *allowed: int) -> None:
    assert reply.status < 500, reply.body
    assert reply.status in allowed, (reply.status, reply.body)
    if reply.status >= 400:
        message = reply.body.decode()
        assert message.strip(), "a 4xx carries a message"
        assert message.count("\n") <= 1, message
        assert "Traceback" not in message


plain = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=50)
    | st.binary(max_size=50)
)
documents = st.recursive(
    plain,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
field_names = st.sampled_from(
    [
        "anchor",
        "products",
        "classifications",
        "languages",
        "revisions",
        "hardware_ids",
        "computer_hardware_ids",
        "device",
        "x",
    ]
)


def encode(document: Any) -> bytes:
    return msgspec.msgpack.encode(document)


near_valid = st.dictionaries(field_names, documents | st.lists(st.tuples(st.text(max_size=40), documents), max_size=4))


@FUZZ
@given(endpoint=st.sampled_from(POST_ENDPOINTS), body=st.binary(max_size=300))
@example(endpoint="/api/v1/revisions", body=b"\x81\xa7\x00\x00\x00\x00\x00\x00\x80")  # invalid UTF-8 in a key
def test_random_bytes(server: UpmirrorServer, endpoint: str, body: bytes) -> None:
    assert_clear(server.call("POST", endpoint, body), 200, 400)


@FUZZ
@given(endpoint=st.sampled_from(POST_ENDPOINTS), document=documents | near_valid)
def test_random_documents(server: UpmirrorServer, endpoint: str, document: Any) -> None:
    assert_clear(server.call("POST", endpoint, msgspec.msgpack.encode(document)), 200, 400, 404, 413)


@FUZZ
@given(endpoint=st.sampled_from(CLIENT_ENDPOINTS), body=st.binary(max_size=300) | (documents | near_valid).map(encode))
def test_random_client_requests(server: UpmirrorServer, endpoint: str, body: bytes) -> None:
    assert_clear(server.call("POST", endpoint, body), 200, 204, 400)


@FUZZ
@given(anchor=st.text(max_size=30))
def test_random_anchors(server: UpmirrorServer, anchor: str) -> None:

    assert_clear(server.call("GET", f"/api/v1/categories?anchor={quote(anchor)}"), 200, 400)
    assert_clear(server.call("POST", "/api/v1/revisions", RevisionsRequest(anchor=anchor)), 200, 400)


@FUZZ
@given(
    folder=st.text(string.printable, max_size=4),
    name=st.text(string.ascii_letters + string.digits + "._-%", max_size=50),
    range_header=st.none() | st.text(HEADER_CHARACTERS, max_size=40) | st.from_regex(r"\Abytes=[0-9,\- ]{0,30}\Z"),
)
def test_random_content_requests(server: UpmirrorServer, folder: str, name: str, range_header: str | None) -> None:

    headers = {} if range_header is None else {"Range": range_header}
    reply = server.call("GET", f"/Content/{quote(folder, safe='')}/{quote(name, safe='')}", headers=headers)
    assert_clear(reply, 404)


@FUZZ
@given(range_header=st.from_regex(r"\Abytes=[0-9,\- ]{0,40}\Z") | st.text(HEADER_CHARACTERS, max_size=40))
def test_random_ranges_on_a_real_file(server: UpmirrorServer, range_header: str) -> None:
    path = next((server.directory / "content").glob("??/*"))
    reply = server.call(
        "GET",
        "/Content/" + path.relative_to(server.directory / "content").as_posix(),
        headers={"Range": range_header},
    )
    assert_clear(reply, 200, 206, 416)
    if reply.status == 200:
        assert reply.body == path.read_bytes()


def test_named_bad_inputs(server: UpmirrorServer) -> None:
    cases: list[tuple[str, str, bytes | object, int, str]] = [
        ("POST", "/api/v1/revisions", b"\xc1", 400, "malformed"),
        ("POST", "/api/v1/revisions", {"anchor": 5}, 400, "Expected `str`"),
        ("POST", "/api/v1/revisions", {"products": [["not-a-guid", True]]}, 400, "unknown product"),
        ("POST", "/api/v1/revisions", {"unknown_field": 1}, 400, "unknown_field"),
        ("POST", "/api/v1/revisions", RevisionsRequest(anchor="abc"), 400, "malformed"),
        ("POST", "/api/v1/revisions", RevisionsRequest(anchor="99999999"), 400, "ahead of this server"),
        ("POST", "/api/v1/revisions", RevisionsRequest(classifications=[FilterItem("nope")]), 400, "unknown"),
        ("POST", "/api/v1/updates", {"revisions": [["x", 1]]}, 400, "Expected `str` matching regex"),
        ("POST", "/api/v1/updates", {"revisions": [[wsus.SECURITY_UPDATES, 0]]}, 400, "Expected `int` >= 1"),
        ("POST", "/api/v1/updates", UpdatesRequest(revisions=[RevisionRef(wsus.SECURITY_UPDATES, 1)]), 404, "unknown"),
        ("POST", "/api/v1/approvals", {"anchor": "-3"}, 400, "malformed"),
        ("POST", "/api/v1/drivers", {"hardware_ids": "PCI"}, 400, "Expected `array`"),
        ("GET", "/api/v1/categories?anchor=12x", b"", 400, "malformed"),
    ]
    for method, path, body, status, text in cases:
        reply = server.call(method, path, body)
        assert reply.status == status, (path, body, reply.body)
        assert text in reply.body.decode(), (path, body, reply.body)


def test_oversized_bodies_and_batches(server: UpmirrorServer) -> None:
    reply = server.call("POST", "/api/v1/revisions", b"\x00" * (17 << 20))
    assert reply.status == 413
    every = server.call(
        "POST",
        "/api/v1/revisions",
        RevisionsRequest(
            products=[FilterItem(wsus.WINDOWS_FAMILY, False)],
            classifications=[FilterItem(c, False) for c in wsus.CLASSIFICATIONS.values()],
        ),
    ).decode(RevisionsResponse)
    refs = [RevisionRef(every.revisions[0].update_id, every.revisions[0].revision)] * 101
    assert_clear(server.call("POST", "/api/v1/updates", UpdatesRequest(revisions=refs)), 413)
    assert_clear(server.call("POST", "/api/v1/updates", UpdatesRequest(revisions=refs[:100])), 200)
    too_many_items = {"products": [[wsus.WINDOWS_FAMILY, True]] * 10_001}
    assert_clear(server.call("POST", "/api/v1/revisions", too_many_items), 400)


def exchange(server: UpmirrorServer, request: bytes) -> Reply:
    """Sends raw bytes as a request on a new connection and reads the answer (by its Content-Length, without waiting
    for the connection to close)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as connection:
        connection.sendall(request)
        response = http.client.HTTPResponse(connection)
        response.begin()
        return Reply(response.status, response.headers, response.read())


def test_an_authorization_header_that_is_not_utf8_is_a_401(server: UpmirrorServer) -> None:
    content = next((server.directory / "content").glob("??/*"))
    for path in ("/api/v1/server", "/Content/" + content.relative_to(server.directory / "content").as_posix()):
        for credentials in (b"Bearer \xff\xfe", b"Bearer upm_\xc3\xa9t\xc3\xa9", b"Bearer \x80"):
            reply = exchange(
                server, b"GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n\r\n" % (path.encode(), credentials)
            )
            assert_clear(reply, 401)


def test_an_undecodable_body_is_a_400_and_its_backend_connection_is_not_reused(server: UpmirrorServer) -> None:
    for encoding, body in (("gzip", b"not gzip"), ("deflate", b"\x00\x01 not deflate")):
        for _ in range(5):  # a broken pooled backend connection failed about every second request after it
            reply = server.call("POST", "/api/v1/revisions", body, headers={"Content-Encoding": encoding})
            assert_clear(reply, 400)
            assert b"content-encoding" in reply.body.lower()
            assert_clear(server.call("GET", "/api/v1/server"), 200)
            assert_clear(server.call("POST", "/api/v1/approvals", {"anchor": ""}), 200)


def test_a_malformed_chunked_body_is_a_400(server: UpmirrorServer) -> None:
    head = b"POST /api/v1/revisions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n" % str(server.token).encode()
    for chunks in (b"zz\r\nhello\r\n0\r\n\r\n", b"5\r\nhello-too-long\r\n0\r\n\r\n", b"-1\r\n\r\n"):
        reply = exchange(server, head + b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
        assert_clear(reply, 400)
        assert reply.headers["Connection"] == "close"
    assert_clear(server.call("GET", "/api/v1/server"), 200)


def test_unknown_methods_and_overlong_lines_are_refused_by_the_front(server: UpmirrorServer) -> None:
    for method in ("FOO", "PROPFIND", "DELETE", "OPTIONS"):
        reply = exchange(server, b"%s /api/v1/server HTTP/1.1\r\nHost: x\r\n\r\n" % method.encode())
        assert_clear(reply, 405)
        assert {m.strip() for m in reply.headers["Allow"].split(",")} == {"GET", "HEAD", "POST"}
    long_target = "/api/v1/categories?anchor=" + "1" * 9000
    assert_clear(server.call("GET", long_target), 414)
    assert_clear(server.call("GET", "/Content/" + "A" * 9000), 414)
    assert_clear(server.call("GET", "/api/v1/server", headers={"X-Long": "a" * 9000}), 431)
    assert_clear(server.call("GET", "/Content/00/x.cab", token="a" * 9000), 431)  # asked of the backend too
    assert_clear(server.call("POST", "/api/v1/revisions", b"\x80", headers={"X-Long": "a" * 9000}), 431)
    assert_clear(server.call("GET", "/api/v1/server"), 200)
    assert "Traceback" not in server.stderr()


def test_a_declared_body_above_the_limit_is_refused_before_it_is_sent(server: UpmirrorServer) -> None:
    request = (
        b"POST /api/v1/revisions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n"
        % (str(server.token).encode(), 1 << 40)
    )
    reply = exchange(server, request + b"\x80")  # the answer comes with none of the terabyte sent
    assert_clear(reply, 413)
    assert reply.headers["Connection"] == "close"


def test_the_server_survives_and_logged_no_traceback(server: UpmirrorServer, tmp_path: Path) -> None:
    assert server.call("GET", "/api/v1/server").status == 200
    assert "Traceback" not in server.stderr()
