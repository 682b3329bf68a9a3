"""``upmirror cleanup``: the Server Cleanup Wizard's options, with ``--dry-run`` listing what would go."""

from __future__ import annotations

import argparse
import sys

from upmirror.cli.common import EXIT_OK, add_dir_argument, format_bytes, server_directory
from upmirror.errors import InputError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "cleanup",
        help="remove unused updates and unneeded files; decline expired and superseded updates",
        description="The Server Cleanup Wizard. Choose one or more options; --dry-run lists what would go.",
    )
    add_dir_argument(parser)
    parser.add_argument("--unused", action="store_true", help="remove unused updates and update revisions")
    parser.add_argument("--unneeded-files", action="store_true", help="delete update files no update needs")
    parser.add_argument("--expired", action="store_true", help="decline expired updates")
    parser.add_argument(
        "--superseded", action="store_true", help="decline superseded updates (superseding update approved)"
    )
    parser.add_argument(
        "--superseded-min-age",
        type=float,
        default=30.0,
        metavar="DAYS",
        help="days a superseded update must have been on this server (default 30)",
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would go, change nothing")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from upmirror.cleanup import CleanupChoice, clean  # noqa: PLC0415

    choice = CleanupChoice(
        unused=args.unused,
        unneeded_files=args.unneeded_files,
        expired=args.expired,
        superseded=args.superseded,
        superseded_min_age_days=args.superseded_min_age,
    )
    if not (choice.unused or choice.unneeded_files or choice.expired or choice.superseded):
        raise InputError("choose at least one of --unused, --unneeded-files, --expired, --superseded")
    if args.superseded_min_age < 0:
        raise InputError(f"--superseded-min-age must be 0 or more days, not {args.superseded_min_age}")
    report = clean(server_directory(args), choice, dry_run=args.dry_run)
    if args.json:
        import dataclasses  # noqa: PLC0415 (only --json needs them)
        import json  # noqa: PLC0415

        json.dump(dataclasses.asdict(report), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    verb = "would be" if args.dry_run else "were"
    for noun, action, items in (
        ("expired updates", "declined", report.declined_expired),
        ("superseded updates", "declined", report.declined_superseded),
        ("unused updates", "removed", report.removed_updates),
        ("unneeded files", "deleted", report.removed_files),
    ):
        print(f"{len(items)} {noun} {verb} {action}")
        for item in items[:50]:
            print(f"  {item}")
        if len(items) > 50:
            print(f"  ... and {len(items) - 50} more")
    print(f"{report.removed_revisions} old update revisions {verb} removed")
    print(f"{format_bytes(report.freed_bytes)} {verb} freed")
    return EXIT_OK
