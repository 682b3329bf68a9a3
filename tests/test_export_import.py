"""Export and import between real server directories through the real command line: a full package gives the
importing server the same categories and every revision (read straight from both databases), which it then serves
to a downstream; incremental packages; tampered, truncated and foreign packages refused with nothing imported; the
replica rule; the lack-of-content report; seed bundles with content. Expected values come from the databases and
content directories, not from the package code."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import struct
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zstandard

from tests.catalog_rules import latest_records
from tests.support.cli import ok, refused, upmirror
from tests.support.servers import content_of, expected_updates, make_downstream, make_root, stored, sync
from tests.support.upmirror_server import UpmirrorServer, add_token
from upmirror import content_relative_path
from upmirror.store import Store


def revisions_of(directory: Path) -> dict[tuple[str, int], bytes]:
    """Every stored revision, as stored, read with plain SQL."""
    with sqlite3.connect(directory / "upmirror.db") as db:
        rows = db.execute("SELECT u.id, r.revision, r.data FROM revisions r JOIN updates u ON u.uid = r.uid")
        return {(update_id, revision): bytes(data) for update_id, revision, data in rows}


def categories_of(directory: Path) -> dict[str, bytes]:
    with sqlite3.connect(directory / "upmirror.db") as db:
        return {category_id: bytes(data) for category_id, data in db.execute("SELECT id, data FROM categories")}


def export(root: Path, target: Path, *extra: str) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(ok("export", target, "--dir", root, "--json", *extra))
    return summary


def import_json(server: Path, package: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(ok("import", package, "--dir", server, "--json"))
    return report


def sealed_package(data: bytes) -> bytes:
    """A package body compressed and sealed as the format describes (a zstd skippable frame with the SHA-256 of
    every byte before it), so the checks behind the seal are reached."""
    compressed = zstandard.ZstdCompressor().compress(data)
    return compressed + struct.pack("<II8s", 0x184D2A5E, 40, b"UPMSEAL1") + hashlib.sha256(compressed).digest()


def frame(kind: bytes, record: object) -> bytes:
    payload = msgspec.msgpack.encode(record)
    return kind + struct.pack(">I", len(payload)) + payload


def fresh(path: Path) -> Path:
    ok("init", "--dir", path)
    return path


def lacking_expected(root: Path, content: Path) -> set[str]:
    """Unexpired updates of the root whose latest revision has a file that ``content`` lacks."""
    with Store.open(root / "upmirror.db") as store:
        records = latest_records(store)
    return {
        update.id
        for update in records
        if not update.expired
        and any(not (content / content_relative_path(f.sha1, f.extension)).is_file() for f in update.files)
    }


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_root(tmp_path_factory.mktemp("export") / "root", updates=300, content="16M", seed=11)


def test_full_export_imports_every_revision_and_the_importer_serves_them(root: Path, tmp_path: Path) -> None:
    package = tmp_path / "all.upm"
    summary = export(root, package)
    expected = revisions_of(root)
    assert summary["revisions"] == len(expected)
    assert summary["since"] == 0
    assert summary["sha256"] == hashlib.sha256(package.read_bytes()).hexdigest()

    second = fresh(tmp_path / "second")
    # Half the content first (WSUS: copy content before importing); the report names exactly what is missing.
    files = sorted(content_of(root))
    for relative in files[::2]:
        (second / "content" / relative).parent.mkdir(exist_ok=True)
        shutil.copy2(root / "content" / relative, second / "content" / relative)
    report = import_json(second, package)
    assert revisions_of(second) == expected
    assert categories_of(second) == categories_of(root)
    assert report["revisions"] == len(expected)
    assert report["updates"] == len({update_id for update_id, _ in expected})
    assert report["categories"] == len(categories_of(root))
    with Store.open(root / "upmirror.db") as store:
        expired_at_root = sum(update.expired for update in latest_records(store))
    assert expired_at_root, "the catalog has expired updates"
    assert report["expired"] == expired_at_root
    assert set(report["lacking_content"]) == lacking_expected(root, second / "content")
    assert report["lacking_content"], "half the content is missing, so some updates lack it"

    # A second import of the same package changes nothing.
    again = import_json(second, package)
    assert (again["revisions"], again["updates"], again["categories"]) == (0, 0, 0)

    # With all the content, the imported server serves the same updates to a downstream of its own.
    shutil.copytree(root / "content", second / "content", dirs_exist_ok=True)
    token = add_token(second, "branch")
    with UpmirrorServer(second, token=token) as server:
        down = make_downstream(tmp_path / "down", server.url, token)
        code, record, stderr = sync(down)
    assert code == 0, stderr
    assert record["result"] == "succeeded"
    got = {(u.id, u.revision) for u in stored(down).values()}
    assert got == expected_updates(root, down)
    assert len(got) > 10


def test_incremental_export_carries_only_changes_and_needs_its_base(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root", updates=200, content="4M", seed=5)
    base = export(root, tmp_path / "base.upm")
    second = fresh(tmp_path / "second")
    import_json(second, tmp_path / "base.upm")
    before = revisions_of(root)

    ok("catalog", "revise", root, "--seed", "6")
    after = revisions_of(root)
    changes = export(root, tmp_path / "changes.upm", "--since", str(base["anchor"]))
    assert changes["since"] == base["anchor"]
    new = set(after) - set(before)
    assert new, "revise adds revisions"
    # The new revisions, plus the latest revision of updates that expired (rewritten in place).
    assert len(new) <= int(changes["revisions"]) < len(after)
    report = import_json(second, tmp_path / "changes.upm")
    assert report["revisions"] == len(new)
    assert revisions_of(second) == after
    assert categories_of(second) == categories_of(root)

    # Without its base, an incremental package names products the server does not hold: refused, nothing stored.
    third = fresh(tmp_path / "third")
    assert "neither the package nor this server holds" in refused(third, tmp_path / "changes.upm")
    assert revisions_of(third) == {}
    assert categories_of(third) == {}

    # An anchor this server never handed out is refused.
    done = upmirror("export", tmp_path / "x.upm", "--dir", root, "--since", "999999999")
    assert done.returncode == 2
    assert "ahead of this server" in done.stderr
    assert not (tmp_path / "x.upm").exists()


def test_tampered_truncated_and_foreign_packages_are_refused_and_nothing_changes(root: Path, tmp_path: Path) -> None:
    package = tmp_path / "all.upm"
    export(root, package)
    original = package.read_bytes()
    target = fresh(tmp_path / "target")
    bad = tmp_path / "bad.upm"
    size = len(original)
    for offset in (0, 5, 40, size // 3, size // 2, size - 40, size - 5, size - 1):
        changed = bytearray(original)
        changed[offset] ^= 0x41
        bad.write_bytes(bytes(changed))
        refused(target, bad)
    for cut in (0, 3, 100, size // 2, size - 20, size - 1):
        bad.write_bytes(original[:cut])
        refused(target, bad)
    # Data appended after the end.
    bad.write_bytes(original + zstandard.ZstdCompressor().compress(b"more"))
    refused(target, bad)
    # Not a package at all, and a package of another kind.
    bad.write_bytes(b"this is a text file\n" * 50)
    assert "not an upmirror metadata package" in refused(target, bad)
    bad.write_bytes(sealed_package(frame(b"H", {"format": "something-else", "version": 1})))
    assert "not an upmirror metadata package" in refused(target, bad)
    # A package from a newer upmirror.
    bad.write_bytes(sealed_package(frame(b"H", {"format": "upmirror-metadata", "version": 2, "more": 1})))
    assert "format version 2" in refused(target, bad)
    # A sealed package whose records were never digested, or that stops before its trailer.
    header = frame(b"H", msgspec.to_builtins(msgspec.msgpack.decode(_first_frame(original))))
    bad.write_bytes(sealed_package(header + frame(b"T", {"categories": 0, "revisions": 0, "sha256": "0" * 64})))
    assert "SHA-256" in refused(target, bad)
    bad.write_bytes(sealed_package(header))
    assert "truncated" in refused(target, bad)
    # A decompression bomb: a frame announcing a gigantic record.
    bad.write_bytes(sealed_package(header + b"U" + struct.pack(">I", 2**31) + b"\0" * (1 << 20)))
    assert "limit" in refused(target, bad)
    assert revisions_of(target) == {}
    assert categories_of(target) == {}
    # The untouched package still imports.
    import_json(target, package)
    assert revisions_of(target) == revisions_of(root)


def _first_frame(package: bytes) -> bytes:
    """The header record of a package, read with zstd alone."""
    with zstandard.ZstdDecompressor().stream_reader(package) as stream:
        _, size = struct.unpack(">cI", stream.read(5))
        data: bytes = stream.read(size)
        return data


def test_a_replica_refuses_imports(root: Path, tmp_path: Path) -> None:
    package = tmp_path / "all.upm"
    export(root, package)
    replica = tmp_path / "replica"
    ok("init", "--dir", replica, "--upstream", "http://127.0.0.1:9/", "--replica")
    assert "replica" in refused(replica, package)
    assert revisions_of(replica) == {}


def test_seed_bundle_round_trip_places_verified_content(root: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    summary = export(root, bundle, "--with-content", "--chunk-size", "1M")
    manifest = json.loads((bundle / "manifest.json").read_text())
    parts = sorted(bundle.glob("content-*.tar"))
    assert [part["name"] for part in manifest["parts"]] == [p.name for p in parts]
    assert len(parts) > 3, "16 MiB of content in 1 MiB parts"
    for part, listed in zip(parts, manifest["parts"], strict=True):
        assert part.stat().st_size <= 1 << 20
        assert hashlib.sha256(part.read_bytes()).hexdigest() == listed["sha256"]
    with Store.open(root / "upmirror.db") as store:
        needed = {
            content_relative_path(f.sha1, f.extension)
            for update in latest_records(store)
            if not update.expired
            for f in update.files
        }
    assert summary["files"] == len(needed)

    # A changed byte in one part: refused before anything is placed or imported.
    target = fresh(tmp_path / "target")
    damaged = tmp_path / "damaged"
    shutil.copytree(bundle, damaged)
    middle = damaged / parts[len(parts) // 2].name
    data = bytearray(middle.read_bytes())
    data[len(data) // 2] ^= 1
    middle.write_bytes(bytes(data))
    assert "SHA-256" in refused(target, damaged)
    assert content_of(target) == {}
    assert revisions_of(target) == {}

    report = import_json(target, bundle)
    assert set(content_of(target)) == needed
    for relative in needed:
        placed = (target / "content" / relative).read_bytes()
        assert hashlib.sha1(placed).hexdigest().upper() == Path(relative).stem
    assert report["files_placed"] == len(needed)
    assert report["lacking_content"] == []
    assert revisions_of(target) == revisions_of(root)
