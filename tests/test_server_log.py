"""The log of ``upmirror serve``: written to ``logs/upmirror.log`` in the server directory as well as stderr, by
every process of the server, and turned over by size."""

from __future__ import annotations

import logging
from pathlib import Path

from tests.support.cli import ok
from tests.support.upmirror_server import UpmirrorServer
from upmirror.server.log import KEPT_LOGS, LOG_FILE, start_log, stop_log


def test_serve_writes_its_log_to_the_logs_folder_and_stderr(tmp_path: Path) -> None:
    directory = tmp_path / "root"
    ok("init", "--dir", directory)
    with UpmirrorServer(directory, extra_args=("--workers", "2")) as server:
        server.call("GET", "/api/v1/server")  # an answer: the server runs, its signal handlers are in place
        assert server.stop() == 0
        stderr = server.stderr()
    lines = (directory / "logs" / LOG_FILE).read_text().splitlines()
    assert lines[0].endswith(f": listening on {server.url} with 2 worker process(es)"), lines
    assert " INFO upmirror.server[" in lines[0]
    assert lines[-1].endswith(": stopped"), lines
    for line in lines:
        assert line in stderr, "stderr carries the same records"


def test_the_log_turns_over_by_size_and_a_worker_follows_the_new_file(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    root = logging.getLogger()
    level = root.level
    first = start_log(logs, rotates=True, max_bytes=4000)
    try:
        # A worker's handler, as a forked process has it: it never rotates, it reopens a file that was moved.
        worker = start_log(logs, rotates=False)
        try:
            server, other = logging.getLogger("upmirror.test.first"), logging.getLogger("upmirror.test.worker")
            for number in range(200):
                (server if number % 2 else other).info("record %04d %s", number, "x" * 40)
        finally:
            stop_log(worker)
    finally:
        stop_log(first)
        root.setLevel(level)
    files = sorted(p.name for p in logs.iterdir())
    assert files == [LOG_FILE] + [f"{LOG_FILE}.{n}" for n in range(1, KEPT_LOGS + 1)]
    for path in logs.iterdir():
        assert path.stat().st_size <= 4000 + 200, path.name  # each file about the size asked (plus a last line)
    # The newest records are in the live file, from both processes' handlers, and none was lost between the kept
    # files: the last records appear in order across upmirror.log.1 and upmirror.log.
    recent = (logs / f"{LOG_FILE}.1").read_text() + (logs / LOG_FILE).read_text()
    numbers = [int(line.split("record ")[1][:4]) for line in recent.splitlines()]
    assert numbers[-1] == 199
    assert sorted(set(numbers)) == list(range(numbers[0], 200))
