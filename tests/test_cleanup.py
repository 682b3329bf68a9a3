"""The Server Cleanup Wizard through the command line on real server directories: what each option removes or
declines, that --dry-run lists exactly that and changes nothing, and that a replica may not decline."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.catalog_rules import latest_records
from tests.support.cli import ok, upmirror
from tests.support.servers import content_of, make_downstream, make_root, sync
from tests.support.upmirror_server import UpmirrorServer, add_token
from upmirror import content_relative_path, verify_content
from upmirror.model import Update
from upmirror.store import Store


def cleanup(directory: Path, *args: str) -> dict[str, Any]:
    return json.loads(ok("cleanup", "--dir", directory, "--json", *args))  # type: ignore[no-any-return]


def records(directory: Path) -> dict[str, Update]:
    with Store.open(directory / "upmirror.db") as store:
        return {u.id: u for u in latest_records(store)}


def decisions(directory: Path) -> dict[str, str]:
    rows = map(json.loads, ok("updates", "list", "--dir", directory, "--json").splitlines())
    return {row["id"]: row["approval"] for row in rows}


def snapshot(directory: Path) -> tuple[bytes, dict[str, int]]:
    """The database's logical content and the content directory: what a dry run must leave unchanged."""
    with sqlite3.connect(directory / "upmirror.db") as connection:
        dump = "\n".join(connection.iterdump()).encode()
    return hashlib.sha256(dump).digest(), content_of(directory)


@pytest.fixture
def downstream(tmp_path: Path) -> Path:
    root = make_root(tmp_path / "root", updates=400, content="8M", seed=4)
    token = add_token(root)
    with UpmirrorServer(root, token=token) as server:
        down = make_downstream(tmp_path / "down", server.url, token)
        code, _, stderr = sync(down)
        assert code == 0, stderr
    return down


def test_declined_updates_and_their_files_go_and_a_dry_run_lists_exactly_that(downstream: Path) -> None:
    updates = records(downstream)
    victim = sorted(updates)[0]
    victim_files = {content_relative_path(f.sha1, f.extension) for f in updates[victim].files}
    others = {content_relative_path(f.sha1, f.extension) for i, u in updates.items() if i != victim for f in u.files}
    only_victim = {p for p in victim_files - others if p in content_of(downstream)}
    assert only_victim, "the declined update has files of its own on disk"
    ok("updates", "decline", "--dir", downstream, victim)

    before = snapshot(downstream)
    planned = cleanup(downstream, "--unused", "--unneeded-files", "--dry-run")
    assert snapshot(downstream) == before, "a dry run changes nothing"
    assert planned["removed_updates"] == [victim]
    assert set(planned["removed_files"]) == only_victim
    assert planned["freed_bytes"] == sum(content_of(downstream)[p] for p in only_victim)

    done = cleanup(downstream, "--unused", "--unneeded-files")
    assert {k: v for k, v in done.items() if k != "dry_run"} == {k: v for k, v in planned.items() if k != "dry_run"}
    assert victim not in records(downstream)
    assert not only_victim & set(content_of(downstream))
    assert set(content_of(downstream)) == (set(before[1]) - only_victim), "other files stay"
    # The sync recorded every file it downloaded in the content index, and the cleanup took out what it deleted:
    # verification trusts the rest without reading it and misses nothing.
    verified = verify_content(downstream / "content")
    assert (verified.missing, verified.corrupt) == ([], [])
    assert (verified.trusted, verified.hashed_ok) == (len(content_of(downstream)), 0)


def test_expired_updates_are_declined_on_a_root(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root", updates=400, content="8M", seed=4)
    expired = {i for i, u in records(root).items() if u.expired}
    assert expired, "the catalog has expired updates"
    report = cleanup(root, "--expired")
    assert set(report["declined_expired"]) == expired
    assert {i for i, d in decisions(root).items() if d == "declined"} == expired
    assert cleanup(root, "--expired")["declined_expired"] == [], "already declined: nothing more to do"


def test_superseded_updates_are_declined_only_when_the_superseder_is_approved_and_after_the_age(
    tmp_path: Path,
) -> None:
    root = make_root(tmp_path / "root", updates=400, content="8M", seed=4)
    updates = records(root)
    superseder = next(u for u in updates.values() if u.supersedes and not u.expired)
    superseded = {i for i in superseder.supersedes if i in updates and not updates[i].expired}
    assert superseded
    assert cleanup(root, "--superseded", "--superseded-min-age", "0")["declined_superseded"] == [], (
        "nothing is declined while the superseding update is not approved"
    )
    ok("updates", "approve", "--dir", root, superseder.id)
    assert cleanup(root, "--superseded")["declined_superseded"] == [], "they arrived today, not 30 days ago"
    report = cleanup(root, "--superseded", "--superseded-min-age", "0")
    assert superseded <= set(report["declined_superseded"])
    assert all(decisions(root)[i] == "declined" for i in superseded)


def test_old_revisions_are_removed_and_the_latest_kept(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root", updates=400, content="8M", seed=4)
    ok("catalog", "revise", root, "--seed", "2")
    with Store.open(root / "upmirror.db") as store:
        obsolete = store.revision_count() - store.update_count()
    assert obsolete > 0
    latest = {i: u.revision for i, u in records(root).items()}
    report = cleanup(root, "--unused")
    assert report["removed_revisions"] == obsolete
    with Store.open(root / "upmirror.db") as store:
        assert store.revision_count() == store.update_count(), "one revision left per update"
    assert {i: u.revision for i, u in records(root).items()} == {
        i: r for i, r in latest.items() if i not in report["removed_updates"]
    }


def test_bad_usage_and_replicas(tmp_path: Path) -> None:
    done = upmirror("cleanup", "--dir", tmp_path)
    assert done.returncode == 2
    ok("init", "--dir", tmp_path / "replica", "--upstream", "http://127.0.0.1:9", "--replica")
    none_chosen = upmirror("cleanup", "--dir", tmp_path / "replica")
    assert none_chosen.returncode == 2
    assert "choose at least one" in none_chosen.stderr
    refused = upmirror("cleanup", "--dir", tmp_path / "replica", "--expired")
    assert refused.returncode == 2
    assert "replica" in refused.stderr
