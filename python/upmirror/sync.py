"""Synchronization of a downstream server with its upstream server, as WSUS does it (DESIGN.md, "How a sync flows"):

1. take the server's sync lock (a second sync at the same time is refused, not queued);
2. ask the upstream who it is; check the language selection against what it offers;
3. fetch categories since the category anchor (new products and classifications arrive on their own);
4. list revisions since the update anchor for the selected products, classifications and languages, asking in full
   for items added to the filter since the last successful sync;
5. fetch the metadata of revisions not yet stored, in batches within the upstream's limit, stored up to 2,000 updates
   per transaction; record expirations; then the same for the drivers matching the de-duplicated hardware IDs the
   clients reported (inventory-based driver synchronization); a replica also takes the upstream's approvals and
   declines;
6. only then advance the anchors: a failed or interrupted sync keeps the old ones and the next run picks up what is
   missing;
7. download every needed file not yet in the content directory, in job lists for the native engine (files that
   fail are named; the sync is then "partial" and the next run fetches only them);
8. record the attempt in the history.
"""

from __future__ import annotations

import datetime
import fcntl
import functools
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from itertools import islice
from typing import IO, TYPE_CHECKING, Final, TypeVar

import msgspec

from upmirror._native import DownloadJob, HttpClient, ProgressSnapshot
from upmirror.errors import InputError, UpmirrorError, one_line
from upmirror.filters import ProductTree, check_languages, delta_flags
from upmirror.model import (
    PRODUCT_KINDS,
    DriversRequest,
    FileRef,
    FilterItem,
    RevisionRef,
    RevisionsRequest,
    RevisionsResponse,
    Selection,
    ServerInfo,
    SyncRecord,
    SyncState,
    SyncTrigger,
    Update,
)
from upmirror.options import MICROSOFT_UPDATE, Options, ServerDirectory
from upmirror.store import Store, storage_failures_as_errors
from upmirror.upstream import ServerChangedError, Upstream, UpstreamError, UpstreamUnreachableError, build_client

if TYPE_CHECKING:
    from upmirror.serversync.client import WsusUpstream

LOCK_FILE: Final = "sync.lock"
# The process that starts ``upmirror sync`` may take the sync lock first and hand it down: the number of the lock
# file's inherited descriptor in this environment variable (so a second "synchronize now" is refused at once).
LOCK_FD_VARIABLE: Final = "UPMIRROR_SYNC_LOCK_FD"
# Files handed to the download engine per call: bounds the memory of one job list on huge catalogs.
DOWNLOAD_BATCH: Final = 20_000
# Updates stored per transaction (several upstream batches): each commit rewrites every index page it touched, and
# the store's keys (SHA-1s, hardware IDs) are random, so small transactions multiply the pages written to the WAL
# and checkpointed. Anchors still move only at the end; an interrupted sync keeps what was committed.
UPDATES_PER_TRANSACTION: Final = 2_000
# Update-data requests under way at once: the upstream's round trips overlap (a WAN upstream answers a batch in
# hundreds of milliseconds), and a group's requests still fit in the upstream's patience.
BATCHES_IN_FLIGHT: Final = 4

T = TypeVar("T")
EventCallback = Callable[[str], None]
ProgressCallback = Callable[[ProgressSnapshot], object]


class SyncBusyError(UpmirrorError):
    """Another synchronization of this server is running."""


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@contextmanager
def sync_lock(directory: ServerDirectory) -> Iterator[None]:
    """Holds the server's sync lock (an flock, released by the kernel even when the process is killed)."""
    with take_sync_lock(directory):
        yield


def take_sync_lock(directory: ServerDirectory) -> IO[str]:
    """The server's sync lock, held until the returned file is closed (and by every process that inherited it):
    the lock handed down by the process that started this one (``LOCK_FD_VARIABLE``), else taken now. Raises
    SyncBusyError while another process holds it."""
    handle = handed_down_lock(directory) or (directory.root / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a handed-down lock is already this file's: no wait
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise SyncBusyError(f"a synchronization of {directory.root} is already running ({holder})") from None
    except BaseException:
        handle.close()
        raise
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle


def handed_down_lock(directory: ServerDirectory) -> IO[str] | None:
    """The lock file's descriptor that the starting process named in ``LOCK_FD_VARIABLE`` (taken out of the
    environment, so it is used once), or None when there is none or it is not open on this server's lock file."""
    number = os.environ.pop(LOCK_FD_VARIABLE, "")
    if not number.isdigit():
        return None
    try:
        if not os.path.samestat(os.fstat(int(number)), (directory.root / LOCK_FILE).stat()):
            return None
    except OSError:
        return None
    return open(int(number), "a+")  # noqa: PTH123 (a descriptor, not a path)


class Synchronizer:
    """One synchronization run of a downstream server; ``run()`` returns its history record."""

    def __init__(
        self,
        directory: ServerDirectory,
        options: Options,
        store: Store,
        *,
        trigger: SyncTrigger = "manual",
        client: HttpClient | None = None,
        on_event: EventCallback | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.directory = directory
        self.options = options
        self.store = store
        self.client = client or build_client(options)
        self.upstream = connect_upstream(options, self.client, store)
        self.on_event = on_event or (lambda _: None)
        self.progress = progress
        self.record = SyncRecord(trigger=trigger, upstream=options.source.upstream, started=utc_now())

    def run(self) -> SyncRecord:
        self.record.id = self.store.add_sync_record(self.record)
        try:
            with storage_failures_as_errors(self.directory.database_path):
                started = time.perf_counter()
                self.synchronize_metadata()
                self.record.metadata_seconds = round(time.perf_counter() - started, 3)
                self.synchronize_content()
            self.record.result = "partial" if self.record.files_failed else "succeeded"
        except (UpmirrorError, OSError) as error:
            self.record.result = "failed"
            self.record.error = one_line(str(error))
            self.record.upstream_unreachable = isinstance(error, UpstreamUnreachableError)
            self.save_record(failing=True)
            raise
        except BaseException:
            self.record.result = "failed"
            self.record.error = "interrupted"
            self.save_record(failing=True)
            raise
        self.save_record(failing=False)
        return self.record

    def save_record(self, *, failing: bool) -> None:
        """Closes the attempt in the history. When the attempt already failed and the store cannot take even that
        (its own disk is full), the failure that ended the sync is the one to report; the next run closes the
        attempt as interrupted."""
        self.record.finished = utc_now()
        try:
            with storage_failures_as_errors(self.directory.database_path):
                self.store.save_sync_record(self.record)
        except UpmirrorError as error:
            if not failing:
                raise
            self.on_event(f"the history record could not be saved: {error}")

    # ---- metadata ----

    def synchronize_metadata(self) -> None:
        try:
            self.synchronize_metadata_once()
        except ServerChangedError as changed:
            # MS-WSUSSS: the upstream is another server now: every anchor is reset and the sync made in full.
            self.on_event(f"{changed}: synchronizing in full")
            self.store.save_sync_state(SyncState())
            self.synchronize_metadata_once()

    def synchronize_metadata_once(self) -> None:
        info = self.upstream.server_info()
        replica = self.options.source.replica
        if not replica:  # a replica takes the upstream's own languages below
            check_languages(self.options.languages, info.languages)
        state = self.store.sync_state()
        if state.upstream_id != info.id:
            # Anchors of another server mean nothing here: start over (stored updates are kept; nothing is lost).
            state = SyncState(upstream_id=info.id)

        categories = self.upstream.categories(state.category_anchor)
        self.record.categories = self.store.add_categories(categories.categories)
        self.on_event(f"categories: {self.record.categories} new or changed")
        if replica:
            self.follow_upstream_selection(info)
        options = self.options
        self.check_selection()

        request = RevisionsRequest(
            anchor=state.update_anchor,
            products=filter_items(options.products, state.products),
            classifications=filter_items(options.classifications, state.classifications),
            languages=filter_items(options.languages, state.languages),
        )
        approvals = None
        if replica:
            # Decisions are asked for before the listing: each one names an update that existed then, so the listing
            # after it brings that update and no decision is skipped for an update not yet stored. When the selection
            # grew, the updates it brings were decided before the anchor: ask for every decision.
            grew = any(not item.delta for item in (*request.products, *request.classifications, *request.languages))
            approvals = self.upstream.approvals("" if grew else state.approval_anchor)
        listing = self.upstream.revisions(request)
        self.take_listing(listing, info.max_updates_per_request, "revisions")

        # Inventory-based driver synchronization: only the de-duplicated roll-up of reported IDs goes upstream.
        hardware_ids, computer_ids = self.store.inventory_rollup()
        driver_anchor = state.driver_anchor
        if hardware_ids:
            drivers = self.upstream.drivers(
                DriversRequest(
                    anchor=state.driver_anchor,
                    hardware_ids=filter_items(hardware_ids, state.hardware_ids),
                    computer_hardware_ids=filter_items(computer_ids, state.computer_hardware_ids),
                )
            )
            self.take_listing(drivers, info.max_updates_per_request, "drivers for the reported hardware")
            if drivers.driver_sets or drivers.removed_driver_sets:
                changed = self.store.take_driver_sets(drivers.driver_sets, drivers.removed_driver_sets)
                self.on_event(f"driver sets: {changed} new, changed or removed")
            driver_anchor = drivers.anchor

        approval_anchor = state.approval_anchor
        if approvals is not None:
            self.record.approvals = self.store.mirror_approvals(approvals.approvals)
            approval_anchor = approvals.anchor

        # Metadata is committed: only now may the anchors move on.
        self.store.save_sync_state(
            SyncState(
                upstream_id=info.id,
                category_anchor=categories.anchor,
                update_anchor=listing.anchor,
                approval_anchor=approval_anchor,
                driver_anchor=driver_anchor,
                products=list(options.products),
                classifications=list(options.classifications),
                languages=list(options.languages),
                hardware_ids=hardware_ids,
                computer_hardware_ids=computer_ids,
            )
        )
        self.on_event(
            f"metadata: {self.record.new_updates} new updates, {self.record.revised_updates} revised, "
            f"{self.record.expired_updates} expired" + (f", {self.record.approvals} approvals" * options.source.replica)
        )

    def take_listing(self, listing: RevisionsResponse, batch_limit: int, what: str) -> None:
        """Fetches and stores the listed revisions not yet stored, in batches within the upstream's limit, several
        batches per transaction; records the expirations."""
        wanted = [ref for ref in listing.revisions if not self.store.has_revision(ref.update_id, ref.revision)]
        self.on_event(f"metadata: {len(listing.revisions)} {what} listed, {len(wanted)} to fetch")
        batches_per_transaction = max(1, UPDATES_PER_TRANSACTION // batch_limit)
        groups = batched(batched(wanted, batch_limit), batches_per_transaction)
        for updates in self.fetched_ahead(groups):
            self.store_updates(updates)
        known_expired = sorted(self.store.known_updates(listing.expired))
        self.record.expired_updates += self.store.expire(known_expired)

    def fetched_ahead(self, groups: Iterable[tuple[tuple[RevisionRef, ...], ...]]) -> Iterator[list[Update]]:
        """The updates of each group of batches, in order; the next group is fetched on a thread while the caller
        stores this one (the HTTP client and SQLite both release the GIL), so at most two groups are in memory.
        Within a group, BATCHES_IN_FLIGHT requests are under way at once, so the upstream's round trips overlap."""
        with (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="upmirror-metadata") as fetcher,
            ThreadPoolExecutor(max_workers=BATCHES_IN_FLIGHT, thread_name_prefix="upmirror-batch") as requests,
        ):
            upcoming: Future[list[Update]] | None = None
            for group in groups:
                following = fetcher.submit(self.fetch_group, group, requests)
                if upcoming is not None:
                    yield upcoming.result()
                upcoming = following
            if upcoming is not None:
                yield upcoming.result()

    def fetch_group(self, group: tuple[tuple[RevisionRef, ...], ...], requests: ThreadPoolExecutor) -> list[Update]:
        return [update for updates in requests.map(self.fetch_batch, group) for update in updates]

    def fetch_batch(self, batch: tuple[RevisionRef, ...]) -> list[Update]:
        updates = self.upstream.updates(batch)
        returned = {(u.id, u.revision) for u in updates}
        missing = [ref for ref in batch if (ref.update_id, ref.revision) not in returned]
        if missing:
            raise InputError(f"the upstream did not return revision {missing[0].revision} of {missing[0].update_id}")
        return updates

    def store_updates(self, updates: list[Update]) -> None:
        known = self.store.known_updates(u.id for u in updates)
        self.store.add_updates(updates, self.upstream.decryption_keys_of(updates))
        self.record.revised_updates += len(known)
        self.record.new_updates += len(updates) - len(known)

    def follow_upstream_selection(self, info: ServerInfo) -> None:
        """A replica synchronizes what its upstream synchronizes, and keeps following it as it changes. A root
        upstream holds everything it offers: every product family and product, classification and language. The
        selection is saved in the options, so ``options show`` and ``products list`` show what the replica holds."""
        selection = info.selection
        if selection is None:
            categories = self.store.categories()
            tree = ProductTree(c for c in categories if c.kind in PRODUCT_KINDS)
            selection = Selection(
                products=tree.normalize(sorted(tree.nodes)),
                classifications=sorted(c.id for c in categories if c.kind == "classification"),
                languages=sorted(info.languages),
            )
        followed = {
            "products": list(selection.products),
            "classifications": list(selection.classifications),
            "languages": list(selection.languages),
        }
        if all(getattr(self.options, key) == value for key, value in followed.items()):
            return
        self.options = msgspec.structs.replace(self.options, **followed)
        saved = self.directory.load()  # the file as it is now: other options may have changed since this sync began
        self.directory.save(msgspec.structs.replace(saved, **followed))
        self.on_event(
            f"selection: following the upstream ({len(selection.products)} products, "
            f"{len(selection.classifications)} classifications, {len(selection.languages)} languages)"
        )

    def check_selection(self) -> None:
        """Every selected product and classification must exist upstream (after categories arrived)."""
        for kind, selected in (("product", self.options.products), ("classification", self.options.classifications)):
            for category_id in selected:
                category = self.store.category(category_id)
                kinds = PRODUCT_KINDS if kind == "product" else ("classification",)
                if category is None or category.kind not in kinds:
                    raise InputError(f"the upstream offers no {kind} {category_id!r}; see `upmirror {kind}s list`")

    # ---- content ----

    def needed_files(self) -> Iterator[FileRef]:
        content = self.options.content
        if not content.store_locally:
            return iter(())
        return self.store.needed_files(
            languages=self.options.languages,
            only_approved=content.download_only_when_approved,
            express=content.express_files,
        )

    def synchronize_content(self) -> None:
        content_dir = self.directory.content_dir(self.options)
        transfer = self.options.transfer
        for files in batched(self.needed_files(), DOWNLOAD_BATCH):
            jobs = [
                DownloadJob.content(
                    self.upstream.content_url(f), f.sha1, f.extension, f.size, sha256=f.sha256, blake3=f.blake3
                )
                for f in files
            ]
            report = self.client.download(
                jobs,
                content_dir,
                connections=transfer.connections,
                chunk_size=transfer.chunk_size_mib << 20,
                retries=transfer.retries,
                progress=self.progress,
            )
            self.record.files_downloaded += report.placed
            self.record.files_present += report.skipped
            self.record.files_failed += report.failed
            self.record.bytes_downloaded += report.bytes_transferred
            if report.unreachable:  # the upstream stayed unreachable: the scheduler's retries take over
                raise UpstreamUnreachableError(report.unreachable)
            failed = [
                (file, outcome)
                for file, outcome in zip(files, report.outcomes, strict=True)
                if outcome.status == "failed"
            ]
            self.record.failed_files.extend(f"{file.name} ({file.sha1}): {outcome.reason}" for file, outcome in failed)
            self.ask_for_missing_files([file.sha1 for file, outcome in failed if " 404" in (outcome.reason or "")])
        self.on_event(
            f"content: {self.record.files_downloaded} files downloaded, {self.record.files_present} already present, "
            f"{self.record.files_failed} failed"
        )

    def ask_for_missing_files(self, sha1s: list[str]) -> None:
        """A WSUS upstream answers 404 for files it has not downloaded yet: DownloadFiles asks it to, and the next
        synchronization fetches them (they stay failed in this one)."""
        if not sha1s:
            return
        try:
            asked = self.upstream.download_files(sha1s)
        except UpmirrorError as error:
            self.on_event(f"content: could not ask the upstream to download {len(sha1s)} missing files: {error}")
            return
        if asked:
            self.on_event(
                f"content: asked the upstream to download {len(sha1s)} files it lacks; the next sync takes them"
            )


def connect_upstream(options: Options, client: HttpClient, store: Store) -> Upstream | WsusUpstream:
    """The client of the protocol the upstream speaks (``source.protocol``; auto: Microsoft Update speaks WSUS's, a
    server that answers upmirror's ``/api/v1/server`` speaks upmirror's, one without that path WSUS's)."""
    protocol = options.source.protocol
    if protocol != "wsus" and options.source.upstream != MICROSOFT_UPDATE:
        upstream = Upstream(options, client)
        if protocol == "upmirror" or speaks_upmirror(upstream):
            return upstream
    # The WSUS protocol's modules (XML, cabinets) load only for a WSUS upstream: an upmirror sync starts without them.
    from upmirror.serversync.client import SOAP_RETRYABLE_STATUS, WsusUpstream  # noqa: PLC0415

    send = functools.partial(Upstream(options, client).send, retry_status=SOAP_RETRYABLE_STATUS)
    wsus = WsusUpstream(options.source.upstream, send, account=f"upmirror-{store.server_id}")
    wsus.stored_categories = store.categories
    wsus.has_revision = store.has_revision
    return wsus


def speaks_upmirror(upstream: Upstream) -> bool:
    """Asks the upstream who it is, with the retries of any metadata call (the answer serves the sync too). Only a
    server without upmirror's API (a 404 or 405 for it, or an answer that is not upmirror's) is taken for WSUS; a
    failure of any other kind is left for the upmirror client to report."""
    try:
        upstream.server_info()
    except UpstreamUnreachableError:
        return True
    except UpstreamError as refused:
        return refused.status not in (404, 405) and refused.status is not None
    except UpmirrorError:
        return True
    return True


def batched(items: Iterable[T], size: int) -> Iterator[tuple[T, ...]]:
    """``itertools.batched`` of Python 3.12."""
    iterator = iter(items)
    while batch := tuple(islice(iterator, size)):
        yield batch


def filter_items(current: list[str], last_synced: list[str]) -> list[FilterItem]:
    return [FilterItem(item, delta) for item, delta in delta_flags(current, last_synced).items()]


def synchronize(
    directory: ServerDirectory,
    *,
    trigger: SyncTrigger = "manual",
    on_event: EventCallback | None = None,
    progress: ProgressCallback | None = None,
) -> SyncRecord:
    """Runs one synchronization of the server in ``directory`` now; see the module's description."""
    options = directory.load()
    if options.is_root:
        raise InputError(f"{directory.root} is a root server: it has no update source (set source.upstream)")
    with (
        storage_failures_as_errors(directory.database_path),
        sync_lock(directory),
        Store.open(directory.database_path) as store,
    ):
        close_interrupted_attempts(store)
        return Synchronizer(directory, options, store, trigger=trigger, on_event=on_event, progress=progress).run()


def repair_content(directory: ServerDirectory, *, progress: ProgressCallback | None = None) -> SyncRecord:
    """``wsusutil reset``: fetch from the upstream every file the server's updates need that is not in place (the
    content phase of a sync, without the metadata phase and without a history entry). Returns the counts."""
    options = directory.load()
    if options.is_root:
        raise InputError(f"{directory.root} is a root server: there is no upstream to fetch files from again")
    with (
        storage_failures_as_errors(directory.database_path),
        sync_lock(directory),
        Store.open(directory.database_path) as store,
    ):
        synchronizer = Synchronizer(directory, options, store, progress=progress)
        synchronizer.synchronize_content()
        return synchronizer.record


def close_interrupted_attempts(store: Store) -> None:
    """An attempt still "running" while we hold the lock was killed: record it as failed."""
    for record in store.sync_history(limit=5):
        if record.result == "running":
            store.save_sync_record(
                msgspec.structs.replace(record, result="failed", error="interrupted (the process ended)")
            )
