"""How a downstream reaches its upstream, over real transports: TLS with a certificate from a generated CA, an HTTP
proxy with real Basic authentication (tinyproxy), the scheduler of ``upmirror serve`` firing at its time, and the
admin interface's "synchronize now" behind an admin token."""

from __future__ import annotations

import fcntl
import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.cli import ok, upmirror
from tests.support.faulty_server import FaultyServer
from tests.support.proxy import TinyProxy
from tests.support.relay import CountingRelay
from tests.support.servers import admin_call, expected_updates, history, make_downstream, make_root, stored, sync
from tests.support.tls import make_pki
from tests.support.upmirror_server import UpmirrorServer, add_token
from tests.support.waiting import wait_for

PROXY_PASSWORD = "pr0xy-Secret"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_root(tmp_path_factory.mktemp("root") / "root", updates=200, content="4M", seed=7)


def test_sync_over_tls_is_verified_against_the_configured_ca(root: Path, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    token = add_token(root, "tls-branch")
    ok(
        "options",
        "set",
        "--dir",
        root,
        "server.tls_certificate",
        str(pki.certificate_file),
        "server.tls_key",
        str(pki.key_file),
    )
    try:
        with UpmirrorServer(root, token=token) as server:
            assert server.url.startswith("https://")
            untrusting = make_downstream(tmp_path / "untrusting", server.url, token)
            code, _, stderr = sync(untrusting)
            assert code == 1
            assert "TLS" in stderr or "certificate" in stderr
            assert stored(untrusting) == {}

            trusting = make_downstream(tmp_path / "trusting", server.url, token, ("source.ca_file", str(pki.ca_file)))
            code, record, stderr = sync(trusting)
            assert code == 0, stderr
            assert record["new_updates"] > 0
    finally:
        ok("options", "set", "--dir", root, "server.tls_certificate", "", "server.tls_key", "")


def test_sync_through_a_proxy_with_basic_authentication(root: Path, tmp_path: Path) -> None:
    token = add_token(root, "proxied-branch")
    with UpmirrorServer(root, token=token) as server, TinyProxy(user="syncer", password=PROXY_PASSWORD) as proxy:
        port = proxy.rsplit(":", 1)[1]
        down = make_downstream(tmp_path / "down", server.url, token)
        ok("options", "set", "--dir", down, "proxy.enabled", "true", "proxy.host", "127.0.0.1", "proxy.port", port)
        ok("options", "set", "--dir", down, "proxy.user", "syncer", "proxy.password", PROXY_PASSWORD)
        code, _, stderr = sync(down)
        assert code == 1
        assert "Basic authentication" in stderr
        assert "allow basic authentication" in stderr
        assert PROXY_PASSWORD not in stderr
        status = upmirror("status", "--dir", down, "--json")
        assert PROXY_PASSWORD not in status.stdout
        assert stored(down) == {}

        ok("options", "set", "--dir", down, "proxy.allow_basic_auth", "true")
        code, record, stderr = sync(down)
        assert code == 0, stderr
        assert record["new_updates"] > 0
        assert record["files_downloaded"] > 0


@pytest.mark.parametrize("protocol", ["upmirror", "auto"])
def test_metadata_calls_answered_503_are_retried_and_the_sync_succeeds(
    root: Path, tmp_path: Path, protocol: str
) -> None:
    token = add_token(root, f"retried-{protocol}")
    # A front of the real server refuses each metadata call of the protocol with 503 once or twice first.
    refusals = {"/api/v1/server": 1, "/api/v1/categories": 2, "/api/v1/revisions": 1, "/api/v1/updates": 2}
    with UpmirrorServer(root, token=token) as server, FaultyServer({}, forward_to=server.url) as front:
        for path, count in refusals.items():
            front.plan(path, *["status:503"] * count)
        down = make_downstream(tmp_path / "down", front.url, token, ("source.protocol", protocol))
        code, record, stderr = sync(down)
        assert code == 0, stderr
        assert record["result"] == "succeeded"
        # Each call was asked again after its refusals: the single calls once more, the batches of updates too.
        for path in ("/api/v1/server", "/api/v1/categories", "/api/v1/revisions"):
            assert front.requests(path) == refusals[path] + 1, path
        assert front.requests("/api/v1/updates") > refusals["/api/v1/updates"]
    assert {(u.id, u.revision) for u in stored(down).values()} == expected_updates(root, down)
    assert record["files_downloaded"] > 0


def test_credentials_appear_in_no_log_and_no_output(root: Path, tmp_path: Path) -> None:
    token = add_token(root, "discreet-branch")
    texts: list[str] = []
    with UpmirrorServer(root, token=token) as server, TinyProxy(user="syncer", password=PROXY_PASSWORD) as proxy:
        port = proxy.rsplit(":", 1)[1]
        down = make_downstream(tmp_path / "down", server.url, token)
        ok("options", "set", "--dir", down, "proxy.enabled", "true", "proxy.host", "127.0.0.1", "proxy.port", port)
        ok("options", "set", "--dir", down, "proxy.user", "syncer", "proxy.password", PROXY_PASSWORD)
        refused = upmirror("sync", "--dir", down)  # Basic not allowed yet: the error path speaks of the proxy
        assert refused.returncode == 1
        ok("options", "set", "--dir", down, "proxy.allow_basic_auth", "true")
        for command in (("sync", "--json"), ("sync",), ("status", "--json"), ("status",), ("options", "show")):
            done = upmirror(*command, "--dir", down)
            assert done.returncode == 0, done.stderr
            texts += [done.stdout, done.stderr]
        texts += [refused.stdout, refused.stderr, ok("options", "show", "--dir", down, "--json")]
        assert server.stop() == 0
        texts.append(server.stderr())
    logs = [path for directory in (root, down) for path in (directory / "logs").iterdir()]
    assert root / "logs" / "upmirror.log" in logs
    texts += [path.read_text(errors="replace") for path in logs]
    for text in texts:
        assert PROXY_PASSWORD not in text
        assert token not in text


def test_the_scheduler_synchronizes_at_the_first_synchronization_time(root: Path, tmp_path: Path) -> None:
    token = add_token(root, "scheduled-branch")
    with UpmirrorServer(root, token=token) as upstream:
        down = make_downstream(tmp_path / "down", upstream.url, token)
        due = datetime.now(UTC) + timedelta(seconds=15)  # after the options are set and the server has started
        for key, value in (
            ("schedule.automatic", "true"),
            ("schedule.first_sync", due.strftime("%H:%M:%S")),
            ("schedule.max_random_offset_minutes", "0"),
        ):
            ok("options", "set", "--dir", down, key, value)
        status = json.loads(ok("status", "--dir", down, "--json"))
        assert datetime.fromisoformat(status["next_sync"]) == due.replace(microsecond=0)
        with UpmirrorServer(down):
            wait_for(
                lambda: any(h["result"] == "succeeded" for h in history(down)), 60, "the scheduled sync", interval=0.2
            )
        entry = history(down)[0]
        assert entry["trigger"] == "scheduled"
        assert datetime.fromisoformat(str(entry["started"])) >= due.replace(microsecond=0)
        assert stored(down)


def test_an_unreachable_upstream_is_retried_by_the_scheduler(tmp_path: Path) -> None:
    down = make_downstream(tmp_path / "down", "http://127.0.0.1:9", "upm_token")
    due = datetime.now(UTC) + timedelta(seconds=15)  # after the options are set and the server has started
    for key, value in (
        ("schedule.automatic", "true"),
        ("schedule.first_sync", due.strftime("%H:%M:%S")),
        ("schedule.max_random_offset_minutes", "0"),
        ("schedule.retries", "2"),
        ("schedule.retry_interval_minutes", "0.02"),
        ("transfer.retries", "0"),
    ):
        ok("options", "set", "--dir", down, key, value)
    with UpmirrorServer(down) as server:
        # The scheduler says when it gives up on this scheduled time: after its retries, before any further attempt.
        wait_for(lambda: "waiting for the next scheduled time" in server.stderr(), 60, "the scheduler to give up")
        attempts = history(down)
    assert len(attempts) == 3, "the first attempt and two retries, no more"
    assert all(a["trigger"] == "scheduled" and a["upstream_unreachable"] for a in attempts)
    starts = [datetime.fromisoformat(str(a["started"])) for a in reversed(attempts)]
    assert starts == sorted(starts), "one attempt after the other"


def test_synchronize_now_through_the_admin_interface(root: Path, tmp_path: Path) -> None:
    token = add_token(root, "admin-branch")
    with UpmirrorServer(root, token=token) as upstream:
        down = make_downstream(tmp_path / "down", upstream.url, token)
        admin = ok("tokens", "add", "console", "--admin", "--dir", down).strip()
        downstream_only = add_token(down, "below")
        with UpmirrorServer(down) as server:
            assert admin_call(server.url, "/api/v1/admin/sync", downstream_only, "POST")[0] == 403
            assert admin_call(server.url, "/api/v1/admin/status", downstream_only, "GET")[0] == 403
            assert admin_call(server.url, "/api/v1/admin/status", "upm_not-a-token", "GET")[0] == 401
            assert admin_call(server.url, "/api/v1/admin/status", "", "GET")[0] == 401
            status, body = admin_call(server.url, "/api/v1/admin/sync", admin, "POST")
            assert status == 202, body
            wait_for(lambda: any(h["result"] == "succeeded" for h in history(down)), 60, "the sync started now")
            status, body = admin_call(server.url, "/api/v1/admin/status", admin)
            assert status == 200
            document = json.loads(body)
            assert document["history"][0]["trigger"] == "manual"
            assert document["role"] == "autonomous"
        assert stored(down)


def test_an_upstream_gone_during_the_content_phase_fails_the_sync_as_unreachable(root: Path, tmp_path: Path) -> None:
    token = add_token(root, "orphaned-branch")
    with UpmirrorServer(root, token=token) as server, CountingRelay(server.port) as relay:
        down = make_downstream(tmp_path / "down", relay.url, token)
        relay.go_down_on(b"GET /Content/")  # the metadata phase completes; the first file request takes it all down
        code, record, stderr = sync(down)
    assert code == 1, stderr
    assert "is unreachable" in stderr
    entry = history(down)[0]
    # Not "partial" with every file retried and named: the sync failed as unreachable, for the scheduler to retry.
    assert entry["result"] == "failed"
    assert entry["upstream_unreachable"] is True
    assert f"{relay.url} is unreachable" in str(entry["error"])
    assert entry["failed_files"] == []
    assert record == {} or record["result"] == "failed"


def test_a_proxy_refusing_the_credentials_or_down_is_named_not_the_upstream(root: Path, tmp_path: Path) -> None:
    token = add_token(root, "proxied-branch-2")
    with UpmirrorServer(root, token=token) as server, TinyProxy(user="syncer", password=PROXY_PASSWORD) as proxy:
        port = proxy.rsplit(":", 1)[1]
        down = make_downstream(tmp_path / "down", server.url, token, ("transfer.retries", "0"))
        ok("options", "set", "--dir", down, "proxy.enabled", "true", "proxy.host", "127.0.0.1", "proxy.port", port)
        ok("options", "set", "--dir", down, "proxy.user", "syncer", "proxy.password", "wrong-" + PROXY_PASSWORD)
        ok("options", "set", "--dir", down, "proxy.allow_basic_auth", "true")
        # tinyproxy answers wrong credentials with 401, which reads like the upstream refusing the token.
        code, _, stderr = sync(down)
        assert code == 1
        assert f"the proxy http://127.0.0.1:{port} refused the credentials (HTTP 401)" in stderr
        assert "source.token" not in stderr
        assert PROXY_PASSWORD not in stderr
    # The proxy is stopped now: it is the proxy that is unreachable, not the upstream (which still runs).
    with UpmirrorServer(root, token=token):
        code, _, stderr = sync(down)
    assert code == 1
    assert f"proxy http://127.0.0.1:{port} is unreachable" in stderr
    assert PROXY_PASSWORD not in stderr
    entry = history(down)[0]
    assert entry["upstream_unreachable"] is True


def test_a_second_synchronize_now_is_refused_while_the_first_runs(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # an upstream that takes connections and never answers
        upstream = f"http://127.0.0.1:{silent.getsockname()[1]}"
        down = make_downstream(tmp_path / "down", upstream, "upm_token", ("transfer.retries", "0"))
        admin = ok("tokens", "add", "console", "--admin", "--dir", down).strip()
        with UpmirrorServer(down) as server:
            first = admin_call(server.url, "/api/v1/admin/sync", admin, "POST")
            second = admin_call(server.url, "/api/v1/admin/sync", admin, "POST")
            assert first[0] == 202, first
            assert second == (409, b"a synchronization is already running\n")
    # The upstream went away: the sync that was started ends (and lets go of the lock).
    with (down / "sync.lock").open() as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
    assert len(history(down)) == 1
