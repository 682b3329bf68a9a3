"""The real ``upmirror`` command as users run it: a child process with a time bound. ``upmirror(ARGS...)`` returns
the finished process, ``ok(ARGS...)`` asserts it succeeded and returns its output; the ``run_upmirror`` fixture
(tests/conftest.py) runs it in the test's temporary directory."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

UPMIRROR = [sys.executable, "-m", "upmirror.cli"]

RunUpmirror = Callable[..., subprocess.CompletedProcess[str]]


def upmirror(*args: str | Path, timeout: float = 180, scratch: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Runs ``upmirror ARGS...``; ``scratch`` becomes its TMPDIR, so a test can see what it leaves behind."""
    env = {**os.environ, "TMPDIR": str(scratch)} if scratch else None
    return subprocess.run(
        [*UPMIRROR, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def ok(*args: str | Path) -> str:
    done = upmirror(*args)
    assert done.returncode == 0, f"upmirror {' '.join(map(str, args))}: {done.stderr}"
    return done.stdout


def refused(server: Path, package: Path) -> str:
    """Imports ``package`` into ``server``, which must refuse it as bad input: exit 2, one line on stderr."""
    done = upmirror("import", package, "--dir", server)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    return done.stderr
