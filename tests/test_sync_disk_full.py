"""A sync whose content directory fills up ends like any failed sync: one line naming the path and "disk full",
exit 1, a history record (and the JSON record with ``--json``); nothing partial is visible and the next run, with
room again, moves only what is missing. The full disk is a real small tmpfs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import ok, upmirror
from tests.support.content import grow_tmpfs, small_tmpfs
from tests.support.relay import CountingRelay
from tests.support.servers import content_of, content_of_directory, make_downstream, make_root, sync
from tests.support.upmirror_server import UpmirrorServer, add_token


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "small") as mountpoint:
        yield mountpoint


def test_a_full_content_disk_fails_the_sync_with_one_line_and_the_next_run_resumes(
    tmp_path: Path, small_filesystem: Path
) -> None:
    root = make_root(tmp_path / "root", updates=600, content="48M")
    token = add_token(root)
    with UpmirrorServer(root, token=token) as server, CountingRelay(server.port) as relay:
        downstream = make_downstream(
            tmp_path / "downstream", relay.url, token, ("content.directory", str(small_filesystem / "content"))
        )
        code, record, stderr = sync(downstream)
        assert code == 1, json.dumps(record)
        lines = stderr.strip().splitlines()
        assert "Traceback" not in stderr
        assert "disk full" in lines[-1]
        assert str(small_filesystem / "content") in lines[-1]
        assert record["result"] == "failed"
        assert "disk full" in record["error"]
        history = json.loads(ok("status", "--dir", downstream, "--json"))["history"]
        assert history[0]["result"] == "failed"
        assert "disk full" in history[0]["error"]

        # Nothing unverified at a final path: every file placed there matches the SHA-1 its name gives.
        content = small_filesystem / "content"
        placed_before = content_of_directory(content)
        for relative in placed_before:
            assert hashlib.sha1((content / relative).read_bytes()).hexdigest().upper() == Path(relative).stem
        grow_tmpfs(small_filesystem, "64m")
        relay.reset()
        code, record, stderr = sync(downstream)
        assert code == 0, stderr
        assert record["files_present"] == len(placed_before)
        assert record["files_downloaded"] > 0
        placed_after = content_of_directory(content)
        assert placed_before.items() <= placed_after.items()
        # The second run moved only what the first did not place (plus the protocol's small answers).
        missing_bytes = sum(size for path, size in placed_after.items() if path not in placed_before)
        assert missing_bytes <= relay.downstream_bytes < missing_bytes + (1 << 20)


def test_sync_json_prints_the_failed_record_when_the_disk_is_full(tmp_path: Path, small_filesystem: Path) -> None:
    root = make_root(tmp_path / "root", updates=200, content="16M")
    token = add_token(root)
    with UpmirrorServer(root, token=token) as server:
        downstream = make_downstream(
            tmp_path / "downstream", server.url, token, ("content.directory", str(small_filesystem / "content"))
        )
        done = upmirror("sync", "--dir", downstream, "--json")
        assert done.returncode == 1
        assert json.loads(done.stdout)["result"] == "failed"
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert content_of(downstream) == {}  # content lives on the small filesystem, nothing in the default folder
