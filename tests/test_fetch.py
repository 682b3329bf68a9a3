"""The download engine against real servers on loopback: nginx, a fault-injecting server, a real proxy with Basic
authentication and TLS from a private CA. Every case checks the bytes placed (against digests computed here with
hashlib) and that failures are reported by file name."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import struct
import subprocess
import threading
from pathlib import Path

import blake3
import pytest

from tests.support.content import read_index
from tests.support.downloads import CHUNK, content_job, payload, placed_path, quick_client
from tests.support.faulty_server import FaultyServer
from tests.support.nginx import NginxServer
from tests.support.proxy import TinyProxy
from tests.support.tls import make_pki
from upmirror import (
    DownloadJob,
    HttpClient,
    ProxyAuthenticationError,
    TlsError,
    UpmirrorError,
    content_relative_path,
    verify_content,
)


def test_nginx_files_land_verified_and_a_rerun_skips_them(tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    files = {f"f{i}.cab": payload(size, i) for i, size in enumerate([0, 1, 5000, CHUNK, CHUNK + 1, 3 * CHUNK + 17])}
    for name, data in files.items():
        (www / name).write_bytes(data)
    content = tmp_path / "content"
    with NginxServer(www) as url:
        jobs = [content_job(f"{url}/{name}", data, strongest="sha256") for name, data in files.items()]
        report = quick_client().download(jobs, content, chunk_size=CHUNK, connections=4)
        assert (report.placed, report.failed, report.skipped) == (len(files), 0, 0)
        for data in files.values():
            assert placed_path(content, data).read_bytes() == data
        assert report.bytes_transferred == sum(len(d) for d in files.values())
        again = quick_client().download(jobs, content, chunk_size=CHUNK)
        assert (again.placed, again.skipped, again.bytes_transferred) == (0, len(files), 0)
    assert list((content / ".partial").iterdir()) == []


def test_transient_faults_are_retried_until_the_right_bytes_arrive(tmp_path: Path) -> None:
    big = payload(16 * CHUNK + 999, 1)
    files = {f"/{fault}.cab": payload(3000 + i, 10 + i) for i, fault in enumerate(["reset", "short", "s500", "s429"])}
    files["/big.cab"] = big
    with FaultyServer(files) as server:
        server.plan("/reset.cab", "reset", "reset")
        server.plan("/short.cab", "short")
        server.plan("/s500.cab", "status:500", "status:503")
        server.plan("/s429.cab", "status:429:1")
        server.plan("/big.cab", "reset", "stall", "status:500", "flip", "short")
        jobs = [content_job(server.url + path, data) for path, data in files.items()]
        report = quick_client().download(jobs, tmp_path, chunk_size=CHUNK, connections=4, backoff=0.01)
        assert report.failed == 0, [f.reason for f in report.failures]
        for data in files.values():
            assert placed_path(tmp_path, data).read_bytes() == data
        assert server.requests("/reset.cab") == 3
        assert server.requests("/s500.cab") == 3
        # The flipped chunk forced one full refetch on fresh connections after the digest mismatch.
        assert server.bytes_sent("/big.cab") >= 2 * len(big) - 5 * CHUNK


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_small_files_share_kept_alive_connections(tmp_path: Path, tls: bool) -> None:
    files = {f"/k{i}.cab": payload(2000 + 37 * i, 100 + i) for i in range(60)}
    pki = make_pki(tmp_path) if tls else None
    with FaultyServer(files, ssl_context=pki.server_context if pki else None) as server:
        jobs = [content_job(server.url + path, data) for path, data in files.items()]
        client = quick_client(ca_file=pki.ca_file) if pki else quick_client()
        report = client.download(jobs, tmp_path / "c", chunk_size=CHUNK, connections=3)
        assert report.placed == len(files)
        assert all(placed_path(tmp_path / "c", data).read_bytes() == data for data in files.values())
        assert server.connections() <= 3


def test_an_idle_connection_the_server_closed_is_replaced_without_a_failure(tmp_path: Path) -> None:
    first, second = payload(5000, 7), payload(6000, 8)
    client = quick_client()
    with FaultyServer({"/a.cab": first, "/b.cab": second}) as server:
        assert client.download([content_job(server.url + "/a.cab", first)], tmp_path / "c").placed == 1
        server.close_idle_connections()
        report = client.download([content_job(server.url + "/b.cab", second)], tmp_path / "c", retries=0)
        assert (report.placed, report.failed) == (1, 0)
        assert server.connections() == 2


def test_a_reset_during_the_tls_handshake_is_retried_not_taken_for_a_certificate_problem(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    accepted: list[int] = []

    def reset_every_connection() -> None:
        with contextlib.suppress(OSError):
            for _ in range(3):
                connection, _ = listener.accept()
                accepted.append(1)
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                connection.close()  # a reset, before any TLS byte

    thread = threading.Thread(target=reset_every_connection, daemon=True)
    thread.start()
    try:
        url = f"https://127.0.0.1:{listener.getsockname()[1]}/x.cab"
        report = quick_client().download([DownloadJob.file(url)], tmp_path / "d", retries=2, backoff=0.01)
        assert report.failed == 1
        reason = report.failures[0].reason or ""
        assert "cannot connect" in reason, reason
        assert "TLS" not in reason, reason
        assert len(accepted) == 3, "the first attempt and two retries"
    finally:
        listener.close()
        thread.join(timeout=10)


def test_a_redirect_is_followed(tmp_path: Path) -> None:
    data = payload(9000, 9)
    # The path asked for holds other bytes: only following Location to the other path gives the right file.
    with FaultyServer({"/r.cab": payload(9000, 90), "/moved/r.cab": data}) as server:
        server.plan("/r.cab", "redirect:/moved/r.cab")
        report = quick_client().download([content_job(server.url + "/r.cab", data)], tmp_path / "c", retries=0)
        assert report.placed == 1, [o.reason for o in report.outcomes]
        assert placed_path(tmp_path / "c", data).read_bytes() == data
        assert (server.requests("/r.cab"), server.requests("/moved/r.cab")) == (1, 1)

        # A chunked file: every Range request is redirected, and each lands on the same range of the moved file.
        big = payload(4 * CHUNK + 5, 91)
        server.replace("/moved/r.cab", big)
        server.reset_counters()
        server.plan("/r.cab", *["redirect:/moved/r.cab"] * 5)
        job = content_job(server.url + "/r.cab", big)
        report = quick_client().download([job], tmp_path / "c", chunk_size=CHUNK, retries=0)
        assert report.placed == 1, [o.reason for o in report.outcomes]
        assert placed_path(tmp_path / "c", big).read_bytes() == big
        assert (server.requests("/r.cab"), server.requests("/moved/r.cab")) == (5, 5)
        assert server.bytes_sent("/moved/r.cab") == len(big)

        # A redirect loop ends after ten redirects, named as such.
        server.reset_counters()
        server.plan("/r.cab", *["redirect:/r.cab"] * 20)
        looping = content_job(server.url + "/r.cab", payload(100, 92))
        report = quick_client().download([looping], tmp_path / "c", retries=0)
        assert "more than 10 redirects" in (report.outcomes[0].reason or "")
        assert server.requests("/r.cab") == 11


def test_downloaded_content_is_in_the_index_so_verify_does_not_read_it_again(tmp_path: Path) -> None:
    small, big = payload(3000, 21), payload(5 * CHUNK + 3, 22)
    content = tmp_path / "c"
    with FaultyServer({"/s.cab": small, "/b.cab": big}) as server:
        jobs = [content_job(server.url + "/s.cab", small), content_job(server.url + "/b.cab", big, strongest="sha256")]
        assert quick_client().download(jobs, content, chunk_size=CHUNK).placed == 2
    index = read_index(content)
    small_path = placed_path(content, small).relative_to(content).as_posix()
    big_path = placed_path(content, big).relative_to(content).as_posix()
    assert set(index) == {small_path, big_path}
    assert index[small_path][0] == len(small)
    assert index[small_path][2:] == (blake3.blake3(small).hexdigest(), True)
    assert index[big_path][2:] == (None, True)  # only SHA-256 and SHA-1 were promised, so no blake3 was computed
    report = verify_content(content)
    assert (report.trusted, report.hashed_ok, report.bytes_read) == (2, 0, 0)


def test_retry_after_is_honoured(tmp_path: Path) -> None:
    data = payload(2000, 3)
    with FaultyServer({"/x.cab": data}) as server:
        server.plan("/x.cab", "status:429:1")
        report = quick_client().download([content_job(server.url + "/x.cab", data)], tmp_path, backoff=0.01)
        assert report.placed == 1
        assert server.requests("/x.cab") == 2

        # Asked to wait an hour, the engine holds the retry (its own backoff would retry within 10 ms): progress
        # keeps ticking with the server still at one request, until the wait is cancelled.
        server.replace("/x.cab", data[::-1])
        server.reset_counters()
        server.plan("/x.cab", "status:429:3600")
        ticks: list[int] = []

        class Held(Exception):
            pass

        def watch(_: object) -> None:
            if server.requests("/x.cab") >= 1:
                ticks.append(server.requests("/x.cab"))
            if len(ticks) == 5:
                raise Held

        job = content_job(server.url + "/x.cab", data[::-1])
        with pytest.raises(Held):
            quick_client().download([job], tmp_path / "held", backoff=0.01, progress=watch)
        assert ticks == [1] * 5, "no retry came while the server's Retry-After ran"
        assert server.requests("/x.cab") == 1


def test_failures_are_reported_by_name_while_the_others_complete(tmp_path: Path) -> None:
    good = payload(10 * CHUNK, 4)
    broken = payload(5000, 5)
    corrupt = payload(4 * CHUNK, 6)
    files = {"/good.cab": good, "/broken.cab": broken, "/corrupt.cab": corrupt}
    with FaultyServer(files) as server:
        server.plan("/broken.cab", *["status:500"] * 10)
        server.plan("/corrupt.cab", *["flip"] * 100)
        jobs = [content_job(server.url + path, data) for path, data in files.items()]
        jobs.append(content_job(server.url + "/missing.cab", b"never there"))
        report = quick_client().download(jobs, tmp_path, chunk_size=CHUNK, retries=2, backoff=0.01)
    assert [o.status for o in report.outcomes] == ["placed", "failed", "failed", "failed"]
    assert placed_path(tmp_path, good).read_bytes() == good
    reasons = [o.reason or "" for o in report.outcomes[1:]]
    assert content_relative_path(hashlib.sha1(broken).hexdigest(), ".cab") in reasons[0]
    assert "500" in reasons[0]
    assert content_relative_path(hashlib.sha1(corrupt).hexdigest(), ".cab") in reasons[1]
    assert "digest mismatch" in reasons[1]
    assert "404" in reasons[2]
    for data in (broken, corrupt):
        assert not placed_path(tmp_path, data).exists()


def test_a_server_without_range_and_wrong_sizes(tmp_path: Path) -> None:
    data = payload(5 * CHUNK + 3, 7)
    with FaultyServer({"/a.cab": data, "/b.cab": data[:-1]}, honour_range=False) as server:
        jobs = [content_job(server.url + "/a.cab", data)]
        # Metadata promising a size the server does not have: reported, nothing placed.
        jobs.append(DownloadJob.content(server.url + "/b.cab", hashlib.sha1(data).hexdigest(), ".x", len(data)))
        report = quick_client().download(jobs, tmp_path, chunk_size=CHUNK, retries=1, backoff=0.01)
        assert server.requests("/a.cab") == 1
    assert placed_path(tmp_path, data).read_bytes() == data
    assert report.outcomes[1].status == "failed"
    assert f"announces {len(data) - 1} bytes where {len(data)}" in (report.outcomes[1].reason or "")


def test_a_file_changed_upstream_between_runs_starts_over(tmp_path: Path) -> None:
    old = payload(8 * CHUNK, 8)
    new = payload(8 * CHUNK, 9)
    with FaultyServer({"/f.cab": old}) as server:
        job = content_job(server.url + "/f.cab", new)
        first = quick_client().download([job], tmp_path, chunk_size=CHUNK, backoff=0.01)
        # The old bytes never match the metadata: reported, and the journal keeps the verified chunks.
        assert first.failed == 1
        assert "digest mismatch" in (first.outcomes[0].reason or "")
        assert list((tmp_path / ".partial").glob("*.journal")), "the failed run left a journal to resume from"
        server.replace("/f.cab", new)
        server.reset_counters()
        second = quick_client().download([job], tmp_path, chunk_size=CHUNK, backoff=0.01)
        # The old journal covers every chunk, but the server's answer to a one-byte probe names another version
        # (its ETag): the file starts over at once, so the new version is fetched exactly once, none of the old
        # chunks counts as reused, and no journal of the old version is left behind.
        assert server.bytes_sent("/f.cab") == len(new) + 1
        assert not list((tmp_path / ".partial").glob("*.journal"))
    assert second.placed == 1
    assert (second.bytes_reused, second.outcomes[0].bytes_reused, second.outcomes[0].bytes_fetched) == (0, 0, len(new))
    assert placed_path(tmp_path, new).read_bytes() == new


def test_proxy_basic_authentication_is_sent_only_when_allowed(tmp_path: Path) -> None:
    data = payload(3 * CHUNK, 10)
    secret = "pa55-w0rd-xyzzy"
    with FaultyServer({"/p.cab": data}) as server, TinyProxy(user="mirror", password=secret) as proxy:
        allowed = quick_client(proxy_url=proxy, proxy_user="mirror", proxy_password=secret, allow_basic_auth=True)
        assert allowed.request("GET", server.url + "/p.cab").body == data
        report = allowed.download([content_job(server.url + "/p.cab", data)], tmp_path, chunk_size=CHUNK)
        assert report.placed == 1

        refused = quick_client(proxy_url=proxy, proxy_user="mirror", proxy_password=secret)
        with pytest.raises(ProxyAuthenticationError) as raised:
            refused.request("GET", server.url + "/p.cab")
        message = str(raised.value)
        assert "Basic" in message
        assert "allow basic authentication" in message
        assert secret not in message
        assert secret not in repr(refused)

        # tinyproxy answers wrong credentials with 401 (not 407): still the proxy's refusal, named as such (not the
        # upstream's), the secret never shown.
        wrong = quick_client(
            proxy_url=proxy, proxy_user="mirror", proxy_password="nope-" + secret, allow_basic_auth=True
        )
        with pytest.raises(ProxyAuthenticationError) as raised:
            wrong.request("GET", server.url + "/p.cab")
        assert f"the proxy {proxy} refused the credentials (HTTP 401)" in str(raised.value)
        assert secret not in str(raised.value)
        failed = refused.download([content_job(server.url + "/p.cab", payload(100, 11))], tmp_path)
        assert failed.failed == 1
        assert "allow basic authentication" in (failed.outcomes[0].reason or "")
        assert secret not in (failed.outcomes[0].reason or "")


def test_proxy_url_with_credentials_is_refused_without_echo() -> None:
    with pytest.raises(ValueError, match="must not contain credentials") as raised:
        HttpClient(proxy_url="http://user:topsecret@127.0.0.1:1")
    assert "topsecret" not in str(raised.value)


def test_tls_is_verified_against_the_given_ca_and_off_only_on_request(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    data = payload(2 * CHUNK + 5, 12)
    with FaultyServer({"/t.cab": data}, ssl_context=pki.server_context) as server:
        trusted = quick_client(ca_file=pki.ca_file)
        assert trusted.request("GET", server.url + "/t.cab").body == data
        report = trusted.download([content_job(server.url + "/t.cab", data)], tmp_path / "a", chunk_size=CHUNK)
        assert report.placed == 1
        with pytest.raises(TlsError):
            quick_client().request("GET", server.url + "/t.cab")
        assert quick_client(verify_tls=False).request("GET", server.url + "/t.cab").status == 200


def test_metadata_requests_carry_the_bearer_token_and_return_any_status(tmp_path: Path) -> None:
    with FaultyServer({"/api": b"\x81\xa1a\x01"}) as server:
        client = quick_client(bearer_token="tok-abc")
        response = client.request("GET", server.url + "/api", headers={"Accept": "application/msgpack"})
        assert (response.status, response.body) == (200, b"\x81\xa1a\x01")
        assert server.last_headers("/api").get("Authorization") == "Bearer tok-abc"
        assert client.request("GET", server.url + "/nothing").status == 404
        assert "tok-abc" not in repr(client)
    with pytest.raises(UpmirrorError, match="cannot connect"):
        client.request("GET", server.url + "/api")


def test_disk_full_stops_cleanly_and_resumes_after_space_is_freed(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("the disk-full test mounts a small tmpfs and needs root")
    small = tmp_path / "small"
    small.mkdir()
    big = payload(3 << 20, 13)
    first = payload(600 << 10, 14)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)], check=True)
    try:
        with FaultyServer({"/first.cab": first, "/big.cab": big}) as server:
            jobs = [content_job(server.url + "/first.cab", first), content_job(server.url + "/big.cab", big)]
            client = quick_client()
            with pytest.raises(OSError, match="No space left") as raised:
                client.download(jobs, small, chunk_size=CHUNK, connections=1)
            assert raised.value.errno == 28  # ENOSPC
            assert not placed_path(small, big).exists()
            subprocess.run(["mount", "-o", "remount,size=16m", str(small)], check=True)
            report = client.download(jobs, small, chunk_size=CHUNK)
            assert report.failed == 0
            assert placed_path(small, big).read_bytes() == big
            assert placed_path(small, first).read_bytes() == first
    finally:
        subprocess.run(["umount", str(small)], check=True)
