"""The log of ``upmirror serve``: what the server reports (start and stop, the scheduler's syncs and retries, internal
errors with their incident numbers, the WSUS protocol's faults) goes to stderr and to ``logs/upmirror.log`` in the
server directory, where an administrator looks when the terminal is gone.

The file turns over by size (``upmirror.log.1`` ... ``.5``, 10 MiB each), with the standard library's handlers: the
first process rotates it, and the workers it forks reopen it when they see it was moved, so no process keeps writing
into an old file. No message carries a credential: tokens and passwords are never formatted into one, and the
native errors that reach it name URLs with their credentials taken out.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path
from typing import Final

LOG_FILE: Final = "upmirror.log"
MAX_LOG_BYTES: Final = 10 << 20
KEPT_LOGS: Final = 5
FORMAT: Final = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"


def start_log(logs: Path, *, rotates: bool, max_bytes: int = MAX_LOG_BYTES) -> list[logging.Handler]:
    """Sends the process's log records (INFO and above) to stderr and to ``logs/upmirror.log``. ``rotates``: this
    process turns the file over (one process of a server does); the others follow it. Returns the handlers, for
    ``stop_log``."""
    logs.mkdir(exist_ok=True)
    path = logs / LOG_FILE
    to_file: logging.Handler
    if rotates:
        to_file = logging.handlers.RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=KEPT_LOGS, encoding="utf-8"
        )
    else:
        to_file = logging.handlers.WatchedFileHandler(path, encoding="utf-8")
    handlers: list[logging.Handler] = [to_file, logging.StreamHandler(sys.stderr)]
    root = logging.getLogger()
    for handler in handlers:
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handlers


def stop_log(handlers: list[logging.Handler]) -> None:
    """Takes the handlers off the root logger and closes their files."""
    root = logging.getLogger()
    for handler in handlers:
        root.removeHandler(handler)
        handler.close()
