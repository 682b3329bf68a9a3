"""Synchronization over real loopback servers, as an administrator runs it: a root ``upmirror serve`` with a
generated catalog, downstream servers driven by the real ``upmirror`` command line, and a counting TCP relay between
them that observes what the upstream actually sent. Expected sets are computed from the root's catalog with the
rules of the specification (tests/catalog_rules.py), not by the sync code."""

from __future__ import annotations

import fcntl
import json
import signal
import subprocess
from pathlib import Path

import msgspec

from tests.catalog_rules import latest_records
from tests.support.cli import UPMIRROR, ok, upmirror
from tests.support.inventory import updates_for
from tests.support.relay import CountingRelay
from tests.support.servers import (
    assert_content_verified,
    content_of,
    expected_files,
    expected_updates,
    make_downstream,
    make_root,
    options_of,
    root,
    stored,
    sync,
    with_what_they_carry,
)
from tests.support.upmirror_server import UpmirrorServer, add_token
from tests.support.waiting import wait_for
from upmirror import wsus
from upmirror.model import Update
from upmirror.store import Store

__all__ = ["root"]  # the fixture, used by name


def test_first_sync_takes_exactly_the_filtered_set_and_its_files(
    root: tuple[Path, UpmirrorServer, CountingRelay, str], tmp_path: Path
) -> None:
    root_dir, _, relay, token = root
    down = make_downstream(tmp_path / "down", relay.url, token)
    code, record, stderr = sync(down)
    assert code == 0, stderr
    assert record["result"] == "succeeded"
    got = stored(down)
    assert {(u.id, u.revision) for u in got.values()} == expected_updates(root_dir, down)
    assert len(got) > 20, "the default filter (Windows, critical and security, English) selects a real set"
    assert content_of(down) == expected_files(got, ["en"])
    assert_content_verified(down)
    assert record["files_downloaded"] == len(content_of(down))


def test_a_wider_filter_with_languages_and_a_product_family(
    root: tuple[Path, UpmirrorServer, CountingRelay, str], tmp_path: Path
) -> None:
    root_dir, _, relay, token = root
    down = make_downstream(
        tmp_path / "down",
        relay.url,
        token,
        ("languages", "en,de,ja"),
        ("classifications", f"{wsus.SECURITY_UPDATES},{wsus.CLASSIFICATIONS['Updates']}"),
    )
    code, record, stderr = sync(down)
    assert code == 0, stderr
    # After the first sync the product names are known: select Office by its title as well.
    ok("options", "set", "--dir", down, "products", "Windows,Office")
    code, record, stderr = sync(down)
    assert code == 0, stderr
    assert record["new_updates"] > 0, "the newly selected family arrives in full on the next sync"
    got = stored(down)
    assert {(u.id, u.revision) for u in got.values()} == expected_updates(root_dir, down)
    assert content_of(down) == expected_files(got, ["en", "de", "ja"])


def test_next_sync_moves_only_the_changes(
    root: tuple[Path, UpmirrorServer, CountingRelay, str], tmp_path: Path
) -> None:
    root_dir, server, relay, token = root
    # Everything in English: the month of change below then touches the selection whatever the seed draws.
    down = make_downstream(
        tmp_path / "down",
        relay.url,
        token,
        ("products", "Microsoft"),
        ("classifications", ",".join(wsus.CLASSIFICATIONS)),
    )
    assert sync(down)[0] == 0
    before = stored(down)
    first_bytes = relay.downstream_bytes

    relay.reset()
    code, record, _ = sync(down)
    assert code == 0
    assert record["new_updates"] == record["files_downloaded"] == 0
    assert relay.downstream_bytes < 64 << 10, "nothing changed: a few small metadata answers"

    server.stop()  # the catalog changes while the root is down, as an administrator would publish
    ok("catalog", "revise", root_dir, "--seed", "5")
    with UpmirrorServer(root_dir, token=token) as restarted, CountingRelay(restarted.port) as relay2:
        ok("options", "set", "--dir", down, "source.upstream", relay2.url)
        code, record, stderr = sync(down)
        assert code == 0, stderr
        after = stored(down)
        assert {(u.id, u.revision) for u in after.values()} == expected_updates(root_dir, down) | {
            (u.id, u.revision) for u in after.values() if u.expired
        }
        new_files = set(expected_files(after, ["en"])) - set(expected_files(before, ["en"]))
        new_bytes = sum(expected_files(after, ["en"])[p] for p in new_files)
        changed = {uid for uid, u in after.items() if uid not in before or before[uid].revision != u.revision}
        assert changed, "the month of change touched the downstream's selection"
        assert record["new_updates"] + record["revised_updates"] == len(changed)
        assert record["files_downloaded"] == len(new_files)
        # What the root sent: the new files and a little metadata, far below the first sync.
        assert new_bytes <= relay2.downstream_bytes <= new_bytes + (256 << 10)
        assert relay2.downstream_bytes < first_bytes / 4
        # What the root expired reaches the downstream as expired: exactly the root's expirations among the updates
        # the downstream held unexpired.
        root_expired = {uid for uid, u in stored(root_dir).items() if u.expired}
        newly_expired = {uid for uid, u in after.items() if u.expired and uid in before and not before[uid].expired}
        assert newly_expired == {uid for uid in root_expired if uid in before and not before[uid].expired}
        assert newly_expired, "the month of change expired updates the downstream held"
        assert_content_verified(down)


def test_clearing_a_product_stops_new_updates_and_keeps_the_old(
    root: tuple[Path, UpmirrorServer, CountingRelay, str], tmp_path: Path
) -> None:
    root_dir, server, relay, token = root
    down = make_downstream(tmp_path / "down", relay.url, token, ("classifications", wsus.SECURITY_UPDATES))
    assert sync(down)[0] == 0
    ok("options", "set", "--dir", down, "products", "Windows,Office")
    assert sync(down)[0] == 0
    office = office_updates(down)
    assert office, "the selection took Office updates"

    ok("options", "set", "--dir", down, "products", "Windows")  # Office cleared
    server.stop()
    for seed in (21, 22):  # two months of change: new Office updates among them
        ok("catalog", "revise", root_dir, "--seed", str(seed))
    assert len(office_updates(root_dir)) > len(office_updates(down)), "the root gained Office updates"
    with UpmirrorServer(root_dir, token=token) as restarted:
        ok("options", "set", "--dir", down, "source.upstream", restarted.url)
        code, record, stderr = sync(down)
        assert code == 0, stderr
    after = office_updates(down)
    assert set(after) == set(office), "no new Office update arrived, and the old ones stayed"
    assert record["new_updates"] > 0, "Windows updates still arrive"


def office_updates(directory: Path) -> set[str]:
    with Store.open(directory / "upmirror.db") as store:
        office = {c.id for c in store.categories() if c.title.startswith("Office")}
        return {
            u.id
            for u in latest_records(store)
            if office & set(u.products) and u.classification == wsus.SECURITY_UPDATES and not u.expired
        }


def test_a_language_the_upstream_lacks_is_a_clear_error(
    root: tuple[Path, UpmirrorServer, CountingRelay, str], tmp_path: Path
) -> None:
    _, _, relay, token = root
    down = make_downstream(tmp_path / "down", relay.url, token, ("languages", "en,bg"))  # known, not in the catalog
    code, _, stderr = sync(down)
    assert code == 2
    assert "language 'bg' is not offered by the upstream server" in stderr
    assert stored(down) == {}


def test_a_second_concurrent_sync_is_refused(
    root: tuple[Path, UpmirrorServer, CountingRelay, str], tmp_path: Path
) -> None:
    _, _, relay, token = root
    down = make_downstream(tmp_path / "down", relay.url, token)
    with (down / "sync.lock").open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # what a running sync holds
        held.write("pid 4242")
        held.flush()
        code, _, stderr = sync(down)
    assert code == 1
    assert "already running (pid 4242)" in stderr
    assert stored(down) == {}


def test_a_root_that_fails_some_files_gives_a_partial_sync_completed_next_time(
    root: tuple[Path, UpmirrorServer, CountingRelay, str], tmp_path: Path
) -> None:
    root_dir, _, relay, token = root
    down = make_downstream(tmp_path / "down", relay.url, token, ("transfer.retries", "1"))
    # Corrupt two files the downstream will want, on the root's disk: their bytes no longer match their digests.
    wanted = sorted(expected_files({u.id: u for u in root_updates(root_dir)}, ["en"]))
    victims = [root_dir / "content" / wanted[0], root_dir / "content" / wanted[-1]]
    originals = [v.read_bytes() for v in victims]
    for victim, data in zip(victims, originals, strict=True):
        victim.write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])
    code, record, stderr = sync(down)
    assert code == 1, stderr
    assert record["result"] == "partial"
    assert record["files_failed"] == 2
    failed_text = " ".join(record["failed_files"])
    for victim in victims:
        assert victim.stem.lower() in failed_text
        assert not (down / "content" / victim.relative_to(root_dir / "content")).exists()
    assert "partial" in upmirror("status", "--dir", down).stdout

    for victim, data in zip(victims, originals, strict=True):
        victim.write_bytes(data)
    relay.reset()
    code, record, stderr = sync(down)
    assert code == 0, stderr
    assert record["files_downloaded"] == 2
    assert relay.downstream_bytes <= sum(len(d) for d in originals) + (128 << 10)
    assert_content_verified(down)


def root_updates(root_dir: Path) -> list[Update]:
    with Store.open(root_dir / "upmirror.db") as store:
        return [
            u
            for u in latest_records(store)
            if wsus.WINDOWS_FAMILY in {store.category(p).parent or p for p in u.products}  # type: ignore[union-attr]
            and u.classification in (wsus.CRITICAL_UPDATES, wsus.SECURITY_UPDATES)
            and (not u.languages or "en" in u.languages)
        ]


def test_an_unreachable_upstream_fails_the_sync_and_is_recorded(tmp_path: Path) -> None:
    with CountingRelay(1) as dead:  # nothing listens on port 1: every connection is refused
        down = make_downstream(tmp_path / "down", dead.url, "token", ("transfer.retries", "1"))
    code, record, stderr = sync(down)
    assert code == 1
    assert "unreachable" in stderr
    assert record == {} or record["result"] == "failed"
    status = json.loads(ok("status", "--dir", down, "--json"))
    assert status["history"][0]["result"] == "failed"
    assert status["history"][0]["upstream_unreachable"] is True


def test_a_sync_killed_with_sigkill_resumes_without_refetching_finished_files(tmp_path: Path) -> None:
    root_dir = make_root(tmp_path / "root", updates=300, content="192M", seed=11)
    token = add_token(root_dir, "branch")
    with UpmirrorServer(root_dir, token=token) as server, CountingRelay(server.port) as relay:
        down = make_downstream(
            tmp_path / "down", relay.url, token, ("classifications", ",".join(wsus.CLASSIFICATIONS.values()))
        )
        ok("options", "set", "--dir", down, "languages", ",".join(sorted(json.loads(ok_server_languages(server)))))
        child = subprocess.Popen(
            [*UPMIRROR, "sync", "--dir", str(down)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            # Some files finished, the rest under way.
            wait_for(lambda: len(content_of(down)) >= 5, 60, "the sync to place files", interval=0.01, process=child)
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        finished = content_of(down)
        first_bytes = relay.downstream_bytes
        relay.reset()
        code, _, stderr = sync(down)
        assert code == 0, stderr
        everything = expected_files(stored(down), options_of(down)["languages"])  # type: ignore[arg-type]
        assert content_of(down) == everything
        assert_content_verified(down)
        total = sum(everything.values())
        # The resumed run fetched at most what was not finished (plus unverified chunks and metadata).
        assert relay.downstream_bytes <= total - sum(finished.values()) + (64 << 20)
        assert first_bytes + relay.downstream_bytes < total + (96 << 20)
        history = json.loads(ok("status", "--dir", down, "--json"))["history"]
        assert [h["result"] for h in history] == ["succeeded", "failed"]
        assert "interrupted" in history[1]["error"]


def ok_server_languages(server: UpmirrorServer) -> str:
    reply = server.call("GET", "/api/v1/server")
    assert reply.status == 200
    return json.dumps(msgspec.msgpack.decode(reply.body)["languages"])


def test_a_three_level_hierarchy_converges_with_approvals_mirrored_on_the_replica(
    root: tuple[Path, UpmirrorServer, CountingRelay, str], tmp_path: Path
) -> None:
    _, _, relay, token = root
    middle = make_downstream(tmp_path / "middle", relay.url, token)
    assert sync(middle)[0] == 0
    middle_updates = sorted(stored(middle))
    ok("updates", "approve", "--dir", middle, *middle_updates[:5])
    ok("updates", "decline", "--dir", middle, middle_updates[5])
    middle_token = add_token(middle, "replica")
    with UpmirrorServer(middle, token=middle_token) as middle_server:
        replica = make_downstream(tmp_path / "replica", middle_server.url, middle_token, replica=True)
        code, record, stderr = sync(replica)
        assert code == 0, stderr
        assert record["approvals"] == 6
        assert {(u.id, u.revision) for u in stored(replica).values()} == {
            (u.id, u.revision) for u in stored(middle).values()
        }
        approved = [json.loads(line) for line in ok("updates", "list", "--dir", replica, "--json").splitlines()]
        decisions = {row["id"]: row["approval"] for row in approved}
        assert {i for i, d in decisions.items() if d == "approved"} == set(middle_updates[:5])
        assert {i for i, d in decisions.items() if d == "declined"} == {middle_updates[5]}
        # The replica holds every file but those only the declined update needs (the middle server fetched those
        # before the decline; its cleanup would remove them).
        kept = {i: u for i, u in stored(middle).items() if i != middle_updates[5]}
        assert content_of(replica) == expected_files(kept, ["en"])
        assert set(content_of(replica)) <= set(content_of(middle))

        refused = upmirror("updates", "approve", "--dir", replica, middle_updates[6])
        assert refused.returncode == 2
        assert "replica" in refused.stderr
        refused = upmirror("options", "set", "--dir", replica, "classifications", "Updates")
        assert refused.returncode == 2
        assert "replica" in refused.stderr

        # A later decision upstream reaches the replica on its next sync.
        ok("updates", "reinstate", "--dir", middle, middle_updates[5])
        code, record, _ = sync(replica)
        assert code == 0
        assert record["approvals"] == 1
        decisions = {
            row["id"]: row["approval"]
            for row in map(json.loads, ok("updates", "list", "--dir", replica, "--json").splitlines())
        }
        assert decisions[middle_updates[5]] == "not_approved"


def test_download_only_when_approved_defers_content(
    root: tuple[Path, UpmirrorServer, CountingRelay, str], tmp_path: Path
) -> None:
    _, _, relay, token = root
    down = make_downstream(tmp_path / "down", relay.url, token, ("content.download_only_when_approved", "true"))
    code, record, _ = sync(down)
    assert code == 0
    assert record["new_updates"] > 0
    assert content_of(down) == {}
    updates = stored(down)
    chosen = sorted(updates)[:3]
    ok("updates", "approve", "--dir", down, *chosen)
    code, record, _ = sync(down)
    assert code == 0
    assert content_of(down) == expected_files(with_what_they_carry(updates, chosen), ["en"])


def test_approving_a_bundle_approves_the_content_of_the_updates_it_carries(
    root: tuple[Path, UpmirrorServer, CountingRelay, str], tmp_path: Path
) -> None:
    """A bundle holds no file; approving it (and nothing else) brings the files of the update it carries, which
    clients are then offered with it, although that update is not approved itself."""
    _, _, relay, token = root
    down = make_downstream(tmp_path / "down", relay.url, token, ("content.download_only_when_approved", "true"))
    assert sync(down)[0] == 0
    updates = stored(down)
    bundle = next(u for u in sorted(updates.values(), key=lambda u: u.id) if u.bundled and not u.expired)
    carried = [ref.update_id for ref in bundle.bundled]
    assert all(updates[i].files for i in carried)
    assert not bundle.files
    ok("updates", "approve", "--dir", down, bundle.id)
    assert sync(down)[0] == 0
    expected = expected_files({i: updates[i] for i in carried}, ["en"])
    assert expected
    assert content_of(down) == expected
    device_token = add_token(down, "device")
    with UpmirrorServer(down, token=device_token) as served:
        assert updates_for(served, "pc-1") == {bundle.id, *carried}


def test_root_servers_refuse_to_sync(tmp_path: Path) -> None:
    ok("init", "--dir", tmp_path / "r")
    done = upmirror("sync", "--dir", tmp_path / "r")
    assert done.returncode == 2
    assert "root server" in done.stderr


def test_secrets_never_appear_in_sync_output(
    root: tuple[Path, UpmirrorServer, CountingRelay, str], tmp_path: Path
) -> None:
    _, _, relay, token = root
    down = make_downstream(tmp_path / "down", relay.url, token)
    done = upmirror("sync", "--dir", down)
    status = upmirror("status", "--dir", down, "--json")
    for text in (done.stdout, done.stderr, status.stdout, status.stderr):
        assert token not in text
    assert (down / "upmirror.toml").stat().st_mode & 0o077 == 0


def test_verify_repair_fetches_corrupt_and_missing_files_again(
    root: tuple[Path, UpmirrorServer, CountingRelay, str], tmp_path: Path
) -> None:
    _, _, relay, token = root
    down = make_downstream(tmp_path / "down", relay.url, token)
    assert sync(down)[0] == 0
    files = sorted(content_of(down))
    corrupt, missing = down / "content" / files[0], down / "content" / files[1]
    good = {p: (down / "content" / p).read_bytes() for p in files[:2]}
    corrupt.write_bytes(b"\0" + corrupt.read_bytes()[1:])
    missing.unlink()
    found = upmirror("content", "verify", "--dir", down, "--full")
    assert found.returncode == 1
    assert f"corrupt: {files[0]}" in found.stderr
    relay.reset()
    repaired = upmirror("content", "verify", "--dir", down, "--full", "--repair", "--json")
    assert repaired.returncode == 0, repaired.stderr
    result = json.loads(repaired.stdout)
    assert result["corrupt_deleted"] == [files[0]]
    assert result["downloaded"] == 2
    assert {p: (down / "content" / p).read_bytes() for p in files[:2]} == good
    assert relay.downstream_bytes <= sum(map(len, good.values())) + (64 << 10), "only the two files were fetched"
    assert upmirror("content", "verify", "--dir", down, "--full").returncode == 0
