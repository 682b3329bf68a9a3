"""The Python side of the exception hierarchy rooted in ``UpmirrorError`` (defined natively so Rust can raise it).

``InputError`` is bad input from the user: the command line turns it into exit code 2 and one line of text.
"""

from upmirror._native import UpmirrorError


class InputError(UpmirrorError):
    """A value given by the user is not allowed; the message names it and what is allowed. Nothing was changed."""


def one_line(message: str) -> str:
    """A message that may quote outside input, with control characters escaped so it stays one printable line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


__all__ = ["InputError", "UpmirrorError", "one_line"]
