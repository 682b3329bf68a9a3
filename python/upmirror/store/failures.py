"""What a failure of local storage stands for: a full disk or a failing metadata store becomes the ``UpmirrorError``
that names it, so a command ends with one line instead of a traceback (errors.py stays free of sqlite3)."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from upmirror.errors import DiskFullError, UpmirrorError


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
