"""One-pass multi-digest hashing, checked against independent implementations: hashlib, the ``blake3`` and
``xxhash`` packages from PyPI, and the ``b3sum``/``xxhsum`` tools."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import blake3
import pytest
import xxhash

import upmirror
from tests.support.cli import RunUpmirror

# Sizes around every internal threshold (1 KiB blocks of blake3, the mmap and the parallel-blake3 thresholds, the
# 16 MiB step between cancellation checks) and a multi-MiB file.
SIZES = [0, 1, 1023, 1024, 1025, (256 << 10) - 1, 256 << 10, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, (16 << 20) + 3]


def reference_digests(data: bytes) -> dict[str, str | int]:
    return {
        "size": len(data),
        "blake3": blake3.blake3(data).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
        "sha1": hashlib.sha1(data).hexdigest(),
        "xxh3": xxhash.xxh3_128_hexdigest(data),
    }


def as_dict(digests: upmirror.FileDigests) -> dict[str, str | int | None]:
    return {
        "size": digests.size,
        "blake3": digests.blake3,
        "sha256": digests.sha256,
        "sha1": digests.sha1,
        "xxh3": digests.xxh3,
    }


@pytest.mark.parametrize("size", SIZES)
def test_file_digests_equal_independent_implementations(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "file.bin"
    path.write_bytes(data)
    assert as_dict(upmirror.hash_file(path)) == reference_digests(data)


def test_large_sparse_file_matches_b3sum_and_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "sparse.bin"
    with path.open("wb") as f:
        f.truncate(3 << 30)  # 3 GiB of holes: the multithreaded mmap path over pages never written
        f.seek(1 << 30)
        f.write(b"a marker in the middle")
    digests = upmirror.hash_file(path, ["blake3", "sha1"])
    b3sum = subprocess.run(["b3sum", "--no-names", str(path)], capture_output=True, text=True, check=True, timeout=60)
    assert digests.blake3 == b3sum.stdout.strip()
    sha1 = hashlib.sha1()
    with path.open("rb") as f:
        while chunk := f.read(16 << 20):
            sha1.update(chunk)
    assert digests.sha1 == sha1.hexdigest()
    assert digests.size == 3 << 30
    assert digests.sha256 is None
    assert digests.xxh3 is None


def test_hash_files_keeps_order_and_reports_each_error(tmp_path: Path) -> None:
    contents = [os.urandom(n) for n in (0, 10, 300_000, 2_000_000)]
    paths: list[Path] = []
    for index, data in enumerate(contents):
        paths.append(tmp_path / f"f{index}")
        paths[-1].write_bytes(data)
    missing = tmp_path / "missing"
    results = upmirror.hash_files([paths[0], missing, *paths[1:]], threads=2)
    error = results[1]
    assert isinstance(error, FileNotFoundError)
    assert error.filename == str(missing)
    got = [as_dict(r) for r in results if isinstance(r, upmirror.FileDigests)]
    assert got == [reference_digests(data) for data in contents]


def test_errors_are_the_matching_oserror_subclass_with_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as not_found:
        upmirror.hash_file(tmp_path / "absent")
    assert not_found.value.filename == str(tmp_path / "absent")
    with pytest.raises(IsADirectoryError):
        upmirror.hash_file(tmp_path)
    if os.geteuid() != 0:  # root reads anything; the permission case needs an ordinary user
        locked = tmp_path / "locked"
        locked.write_bytes(b"x")
        locked.chmod(0)
        with pytest.raises(PermissionError):
            upmirror.hash_file(locked)


def test_unknown_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match="md5"):
        upmirror.Hasher(["md5"])
    with pytest.raises(ValueError, match="no digest"):
        upmirror.Hasher([])


def test_streaming_hasher_equals_one_shot() -> None:
    data = os.urandom(5_000_000)
    hasher = upmirror.Hasher()
    for start in range(0, len(data), 777_777):
        hasher.update(data[start : start + 777_777])
    hasher.update(bytearray(b"tail"))
    assert hasher.size == len(data) + 4
    assert as_dict(hasher.finalize()) == reference_digests(data + b"tail")
    with pytest.raises(ValueError, match="finalized"):
        hasher.update(b"more")


def test_progress_callback_sees_every_byte(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    size = 2 << 30
    with path.open("wb") as f:
        f.truncate(size)
    snapshots: list[upmirror.ProgressSnapshot] = []
    upmirror.hash_files([path], ["sha256"], progress=snapshots.append)
    done = [s.bytes_done for s in snapshots]
    assert any(0 < d < size for d in done), f"progress arrived while the work was under way: {done}"
    assert done == sorted(done), "the counts only rise"
    assert len(set(done)) >= 2, f"the counts rose between callbacks: {done}"
    assert all(s.bytes_total == size for s in snapshots)
    assert done[-1] == size


def resident_bytes(path: Path) -> int:
    """The bytes of ``path`` in the page cache (``fincore``): what has been read of it since it was made."""
    output = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return int(output.stdout.strip())


def test_an_exception_in_the_progress_callback_stops_the_work(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    size = 4 << 30
    with path.open("wb") as f:
        f.truncate(size)
    seen: list[upmirror.ProgressSnapshot] = []

    def refuse(snapshot: upmirror.ProgressSnapshot) -> None:
        seen.append(snapshot)
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        upmirror.hash_file(path, ["sha256"], progress=refuse)
    assert len(seen) == 1, "the callback is not called again once it raised"
    assert seen[0].bytes_done < size
    # Cancellation is checked every 16 MiB: the hasher stopped soon after, having read a small part of the file
    # (a hole read through the memory map still brings a page into the cache).
    assert resident_bytes(path) < size // 4, "the whole file was read: the work went on after the exception"


def test_ctrl_c_interrupts_a_long_hash(tmp_path: Path) -> None:
    path = tmp_path / "huge.bin"
    with path.open("wb") as f:
        f.truncate(64 << 30)  # sha256 over 64 GiB of holes would take about a minute
    script = (
        "import sys, upmirror\n"
        "def report(snapshot):\n"
        "    if snapshot.bytes_done:\n"
        "        print('hashing', flush=True)\n"
        "try:\n"
        f"    upmirror.hash_file({str(path)!r}, ['sha256'], progress=report)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
        "    sys.exit(7)\n"
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None
            # The call is in native code once it reports hashed bytes.
            assert child.stdout.readline().strip() == "hashing"
            child.send_signal(signal.SIGINT)
            assert child.wait(timeout=10) == 7
            assert child.stdout.read().split()[-1] == "interrupted"
        finally:
            child.kill()


def test_cli_prints_b3sum_format_and_matches_b3sum(tmp_path: Path, run_upmirror: RunUpmirror) -> None:
    names = ["a.bin", "b c.bin", "back\\slash.bin"]
    for index, name in enumerate(names):
        (tmp_path / name).write_bytes(os.urandom(1000 * index + 1))
    ours = run_upmirror("hash", *names)
    b3sum = subprocess.run(["b3sum", *names], capture_output=True, text=True, cwd=tmp_path, check=True, timeout=60)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == b3sum.stdout


@pytest.mark.parametrize(
    ("algo", "tool"),
    [("sha256", ["sha256sum"]), ("sha1", ["sha1sum"]), ("xxh3", ["xxhsum", "-H2"])],
)
def test_cli_single_algorithm_matches_its_tool(
    tmp_path: Path, run_upmirror: RunUpmirror, algo: str, tool: list[str]
) -> None:
    for index in range(3):
        (tmp_path / f"f{index}").write_bytes(os.urandom(70_000 * index))
    names = ["f0", "f1", "f2"]
    ours = run_upmirror("hash", "--algo", algo, *names)
    theirs = subprocess.run([*tool, *names], capture_output=True, text=True, cwd=tmp_path, check=True, timeout=60)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.split() == theirs.stdout.split()


def test_cli_json_gives_all_digests_and_size(tmp_path: Path, run_upmirror: RunUpmirror) -> None:
    data = os.urandom(123_456)
    (tmp_path / "f").write_bytes(data)
    result = run_upmirror("hash", "--json", "f")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [{"path": "f", **reference_digests(data)}]


def test_cli_missing_file_exits_2_naming_it_and_hashes_the_rest(tmp_path: Path, run_upmirror: RunUpmirror) -> None:
    (tmp_path / "present").write_bytes(b"present")
    result = run_upmirror("hash", "absent", "present", "--algo", "sha256")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["upmirror: cannot hash absent: No such file or directory"]
    assert result.stdout == f"{hashlib.sha256(b'present').hexdigest()}  present\n"


def test_cli_bad_usage_exits_2(run_upmirror: RunUpmirror) -> None:
    assert run_upmirror("hash").returncode == 2
    assert run_upmirror("hash", "--algo", "md5", "x").returncode == 2
    assert run_upmirror("hash", "--threads", "0", "x").returncode == 2


def test_version_comes_from_the_cargo_workspace() -> None:
    cargo_toml = (Path(__file__).parent.parent / "Cargo.toml").read_text()
    assert f'version = "{upmirror.__version__}"' in cargo_toml
