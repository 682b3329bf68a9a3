"""The ``upmirror`` command line: one subcommand module per concern, each registering its own parser.

Exit codes are the contract of DESIGN.md: 0 success, 1 the work failed, 2 bad usage or bad input.
"""

from __future__ import annotations

import importlib
import os
import sys

from upmirror import __version__
from upmirror.errors import InputError, UpmirrorError

# The type checkers read this as True; importing it from `typing` would cost a command milliseconds of start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

# Command -> the module under upmirror.cli that registers it (`register(subparsers)` adds its commands and sets
# `handler` on their parsers). Only the module of the command being run is imported: a command starts in
# milliseconds instead of paying for aiohttp, the store and every other command. `upmirror --version` imports
# neither argparse nor cli.common (W12 measures every command's start against a bare interpreter).
COMMANDS: dict[str, str] = {
    "init": "options",
    "options": "options",
    "sync": "sync",
    "status": "sync",
    "updates": "updates",
    "products": "updates",
    "classifications": "updates",
    "cleanup": "cleanup",
    "content": "content",
    "catalog": "catalog",
    "publish": "publish",
    "export": "transfer",
    "import": "transfer",
    "serve": "serve",
    "tokens": "tokens",
    "hash": "hashing",
    "fetch": "fetch",
    "tune": "tune",
    "bench": "tune",
    "demo": "demo",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command, or with only ``command``'s module when it names one."""
    import argparse  # noqa: PLC0415 (`upmirror --version` answers without it)

    parser = argparse.ArgumentParser(
        prog="upmirror",
        description="An update-content replication server in the mould of WSUS synchronization.",
    )
    parser.add_argument("--version", action="version", version=f"upmirror {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    modules = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        importlib.import_module(f"upmirror.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    command = next((word for word in words if not word.startswith("-")), None)
    if command is None and words == ["--version"]:
        print(f"upmirror {__version__}")  # without loading every command's module to build the full parser
        return 0
    args = build_parser(command).parse_args(words)
    from upmirror.cli.common import EXIT_BROKEN_PIPE  # noqa: PLC0415 (the command's module has loaded it)

    try:
        code: int = args.handler(args)
        sys.stdout.flush()  # a reader that went away must show up here, not in the interpreter's final flush
    except BrokenPipeError:
        # The reader of our output stopped (`| head`): stop quietly as Unix tools do. Python flushes stdout once
        # more at exit, so it is pointed at /dev/null first (the recipe of the `signal` module's documentation).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except (UpmirrorError, OSError, KeyboardInterrupt) as error:
        return report_failure(error)
    return code


def report_failure(error: UpmirrorError | OSError | KeyboardInterrupt) -> int:
    """One line on stderr for a command that did not complete, and the exit code DESIGN.md gives it."""
    from upmirror.cli.common import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, CommandError, print_error  # noqa: PLC0415

    if isinstance(error, KeyboardInterrupt):
        print_error("interrupted; finished work is kept")
        return EXIT_INTERRUPTED
    if isinstance(error, OSError):
        # A local file the command needed could not be read or written.
        print_error(f"{error.strerror or error}" + (f": {error.filename}" if error.filename is not None else ""))
        return EXIT_FAILURE
    print_error(str(error))
    if isinstance(error, InputError):
        return EXIT_USAGE
    return error.exit_code if isinstance(error, CommandError) else EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
