"""The Python side of the exception hierarchy rooted in ``UpmirrorError`` (defined natively so Rust can raise it).

``InputError`` (native too: the core raises it for bad input, and it is also a ``ValueError``) is bad input from the
user: the command line turns it into exit code 2 and one line of text.
``DiskFullError`` is a full filesystem met while writing content or metadata: the work stops, nothing half-written is
visible, and the next run resumes.
"""

from __future__ import annotations

from upmirror._native import InputError, UpmirrorError


class DiskFullError(UpmirrorError):
    """A filesystem has no room left for the content or the metadata store; the message names the path."""


def one_line(message: str) -> str:
    """A message that may quote outside input, with control characters escaped so it stays one printable line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


__all__ = ["DiskFullError", "InputError", "UpmirrorError", "one_line"]
