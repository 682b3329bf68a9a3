"""``upmirror content verify``: every file against its digest, trusting the content index only for unchanged files."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import RunUpmirror
from tests.support.content import flip_byte, make_content_dir, read_index

SIZES = [0, 1, 4096, 70_000, 300_000, (1 << 20) + 7, *range(50, 3000, 131)]


def verify_json(run_upmirror: RunUpmirror, *args: str | Path) -> tuple[int, dict[str, object], str]:
    result = run_upmirror("content", "verify", *args, "--json")
    return result.returncode, json.loads(result.stdout) if result.stdout else {}, result.stderr


def test_a_clean_directory_is_read_once_then_vouched_for_by_the_index(
    tmp_path: Path, run_upmirror: RunUpmirror
) -> None:
    files = make_content_dir(tmp_path / "c", SIZES)

    code, first, stderr = verify_json(run_upmirror, tmp_path / "c")
    assert code == 0, stderr
    assert (first["files"], first["hashed_ok"], first["trusted"]) == (len(files), len(files), 0)
    assert first["bytes_read"] == sum(map(len, files.values()))
    assert set(read_index(tmp_path / "c")) == set(files)

    code, second, _ = verify_json(run_upmirror, tmp_path / "c")
    assert code == 0
    assert (second["hashed_ok"], second["trusted"], second["bytes_read"]) == (0, len(files), 0)

    code, full, _ = verify_json(run_upmirror, tmp_path / "c", "--full")
    assert (code, full["hashed_ok"], full["trusted"]) == (0, len(files), 0)


def test_corrupt_and_missing_files_are_listed(tmp_path: Path, run_upmirror: RunUpmirror) -> None:
    files = make_content_dir(tmp_path / "c", SIZES, seed=2)
    assert verify_json(run_upmirror, tmp_path / "c")[0] == 0
    names = sorted(files)
    rewritten, rotted, deleted = names[2], names[4], names[6]
    flip_byte(tmp_path / "c" / rewritten)  # a write: the modification time moves, the index notices
    flip_byte(tmp_path / "c" / rotted, keep_mtime=True)  # bit rot: only reading the bytes finds it
    (tmp_path / "c" / deleted).unlink()

    code, report, stderr = verify_json(run_upmirror, tmp_path / "c")
    assert code == 1
    assert report["corrupt"] == [rewritten]
    assert report["missing"] == [deleted]
    assert f"corrupt: {rewritten}" in stderr
    assert f"missing: {deleted}" in stderr

    code, full, _ = verify_json(run_upmirror, tmp_path / "c", "--full")
    assert code == 1
    assert full["corrupt"] == sorted([rewritten, rotted])
    assert full["missing"] == [deleted]
    # A corrupt file leaves the index, so it is read again next time rather than trusted.
    assert rewritten not in read_index(tmp_path / "c")


def test_a_wsus_folder_in_lower_case_verifies_and_strangers_are_reported(
    tmp_path: Path, run_upmirror: RunUpmirror
) -> None:
    files = make_content_dir(tmp_path / "c", [100, 200, 300], seed=3)
    for relative in files:
        folder = (tmp_path / "c" / relative).parent
        if folder.exists():
            folder.rename(folder.with_name(folder.name.lower()))
    (tmp_path / "c" / "anonymousCheckFile.txt").write_text("x")

    code, report, stderr = verify_json(run_upmirror, tmp_path / "c")

    assert code == 0, stderr
    assert report["hashed_ok"] == len(files)
    assert report["outside_layout"] == ["anonymousCheckFile.txt"]


def test_a_directory_that_is_not_one_is_refused(tmp_path: Path, run_upmirror: RunUpmirror) -> None:
    (tmp_path / "file").write_text("x")
    for target in ("missing", "file"):
        result = run_upmirror("content", "verify", tmp_path / target)
        assert result.returncode == 2
        assert "is not a directory" in result.stderr
    assert not (tmp_path / "missing").exists()
