"""The ``upmirror`` command line: one subcommand module per concern, each registering its own parser.

Exit codes are the contract of DESIGN.md: 0 success, 1 the work failed, 2 bad usage or bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from upmirror import __version__
from upmirror.cli import catalog, demo, fetch, hashing, options, publish, serve, sync, tokens, transfer, updates
from upmirror.cli.common import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, CommandError, print_error
from upmirror.errors import InputError, UpmirrorError

# Each module has `register(subparsers)`, which adds its commands and sets `handler` on their parsers.
COMMAND_MODULES = (options, sync, updates, catalog, publish, transfer, serve, tokens, hashing, fetch, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="upmirror",
        description="An update-content replication server in the mould of WSUS synchronization.",
    )
    parser.add_argument("--version", action="version", version=f"upmirror {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except InputError as error:
        print_error(str(error))
        return EXIT_USAGE
    except CommandError as error:
        print_error(str(error))
        return error.exit_code
    except UpmirrorError as error:
        print_error(str(error))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print_error("interrupted; finished work is kept")
        return EXIT_INTERRUPTED
    return code


if __name__ == "__main__":
    sys.exit(main())
