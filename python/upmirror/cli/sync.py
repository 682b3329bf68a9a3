"""``upmirror sync`` (synchronize now, in the foreground) and ``upmirror status`` (last sync, next scheduled sync,
history)."""

from __future__ import annotations

import argparse
import sys

from upmirror.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    add_dir_argument,
    format_bytes,
    progress_display,
    server_directory,
)
from upmirror.errors import UpmirrorError

# msgspec, the records and the options load in the handlers: `sync --help` starts without them (W12).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from upmirror.model import SyncRecord
    from upmirror.options import ServerDirectory


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sync = subparsers.add_parser(
        "sync",
        help="synchronize with the upstream server now",
        description="Synchronize now: categories, update metadata and content from the upstream server, with the "
        "options' filters. Exit 0 when it succeeded, 1 when it was partial (files failed) or failed.",
    )
    add_dir_argument(sync)
    sync.add_argument("--json", action="store_true", help="print the history record as JSON")
    # How the scheduler and the admin interface start a sync: recorded as scheduled in the history.
    sync.add_argument("--scheduled", action="store_true", help=argparse.SUPPRESS)
    sync.set_defaults(handler=run_sync)

    status = subparsers.add_parser("status", help="last and next synchronization, and the history")
    add_dir_argument(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument("--limit", type=int, default=10, help="history entries to show (default 10)")
    status.set_defaults(handler=run_status)


def run_sync(args: argparse.Namespace) -> int:
    import msgspec  # noqa: PLC0415

    from upmirror.sync import synchronize  # noqa: PLC0415 (the sync stack loads only for this command)

    directory = server_directory(args)

    def say(line: str) -> None:
        if not args.json:
            print(line, file=sys.stderr, flush=True)

    try:
        with progress_display("Downloading") as progress:
            record = synchronize(
                directory, trigger="scheduled" if args.scheduled else "manual", on_event=say, progress=progress
            )
    except UpmirrorError:
        if args.json:  # scripts get the failed attempt's record too; the error line goes to stderr as usual
            print_latest_record(directory)
        raise
    if args.json:
        sys.stdout.write(msgspec.json.encode(record).decode() + "\n")
    else:
        print(describe(record))
    return EXIT_OK if record.result == "succeeded" else EXIT_FAILURE


def print_latest_record(directory: ServerDirectory) -> None:
    import msgspec  # noqa: PLC0415

    from upmirror.store import Store  # noqa: PLC0415

    with Store.open(directory.database_path) as store:
        history = store.sync_history(limit=1)
    if history:
        sys.stdout.write(msgspec.json.encode(history[0]).decode() + "\n")


def describe(record: SyncRecord) -> str:
    """The history record as an administrator reads it."""
    seconds = (record.finished - record.started).total_seconds() if record.finished else 0.0
    rate = record.bytes_downloaded / seconds if seconds > 0 else 0.0
    lines = [
        f"synchronization {record.id} ({record.trigger}): {record.result} in {seconds:.1f} s",
        f"  updates: {record.new_updates} new, {record.revised_updates} revised, {record.expired_updates} expired"
        + (f", {record.approvals} approvals mirrored" if record.approvals else ""),
        f"  files: {record.files_downloaded} downloaded ({format_bytes(record.bytes_downloaded)}, "
        f"{format_bytes(rate)}/s), {record.files_present} already present, {record.files_failed} failed",
    ]
    lines += [f"  failed: {name}" for name in record.failed_files[:20]]
    if len(record.failed_files) > 20:
        lines.append(f"  ... and {len(record.failed_files) - 20} more")
    if record.error:
        lines.append(f"  error: {record.error}")
    return "\n".join(lines)


def run_status(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    import msgspec  # noqa: PLC0415

    from upmirror.model import SyncRecord  # noqa: PLC0415
    from upmirror.status import status_document  # noqa: PLC0415

    status = status_document(server_directory(args), history_limit=args.limit)
    if args.json:
        json.dump(status, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    history = [msgspec.convert(entry, SyncRecord) for entry in status["history"]]
    print(f"{status['role']} server" + (f", upstream {status['upstream']}" if status["upstream"] else ""))
    next_sync = status["next_sync"]
    print(f"synchronization: {status['schedule']}" + (f", next at {next_sync}" if next_sync else ""))
    if history:
        print(f"last synchronization: {history[0].started:%Y-%m-%d %H:%M:%S} UTC, {history[0].result}")
    else:
        print("last synchronization: never")
    counts: dict[str, int] = status["updates_by_classification"]
    print(f"updates: {sum(counts.values())}" + "".join(f"\n  {title}: {n}" for title, n in counts.items()))
    if history:
        print("history (newest first):")
        for record in history:
            finished = f"{record.finished:%H:%M:%S}" if record.finished else "--:--:--"
            print(
                f"  {record.id:>4} {record.started:%Y-%m-%d %H:%M:%S}-{finished} {record.trigger:<9} {record.result:<9}"
                f" {record.new_updates:>6} new {record.files_downloaded:>6} files"
                f" {format_bytes(record.bytes_downloaded):>10}" + (f"  {record.error}" if record.error else "")
            )
    return EXIT_OK
