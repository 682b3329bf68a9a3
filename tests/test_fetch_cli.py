"""``upmirror fetch`` as a person runs it: a real child process against real servers; SIGKILL and Ctrl-C in the
middle of a transfer, and the restart fetching only what was unfinished (counted in bytes the server sent)."""

from __future__ import annotations

import hashlib
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest

from tests.support.cli import UPMIRROR, RunUpmirror
from tests.support.downloads import payload
from tests.support.faulty_server import FaultyServer
from tests.support.nginx import NginxServer
from tests.support.waiting import wait_for
from upmirror import DownloadJob, HttpClient
from upmirror.cli.common import parse_size

CHUNK = 256 << 10
JOURNAL_HEADER = 32  # magic, size, chunk size, validator length; then the validator and 24-byte records
RECORD = 24  # chunk index, length of the chunk's beginning it vouches for, XXH3 of those bytes


def journal_records(journal: Path) -> dict[int, int]:
    """The longest recorded length by chunk index in a journal, read independently of the engine."""
    try:
        raw = journal.read_bytes()
    except FileNotFoundError:
        return {}
    if len(raw) < JOURNAL_HEADER or raw[:8] != b"UPMJRNL2":
        return {}
    records = raw[JOURNAL_HEADER + int.from_bytes(raw[24:32], "little") :]
    longest: dict[int, int] = {}
    for at in range(0, len(records) - RECORD + 1, RECORD):
        index, length = (int.from_bytes(records[at + i : at + i + 8], "little") for i in (0, 8))
        longest[index] = max(length, longest.get(index, 0))
    return longest


def journal_chunks(journal: Path) -> set[int]:
    """The chunk indices a journal records as finished (the files here are whole numbers of CHUNK)."""
    return {index for index, length in journal_records(journal).items() if length == CHUNK}


def test_fetch_places_files_and_names_failures(tmp_path: Path, run_upmirror: RunUpmirror) -> None:
    www = tmp_path / "www"
    www.mkdir()
    data = payload(3 * CHUNK + 11, 1)
    (www / "update.cab").write_bytes(data)
    out = tmp_path / "out"
    with NginxServer(www) as url:
        done = run_upmirror("fetch", f"{url}/update.cab", "--to", out, "--sha256", hashlib.sha256(data).hexdigest())
        assert done.returncode == 0, done.stderr
        assert (out / "update.cab").read_bytes() == data
        assert "1 fetched, 0 already present, 0 failed" in done.stdout
        failed = run_upmirror(
            "fetch", f"{url}/update.cab", f"{url}/absent.cab", "--to", tmp_path / "o2", "--retries", "0"
        )
        assert failed.returncode == 1
        assert "absent.cab" in failed.stderr
        assert "404" in failed.stderr
        assert (tmp_path / "o2" / "update.cab").read_bytes() == data
        wrong = run_upmirror("fetch", f"{url}/update.cab", "--to", tmp_path / "o3", "--blake3", "0" * 64)
        assert wrong.returncode == 1
        assert "digest mismatch" in wrong.stderr
        assert not (tmp_path / "o3" / "update.cab").exists()


def test_fetch_refuses_bad_input_with_exit_2(tmp_path: Path, run_upmirror: RunUpmirror) -> None:
    for args in (
        ["http://127.0.0.1:1/a/..", "--to", tmp_path / "x"],
        ["http://127.0.0.1:1/", "--to", tmp_path / "x"],
        ["ftp://127.0.0.1/a.cab", "--to", tmp_path / "x"],
        ["http://127.0.0.1:1/a.cab", "--to", tmp_path / "x", "--sha256", "zz"],
        ["http://127.0.0.1:1/a.cab", "http://127.0.0.1:1/b/a.cab", "--to", tmp_path / "x"],
        ["http://127.0.0.1:1/a.cab", "--to", tmp_path / "x", "--connections", "0"],
    ):
        result = run_upmirror("fetch", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("upmirror: ")
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("text", "size"),
    [("1000", 1000), ("64K", 64 << 10), ("512k", 512 << 10), ("8M", 8 << 20), ("8MiB", 8 << 20), ("1.5G", 3 << 29)],
)
def test_sizes_on_the_command_line_are_binary_units(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_a_bad_size_is_a_usage_error_naming_the_option(tmp_path: Path, run_upmirror: RunUpmirror) -> None:
    for text in ("lots", "", "-1M", "1.2.3G", "nan"):
        with pytest.raises(ValueError, match="is not a size"):
            parse_size(text)
    result = run_upmirror("fetch", "http://127.0.0.1:1/a.cab", "--to", tmp_path / "x", "--chunk-size", "lots")
    assert result.returncode == 2
    assert "argument --chunk-size: 'lots' is not a size" in result.stderr
    assert not (tmp_path / "x").exists()


def kill_when(command: list[str], condition: Callable[[], bool]) -> None:
    """Starts ``command`` and SIGKILLs it once ``condition()`` holds."""
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(condition, timeout=60)
        child.send_signal(signal.SIGKILL)
    finally:
        child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL


def restart_at_full_speed(server: FaultyServer, command: list[str]) -> subprocess.CompletedProcess[str]:
    """Runs ``command`` again, successfully, with the server's counters counting this run alone."""
    server.rate = None
    # Bytes still leaving for the killed client must not count as the restart's.
    wait_for(lambda: server.active() == 0, timeout=30)
    server.reset_counters()
    restarted = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert restarted.returncode == 0, restarted.stderr
    return restarted


def test_sigkill_mid_transfer_then_restart_fetches_only_unfinished_chunks(tmp_path: Path) -> None:
    data = payload(48 * CHUNK, 2)
    out = tmp_path / "out"
    journal = out / ".partial" / "big.bin.part.journal"
    # About 4 MB/s over two connections: a few seconds of transfer to interrupt.
    with FaultyServer({"/big.bin": data}, rate=2 << 20) as server:
        # With the BLAKE3 asked for, each chunk is hashed as a subtree as it streams; the restart reads back the
        # chunks the killed run finished for theirs.
        command = [*UPMIRROR, "fetch", f"{server.url}/big.bin", "--to", str(out), "--chunk-size", "256k"]
        command += ["--blake3", blake3.blake3(data).hexdigest()]
        kill_when([*command, "--connections", "2"], lambda: len(journal_chunks(journal)) >= 6)
        finished_before_kill = journal_chunks(journal)
        assert not (out / "big.bin").exists()
        assert "resumed" in restart_at_full_speed(server, command).stdout
    assert (out / "big.bin").read_bytes() == data
    sent_after_restart = server.bytes_sent("/big.bin")
    assert 0 < sent_after_restart <= len(data) - len(finished_before_kill) * CHUNK
    assert not journal.exists()


def test_sigkill_mid_chunk_keeps_the_verified_beginning_of_the_chunk(tmp_path: Path) -> None:
    big_chunk = 4 << 20
    data = payload(2 * big_chunk, 3)
    out = tmp_path / "out"
    journal = out / ".partial" / "big.bin.part.journal"
    # 1 MiB/s on one connection: the first chunk takes four seconds, its progress journaled on the way.
    with FaultyServer({"/big.bin": data}, rate=1 << 20) as server:
        # The kept beginning of the chunk is read back into the chunk's BLAKE3 subtree before the rest streams in.
        command = [*UPMIRROR, "fetch", f"{server.url}/big.bin", "--to", str(out), "--chunk-size", "4M"]
        command += ["--blake3", blake3.blake3(data).hexdigest()]
        kill_when([*command, "--connections", "1"], lambda: journal_records(journal).get(0, 0) >= 1 << 20)
        progress = journal_records(journal)[0]
        assert progress < big_chunk  # the kill came within the first chunk
        restart_at_full_speed(server, command)
    assert (out / "big.bin").read_bytes() == data
    # Before, the whole unfinished chunk was fetched again; now only what follows its journaled beginning.
    assert server.bytes_sent("/big.bin") <= len(data) - progress


def test_ctrl_c_cancels_and_leaves_resumable_state(tmp_path: Path) -> None:
    data = payload(32 * CHUNK, 3)
    out = tmp_path / "out"
    journal = out / ".partial" / "big.bin.part.journal"
    with FaultyServer({"/big.bin": data}, rate=2 << 20) as server:
        command = [*UPMIRROR, "fetch", f"{server.url}/big.bin", "--to", str(out), "--chunk-size", "256k"]
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: len(journal_chunks(journal)) >= 3, timeout=60)
            child.send_signal(signal.SIGINT)
            _, stderr = child.communicate(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.returncode == 130, stderr
        assert "interrupted" in stderr
        kept = journal_chunks(journal)
        assert len(kept) >= 3
        server.rate = None
        # Bytes still leaving for the killed client must not count as the restart's.
        wait_for(lambda: server.active() == 0, timeout=30)
        server.reset_counters()
        restarted = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert restarted.returncode == 0, restarted.stderr
    assert (out / "big.bin").read_bytes() == data
    assert server.bytes_sent("/big.bin") <= len(data) - len(kept) * CHUNK


def test_connections_per_host_are_capped(tmp_path: Path) -> None:
    files = {f"/f{i}.bin": payload(20000, 10 + i) for i in range(12)}
    with FaultyServer(files, rate=1 << 20) as server:
        client = HttpClient(max_connections_per_host=3)
        jobs = [DownloadJob.file(server.url + path) for path in files]
        report = client.download(jobs, tmp_path, connections=8)
        assert report.placed == len(files)
        assert 1 <= server.max_active <= 3
    for path, data in files.items():
        assert (tmp_path / path.lstrip("/")).read_bytes() == data
