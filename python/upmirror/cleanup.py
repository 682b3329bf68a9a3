"""The Server Cleanup Wizard of WSUS: remove unused updates and update revisions, delete update files no update needs,
decline expired updates, and decline superseded updates (only when the superseding update is approved, the update is
not approved itself, and it has been on this server 30 days or more; upmirror has no client reports, so "not needed by
any client" always holds). ``dry_run`` lists what would go and the bytes, changing nothing.

In a hierarchy, clean the lowest servers first and work upward, as the WSUS documentation advises: a downstream that
still lists an update its upstream removed keeps it."""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from upmirror._native import forget_deleted_content, scan_content
from upmirror.errors import InputError
from upmirror.options import Options, ServerDirectory
from upmirror.store import Store


@dataclass
class CleanupReport:
    dry_run: bool
    declined_expired: list[str] = field(default_factory=list)
    declined_superseded: list[str] = field(default_factory=list)
    removed_updates: list[str] = field(default_factory=list)
    removed_revisions: int = 0
    removed_files: list[str] = field(default_factory=list)
    freed_bytes: int = 0


@dataclass
class CleanupChoice:
    unused: bool = False
    unneeded_files: bool = False
    expired: bool = False
    superseded: bool = False
    superseded_min_age_days: float = 30.0


def content_files(content: Path) -> Iterator[tuple[Path, str]]:
    """Files in the content layout (path, SHA-1), as the content store lists them; anything else in the directory
    is left alone."""
    if not content.is_dir():
        return
    for relative, sha1, _ in scan_content(content).files:
        yield content / relative, sha1


@contextmanager
def store_for(directory: ServerDirectory, *, dry_run: bool) -> Iterator[Store]:
    """The server's store, or for a dry run a private copy of it: the very same steps run on the copy, so the
    listing is exactly what a real run would do, and the copy is thrown away."""
    if not dry_run:
        with Store.open(directory.database_path) as store:
            yield store
        return
    with tempfile.TemporaryDirectory(prefix="upmirror-cleanup-") as scratch:
        copy = Path(scratch) / "dry-run.db"
        source = sqlite3.connect(directory.database_path)
        target = sqlite3.connect(copy)
        try:
            source.backup(target)
        finally:
            source.close()
            target.close()
        with Store.open(copy) as store:
            yield store


def clean(directory: ServerDirectory, choice: CleanupChoice, *, dry_run: bool) -> CleanupReport:
    options = directory.load()
    if options.source.replica and (choice.expired or choice.superseded):
        raise InputError("this server is a replica: it mirrors its upstream's declines and cannot decline updates")
    report = CleanupReport(dry_run=dry_run)
    with store_for(directory, dry_run=dry_run) as store:
        # Declines first, so that "unused" and "unneeded files" see their effect in the same run.
        if choice.expired:
            report.declined_expired = [u.id for u in store.cleanup_candidates("expired")]
        if choice.superseded:
            report.declined_superseded = [
                u.id for u in store.cleanup_candidates("superseded", min_age_days=choice.superseded_min_age_days)
            ]
        for update_id in report.declined_expired + report.declined_superseded:
            store.decline(update_id)
        if choice.unused:
            report.removed_updates = sorted(u.id for u in store.cleanup_candidates("unused"))
            report.removed_revisions = store.obsolete_revisions()
            store.remove_updates(report.removed_updates)
            store.remove_obsolete_revisions()
        if choice.unneeded_files:
            remove_unneeded_files(store, options, directory.content_dir(options), report, dry_run=dry_run)
    return report


def remove_unneeded_files(
    store: Store, options: Options, content: Path, report: CleanupReport, *, dry_run: bool
) -> None:
    """Deletes files no update needs under this server's content rules (declined, expired, removed, or in a
    language not selected). A root server keeps the files of every language and express files."""
    languages = None if options.is_root else options.languages
    express = options.content.express_files or options.is_root
    for path, sha1 in content_files(content):
        if any(True for _ in store.needed_files(languages=languages, only_approved=False, express=express, sha1=sha1)):
            continue
        report.removed_files.append(path.relative_to(content).as_posix())
        report.freed_bytes += path.stat().st_size
        if not dry_run:
            path.unlink()
    if not dry_run:
        forget_deleted_content(content, report.removed_files)
