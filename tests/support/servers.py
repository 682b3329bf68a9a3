"""Server directories for sync tests, made and driven with the real command line: a root with a generated catalog
(``make_root``), a downstream pointed at an upstream (``make_downstream``), a sync and its JSON record (``sync``),
and what a directory holds afterwards (``stored`` metadata, ``content_of`` files, ``history``). Expected sets are
computed from the root's catalog by tests/catalog_rules.py, not by the sync code. The ``root`` fixture is a running
root behind a counting relay; a test module that uses it imports it by name."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.catalog_rules import Expected, expected_answer, latest_records
from tests.support.cli import ok, upmirror
from tests.support.relay import CountingRelay
from tests.support.upmirror_server import UpmirrorServer, add_token
from upmirror import content_relative_path
from upmirror.model import FilterItem, RevisionsRequest, Update
from upmirror.store import Store


def make_root(path: Path, *, updates: int = 600, content: str = "24M", seed: int = 3) -> Path:
    ok("catalog", "generate", path, "--updates", str(updates), "--content-size", content, "--seed", str(seed))
    return path


def make_downstream(path: Path, upstream: str, token: str, *options: tuple[str, str], replica: bool = False) -> Path:
    ok("init", "--dir", path, "--upstream", upstream, *(["--replica"] if replica else []))
    ok("options", "set", "--dir", path, "source.token", token)
    for key, value in options:
        ok("options", "set", "--dir", path, key, value)
    return path


def sync(directory: Path) -> tuple[int, dict[str, Any], str]:
    done = upmirror("sync", "--dir", directory, "--json")
    record = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, record, done.stderr


def options_of(directory: Path) -> dict[str, object]:
    return json.loads(ok("options", "show", "--dir", directory, "--json"))  # type: ignore[no-any-return]


def history(directory: Path) -> list[dict[str, object]]:
    return json.loads(ok("status", "--dir", directory, "--json"))["history"]  # type: ignore[no-any-return]


def stored(directory: Path) -> dict[str, Update]:
    with Store.open(directory / "upmirror.db") as store:
        return {u.id: u for u in latest_records(store)}


def expected_updates(root: Path, downstream: Path) -> set[tuple[str, int]]:
    """Everything the downstream's filter selects in the root's catalog now (a first sync's answer)."""
    return expected_selection(root, downstream).revisions


def expected_selection(root: Path, downstream: Path) -> Expected:
    """``expected_updates`` with the ids of the expired updates the filter selects (a WSUS downstream holds those
    too: it learns an expiration from the revision's XML)."""
    options = options_of(downstream)
    with Store.open(root / "upmirror.db") as store:
        records, categories = latest_records(store), store.categories()
    request = RevisionsRequest(
        products=[FilterItem(p, False) for p in options["products"]],  # type: ignore[attr-defined]
        classifications=[FilterItem(c, False) for c in options["classifications"]],  # type: ignore[attr-defined]
        languages=[FilterItem(lang, False) for lang in options["languages"]],  # type: ignore[attr-defined]
    )
    return expected_answer(records, categories, request, changed=None)


def expected_files(updates: dict[str, Update], languages: list[str]) -> dict[str, int]:
    """Content paths a downstream must hold: files of unexpired updates in a selected language or neutral, no
    express files (the default)."""
    files = {}
    for update in updates.values():
        if update.expired:
            continue
        for f in update.files:
            if not f.express and (not f.languages or set(f.languages) & set(languages)):
                files[content_relative_path(f.sha1, f.extension)] = f.size
    return files


def with_what_they_carry(updates: dict[str, Update], chosen: list[str]) -> dict[str, Update]:
    """The chosen updates and the updates the bundles among them carry (their content is approved with them)."""
    carried = [ref.update_id for update_id in chosen for ref in updates[update_id].bundled]
    return {update_id: updates[update_id] for update_id in [*chosen, *carried] if update_id in updates}


def content_of_directory(content: Path) -> dict[str, int]:
    """The files at layout paths of a content directory (in-progress files under dot-folders excluded), by size."""
    return {
        p.relative_to(content).as_posix(): p.stat().st_size
        for p in content.glob("*/*")
        if p.is_file() and not p.parent.name.startswith(".")
    }


def content_of(directory: Path) -> dict[str, int]:
    """``content_of_directory`` of a server directory's default content folder."""
    return content_of_directory(directory / "content")


def assert_content_verified(directory: Path) -> None:
    for relative in content_of(directory):
        data = (directory / "content" / relative).read_bytes()
        assert hashlib.sha1(data).hexdigest().upper() == Path(relative).stem, relative


def admin_call(url: str, path: str, token: str, method: str = "GET") -> tuple[int, bytes]:
    """One call of the admin API with a bearer token: (status, body), errors included."""
    request = urllib.request.Request(f"{url}{path}", method=method, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture
def root(tmp_path: Path) -> Iterator[tuple[Path, UpmirrorServer, CountingRelay, str]]:
    """A root server with a generated catalog, running, behind a counting relay: (directory, server, relay, token)."""
    directory = make_root(tmp_path / "root")
    token = add_token(directory, "branch")
    with UpmirrorServer(directory, token=token) as server, CountingRelay(server.port) as relay:
        yield directory, server, relay, token
