"""``upmirror content copy``: replication of content directories on real filesystems, run as the real command."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import blake3
import pytest

from tests.support.cli import UPMIRROR, RunUpmirror
from tests.support.content import (
    flip_byte,
    grow_tmpfs,
    layout_files,
    make_content_dir,
    read_index,
    required_xfs,
    shared_extents,
    small_tmpfs,
)
from tests.support.waiting import wait_for

SIZES = [0, 1, 4095, 4096, 70_000, 300_000, 1 << 20, (2 << 20) + 3, *range(100, 6000, 97)]


def copy_json(run_upmirror: RunUpmirror, *args: str | Path) -> tuple[int, dict[str, object], str]:
    result = run_upmirror("content", "copy", *args, "--json")
    return result.returncode, json.loads(result.stdout) if result.stdout else {}, result.stderr


def test_copy_into_an_empty_directory_is_exact_and_indexed(tmp_path: Path, run_upmirror: RunUpmirror) -> None:
    files = make_content_dir(tmp_path / "src", SIZES)
    (tmp_path / "src" / "anonymousCheckFile.txt").write_text("a WSUS folder has this")
    (tmp_path / "src" / "7F" / "notes.txt").parent.mkdir(exist_ok=True)
    (tmp_path / "src" / "7F" / "notes.txt").write_text("stray")

    code, report, stderr = copy_json(run_upmirror, tmp_path / "src", tmp_path / "dst")

    assert code == 0, stderr
    assert layout_files(tmp_path / "dst") == files
    assert (report["files"], report["copied"], report["skipped"]) == (len(files), len(files), 0)
    assert report["hashed"] == len(files)  # no source index: every file was read and checked on the way
    assert sorted(report["outside_layout"]) == ["7F/notes.txt", "anonymousCheckFile.txt"]  # type: ignore[call-overload]
    assert "anonymousCheckFile.txt" in stderr
    assert not (tmp_path / "dst" / "anonymousCheckFile.txt").exists()
    assert not any((tmp_path / "dst" / ".partial").iterdir())
    index = read_index(tmp_path / "dst")
    assert set(index) == set(files)
    for relative, data in files.items():
        size, mtime_ns, digest, verified = index[relative]
        assert (size, digest, verified) == (len(data), blake3.blake3(data).hexdigest(), True)
        assert mtime_ns == (tmp_path / "dst" / relative).stat().st_mtime_ns
        # Modification times are kept, as cp -a keeps them.
        assert mtime_ns == (tmp_path / "src" / relative).stat().st_mtime_ns


def test_copy_into_a_partly_filled_directory(tmp_path: Path, run_upmirror: RunUpmirror) -> None:
    files = make_content_dir(tmp_path / "src", SIZES, seed=2)
    names = sorted(files)
    good, corrupt, truncated = names[:10], names[10], names[11]
    for relative in [*good, corrupt, truncated]:
        target = tmp_path / "dst" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(files[relative])
    flip_byte(tmp_path / "dst" / corrupt)
    (tmp_path / "dst" / truncated).write_bytes(files[truncated][:-1])

    code, report, stderr = copy_json(run_upmirror, tmp_path / "src", tmp_path / "dst")

    assert code == 0, stderr
    assert layout_files(tmp_path / "dst") == files
    # The present good files were unknown to the index, so they were read to confirm them, not copied.
    assert (report["skipped"], report["rechecked"]) == (len(good), len(good))
    assert report["copied"] == len(files) - len(good)
    assert report["replaced"] == 1  # the corrupt file of the right size; the truncated one just looked absent

    code, again, _ = copy_json(run_upmirror, tmp_path / "src", tmp_path / "dst")
    assert code == 0
    assert (again["copied"], again["skipped"], again["rechecked"]) == (0, len(files), 0)


def test_a_corrupt_source_file_is_caught_and_never_placed(tmp_path: Path, run_upmirror: RunUpmirror) -> None:
    files = make_content_dir(tmp_path / "src", SIZES, seed=3)
    damaged = sorted(files)[5]
    flip_byte(tmp_path / "src" / damaged, offset=len(files[damaged]) // 2)

    code, report, stderr = copy_json(run_upmirror, tmp_path / "src", tmp_path / "dst")

    assert code == 1
    assert report["corrupt_source"] == [damaged]
    assert damaged in stderr
    assert not (tmp_path / "dst" / damaged).exists()
    expected = {relative: data for relative, data in files.items() if relative != damaged}
    assert layout_files(tmp_path / "dst") == expected
    assert not any((tmp_path / "dst" / ".partial").iterdir())


def test_verify_reads_what_the_index_vouches_for(tmp_path: Path, run_upmirror: RunUpmirror) -> None:
    files = make_content_dir(tmp_path / "src", SIZES, seed=4)
    assert copy_json(run_upmirror, tmp_path / "src", tmp_path / "dst")[0] == 0
    damaged = sorted(files)[3]
    # Bit rot: the bytes change, the size and modification time do not, so the index cannot notice.
    flip_byte(tmp_path / "dst" / damaged, keep_mtime=True)

    code, trusting, _ = copy_json(run_upmirror, tmp_path / "src", tmp_path / "dst")
    assert (code, trusting["copied"], trusting["rechecked"]) == (0, 0, 0)

    code, verified, _ = copy_json(run_upmirror, tmp_path / "src", tmp_path / "dst", "--verify")
    assert code == 0
    assert (verified["copied"], verified["replaced"], verified["rechecked"]) == (1, 1, len(files) - 1)
    assert layout_files(tmp_path / "dst") == files


def test_link_makes_hard_links_and_an_indexed_source_is_not_read(tmp_path: Path, run_upmirror: RunUpmirror) -> None:
    files = make_content_dir(tmp_path / "src", SIZES, seed=5)
    assert run_upmirror("content", "verify", tmp_path / "src").returncode == 0  # builds the source's index

    code, report, stderr = copy_json(run_upmirror, tmp_path / "src", tmp_path / "dst", "--link")

    assert code == 0, stderr
    assert (report["hardlinked"], report["hashed"]) == (len(files), 0)
    for relative in files:
        assert (tmp_path / "dst" / relative).stat().st_ino == (tmp_path / "src" / relative).stat().st_ino


@pytest.mark.parametrize(
    ("source", "destination", "message"),
    [
        ("missing", "dst", "is not a directory"),
        ("src", "src/inner", "overlap"),
        ("src", "src", "overlap"),
        ("src", "afile", "is not a directory"),
    ],
)
def test_bad_directories_are_refused_and_nothing_is_written(
    tmp_path: Path, run_upmirror: RunUpmirror, source: str, destination: str, message: str
) -> None:
    make_content_dir(tmp_path / "src", [10, 20])
    (tmp_path / "afile").write_text("x")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    result = run_upmirror("content", "copy", tmp_path / source, tmp_path / destination)

    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_sigkilled_copy_resumes_with_only_the_unfinished_files(tmp_path: Path, run_upmirror: RunUpmirror) -> None:
    # One large file first (copies go largest first), then many small ones: the kill lands among the small ones.
    sizes = [128 << 20, *(16_384 + i for i in range(3000))]
    files = make_content_dir(tmp_path / "src", sizes, seed=6)
    large = max(files, key=lambda r: len(files[r]))
    child = subprocess.Popen(
        [*UPMIRROR, "content", "copy", str(tmp_path / "src"), str(tmp_path / "dst"), "--threads", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for((tmp_path / "dst" / large).exists, 60, "the copy to place a file", interval=0.001, process=child)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    placed = layout_files(tmp_path / "dst")
    assert 0 < len(placed) < len(files), "the kill should land mid-way"
    assert all(files[relative] == data for relative, data in placed.items()), "a placed file is always whole"

    code, report, stderr = copy_json(run_upmirror, tmp_path / "src", tmp_path / "dst")

    assert code == 0, stderr
    assert report["copied"] == len(files) - len(placed)
    assert report["skipped"] == len(placed)
    assert layout_files(tmp_path / "dst") == files


def test_a_full_destination_disk_fails_with_one_line_and_a_rerun_with_room_completes(
    tmp_path: Path, run_upmirror: RunUpmirror
) -> None:
    # About 3 MiB of files for a 1 MiB filesystem: the copy runs out of room part of the way.
    files = make_content_dir(tmp_path / "src", [256 << 10] * 12, seed=8)
    with small_tmpfs(tmp_path / "small") as small:
        destination = small / "WsusContent"

        result = run_upmirror("content", "copy", tmp_path / "src", destination)

        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "No space left on device" in lines[0]
        assert lines[0].startswith(f"upmirror: {destination}/"), "the line names the path that could not be written"
        placed = layout_files(destination)
        assert len(placed) < len(files)
        assert all(files[relative] == data for relative, data in placed.items()), "nothing partial at a final path"

        grow_tmpfs(small, "64m")
        code, report, stderr = copy_json(run_upmirror, tmp_path / "src", destination)

        assert code == 0, stderr
        assert (report["copied"], report["skipped"]) == (len(files) - len(placed), len(placed))
        assert layout_files(destination) == files
        assert not any((destination / ".partial").iterdir())


def test_reflinks_on_a_loop_mounted_xfs(tmp_path: Path, run_upmirror: RunUpmirror) -> None:
    with required_xfs() as xfs:
        files = make_content_dir(xfs / "src", SIZES, seed=7)
        code, report, stderr = copy_json(run_upmirror, xfs / "src", xfs / "dst")
        assert code == 0, stderr
        non_empty = sum(1 for data in files.values() if data)
        # An empty file has no extents to share; the kernel still "clones" it.
        assert report["reflinked"] == len(files)
        assert report["hashed"] == len(files)  # the shared source extents were checked once
        assert layout_files(xfs / "dst") == files
        shared = [r for r, data in files.items() if data and shared_extents(xfs / "dst" / r)]
        assert len(shared) == non_empty


def test_python_api_reports_progress(tmp_path: Path) -> None:
    import upmirror  # noqa: PLC0415

    files = make_content_dir(tmp_path / "src", SIZES, seed=8)
    snapshots: list[upmirror.ProgressSnapshot] = []
    report = upmirror.copy_content(tmp_path / "src", tmp_path / "dst", progress=snapshots.append)
    assert report.copied == len(files)
    assert snapshots, "the callback runs at least once"
    assert snapshots[-1].files_total == len(files)


def test_an_interrupted_copy_keeps_its_work_in_the_index(tmp_path: Path) -> None:
    import upmirror  # noqa: PLC0415

    files = make_content_dir(tmp_path / "src", [16_384 + i for i in range(2000)], seed=9)

    class Stop(Exception):
        pass

    def interrupt(_: upmirror.ProgressSnapshot) -> None:
        raise Stop

    with pytest.raises(Stop):
        upmirror.copy_content(tmp_path / "src", tmp_path / "dst", threads=1, progress=interrupt)
    placed = layout_files(tmp_path / "dst")
    assert all(files[relative] == data for relative, data in placed.items())

    report = upmirror.copy_content(tmp_path / "src", tmp_path / "dst")
    # Everything placed before the interruption was flushed and recorded, so none of it is read again.
    assert (report.skipped, report.rechecked, report.copied) == (len(placed), 0, len(files) - len(placed))
    assert layout_files(tmp_path / "dst") == files


def test_a_partial_file_left_by_a_link_copy_never_truncates_its_source(
    tmp_path: Path, run_upmirror: RunUpmirror
) -> None:
    files = make_content_dir(tmp_path / "src", [5000, 7000], seed=10)
    relative = sorted(files)[0]
    # What a SIGKILLed `--link` run leaves: a hard link to the source under .partial/ (the store's naming).
    partial = tmp_path / "dst" / ".partial" / f"{Path(relative).name}.part"
    partial.parent.mkdir(parents=True)
    partial.hardlink_to(tmp_path / "src" / relative)

    code, report, stderr = copy_json(run_upmirror, tmp_path / "src", tmp_path / "dst")

    assert code == 0, stderr
    assert report["copied"] == len(files)
    assert layout_files(tmp_path / "src") == files
    assert layout_files(tmp_path / "dst") == files
