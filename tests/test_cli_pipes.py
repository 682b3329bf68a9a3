"""The command line in a pipeline, as Unix tools behave: a reader that stops early (``| head -n 1``) ends the command
quietly, with the exit status a shell reports for SIGPIPE and no traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.cli import UPMIRROR
from tests.support.servers import make_root


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_root(tmp_path_factory.mktemp("pipes") / "root", updates=2000, content="2M")  # 250 KB of listing


@pytest.mark.parametrize("command", [("updates", "list"), ("updates", "list", "--json")])
def test_a_reader_that_stops_early_ends_the_command_quietly(catalog: Path, command: tuple[str, ...]) -> None:
    writer = subprocess.Popen(
        [*UPMIRROR, *command, "--dir", str(catalog)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert writer.stdout is not None
    head = subprocess.run(["head", "-n", "1"], stdin=writer.stdout, capture_output=True, timeout=60, check=True)
    writer.stdout.close()  # head has gone and nobody else reads: the writer's next write breaks the pipe
    _, stderr = writer.communicate(timeout=60)
    assert len(head.stdout.splitlines()) == 1
    assert stderr.decode() == ""
    assert writer.returncode == 141  # 128 + SIGPIPE, what a shell reports for `yes | head -n 1`
