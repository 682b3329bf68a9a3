"""Shared fixtures: every test works in its own temporary directory and runs the real ``upmirror`` command."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import UPMIRROR, RunUpmirror


@pytest.fixture
def run_upmirror(tmp_path: Path) -> RunUpmirror:
    """Runs ``upmirror ARGS...`` as a child process (the way users do) with a time bound, in ``tmp_path``."""

    def run(
        *args: str | os.PathLike[str], timeout: float = 60, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*UPMIRROR, *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd or tmp_path,
            check=False,
        )

    return run
