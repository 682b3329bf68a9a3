"""``upmirror content dedup``: exactly the groups of identical files, linked without changing any file's bytes."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections import defaultdict
from pathlib import Path

from tests.support.cli import RunUpmirror
from tests.support.content import required_xfs, sha256_of, shared_extents


def build_tree(root: Path, seed: int = 1) -> None:
    """Two folders with unique files, duplicate groups small and large, decoys of the same size that share the first
    and last 4 KiB with a duplicate, empty files, and a pair of paths that are already one hard-linked file."""
    generator = random.Random(seed)
    (root / "a" / "deep").mkdir(parents=True)
    (root / "b").mkdir()
    places = [root / "a", root / "a" / "deep", root / "b"]
    counter = 0

    def write(data: bytes) -> Path:
        nonlocal counter
        counter += 1
        path = places[counter % len(places)] / f"f{counter:04}.bin"
        path.write_bytes(data)
        return path

    for size in [1, 10, 4096, 5000, 65_536, 65_537, 200_000, 1 << 20]:
        original = generator.randbytes(size)
        for _ in range(generator.randint(2, 4)):
            write(original)
        write(generator.randbytes(size))  # a unique file of the same size
        if size > 8192:
            middle = bytearray(original)
            middle[size // 2] ^= 0x55  # the same size, first and last 4 KiB: only a full hash tells it apart
            write(bytes(middle))
    for _ in range(30):
        write(generator.randbytes(generator.randint(1, 100_000)))
    write(b"")
    write(b"")
    linked = write(b"already linked" * 100)
    os.link(linked, root / "b" / "hardlink-of-it.bin")
    write(b"already linked" * 100)


def content_groups(roots: list[Path]) -> set[frozenset[int]]:
    """Groups of distinct non-empty files (inodes) with identical bytes, computed with hashlib."""
    by_content: dict[str, set[int]] = defaultdict(set)
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and path.stat().st_size > 0:
                by_content[sha256_of(path)].add(path.stat().st_ino)
    return {frozenset(inodes) for inodes in by_content.values() if len(inodes) >= 2}


def snapshot(root: Path) -> dict[Path, str]:
    return {path: sha256_of(path) for path in root.rglob("*") if path.is_file()}


def dedup_json(run_upmirror: RunUpmirror, *args: str | Path) -> tuple[int, dict[str, object], str]:
    result = run_upmirror("content", "dedup", *args, "--json")
    return result.returncode, json.loads(result.stdout) if result.stdout else {}, result.stderr


def test_dry_run_finds_exactly_the_groups_and_changes_nothing(tmp_path: Path, run_upmirror: RunUpmirror) -> None:
    build_tree(tmp_path)
    roots = [tmp_path / "a", tmp_path / "b"]
    expected = content_groups(roots)
    before = {path: (path.stat().st_ino, digest) for path, digest in snapshot(tmp_path).items()}

    code, report, stderr = dedup_json(run_upmirror, *roots, "--dry-run")

    assert code == 0, stderr
    groups: list[dict[str, object]] = report["groups"]  # type: ignore[assignment]
    found = {frozenset(Path(p).stat().st_ino for p in g["paths"]) for g in groups}  # type: ignore[attr-defined]
    assert found == expected
    assert report["files_linked"] == 0
    assert {path: (path.stat().st_ino, digest) for path, digest in snapshot(tmp_path).items()} == before


def test_hardlinking_saves_the_bytes_and_keeps_every_files_bytes(tmp_path: Path, run_upmirror: RunUpmirror) -> None:
    build_tree(tmp_path, seed=2)
    roots = [tmp_path / "a", tmp_path / "b"]
    expected = content_groups(roots)
    before = snapshot(tmp_path)
    sizes = {next(iter(g)): 0 for g in expected}
    for path in before:
        if path.stat().st_ino in sizes:
            sizes[path.stat().st_ino] = path.stat().st_size
    expected_saving = sum(sizes[next(iter(g))] * (len(g) - 1) for g in expected)

    code, report, stderr = dedup_json(run_upmirror, *roots)

    assert code == 0, stderr
    assert report["bytes_saved"] == expected_saving
    assert report["files_linked"] == sum(len(g) - 1 for g in expected)
    assert snapshot(tmp_path) == before
    groups: list[dict[str, list[str]]] = report["groups"]  # type: ignore[assignment]
    for group in groups:
        assert len({Path(p).stat().st_ino for p in group["paths"]}) == 1
    assert not content_groups(roots)  # nothing left to link
    code, again, _ = dedup_json(run_upmirror, *roots)
    assert (code, again["groups"], again["files_linked"]) == (0, [], 0)


def test_reflink_dedup_on_a_loop_mounted_xfs_shares_extents(tmp_path: Path, run_upmirror: RunUpmirror) -> None:
    with required_xfs() as xfs:
        data = random.Random(3).randbytes((3 << 20) + 5)
        (xfs / "one").mkdir()
        (xfs / "one" / "x.bin").write_bytes(data)
        shutil.copyfile(xfs / "one" / "x.bin", xfs / "y.bin")
        (xfs / "z.bin").write_bytes(data[:-1] + b"!")
        digest = hashlib.sha256(data).hexdigest()

        code, report, stderr = dedup_json(run_upmirror, xfs, "--link", "reflink")

        assert code == 0, stderr
        assert (report["files_linked"], report["bytes_saved"]) == (1, len(data))
        assert shared_extents(xfs / "y.bin")
        assert shared_extents(xfs / "one" / "x.bin")
        assert not shared_extents(xfs / "z.bin")
        assert sha256_of(xfs / "y.bin") == sha256_of(xfs / "one" / "x.bin") == digest
        assert (xfs / "y.bin").stat().st_ino != (xfs / "one" / "x.bin").stat().st_ino


def test_bad_input_is_refused(tmp_path: Path, run_upmirror: RunUpmirror) -> None:
    (tmp_path / "d").mkdir()
    missing = run_upmirror("content", "dedup", tmp_path / "d", tmp_path / "missing")
    assert (missing.returncode, "is not a directory" in missing.stderr) == (2, True)
    size = run_upmirror("content", "dedup", tmp_path / "d", "--min-size", "0")
    assert (size.returncode, "--min-size" in size.stderr) == (2, True)
