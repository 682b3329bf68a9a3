"""``upmirror serve`` over real HTTP on loopback: the protocol's answers match the generated catalog under the filter
rule (computed by the test), incrementally after ``catalog revise`` too; content bytes and ranges equal the files,
checked with curl as an independent client as well as with Python; tokens guard everything."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import msgspec
import pytest

from tests.catalog_rules import expected_answer, latest_records
from tests.support.cli import upmirror
from tests.support.upmirror_server import UpmirrorServer, add_token
from tests.support.waiting import wait_for
from upmirror import content_relative_path, wsus
from upmirror.catalog import tree
from upmirror.model import (
    ApprovalsRequest,
    ApprovalsResponse,
    CategoriesResponse,
    DriversRequest,
    FilterItem,
    RevisionRef,
    RevisionsRequest,
    RevisionsResponse,
    ServerInfo,
    Update,
    UpdatesRequest,
    UpdatesResponse,
)
from upmirror.store import Store


@dataclass
class Root:
    directory: Path
    token: str
    server: UpmirrorServer

    def records(self) -> list[Update]:
        with Store.open(self.directory / "upmirror.db") as store:
            return latest_records(store)

    def categories(self) -> list:  # type: ignore[type-arg]
        with Store.open(self.directory / "upmirror.db") as store:
            return store.categories()

    def revisions(self, request: RevisionsRequest) -> RevisionsResponse:
        return self.server.call("POST", "/api/v1/revisions", request).decode(RevisionsResponse)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Root]:
    directory = tmp_path_factory.mktemp("root")
    done = upmirror("catalog", "generate", directory, "--updates", "800", "--content-size", "40M", "--seed", "5")
    assert done.returncode == 0, done.stderr
    token = add_token(directory)
    with UpmirrorServer(directory, token=token) as server:
        yield Root(directory, token, server)


def as_set(response: RevisionsResponse) -> tuple[set[tuple[str, int]], set[str]]:
    return {(r.update_id, r.revision) for r in response.revisions}, set(response.expired)


def everything(delta: bool = False, languages: tuple[str, ...] = tree.LANGUAGES) -> RevisionsRequest:
    return RevisionsRequest(
        products=[FilterItem(tree.category_id(family), delta) for family in tree.FAMILIES],
        classifications=[FilterItem(c, delta) for c in wsus.CLASSIFICATIONS.values()],
        languages=[FilterItem(lang, delta) for lang in languages],
    )


def test_every_protocol_call_needs_a_valid_token(root: Root) -> None:
    for token in ("", "not-a-token"):
        for method, path in (("GET", "/api/v1/server"), ("GET", "/api/v1/categories"), ("POST", "/api/v1/updates")):
            reply = root.server.call(method, path, b"", token=token)
            assert reply.status == 401, (method, path)
            assert reply.headers["WWW-Authenticate"].startswith("Bearer")
            assert b"upmirror tokens add" in reply.body
    some_file = next((root.directory / "content").glob("??/*"))
    relative = some_file.relative_to(root.directory / "content").as_posix()
    assert root.server.call("GET", f"/Content/{relative}", token="").status == 401


def test_server_info_describes_the_catalog(root: Root) -> None:
    info = root.server.call("GET", "/api/v1/server").decode(ServerInfo)
    with Store.open(root.directory / "upmirror.db") as store:
        assert info.id == store.server_id
    assert info.protocol_version == 1
    assert info.max_updates_per_request == 100
    assert info.replica is False
    assert sorted(info.languages) == sorted(tree.LANGUAGES)


def thread_priorities(pid: int) -> dict[int, tuple[str, int]]:
    """Thread ID -> (name, nice value) of every thread of a process, read from /proc (stat's 19th field)."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        stat = (task / "stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()  # the fields after "pid (comm) ", from the 3rd
        found[int(task.name)] = ((task / "comm").read_text().strip(), int(fields[16]))
    return found


def test_the_backend_gives_way_to_the_front_that_serves_content(root: Root) -> None:
    """The front's threads keep the server's priority; every other thread (the event loop, where metadata and the
    WSUS protocol are answered, and the store threads) runs at the lowest priority, nice 19."""
    root.server.call("GET", "/api/v1/server")  # the store threads exist once a request needed them
    assert root.server.process is not None
    pid = root.server.process.pid
    threads = thread_priorities(pid)
    base = os.getpriority(os.PRIO_PROCESS, 0)
    front = {nice for name, nice in threads.values() if name.startswith("upmirror-net")}
    backend = {nice for name, nice in threads.values() if not name.startswith("upmirror-net")}
    assert front == {base}, threads
    assert backend == {19}, threads
    assert len(threads) - len(front) >= 2, "the event loop and at least one store thread"
    assert threads[pid][1] == 19, "the event loop's thread"


def test_categories_are_the_tree_and_the_classifications(root: Root) -> None:
    answer = root.server.call("GET", "/api/v1/categories?anchor=").decode(CategoriesResponse)
    assert {(c.id, c.kind, c.parent) for c in answer.categories} == {
        (c.id, c.kind, c.parent) for c in tree.categories()
    }
    classifications = {c.title: c.id for c in answer.categories if c.kind == "classification"}
    assert classifications == wsus.CLASSIFICATIONS
    again = root.server.call("GET", f"/api/v1/categories?anchor={answer.anchor}").decode(CategoriesResponse)
    assert again.categories == []


FILTERS = {
    "default WSUS selection": RevisionsRequest(
        products=[FilterItem(wsus.WINDOWS_FAMILY, False)],
        classifications=[FilterItem(wsus.CRITICAL_UPDATES, False), FilterItem(wsus.SECURITY_UPDATES, False)],
        languages=[FilterItem("en", False)],
    ),
    "children without their parent": RevisionsRequest(
        products=[
            FilterItem(tree.category_id("Windows 11"), False),
            FilterItem(tree.category_id("Office 2019"), False),
        ],
        classifications=[FilterItem(c, False) for c in wsus.CLASSIFICATIONS.values()],
        languages=[FilterItem("ja", False), FilterItem("de", False)],
    ),
    "a parent with its child": RevisionsRequest(
        products=[
            FilterItem(tree.category_id("SQL Server"), False),
            FilterItem(tree.category_id("SQL Server 2019"), False),
        ],
        classifications=[FilterItem(wsus.SECURITY_UPDATES, False), FilterItem(wsus.CLASSIFICATIONS["Updates"], False)],
        languages=[FilterItem(lang, False) for lang in tree.LANGUAGES],
    ),
    "drivers": RevisionsRequest(
        products=[FilterItem(tree.category_id("Windows 10 and later drivers"), False)],
        classifications=[FilterItem(wsus.CLASSIFICATIONS["Drivers"], False)],
        languages=[FilterItem("fr", False)],
    ),
    "everything": everything(),
}


@pytest.mark.parametrize("name", list(FILTERS))
def test_revisions_and_update_data_match_the_catalog(root: Root, name: str) -> None:
    request = FILTERS[name]
    records = root.records()
    expected = expected_answer(records, root.categories(), request, changed=None)
    answer = root.revisions(request)
    assert as_set(answer) == (expected.revisions, expected.expired)
    assert expected.revisions, "the filter selects something"
    # The update data, in batches of the announced limit, are the stored records.
    by_id = {r.id: r for r in records}
    for start in range(0, len(answer.revisions), 100):
        batch = answer.revisions[start : start + 100]
        data = root.server.call("POST", "/api/v1/updates", UpdatesRequest(revisions=batch)).decode(UpdatesResponse)
        assert [(u.id, u.revision) for u in data.updates] == [(r.update_id, r.revision) for r in batch]
        assert all(u == by_id[u.id] for u in data.updates)


def test_drivers_for_reported_hardware(root: Root) -> None:
    records = root.records()
    driver = next(r for r in records if r.hardware_ids and not r.computer_hardware_ids and not r.expired)
    same_device = {
        r.id
        for r in records
        if not r.expired and not r.computer_hardware_ids and driver.hardware_ids[0] in r.hardware_ids
    }
    answer = root.server.call(
        "POST", "/api/v1/drivers", DriversRequest(hardware_ids=[FilterItem(driver.hardware_ids[0], False)])
    ).decode(RevisionsResponse)
    assert {r.update_id for r in answer.revisions} == same_device


def test_approvals_since_an_anchor(root: Root) -> None:
    first = root.server.call("POST", "/api/v1/approvals", ApprovalsRequest()).decode(ApprovalsResponse)
    some = [r.id for r in root.records()[:3]]
    with Store.open(root.directory / "upmirror.db") as store:
        store.approve(some[0])
        store.decline(some[1])
    answer = root.server.call("POST", "/api/v1/approvals", ApprovalsRequest(anchor=first.anchor)).decode(
        ApprovalsResponse
    )
    assert [(a.update_id, a.action) for a in answer.approvals] == [(some[0], "approved"), (some[1], "declined")]


def test_incremental_sync_after_a_month_of_change(root: Root) -> None:
    """The anchor of a first sync, then `catalog revise`: the next answer lists exactly what changed within the
    filter, including the updates of a product added under a family selected before the product existed."""
    request = FILTERS["default WSUS selection"]
    first = root.revisions(request)
    categories_anchor = root.server.call("GET", "/api/v1/categories").decode(CategoriesResponse).anchor
    before = {r.id: (r.revision, r.expired) for r in root.records()}
    done = upmirror("catalog", "revise", root.directory, "--seed", "9")
    assert done.returncode == 0, done.stderr
    records = root.records()
    changed = {r.id for r in records if before.get(r.id) != (r.revision, r.expired)}
    assert changed

    incremental = RevisionsRequest(
        anchor=first.anchor,
        products=[FilterItem(i.id, True) for i in request.products],
        classifications=[FilterItem(i.id, True) for i in request.classifications],
        languages=[FilterItem(i.id, True) for i in request.languages],
    )
    expected = expected_answer(records, root.categories(), incremental, changed)
    answer = root.revisions(incremental)
    assert as_set(answer) == (expected.revisions, expected.expired)
    new_categories = root.server.call("GET", f"/api/v1/categories?anchor={categories_anchor}").decode(
        CategoriesResponse
    )
    new_product = next(c for c in new_categories.categories if c.kind == "product")
    assert new_product.parent == wsus.WINDOWS_FAMILY
    in_new_product = {r.id for r in records if new_product.id in r.products}
    assert in_new_product & {r.update_id for r in answer.revisions}, "the new child product's updates arrive"

    # A language added to the filter (delta false) brings in full what carries it; the rest stays incremental.
    with_new_language = RevisionsRequest(
        anchor=first.anchor,
        products=incremental.products,
        classifications=incremental.classifications,
        languages=[*incremental.languages, FilterItem("de", False)],
    )
    expected = expected_answer(records, root.categories(), with_new_language, changed)
    assert as_set(root.revisions(with_new_language)) == (expected.revisions, expected.expired)
    nothing = root.revisions(RevisionsRequest(anchor=answer.anchor, products=incremental.products))
    assert nothing.revisions == []
    assert nothing.expired == []


# ---- content ----


def content_files(root: Root) -> list[Path]:
    files = sorted((root.directory / "content").glob("??/*"), key=lambda p: p.stat().st_size)
    return [files[0], files[len(files) // 2], files[-1]]


def content_url(root: Root, path: Path) -> str:
    return "/Content/" + path.relative_to(root.directory / "content").as_posix()


def test_content_bytes_equal_the_files(root: Root) -> None:
    for path in content_files(root):
        data = path.read_bytes()
        reply = root.server.call("GET", content_url(root, path))
        assert reply.status == 200
        assert reply.body == data
        assert hashlib.sha1(data).hexdigest().upper() == path.stem, "the file is named by its SHA-1"
        head = root.server.call("HEAD", content_url(root, path))
        assert head.status == 200
        assert head.body == b""
        assert int(head.headers["Content-Length"]) == len(data)
        assert head.headers["Accept-Ranges"] == "bytes"
        assert (
            root.server.call("GET", content_url(root, path), headers={"If-None-Match": head.headers["ETag"]}).status
            == 304
        )


def multipart_parts(reply_body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    boundary = content_type.split("boundary=")[1].encode()
    assert reply_body.endswith(b"\r\n--" + boundary + b"--\r\n")
    parts = []
    for chunk in reply_body.split(b"\r\n--" + boundary)[1:-1]:
        head, _, data = chunk.partition(b"\r\n\r\n")
        content_range = next(h for h in head.decode().split("\r\n") if h.startswith("Content-Range:"))
        parts.append((content_range.split(": ")[1], data))
    return parts


def test_content_ranges(root: Root) -> None:
    path = content_files(root)[-1]
    data = path.read_bytes()
    size = len(data)
    url = content_url(root, path)
    single = root.server.call("GET", url, headers={"Range": "bytes=100-999"})
    assert (single.status, single.body) == (206, data[100:1000])
    assert single.headers["Content-Range"] == f"bytes 100-999/{size}"
    suffix = root.server.call("GET", url, headers={"Range": "bytes=-500"})
    assert (suffix.status, suffix.body) == (206, data[-500:])
    open_ended = root.server.call("GET", url, headers={"Range": f"bytes={size - 10}-"})
    assert (open_ended.status, open_ended.body) == (206, data[-10:])
    multiple = root.server.call("GET", url, headers={"Range": f"bytes=0-9, 50-59, -7, {size + 5}-{size + 9}"})
    assert multiple.status == 206
    assert multipart_parts(multiple.body, multiple.headers["Content-Type"]) == [
        (f"bytes 0-9/{size}", data[:10]),
        (f"bytes 50-59/{size}", data[50:60]),
        (f"bytes {size - 7}-{size - 1}/{size}", data[-7:]),
    ]
    assert int(multiple.headers["Content-Length"]) == len(multiple.body)
    for unsatisfiable in (f"bytes={size}-", f"bytes={size + 1}-{size + 100}", f"bytes={size}-,{size + 3}-"):
        reply = root.server.call("GET", url, headers={"Range": unsatisfiable})
        assert reply.status == 416, unsatisfiable
        assert reply.headers["Content-Range"] == f"bytes */{size}"
    stale = root.server.call("GET", url, headers={"Range": "bytes=0-1,5-6", "If-Range": '"stale"'})
    assert (stale.status, stale.body) == (200, data)


def curl(root: Root, url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "--silent", "--show-error", "-H", f"Authorization: Bearer {root.token}", *args, root.server.url + url],
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_curl_as_an_independent_client(root: Root, tmp_path: Path) -> None:
    for path in content_files(root):
        target = tmp_path / path.name
        done = curl(root, content_url(root, path), "--fail", "-o", str(target))
        assert done.returncode == 0, done.stderr
        assert target.read_bytes() == path.read_bytes()
    path = content_files(root)[-1]
    data = path.read_bytes()
    part = curl(root, content_url(root, path), "--fail", "-r", "1000-1999")
    assert part.stdout == data[1000:2000]
    several = curl(root, content_url(root, path), "--fail", "-r", "0-3,-4", "-D", str(tmp_path / "headers"))
    content_type = next(
        line.split(": ", 1)[1].strip()
        for line in (tmp_path / "headers").read_text().splitlines()
        if line.lower().startswith("content-type:")
    )
    assert multipart_parts(several.stdout, content_type) == [
        (f"bytes 0-3/{len(data)}", data[:4]),
        (f"bytes {len(data) - 4}-{len(data) - 1}/{len(data)}", data[-4:]),
    ]
    past_end = curl(root, content_url(root, path), "-o", "/dev/null", "-w", "%{http_code}", "-r", f"{len(data)}-")
    assert past_end.stdout == b"416"
    resumed = tmp_path / "resumed"
    resumed.write_bytes(data[: len(data) // 3])
    done = curl(root, content_url(root, path), "--fail", "-C", "-", "-o", str(resumed))
    assert done.returncode == 0, done.stderr
    assert resumed.read_bytes() == data


def test_content_paths_that_are_not_layout_names_are_not_found(root: Root) -> None:
    for bad in ("/Content/00/nothex.cab", "/Content/..%2F..%2Fupmirror.toml/x", "/Content/AB/" + "A" * 40 + ".cab"):
        reply = root.server.call("GET", bad)
        assert reply.status == 404, bad
    missing = "/Content/" + content_relative_path("0" * 40, ".cab")
    assert root.server.call("GET", missing).status == 404


def test_content_is_only_regular_files_reached_without_a_symbolic_link(tmp_path: Path) -> None:
    directory = tmp_path / "root"
    done = upmirror("catalog", "generate", directory, "--updates", "5", "--content-size", "100K")
    assert done.returncode == 0, done.stderr
    content = directory / "content"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.cab").write_bytes(b"a file outside the content directory\n")
    free = [f"{n:02X}" for n in range(256) if not (content / f"{n:02X}").exists()]
    linked_file, in_linked_folder, fifo = (content_relative_path("1" * 38 + folder, ".cab") for folder in free[:3])
    (content / linked_file).parent.mkdir()
    (content / linked_file).symlink_to(outside / "secret.cab")
    (outside / Path(in_linked_folder).name).write_bytes(b"a file in a folder outside the content directory\n")
    (content / in_linked_folder).parent.symlink_to(outside, target_is_directory=True)
    (content / fifo).parent.mkdir()
    os.mkfifo(content / fifo)
    real = next(p for p in content.rglob("*.*") if p.is_file() and not p.is_symlink() and p.parent.parent == content)
    with UpmirrorServer(directory, token=add_token(directory)) as server:
        for name in (linked_file, in_linked_folder, fifo):
            reply = server.call("GET", f"/Content/{name}")
            assert reply.status == 404, (name, reply.body)
            assert b"outside" not in reply.body
        assert server.call("GET", f"/Content/{real.relative_to(content).as_posix()}").body == real.read_bytes()


def test_content_answers_get_and_head_only(root: Root) -> None:
    reply = root.server.call("POST", content_url(root, content_files(root)[0]), b"x")
    assert reply.status == 405
    assert {method.strip() for method in reply.headers["Allow"].split(",")} == {"GET", "HEAD"}
    assert reply.body.endswith(b"\n")
    assert reply.body.count(b"\n") == 1, "a one-line message"


def test_content_conditional_requests(root: Root) -> None:
    path = content_files(root)[-1]
    data = path.read_bytes()
    url = content_url(root, path)
    head = root.server.call("HEAD", url)
    etag, last_modified = head.headers["ETag"], head.headers["Last-Modified"]
    since = root.server.call("GET", url, headers={"If-Modified-Since": last_modified})
    assert (since.status, since.body, since.headers["ETag"]) == (304, b"", etag)
    older = root.server.call("GET", url, headers={"If-Modified-Since": "Mon, 01 Jan 1990 00:00:00 GMT"})
    assert (older.status, older.body) == (200, data)
    other_tag = root.server.call("GET", url, headers={"If-None-Match": '"other"', "If-Modified-Since": last_modified})
    assert other_tag.status == 200, "If-None-Match decides when both are sent"
    assert root.server.call("GET", url, headers={"If-None-Match": f'"other", W/{etag}'}).status == 304
    current = root.server.call("GET", url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert (current.status, current.body) == (206, data[:10])
    by_date = root.server.call("GET", url, headers={"Range": "bytes=-3", "If-Range": last_modified})
    assert (by_date.status, by_date.body) == (206, data[-3:])
    ranged_head = root.server.call("HEAD", url, headers={"Range": "bytes=0-9,20-29"})
    assert (ranged_head.status, ranged_head.body) == (206, b"")
    assert ranged_head.headers["Content-Type"].startswith("multipart/byteranges; boundary=")
    whole_multipart = root.server.call("GET", url, headers={"Range": f"bytes=0-{len(data) // 2},{len(data) // 2 + 1}-"})
    assert [part for _, part in multipart_parts(whole_multipart.body, whole_multipart.headers["Content-Type"])] == [
        data[: len(data) // 2 + 1],
        data[len(data) // 2 + 1 :],
    ], "a multipart answer larger than a read at once"


def test_a_refused_content_request_gets_the_token_check_answer(root: Root) -> None:
    url = content_url(root, content_files(root)[0])
    for token in ("", "not-a-token"):
        reply = root.server.call("GET", url, token=token)
        assert reply.status == 401
        assert reply.headers["WWW-Authenticate"] == 'Bearer realm="upmirror"'
        assert b"upmirror tokens add" in reply.body
        assert token.encode() not in reply.body or not token


def connect(root: Root, receive_buffer: int | None = None) -> socket.socket:
    host, port = root.server.url.removeprefix("http://").rsplit(":", 1)
    connection = socket.socket()
    if receive_buffer is not None:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    connection.settimeout(30)
    connection.connect((host, int(port)))
    return connection


def read_response(stream: BinaryIO, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response read from ``stream``: status, headers (lower-case names), body (by Content-Length)."""
    status = int(stream.readline().split()[1])
    headers = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    length = 0 if method == "HEAD" or status == 304 else int(headers["content-length"])
    return status, headers, stream.read(length)


@contextmanager
def content_file(root: Root, data: bytes) -> Iterator[str]:
    """``data`` as a file of the root's content directory for the time of the block; yields its layout path."""
    relative = content_relative_path(hashlib.sha1(data).hexdigest(), ".cab")
    path = root.directory / "content" / relative
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    try:
        yield relative
    finally:
        path.unlink()


def test_a_slow_reader_gets_a_large_file_whole(root: Root) -> None:
    """The socket fills again and again under a reader with a small window: every byte still arrives, in order."""
    data = hashlib.shake_256(b"slow reader").digest(24 << 20)
    with (
        content_file(root, data) as relative,
        connect(root, receive_buffer=16 << 10) as connection,
        connection.makefile("rb", buffering=0) as raw,
    ):
        request = f"GET /Content/{relative} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {root.token}\r\n\r\n"
        connection.sendall(request.encode())
        status, headers, body = read_response(io.BufferedReader(raw, buffer_size=4096))
    assert (status, int(headers["content-length"])) == (200, len(data))
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()


def test_fast_readers_get_large_files_whole(root: Root, tmp_path: Path) -> None:
    """curl reads as fast as the server sends, so the socket fills and drains within microseconds, over and over:
    every transfer completes (a wakeup lost between "full" and "room again" would leave one waiting forever)."""
    data = hashlib.shake_256(b"fast readers").digest(64 << 20)
    with content_file(root, data) as relative:
        for attempt in range(8):
            done = curl(root, "/Content/" + relative, "--max-time", "30", "-o", str(tmp_path / "got"))
            assert done.returncode == 0, f"transfer {attempt}: curl exit {done.returncode}"
            assert hashlib.sha256((tmp_path / "got").read_bytes()).digest() == hashlib.sha256(data).digest()


def test_one_connection_carries_content_and_protocol_requests_pipelined(root: Root) -> None:
    """Content requests, then a protocol call, then content again, all sent before any answer is read: each answer
    comes, in order, on the one connection."""
    small, large = content_files(root)[0], content_files(root)[-1]
    auth = f"Authorization: Bearer {root.token}\r\n"
    requests = [
        ("GET", content_url(root, large), ""),
        ("HEAD", content_url(root, small), ""),
        ("GET", content_url(root, small), "Range: bytes=0-9\r\n"),
        ("GET", "/api/v1/server", ""),
        ("GET", content_url(root, large), ""),
    ]
    with connect(root) as connection, connection.makefile("rb") as stream:
        connection.sendall(b"".join(f"{m} {u} HTTP/1.1\r\nHost: x\r\n{auth}{h}\r\n".encode() for m, u, h in requests))
        answers = [read_response(stream, method) for method, _, _ in requests]
    assert [(status, body) for status, _, body in answers[:3]] == [
        (200, large.read_bytes()),
        (200, b""),
        (206, small.read_bytes()[:10]),
    ]
    assert answers[1][1]["content-length"] == str(small.stat().st_size)
    assert answers[3][0] == 200
    assert msgspec.msgpack.decode(answers[3][2], type=ServerInfo).max_updates_per_request > 0
    assert (answers[4][0], answers[4][2]) == (200, large.read_bytes())


def test_connection_close_and_http_1_0_end_the_connection_after_the_answer(root: Root) -> None:
    path = content_files(root)[1]
    for version, connection_header in (("HTTP/1.1", "Connection: close\r\n"), ("HTTP/1.0", "")):
        with connect(root) as connection, connection.makefile("rb") as stream:
            request = f"GET {content_url(root, path)} {version}\r\nHost: x\r\n{connection_header}"
            connection.sendall(f"{request}Authorization: Bearer {root.token}\r\n\r\n".encode())
            status, headers, body = read_response(stream)
            assert (status, body) == (200, path.read_bytes()), version
            assert headers.get("connection", "close").lower() == "close", version
            assert stream.read() == b"", f"{version}: the server closes the connection"


# ---- options and lifecycle ----


def test_anonymous_content_opens_content_only(tmp_path: Path) -> None:
    done = upmirror("catalog", "generate", tmp_path, "--updates", "20", "--content-size", "1M")
    assert done.returncode == 0, done.stderr
    assert upmirror("options", "set", "server.anonymous_content", "true", "--dir", tmp_path).returncode == 0
    with UpmirrorServer(tmp_path) as server:
        path = next((tmp_path / "content").glob("??/*"))
        reply = server.call("GET", "/Content/" + path.relative_to(tmp_path / "content").as_posix())
        assert (reply.status, reply.body) == (200, path.read_bytes())
        assert server.call("GET", "/api/v1/server").status == 401
        assert server.stop() == 0, "SIGTERM stops the server gracefully"


def test_a_revoked_token_stops_working(tmp_path: Path) -> None:
    assert upmirror("init", "--dir", tmp_path).returncode == 0
    assert (tmp_path / "upmirror.db").is_file(), "init creates the metadata database"
    token = add_token(tmp_path, "branch")
    listed = upmirror("tokens", "list", "--dir", tmp_path)
    assert listed.stdout.startswith("branch\t")
    assert token not in listed.stdout
    absent = "/Content/00/" + "0" * 40 + ".cab"  # a layout name: found or not, only after the token check
    with UpmirrorServer(tmp_path, token=token) as server:
        assert server.call("GET", "/api/v1/server").status == 200
        assert server.call("GET", absent).status == 404
        assert upmirror("tokens", "revoke", "branch", "--dir", tmp_path).returncode == 0
        refused = (401, 401)
        wait_for(
            lambda: (server.call("GET", "/api/v1/server").status, server.call("GET", absent).status) == refused,
            20,
            "the revoked token to stop working",
            interval=0.2,
        )
    assert upmirror("tokens", "revoke", "branch", "--dir", tmp_path).returncode == 2


def private_folders(pid: int) -> list[Path]:
    """The backend-socket folders of the server with this process ID."""
    return sorted(Path(tempfile.gettempdir()).glob(f"upmirror-serve-{pid}-*"))


def test_the_folder_a_killed_server_left_is_removed_by_the_next_one(tmp_path: Path) -> None:
    assert upmirror("init", "--dir", tmp_path).returncode == 0
    with UpmirrorServer(tmp_path) as killed:
        assert killed.call("GET", "/api/v1/server").status == 401, "the backend answers, so its folder exists"
        assert killed.process is not None
        pid = killed.process.pid
        left = private_folders(pid)
        assert len(left) == 1
        killed.process.kill()
        killed.process.wait(timeout=10)
    assert private_folders(pid) == left, "SIGKILL gives the server no chance to clean up"
    with UpmirrorServer(tmp_path) as server:
        assert server.call("GET", "/api/v1/server").status == 401
        assert server.process is not None
        assert private_folders(pid) == []
        assert len(private_folders(server.process.pid)) == 1, "the running server's own folder stays"
    assert private_folders(server.process.pid) == [], "a server stopped by SIGTERM removes its folder"


def test_sigterm_lets_a_download_in_flight_finish(root: Root, tmp_path: Path) -> None:
    path = content_files(root)[-1]
    size = path.stat().st_size
    with UpmirrorServer(root.directory, token=root.token) as server:
        slow = subprocess.Popen(
            [
                "curl",
                "--silent",
                "--fail",
                "--limit-rate",
                str(max(size // 2, 1024)),  # about two seconds
                "-H",
                f"Authorization: Bearer {root.token}",
                "-o",
                str(tmp_path / "download"),
                server.url + content_url(root, path),
            ]
        )
        wait_for_bytes(tmp_path / "download", slow)
        assert server.stop() == 0
        assert slow.wait(timeout=30) == 0
    assert (tmp_path / "download").read_bytes() == path.read_bytes()


def wait_for_bytes(path: Path, download: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Returns once ``path`` holds some bytes (the transfer has begun); fails if it never does."""
    wait_for(lambda: path.exists() and path.stat().st_size > 0, timeout, "the download to begin", process=download)


def test_a_file_truncated_while_it_is_sent_fails_that_response_only(root: Root, tmp_path: Path) -> None:
    data = bytes(range(256)) * (32 << 12)  # 8 MiB
    with content_file(root, data) as relative:
        url = root.server.url + "/Content/" + relative
        authorization = f"Authorization: Bearer {root.token}"
        slow = subprocess.Popen(
            ["curl", "--silent", "--limit-rate", "1M", "-H", authorization, "-o", str(tmp_path / "download"), url]
        )
        try:
            wait_for_bytes(tmp_path / "download", slow)
            (root.directory / "content" / relative).write_bytes(b"")  # truncated in place, as upmirror never does
            assert slow.wait(timeout=30) in (18, 56), "curl reports a transfer cut short (partial file, or a reset)"
        finally:
            slow.kill()
    assert (tmp_path / "download").stat().st_size < len(data)
    other = content_files(root)[1]
    reply = root.server.call("GET", content_url(root, other))
    assert (reply.status, reply.body) == (200, other.read_bytes()), "the server lives on"


def test_serve_refuses_a_directory_that_is_not_a_server(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "upmirror.cli", "serve", "--dir", str(tmp_path), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "not an upmirror server directory" in done.stderr


def test_update_batches_are_bounded_and_ids_must_exist(root: Root) -> None:
    answer = root.revisions(everything())
    too_many = root.server.call("POST", "/api/v1/updates", UpdatesRequest(revisions=answer.revisions[:101]))
    assert too_many.status == 413
    assert b"limit is 100" in too_many.body
    unknown = RevisionRef("00000000-0000-4000-8000-000000000000", 1)
    reply = root.server.call("POST", "/api/v1/updates", UpdatesRequest(revisions=[answer.revisions[0], unknown]))
    assert reply.status == 404
    assert b"00000000-0000-4000-8000-000000000000" in reply.body
    wrong_revision = RevisionRef(answer.revisions[0].update_id, answer.revisions[0].revision + 1000)
    assert root.server.call("POST", "/api/v1/updates", UpdatesRequest(revisions=[wrong_revision])).status == 404
