"""What every command shares: exit codes, error lines, and the progress display (a bar on a terminal, plain lines
otherwise)."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager

from upmirror.errors import UpmirrorError

# The type checkers read this as True; importing it from `typing` would cost a command milliseconds of start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterator

    from upmirror._native import ProgressSnapshot
    from upmirror.options import ServerDirectory

    ProgressCallback = Callable[[ProgressSnapshot], None]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# What a shell reports for a program that SIGPIPE ended (128 + 13): `upmirror updates list | head` stops quietly.
EXIT_BROKEN_PIPE = 128 + 13

# Binary units of sizes given on the command line (8M, 512k, 1.5G, 1T).
SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

# Without a terminal, a progress line at most this often (seconds), and only for work that lasts longer.
PLAIN_PROGRESS_INTERVAL = 10.0


class CommandError(UpmirrorError):
    """A failure a command reports as one line with a chosen exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", help="the server directory (default: $UPMIRROR_DIR, else the current directory)")


def server_directory(args: argparse.Namespace) -> ServerDirectory:
    """The server directory a command's ``--dir`` names; the options module loads here, when a command runs, not
    when its parser is built."""
    from upmirror.options import ServerDirectory  # noqa: PLC0415

    return ServerDirectory.from_arg(args.dir)


def parse_size(text: str) -> int:
    """``8M``, ``512k``, ``1.5G``, ``1T`` or a plain number of bytes (binary units); ValueError for anything else."""
    value = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = value[-1:] if value[-1:] in SIZE_UNITS else ""
    number = value[: len(value) - len(unit)]
    if number.isdigit():
        return int(number) * SIZE_UNITS[unit]
    if number.replace(".", "", 1).isdigit():
        return int(float(number) * SIZE_UNITS[unit])
    raise ValueError(f"{text!r} is not a size (a number with an optional k, M, G or T)")


def size_argument(text: str) -> int:
    """``parse_size`` as an argparse type: a bad size is a usage error naming the option."""
    import argparse  # noqa: PLC0415 (loaded already: a parser is running)

    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def print_error(message: str) -> None:
    print(f"upmirror: {message}", file=sys.stderr)


def format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


@contextmanager
def progress_display(description: str) -> Iterator[ProgressCallback]:
    """Yields a callback for the native progress polling that draws a bar on stderr when it is a terminal, and
    otherwise prints a plain line every PLAIN_PROGRESS_INTERVAL seconds."""
    if sys.stderr.isatty():
        # rich costs 40 ms to import: only a terminal pays for it (commands start fast in scripts and benchmarks).
        from rich.progress import (  # noqa: PLC0415
            BarColumn,
            DownloadColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            transient=True,
        ) as bar:
            task = bar.add_task(description, total=None)

            def draw(snapshot: ProgressSnapshot) -> None:
                bar.update(task, completed=snapshot.bytes_done, total=snapshot.bytes_total or None)

            yield draw
        return

    last_line = time.monotonic()

    def print_line(snapshot: ProgressSnapshot) -> None:
        nonlocal last_line
        now = time.monotonic()
        if now - last_line >= PLAIN_PROGRESS_INTERVAL:
            last_line = now
            print(
                f"{description}: {format_bytes(snapshot.bytes_done)} of {format_bytes(snapshot.bytes_total)}, "
                f"{snapshot.files_done} files done, {snapshot.files_failed} failed, "
                f"{format_bytes(snapshot.rate)}/s",
                file=sys.stderr,
            )

    yield print_line
