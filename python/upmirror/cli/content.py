"""``upmirror content copy|verify|dedup``: moving and checking content directories between servers (upmirror's own,
or a WSUS ``WsusContent`` folder, which has the same layout), and sharing the disk space of identical files."""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager

from upmirror._native import copy_content, deduplicate, verify_content
from upmirror.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    CommandError,
    format_bytes,
    print_error,
    progress_display,
    server_directory,
)
from upmirror.errors import InputError

# A command's start is its imports (W12): typing, pathlib and json load only where they are used.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path
    from typing import Any, TypeVar

    from upmirror._native import DuplicateGroup, VerifyReport
    from upmirror.options import ServerDirectory

    Report = TypeVar("Report")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "content",
        help="copy, verify or deduplicate content directories",
        description="Work on content directories (<XX>/<SHA-1><ext>, the WSUS WsusContent layout).",
    )
    commands = parser.add_subparsers(title="content commands", metavar="COMMAND", required=True)

    copy = commands.add_parser(
        "copy",
        help="replicate a content directory into another, verified",
        description="Copy every file of the layout from SRC to DST in parallel: reflinks where the filesystem shares "
        "extents, in-kernel copies otherwise, hard links with --link. Files already present and identical are skipped "
        "by the content index without reading them; each copied file is checked against the SHA-1 in its name; files "
        "appear atomically; an interrupted copy resumes. Entries of SRC outside the layout are reported, not copied.",
    )
    copy.add_argument("source", metavar="SRC")
    copy.add_argument("destination", metavar="DST")
    copy.add_argument("--link", action="store_true", help="hard-link files instead of copying (same filesystem)")
    copy.add_argument("--verify", action="store_true", help="read and check every byte, whatever the indexes say")
    copy.add_argument("--no-sync", action="store_true", help="do not flush to disk (a power cut may lose files)")
    add_common_options(copy)
    copy.set_defaults(handler=run_copy)

    verify = commands.add_parser(
        "verify",
        help="check every file of a content directory against its digest",
        description="Check every file against the SHA-1 in its name; files unchanged since their last check are "
        "vouched for by the content index unless --full. Lists corrupt and missing files; exit 1 if there are any.",
    )
    verify.add_argument("directory", metavar="DIR", nargs="?", help="the content directory (default: the server's)")
    verify.add_argument("--full", action="store_true", help="read every file, even those the index vouches for")
    verify.add_argument(
        "--repair",
        action="store_true",
        help="as `wsusutil reset`: delete corrupt files and fetch every file the server's updates need that is "
        "missing or corrupt again from the upstream (the server is given by --dir)",
    )
    verify.add_argument("--dir", help="the server directory, for --repair (default: $UPMIRROR_DIR, else .)")
    add_common_options(verify)
    verify.set_defaults(handler=run_verify)

    dedup = commands.add_parser(
        "dedup",
        help="replace identical files by links",
        description="Find identical files (size, then prefix and suffix, then full blake3) under the directories and "
        "replace duplicates by hard links or shared extents; a file that changed since it was hashed is left alone.",
    )
    dedup.add_argument("directories", nargs="+", metavar="DIR")
    dedup.add_argument("--link", choices=("hardlink", "reflink"), default="hardlink", help="default hardlink")
    dedup.add_argument("--dry-run", action="store_true", help="report the groups, link nothing")
    dedup.add_argument("--min-size", type=int, default=1, help="ignore files smaller than this many bytes")
    add_common_options(dedup)
    dedup.set_defaults(handler=run_dedup)


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None, help="files worked on at once")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run_native(description: str, work: Callable[..., Report], *args: Any, **kwargs: Any) -> Report:
    """Runs a native call with the progress display; refused input becomes exit 2, OS errors exit 1."""
    if kwargs.get("threads") is not None and kwargs["threads"] < 1:
        raise InputError(f"--threads must be at least 1, not {kwargs['threads']}")
    with translate_errors(), progress_display(description) as progress:
        return work(*args, progress=progress, **kwargs)


@contextmanager
def translate_errors() -> Iterator[None]:
    try:
        yield
    except ValueError as error:
        raise InputError(str(error)) from error
    except OSError as error:
        raise CommandError(f"{error.filename}: {error.strerror}" if error.filename else str(error)) from error


def fields(report: object) -> dict[str, Any]:
    """A native report's fields for --json."""
    return {name: getattr(report, name) for name in dir(report) if not name.startswith("_")}


def print_json(document: dict[str, Any]) -> None:
    import json  # noqa: PLC0415

    # One write: json.dump writes piece by piece, tens of thousands of system calls for a large report.
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


def run_copy(args: argparse.Namespace) -> int:
    report = run_native(
        "Copying",
        copy_content,
        args.source,
        args.destination,
        hardlink=args.link,
        verify=args.verify,
        threads=args.threads,
        sync=not args.no_sync,
    )
    for relative in report.outside_layout:
        print_error(f"not copied, outside the content layout: {relative}")
    for relative in report.corrupt_source:
        print_error(f"not copied, its bytes do not match its name: {relative}")
    for relative, reason in report.failed:
        print_error(f"failed: {relative}: {reason}")
    if args.json:
        print_json(fields(report))
    else:
        methods = [f"{report.reflinked} reflinked"] if report.reflinked else []
        methods += [f"{report.hardlinked} hard-linked"] if report.hardlinked else []
        print(
            f"{report.files} files, {format_bytes(report.bytes)}: {report.copied} copied "
            f"({format_bytes(report.bytes_copied)}{', ' if methods else ''}{', '.join(methods)}), "
            f"{report.skipped} already present ({report.rechecked} read to confirm), "
            f"{len(report.corrupt_source)} corrupt in the source, {len(report.failed)} failed, "
            f"{len(report.outside_layout)} outside the layout"
        )
    return EXIT_FAILURE if report.corrupt_source or report.failed else EXIT_OK


def run_verify(args: argparse.Namespace) -> int:
    from pathlib import Path  # noqa: PLC0415

    server = server_directory(args)
    directory = Path(args.directory) if args.directory else server.content_dir(server.load())
    report = run_native("Verifying", verify_content, directory, full=args.full, threads=args.threads)
    if args.repair:
        return repair(args, server, directory, report)
    for relative in report.corrupt:
        print_error(f"corrupt: {relative}")
    for relative in report.missing:
        print_error(f"missing: {relative}")
    for relative, reason in report.unreadable:
        print_error(f"unreadable: {relative}: {reason}")
    for relative in report.outside_layout:
        print_error(f"outside the content layout: {relative}")
    if args.json:
        print_json(fields(report))
    else:
        print(
            f"{report.files} files, {format_bytes(report.bytes)}: {report.trusted + report.hashed_ok} good "
            f"({report.trusted} unchanged per the index, {report.hashed_ok} read), {len(report.corrupt)} corrupt, "
            f"{len(report.missing)} missing, {len(report.unreadable)} unreadable"
        )
    return EXIT_FAILURE if report.corrupt or report.missing or report.unreadable else EXIT_OK


def repair(args: argparse.Namespace, server: ServerDirectory, directory: Path, report: VerifyReport) -> int:
    """Deletes the corrupt files, then fetches every needed file that is not in place from the upstream."""
    from upmirror.sync import repair_content  # noqa: PLC0415

    if directory.resolve() != server.content_dir(server.load()).resolve():
        raise InputError(f"--repair works on the server's own content directory, not {directory}")
    for relative in report.corrupt:
        (directory / relative).unlink(missing_ok=True)
    with progress_display("Repairing") as progress:
        record = repair_content(server, progress=progress)
    result = {
        "corrupt_deleted": list(report.corrupt),
        "missing": list(report.missing),
        "downloaded": record.files_downloaded,
        "failed": record.failed_files,
    }
    if args.json:
        print_json(result)
    else:
        print(
            f"repair: {len(report.corrupt)} corrupt files deleted, {record.files_downloaded} files fetched again "
            f"from the upstream, {record.files_failed} failed"
        )
        for failure in record.failed_files:
            print_error(f"still failing: {failure}")
    return EXIT_FAILURE if record.files_failed else EXIT_OK


def run_dedup(args: argparse.Namespace) -> int:
    if args.min_size < 1:
        raise InputError(f"--min-size must be at least 1, not {args.min_size}")
    report = run_native(
        "Deduplicating",
        deduplicate,
        args.directories,
        link=args.link,
        dry_run=args.dry_run,
        min_size=args.min_size,
        threads=args.threads,
    )
    for path in report.changed:
        print_error(f"not linked, changed since it was hashed: {path}")
    for path, reason in report.failed:
        print_error(f"failed: {path}: {reason}")
    if args.json:
        print_json({**fields(report), "groups": [group_fields(g) for g in report.groups]})
    else:
        for group in report.groups:
            print(f"{group.blake3[:16]} {format_bytes(group.size)} x {len(group.paths)}:")
            for path in group.paths:
                print(f"    {path}")
        saved = (
            f"{format_bytes(report.bytes_duplicate)} would be saved (dry run)"
            if args.dry_run
            else f"{report.files_linked} files linked, {format_bytes(report.bytes_saved)} saved"
        )
        print(f"{report.files} files, {len(report.groups)} groups of identical files; {saved}")
    return EXIT_FAILURE if report.failed else EXIT_OK


def group_fields(group: DuplicateGroup) -> dict[str, Any]:
    return {"size": group.size, "blake3": group.blake3, "paths": group.paths}
