"""The Python side of the exception hierarchy rooted in ``UpmirrorError`` (defined natively so Rust can raise it).

``InputError`` is bad input from the user: the command line turns it into exit code 2 and one line of text.
"""

from upmirror._native import UpmirrorError


class InputError(UpmirrorError):
    """A value given by the user is not allowed; the message names it and what is allowed. Nothing was changed."""


__all__ = ["InputError", "UpmirrorError"]
