"""Waiting for an event instead of sleeping and hoping: ``wait_for(condition, timeout, what)`` polls until the
condition holds and fails, naming what it waited for, when the time bound passes first (or when the process it
watches ends first)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable


def wait_for(
    condition: Callable[[], object],
    timeout: float,
    what: str = "the condition",
    *,
    interval: float = 0.02,
    process: subprocess.Popen[bytes] | subprocess.Popen[str] | None = None,
) -> None:
    """Returns once ``condition()`` is true. With ``process``, its ending before then is a failure too."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process is None or process.poll() is None, f"the process ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)
