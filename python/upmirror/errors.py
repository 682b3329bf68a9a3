"""The Python side of the exception hierarchy rooted in ``UpmirrorError`` (defined natively so Rust can raise it).

``InputError`` is bad input from the user: the command line turns it into exit code 2 and one line of text.
``DiskFullError`` is a full filesystem met while writing content or metadata: the work stops, nothing half-written is
visible, and the next run resumes.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from upmirror._native import UpmirrorError


class InputError(UpmirrorError):
    """A value given by the user is not allowed; the message names it and what is allowed. Nothing was changed."""


class DiskFullError(UpmirrorError):
    """A filesystem has no room left for the content or the metadata store; the message names the path."""


def one_line(message: str) -> str:
    """A message that may quote outside input, with control characters escaped so it stays one printable line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def storage_failure(error: BaseException, database: Path) -> UpmirrorError | None:
    """The ``UpmirrorError`` a failure of local storage stands for: a full disk (ENOSPC or EDQUOT from a file, or
    SQLite's "database or disk is full") names the path and "disk full"; any other SQLite failure names the store.
    None for everything else."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        where = error.filename if error.filename is not None else "the content directory"
        return DiskFullError(f"disk full: no space left on the device for {where}")
    if isinstance(error, sqlite3.OperationalError) and "full" in str(error):
        return DiskFullError(f"disk full: no space left on the device for the metadata store {database}")
    if isinstance(error, sqlite3.Error):
        return UpmirrorError(f"the metadata store {database} failed: {error}")
    return None


@contextmanager
def storage_failures_as_errors(database: Path) -> Iterator[None]:
    """Turns failures of local storage inside the block into the ``UpmirrorError`` they stand for (see
    ``storage_failure``), so a command ends with one line and its usual exit code instead of a traceback."""
    try:
        yield
    except (OSError, sqlite3.Error) as error:
        failure = storage_failure(error, database)
        if failure is None:
            raise
        raise failure from error


__all__ = ["DiskFullError", "InputError", "UpmirrorError", "one_line", "storage_failure", "storage_failures_as_errors"]
