"""A command imports only what it uses (issue 12, 7): the modules a real ``upmirror`` command has loaded when it is
done, read from ``sys.modules`` in the command's own process. W12 measures what this saves; this checks that it stays
so when an import moves back to the top of a module."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import upmirror
from tests.support.cli import ok
from upmirror.cli import COMMANDS

# Runs the command line's entry point with the given words as the `upmirror` script does, then prints the names of
# the loaded modules on stderr's last line (taken before `json` is imported to print them).
PROBE = (
    "import sys\n"
    "from upmirror.cli import main\n"
    "try:\n"
    "    code = main(sys.argv[1:])\n"
    "except SystemExit as stop:\n"
    "    code = stop.code\n"
    "loaded = sorted(sys.modules)\n"
    "import json\n"
    "sys.stderr.write('\\n' + json.dumps({'code': code, 'modules': loaded}) + '\\n')\n"
)

# What only the commands that read options, records or the metadata store need.
RECORDS_AND_STORE = {"msgspec", "upmirror.model", "upmirror.options", "upmirror.store", "sqlite3"}
# What no command line start needs before it knows its command.
SERVER_AND_SYNC = {"aiohttp", "uvloop", "rich", "upmirror.sync", "upmirror.server", "upmirror.upstream"}


def loaded_modules(*words: str | Path) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *map(str, words)], capture_output=True, text=True, timeout=60, check=False
    )
    report = json.loads(done.stderr.splitlines()[-1])
    assert report["code"] in (0, None), done.stderr
    return set(report["modules"])


def test_version_loads_neither_argparse_nor_any_command() -> None:
    modules = loaded_modules("--version")
    assert not modules & {"argparse", "typing", "upmirror.cli.common", *RECORDS_AND_STORE, *SERVER_AND_SYNC}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_commands_help_loads_no_records_store_or_server(command: str) -> None:
    """Building a command's parser is its fixed cost: the records, the store and the server load when it runs."""
    assert not loaded_modules(command, "--help") & (RECORDS_AND_STORE | SERVER_AND_SYNC)


def test_a_subcommands_help_loads_no_records_store_or_server() -> None:
    assert not loaded_modules("content", "copy", "--help") & (RECORDS_AND_STORE | SERVER_AND_SYNC)


def test_a_content_copy_loads_no_records_store_or_server(tmp_path: Path) -> None:
    source = tmp_path / "source"
    data = b"one file of the layout"
    path = source / upmirror.content_relative_path(hashlib.sha1(data).hexdigest(), ".cab")
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    ok("content", "copy", source, tmp_path / "first")  # the copy below then finds everything present
    for destination in ("first", "second"):
        modules = loaded_modules("content", "copy", source, tmp_path / destination)
        assert not modules & (RECORDS_AND_STORE | SERVER_AND_SYNC)
        assert (tmp_path / destination / path.relative_to(source)).read_bytes() == data


def test_status_loads_the_store_but_not_the_sync_stack_or_the_server(tmp_path: Path) -> None:
    ok("init", "--dir", tmp_path / "server")
    modules = loaded_modules("status", "--dir", tmp_path / "server")
    assert {"upmirror.options", "upmirror.store"} <= modules  # the probe sees what the command really loads
    assert not modules & SERVER_AND_SYNC
