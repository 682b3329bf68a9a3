"""The metadata store: categories, every revision of every update, approvals and downstream tokens, in SQLite (WAL),
with versioned schema migrations and indexes shaped by what the filters and the sync protocol ask.

Anchors. One monotonic change counter per store: every stored revision, expiration, category change and approval
takes the next value, in the same transaction as the change itself. "Since anchor A" means ``change > A``. Clients
see the counter as an opaque string; "" means "from the beginning"; anything else that is not a value this store has
handed out (malformed, negative, or from the future) is refused.

Which updates a revisions request returns (the filter rule of WSUS synchronization). Let P be the products the
request names, each expanded to itself and all its descendants in the tree as it is now (so a parent stands for its
present and future children), C the classifications and L the languages. An update (its latest revision) *matches*
when it has a product in P, its classification is in C, and it has a language in L or is language-neutral. Items
with ``delta`` false were newly added to the downstream's filter; call their parts P_new, C_new, L_new. The answer
lists every non-expired matching update that

  - changed since the anchor (a new update or a new revision: ``change > anchor``), or
  - matches through a new item: it has a product in P_new, or its classification is in C_new, or it carries a
    language in L_new,

so a newly selected product, classification or language brings in full everything the whole filter now accepts
through it (a new language brings every selected update carrying that language), while the rest stays incremental.
Expired lists the matching updates whose expiration came after the anchor.

Memory stays flat whatever the catalog size: listings are SQL over indexes, read page by page from a cursor inside
one read transaction (a consistent snapshot with its anchor); nothing materialises the catalog in Python.
"""

from __future__ import annotations

import datetime
import errno
import hashlib
import json
import re
import secrets
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import msgspec

from upmirror.errors import DiskFullError, InputError, UpmirrorError
from upmirror.model import (
    Approval,
    ApprovalAction,
    Category,
    DriversRequest,
    FileRef,
    FilterItem,
    InventoryReport,
    RevisionsRequest,
    SyncRecord,
    Update,
    category_decoder,
    msgpack_encoder,
    sync_record_decoder,
    update_decoder,
)

PAGE_ROWS: Final = 5000
TokenRole = Literal["downstream", "admin"]
TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")

# Schema migrations: entry i brings a store from user_version i to i + 1. Never edit a released entry; append.
MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE change_counter (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
    INSERT INTO change_counter VALUES (1, 0);
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE categories (
        cid INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        parent TEXT,
        change INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    CREATE INDEX categories_change ON categories (change);
    CREATE INDEX categories_parent ON categories (parent);
    -- One row per update, describing its latest revision; the filter columns are integers for fast scans.
    CREATE TABLE updates (
        uid INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        revision INTEGER NOT NULL,
        classification INTEGER NOT NULL,
        neutral INTEGER NOT NULL,
        expired INTEGER NOT NULL,
        change INTEGER NOT NULL,
        -- When the update first arrived on this server (the cleanup's "on the server 30 days or more").
        arrived TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
    );
    CREATE INDEX updates_change ON updates (change);
    -- Every revision ever stored, as the MessagePack of its Update record (sent to downstreams as it is).
    CREATE TABLE revisions (
        uid INTEGER NOT NULL,
        revision INTEGER NOT NULL,
        change INTEGER NOT NULL,
        data BLOB NOT NULL,
        UNIQUE (uid, revision)
    );
    CREATE TABLE update_products (uid INTEGER NOT NULL, product INTEGER NOT NULL, PRIMARY KEY (uid, product))
        WITHOUT ROWID;
    CREATE INDEX update_products_product ON update_products (product, uid);
    CREATE TABLE update_languages (uid INTEGER NOT NULL, language TEXT NOT NULL, PRIMARY KEY (uid, language))
        WITHOUT ROWID;
    CREATE INDEX update_languages_language ON update_languages (language, uid);
    CREATE TABLE languages (language TEXT PRIMARY KEY) WITHOUT ROWID;
    CREATE TABLE hardware_ids (hardware_id TEXT NOT NULL, uid INTEGER NOT NULL, PRIMARY KEY (hardware_id, uid))
        WITHOUT ROWID;
    CREATE TABLE computer_hardware_ids (
        computer_hardware_id TEXT NOT NULL, uid INTEGER NOT NULL, PRIMARY KEY (computer_hardware_id, uid)
    ) WITHOUT ROWID;
    CREATE INDEX computer_hardware_ids_uid ON computer_hardware_ids (uid);
    -- Files of every stored revision, by SHA-1 (the content layout's key).
    CREATE TABLE files (
        sha1 TEXT PRIMARY KEY, size INTEGER NOT NULL, name TEXT NOT NULL, sha256 TEXT, blake3 TEXT
    ) WITHOUT ROWID;
    CREATE TABLE approvals (uid INTEGER PRIMARY KEY, action TEXT NOT NULL, change INTEGER NOT NULL);
    CREATE INDEX approvals_change ON approvals (change);
    CREATE TABLE tokens (
        name TEXT PRIMARY KEY, sha256 TEXT NOT NULL UNIQUE, created TEXT NOT NULL, role TEXT NOT NULL
    );
    -- The files of each update's latest revision, with what decides whether a server needs them.
    CREATE TABLE update_files (
        uid INTEGER NOT NULL, sha1 TEXT NOT NULL, languages TEXT NOT NULL, express INTEGER NOT NULL,
        PRIMARY KEY (uid, sha1)
    ) WITHOUT ROWID;
    CREATE INDEX update_files_sha1 ON update_files (sha1);
    -- Client device inventory (inventory-based driver synchronization): per device, never sent upstream as such.
    CREATE TABLE inventory (
        device TEXT NOT NULL, kind TEXT NOT NULL, hardware_id TEXT NOT NULL, PRIMARY KEY (device, kind, hardware_id)
    ) WITHOUT ROWID;
    CREATE INDEX inventory_id ON inventory (kind, hardware_id);
    -- Synchronization attempts (the history of the WSUS console), each a MessagePack SyncRecord.
    CREATE TABLE sync_history (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
    """,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)


def parse_anchor(anchor: str, current: int) -> int:
    """The change number an anchor stands for; "" is 0. Refuses what this store cannot have handed out."""
    if anchor == "":
        return 0
    if not anchor.isascii() or not anchor.isdigit() or len(anchor) > 19:
        raise InputError(f"anchor {anchor!r} is malformed: pass back the anchor a previous answer returned, or ''")
    value = int(anchor)
    if value > current:
        raise InputError(f"anchor {anchor!r} is ahead of this server (its latest is {current}): it is not from here")
    return value


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Listing:
    """The answer to a revisions or drivers request, read lazily from one consistent snapshot: ``anchor`` is the
    change counter of that snapshot; ``revisions`` yields pages of (update id, revision); ``expired`` pages of
    update ids."""

    anchor: int
    revisions: Iterator[list[tuple[str, int]]]
    expired: Iterator[list[str]]


@dataclass(frozen=True)
class TokenInfo:
    name: str
    created: str
    role: TokenRole


class Store:
    """One connection to a server's metadata database. Not shared between threads: open one per thread."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self.connection = connection
        self.path = path
        # Category ID -> (internal key, kind) for storing updates; categories are few and change rarely.
        self._category_keys: dict[str, tuple[int, str]] = {}

    # ---- opening, migrations, transactions ----

    @classmethod
    def open(cls, path: Path, *, create: bool = False) -> Store:
        """Opens (and migrates) the store at ``path``; ``create`` makes a new one when it does not exist."""
        if not create and not path.is_file():
            raise InputError(f"no metadata database at {path} (is this a server directory? run `upmirror init`)")
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA busy_timeout = 30000")
        connection.execute("PRAGMA foreign_keys = ON")
        store = cls(connection, path)
        store._migrate()
        return store

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _migrate(self) -> None:
        (version,) = self.connection.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise InputError(f"{self.path} has schema version {version}, newer than this upmirror ({SCHEMA_VERSION})")
        for number in range(version, SCHEMA_VERSION):
            # One script per step, in its own transaction with its version number: a crash leaves a whole step.
            self.connection.executescript(
                f"BEGIN IMMEDIATE; {MIGRATIONS[number]}; PRAGMA user_version = {number + 1}; COMMIT;"
            )
        self.connection.execute("INSERT OR IGNORE INTO settings VALUES ('server_id', ?)", (str(uuid.uuid4()),))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction (taken at once, so two writers queue instead of failing half-way)."""
        self.connection.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.connection.execute("COMMIT")
        except BaseException:
            # SQLite has already rolled back after some failures (a full disk): a second rollback would replace the
            # real error with "no transaction is active".
            if self.connection.in_transaction:
                self.connection.execute("ROLLBACK")
            raise

    @contextmanager
    def snapshot(self) -> Iterator[int]:
        """A read transaction: everything read inside sees one state of the store, whose anchor it yields."""
        self.connection.execute("BEGIN")
        try:
            yield self.anchor()
        finally:
            self.connection.execute("COMMIT")

    def anchor(self) -> int:
        (value,) = self.connection.execute("SELECT value FROM change_counter").fetchone()
        return int(value)

    def _next_change(self) -> int:
        (value,) = self.connection.execute("UPDATE change_counter SET value = value + 1 RETURNING value").fetchone()
        return int(value)

    @property
    def server_id(self) -> str:
        (value,) = self.connection.execute("SELECT value FROM settings WHERE key = 'server_id'").fetchone()
        return str(value)

    # ---- categories ----

    def add_categories(self, categories: Iterable[Category]) -> int:
        """Adds new categories and applies changed ones (one change number each); returns how many changed.
        A product's parent must already be stored or come earlier in ``categories``."""
        changed = 0
        self._category_keys.clear()
        with self.transaction():
            for category in categories:
                changed += self._add_category(category)
        return changed

    def _add_category(self, category: Category) -> bool:
        data = msgpack_encoder.encode(category)
        row = self.connection.execute("SELECT data FROM categories WHERE id = ?", (category.id,)).fetchone()
        if row is not None and row[0] == data:
            return False
        if category.parent is not None and self._category_kind(category.parent) != "family":
            raise InputError(f"category {category.id} names parent {category.parent}, not a product family")
        self.connection.execute(
            "INSERT INTO categories (id, kind, parent, change, data) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, parent = excluded.parent, "
            "change = excluded.change, data = excluded.data",
            (category.id, category.kind, category.parent, self._next_change(), data),
        )
        return True

    def _category_key(self, category_id: str, kinds: tuple[str, ...]) -> int:
        """The internal key of a stored category of one of ``kinds``; anything else is bad input naming it."""
        known = self._category_keys.get(category_id)
        if known is None:
            row = self.connection.execute("SELECT cid, kind FROM categories WHERE id = ?", (category_id,)).fetchone()
            if row is not None:
                known = self._category_keys[category_id] = (int(row[0]), str(row[1]))
        if known is None or known[1] not in kinds:
            raise InputError(f"unknown {kinds[-1]} {category_id!r}")
        return known[0]

    def _category_kind(self, category_id: str) -> str | None:
        row = self.connection.execute("SELECT kind FROM categories WHERE id = ?", (category_id,)).fetchone()
        return None if row is None else str(row[0])

    def categories_since(self, anchor: str) -> tuple[int, list[Category]]:
        """Categories added or changed since ``anchor``, families before their products (the tree is small)."""
        with self.snapshot() as current:
            since = parse_anchor(anchor, current)
            rows = self.connection.execute(
                "SELECT data FROM categories WHERE change > ? ORDER BY kind = 'product', change", (since,)
            ).fetchall()
        return current, [category_decoder.decode(data) for (data,) in rows]

    def categories(self) -> list[Category]:
        return self.categories_since("")[1]

    def category(self, category_id: str) -> Category | None:
        row = self.connection.execute("SELECT data FROM categories WHERE id = ?", (category_id,)).fetchone()
        return None if row is None else category_decoder.decode(row[0])

    def _category_ids(self, ids: Iterable[str], kind: str, *, expand: bool) -> list[int]:
        """Internal keys of the named categories of ``kind`` (products: expanded to every descendant in the tree as
        it is now); an unknown ID is bad input naming it."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        kinds = ("family", "product") if kind == "product" else (kind,)
        rows = self.connection.execute(
            "SELECT id, cid FROM categories WHERE id IN (SELECT value FROM json_each(?)) "
            "AND kind IN (SELECT value FROM json_each(?))",
            (json.dumps(wanted), json.dumps(kinds)),
        ).fetchall()
        found: dict[str, int] = dict(rows)
        unknown = [category_id for category_id in wanted if category_id not in found]
        if unknown:
            raise InputError(
                f"unknown {kind} {unknown[0]!r}" + (f" (and {len(unknown) - 1} more)" * (len(unknown) > 1))
            )
        if not expand:
            return list(found.values())
        expanded = self.connection.execute(
            "WITH RECURSIVE tree(cid, id) AS ("
            " SELECT cid, id FROM categories WHERE cid IN (SELECT value FROM json_each(?))"
            " UNION SELECT c.cid, c.id FROM categories c JOIN tree ON c.parent = tree.id)"
            " SELECT cid FROM tree",
            (json.dumps(list(found.values())),),
        ).fetchall()
        return [cid for (cid,) in expanded]

    # ---- updates ----

    def add_updates(self, updates: Iterable[Update]) -> int:
        """Stores revisions in one transaction; returns how many were new. Every revision is kept; the newest one
        describes the update for filtering. A revision already stored is skipped (adding is idempotent). The
        update's products and classification must be stored categories."""
        added = 0
        with self.transaction():
            rows = _UpdateRows()
            for update in updates:
                added += self._add_update(update, rows)
            rows.write(self.connection)
        return added

    def _add_update(self, update: Update, rows: _UpdateRows) -> bool:
        """Stores one revision: the update's own row and the revision at once, its files, products, languages and
        hardware IDs gathered into ``rows`` (written for many updates at a time: one statement per table instead of
        one per table and update)."""
        row = self.connection.execute("SELECT uid, revision FROM updates WHERE id = ?", (update.id,)).fetchone()
        if row is not None:
            uid, latest = row
            exists = self.connection.execute(
                "SELECT 1 FROM revisions WHERE uid = ? AND revision = ?", (uid, update.revision)
            ).fetchone()
            if exists:
                return False
        classification = self._category_key(update.classification, ("classification",))
        products = [self._category_key(product, ("family", "product")) for product in update.products]
        change = self._next_change()
        if row is None:
            (uid,) = self.connection.execute(
                "INSERT INTO updates (id, revision, classification, neutral, expired, change) "
                "VALUES (?, ?, ?, ?, ?, ?) RETURNING uid",
                (update.id, update.revision, classification, not update.languages, update.expired, change),
            ).fetchone()
            latest = 0
        self.connection.execute(
            "INSERT INTO revisions (uid, revision, change, data) VALUES (?, ?, ?, ?)",
            (uid, update.revision, change, msgpack_encoder.encode(update)),
        )
        rows.files.extend((f.sha1, f.size, f.name, f.sha256, f.blake3) for f in update.files)
        if update.revision < latest:
            return True  # an older revision: kept, but the newest still describes the update
        if latest:
            # A newer revision replaces what the update's rows say (gathered rows of this update go first).
            if uid in rows.uids:
                rows.write(self.connection)
            self.connection.execute(
                "UPDATE updates SET revision = ?, classification = ?, neutral = ?, expired = ?, change = ? "
                "WHERE uid = ?",
                (update.revision, classification, not update.languages, update.expired, change, uid),
            )
            for table in _UPDATE_TABLES:
                self.connection.execute(f"DELETE FROM {table} WHERE uid = ?", (uid,))  # noqa: S608 (fixed names)
        rows.uids.add(uid)
        languages = sorted(set(update.languages))
        rows.products.extend((uid, product) for product in products)
        rows.update_languages.extend((uid, language) for language in languages)
        rows.languages.update(languages)
        rows.hardware_ids.extend((hardware_id, uid) for hardware_id in update.hardware_ids)
        rows.computer_hardware_ids.extend((computer, uid) for computer in update.computer_hardware_ids)
        rows.update_files.extend((uid, f.sha1, json.dumps(sorted(f.languages)), f.express) for f in update.files)
        return True

    def expire(self, update_ids: Iterable[str]) -> int:
        """Marks updates expired (a change each); returns how many were not expired before. Unknown IDs are bad
        input."""
        expired = 0
        with self.transaction():
            for update_id in update_ids:
                expired += self._expire_update(update_id)
        return expired

    def _expire_update(self, update_id: str) -> bool:
        uid, revision, already = self._update_row(update_id)
        if already:
            return False
        change = self._next_change()
        latest = self._revision_blob(uid, revision)
        record = msgspec.structs.replace(update_decoder.decode(latest), expired=True)
        self.connection.execute(
            "UPDATE revisions SET data = ? WHERE uid = ? AND revision = ?",
            (msgpack_encoder.encode(record), uid, revision),
        )
        self.connection.execute("UPDATE updates SET expired = 1, change = ? WHERE uid = ?", (change, uid))
        return True

    def _update_row(self, update_id: str) -> tuple[int, int, bool]:
        row = self.connection.execute(
            "SELECT uid, revision, expired FROM updates WHERE id = ?", (update_id,)
        ).fetchone()
        if row is None:
            raise InputError(f"unknown update {update_id!r}")
        return int(row[0]), int(row[1]), bool(row[2])

    def _revision_blob(self, uid: int, revision: int) -> bytes:
        (data,) = self.connection.execute(
            "SELECT data FROM revisions WHERE uid = ? AND revision = ?", (uid, revision)
        ).fetchone()
        return bytes(data)

    def update(self, update_id: str, revision: int | None = None) -> Update | None:
        """One revision of an update (its latest when ``revision`` is None), or None when not stored."""
        row = self.connection.execute(
            "SELECT r.data FROM updates u JOIN revisions r ON r.uid = u.uid "
            "WHERE u.id = ? AND r.revision = coalesce(?, u.revision)",
            (update_id, revision),
        ).fetchone()
        return None if row is None else update_decoder.decode(row[0])

    def revision_blobs(self, refs: Sequence[tuple[str, int]]) -> list[bytes]:
        """The stored MessagePack of each (update id, revision), in order; an unknown one is bad input naming it."""
        blobs = []
        for update_id, revision in refs:
            row = self.connection.execute(
                "SELECT r.data FROM updates u JOIN revisions r ON r.uid = u.uid WHERE u.id = ? AND r.revision = ?",
                (update_id, revision),
            ).fetchone()
            if row is None:
                raise LookupError(f"unknown revision {revision} of update {update_id}")
            blobs.append(bytes(row[0]))
        return blobs

    def latest_revisions(self) -> Iterator[tuple[str, int, bool]]:
        """(update id, latest revision, expired) of every update, in storage order, read page by page."""
        cursor = self.connection.execute("SELECT id, revision, expired FROM updates ORDER BY uid")
        while page := cursor.fetchmany(PAGE_ROWS):
            for update_id, revision, expired in page:
                yield update_id, revision, bool(expired)

    def update_counts_by_classification(self) -> dict[str, int]:
        """How many (non-expired) updates the store holds in each classification, by title."""
        rows = self.connection.execute(
            "SELECT c.data, count(*) FROM updates u JOIN categories c ON c.cid = u.classification"
            " WHERE NOT u.expired GROUP BY u.classification ORDER BY count(*) DESC"
        )
        return {category_decoder.decode(data).title: int(count) for data, count in rows}

    def update_count(self) -> int:
        (count,) = self.connection.execute("SELECT count(*) FROM updates").fetchone()
        return int(count)

    def revision_count(self) -> int:
        (count,) = self.connection.execute("SELECT count(*) FROM revisions").fetchone()
        return int(count)

    def languages(self) -> list[str]:
        """Every language some stored update carries: what this server offers downstream."""
        return [language for (language,) in self.connection.execute("SELECT language FROM languages ORDER BY 1")]

    def mean_file_size(self) -> float | None:
        (mean,) = self.connection.execute("SELECT avg(size) FROM files").fetchone()
        return None if mean is None else float(mean)

    def content_files(self) -> Iterator[FileRef]:
        """Every file some stored revision names, by SHA-1, read page by page."""
        cursor = self.connection.execute("SELECT sha1, size, name, sha256, blake3 FROM files ORDER BY sha1")
        while page := cursor.fetchmany(PAGE_ROWS):
            for sha1, size, name, sha256, blake3 in page:
                yield FileRef(sha1=sha1, size=size, name=name, sha256=sha256, blake3=blake3)

    # ---- the filter (see the module's description) ----

    @contextmanager
    def revisions_since(self, request: RevisionsRequest) -> Iterator[Listing]:
        """The updates a downstream with this filter must fetch, and those that expired, since its anchor."""
        with self.snapshot() as current:
            since = parse_anchor(request.anchor, current)
            offered = set(self.languages())
            unknown = [item.id for item in request.languages if item.id not in offered]
            if unknown:
                raise InputError(f"language {unknown[0]!r} is not offered by this server")
            parameters = {
                "since": since,
                "products": self._items(request.products, "product", fresh=None),
                "products_new": self._items(request.products, "product", fresh=True),
                "classifications": self._items(request.classifications, "classification", fresh=None),
                "classifications_new": self._items(request.classifications, "classification", fresh=True),
                "languages": _ids(request.languages, fresh=None),
                "languages_new": _ids(request.languages, fresh=True),
            }
            matches = (
                "EXISTS (SELECT 1 FROM update_products p WHERE p.uid = u.uid"
                " AND p.product IN (SELECT value FROM json_each(:products)))"
                " AND u.classification IN (SELECT value FROM json_each(:classifications))"
                " AND (u.neutral OR EXISTS (SELECT 1 FROM update_languages l WHERE l.uid = u.uid"
                " AND l.language IN (SELECT value FROM json_each(:languages))))"
            )
            new_item_tests = [
                "EXISTS (SELECT 1 FROM update_products p WHERE p.uid = u.uid"
                " AND p.product IN (SELECT value FROM json_each(:products_new)))"
                if any(not item.delta for item in request.products)
                else "",
                "u.classification IN (SELECT value FROM json_each(:classifications_new))"
                if any(not item.delta for item in request.classifications)
                else "",
                "EXISTS (SELECT 1 FROM update_languages l WHERE l.uid = u.uid"
                " AND l.language IN (SELECT value FROM json_each(:languages_new)))"
                if any(not item.delta for item in request.languages)
                else "",
            ]
            # Without new items the answer is only what changed: then the change index drives the query, so a sync
            # with nothing new costs almost nothing whatever the catalog's size.
            wanted = " OR ".join(["u.change > :since", *filter(None, new_item_tests)])
            revisions = self.connection.execute(
                f"SELECT u.id, u.revision FROM updates u WHERE NOT u.expired AND {matches}"  # noqa: S608 (fixed SQL)
                f" AND ({wanted}) ORDER BY u.uid",
                parameters,
            )
            expired = self.connection.execute(
                f"SELECT u.id FROM updates u WHERE u.expired AND u.change > :since AND {matches} ORDER BY u.uid",  # noqa: S608
                parameters,
            )
            yield Listing(current, _pages(revisions), (list(ids) for ids in _single_column_pages(expired)))

    def _items(self, items: Sequence[FilterItem], kind: str, *, fresh: bool | None) -> str:
        """The internal keys of the filter items (all, or only the new ones when ``fresh``) as a JSON array."""
        chosen = [item.id for item in items if fresh is None or (not item.delta) == fresh]
        return json.dumps(self._category_ids(chosen, kind, expand=kind == "product"))

    @contextmanager
    def drivers_since(self, request: DriversRequest) -> Iterator[Listing]:
        """Driver updates for an inventory roll-up: those with a reported hardware ID and, when they target
        particular computers, a reported computer hardware ID; changed since the anchor or matching a newly
        reported ID (the same delta rule as revisions)."""
        with self.snapshot() as current:
            since = parse_anchor(request.anchor, current)
            parameters = {
                "since": since,
                "hardware": _ids(request.hardware_ids, fresh=None),
                "hardware_new": _ids(request.hardware_ids, fresh=True),
                "computers": _ids(request.computer_hardware_ids, fresh=None),
                "computers_new": _ids(request.computer_hardware_ids, fresh=True),
            }
            candidates = (
                "WITH candidates(uid) AS (SELECT DISTINCT h.uid FROM hardware_ids h"
                " WHERE h.hardware_id IN (SELECT value FROM json_each(:hardware)))"
                " SELECT {columns} FROM candidates JOIN updates u ON u.uid = candidates.uid"
                " WHERE (NOT EXISTS (SELECT 1 FROM computer_hardware_ids c WHERE c.uid = u.uid)"
                " OR EXISTS (SELECT 1 FROM computer_hardware_ids c WHERE c.uid = u.uid"
                " AND c.computer_hardware_id IN (SELECT value FROM json_each(:computers))))"
                " AND {condition} ORDER BY u.uid"
            )
            through_new_id = (
                "EXISTS (SELECT 1 FROM hardware_ids h WHERE h.uid = u.uid"
                " AND h.hardware_id IN (SELECT value FROM json_each(:hardware_new)))"
                " OR EXISTS (SELECT 1 FROM computer_hardware_ids c WHERE c.uid = u.uid"
                " AND c.computer_hardware_id IN (SELECT value FROM json_each(:computers_new)))"
            )
            revisions = self.connection.execute(
                candidates.format(
                    columns="u.id, u.revision", condition=f"NOT u.expired AND (u.change > :since OR {through_new_id})"
                ),
                parameters,
            )
            expired = self.connection.execute(
                candidates.format(columns="u.id", condition="u.expired AND u.change > :since"), parameters
            )
            yield Listing(current, _pages(revisions), (list(ids) for ids in _single_column_pages(expired)))

    # ---- approvals (replicas mirror them) ----

    def approve(self, update_id: str) -> None:
        self._set_approval(update_id, "approved")

    def decline(self, update_id: str) -> None:
        self._set_approval(update_id, "declined")

    def reinstate(self, update_id: str) -> None:
        """A declined update goes back to "not approved" (WSUS's reinstate)."""
        self._set_approval(update_id, "not_approved")

    def _set_approval(self, update_id: str, action: ApprovalAction) -> None:
        with self.transaction():
            uid = self._update_row(update_id)[0]
            row = self.connection.execute("SELECT action FROM approvals WHERE uid = ?", (uid,)).fetchone()
            if (row[0] if row else "not_approved") == action:
                return
            self.connection.execute(
                "INSERT INTO approvals (uid, action, change) VALUES (?, ?, ?) "
                "ON CONFLICT (uid) DO UPDATE SET action = excluded.action, change = excluded.change",
                (uid, action, self._next_change()),
            )

    def mirror_approvals(self, approvals: Iterable[Approval]) -> int:
        """A replica takes its upstream's decisions as they are; decisions on updates it does not hold (outside its
        filter) are skipped. Returns how many changed something here."""
        changed = 0
        for approval in approvals:
            row = self.connection.execute("SELECT uid FROM updates WHERE id = ?", (approval.update_id,)).fetchone()
            if row is not None and self.approval(approval.update_id) != approval.action:
                self._set_approval(approval.update_id, approval.action)
                changed += 1
        return changed

    def approval(self, update_id: str) -> ApprovalAction:
        uid = self._update_row(update_id)[0]
        row = self.connection.execute("SELECT action FROM approvals WHERE uid = ?", (uid,)).fetchone()
        action: ApprovalAction = row[0] if row else "not_approved"
        return action

    def approvals_since(self, anchor: str) -> tuple[int, list[Approval]]:
        """Approvals, declines and reinstatements since ``anchor`` (each update's latest decision), oldest first."""
        with self.snapshot() as current:
            since = parse_anchor(anchor, current)
            rows = self.connection.execute(
                "SELECT u.id, a.action FROM approvals a JOIN updates u ON u.uid = a.uid "
                "WHERE a.change > ? ORDER BY a.change",
                (since,),
            ).fetchall()
        return current, [Approval(update_id=update_id, action=action) for update_id, action in rows]

    # ---- what a server needs of its content, and its synchronization state and history ----

    def needed_files(
        self, *, languages: Sequence[str] | None, only_approved: bool, express: bool, sha1: str | None = None
    ) -> Iterator[FileRef]:
        """Every file the content directory should hold, once each by SHA-1, read page by page: files of the latest
        revision of updates that are neither expired nor declined (and approved, when content waits for approval),
        whose languages include a selected one or are neutral (``languages`` None: every file), skipping express
        files unless asked. ``sha1`` narrows the answer to that one file (is it needed?)."""
        conditions = ["NOT u.expired", "coalesce(a.action, 'not_approved') != 'declined'"]
        if sha1 is not None:
            conditions.append("uf.sha1 = :sha1")
        if only_approved:
            conditions.append("a.action = 'approved'")
        if not express:
            conditions.append("NOT uf.express")
        if languages is not None:
            conditions.append(
                "(uf.languages = '[]' OR EXISTS (SELECT 1 FROM json_each(uf.languages) l"
                " WHERE l.value IN (SELECT value FROM json_each(:languages))))"
            )
        # Driven by the files table in its key order with an EXISTS test per file: rows stream from the first one,
        # with no temporary B-trees for DISTINCT and ORDER BY (which made a no-change sync wait for the whole set).
        cursor = self.connection.execute(
            "SELECT f.sha1, f.size, f.name, f.sha256, f.blake3 FROM files f WHERE EXISTS (SELECT 1"  # noqa: S608 (fixed SQL)
            " FROM update_files uf JOIN updates u ON u.uid = uf.uid LEFT JOIN approvals a ON a.uid = u.uid"
            f" WHERE uf.sha1 = f.sha1 AND {' AND '.join(conditions)}) ORDER BY f.sha1",
            {"languages": json.dumps(list(languages or [])), "sha1": sha1},
        )
        while page := cursor.fetchmany(PAGE_ROWS):
            for digest, size, name, sha256, blake3 in page:
                yield FileRef(sha1=digest, size=size, name=name, sha256=sha256, blake3=blake3)

    def known_updates(self, update_ids: Iterable[str]) -> set[str]:
        """Which of these updates the store holds (one query; no record is decoded)."""
        rows = self.connection.execute(
            "SELECT id FROM updates WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(list(update_ids)),)
        )
        return {update_id for (update_id,) in rows}

    def has_revision(self, update_id: str, revision: int) -> bool:
        return (
            self.connection.execute(
                "SELECT 1 FROM updates u JOIN revisions r ON r.uid = u.uid WHERE u.id = ? AND r.revision = ?",
                (update_id, revision),
            ).fetchone()
            is not None
        )

    def sync_state(self) -> SyncState:
        row = self.connection.execute("SELECT value FROM settings WHERE key = 'sync_state'").fetchone()
        return SyncState() if row is None else msgspec.json.decode(row[0], type=SyncState)

    def save_sync_state(self, state: SyncState) -> None:
        with self.transaction():
            self.connection.execute(
                "INSERT INTO settings VALUES ('sync_state', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (msgspec.json.encode(state).decode(),),
            )

    def add_sync_record(self, record: SyncRecord) -> int:
        """Stores a new history entry and returns its number (the record's ``id`` is set from it)."""
        with self.transaction():
            (number,) = self.connection.execute("INSERT INTO sync_history (data) VALUES (x'') RETURNING id").fetchone()
            self.connection.execute(
                "UPDATE sync_history SET data = ? WHERE id = ?",
                (msgpack_encoder.encode(msgspec.structs.replace(record, id=number)), number),
            )
        return int(number)

    def save_sync_record(self, record: SyncRecord) -> None:
        with self.transaction():
            self.connection.execute(
                "UPDATE sync_history SET data = ? WHERE id = ?", (msgpack_encoder.encode(record), record.id)
            )

    def sync_history(self, limit: int = 50) -> list[SyncRecord]:
        """The latest attempts, newest first."""
        rows = self.connection.execute("SELECT data FROM sync_history ORDER BY id DESC LIMIT ?", (limit,))
        return [sync_record_decoder.decode(data) for (data,) in rows]

    # ---- the Server Cleanup Wizard's queries and removals ----

    def cleanup_candidates(self, kind: str, *, min_age_days: float = 0) -> Iterator[Update]:
        """Updates a cleanup option applies to, latest revision each, read page by page:
        ``unused``: declined, or expired and not approved (nothing will install them again);
        ``expired``: expired and not yet declined;
        ``superseded``: not declined nor approved, superseded by an approved update, and on this server at least
        ``min_age_days``."""
        queries = {
            "unused": "SELECT r.data FROM updates u JOIN revisions r ON r.uid = u.uid AND r.revision = u.revision"
            " LEFT JOIN approvals a ON a.uid = u.uid WHERE coalesce(a.action, 'not_approved') = 'declined'"
            " OR (u.expired AND coalesce(a.action, 'not_approved') != 'approved') ORDER BY u.uid",
            "expired": "SELECT r.data FROM updates u JOIN revisions r ON r.uid = u.uid AND r.revision = u.revision"
            " LEFT JOIN approvals a ON a.uid = u.uid WHERE u.expired"
            " AND coalesce(a.action, 'not_approved') != 'declined' ORDER BY u.uid",
        }
        if kind == "superseded":
            yield from self._superseded(min_age_days)
            return
        cursor = self.connection.execute(queries[kind])
        while page := cursor.fetchmany(PAGE_ROWS):
            for (data,) in page:
                yield update_decoder.decode(data)

    def _superseded(self, min_age_days: float) -> Iterator[Update]:
        cutoff = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=min_age_days)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        approved = self.connection.execute(
            "SELECT r.data FROM approvals a JOIN updates u ON u.uid = a.uid"
            " JOIN revisions r ON r.uid = u.uid AND r.revision = u.revision WHERE a.action = 'approved'"
        )
        seen: set[str] = set()
        while page := approved.fetchmany(PAGE_ROWS):
            for (data,) in page:
                for superseded_id in update_decoder.decode(data).supersedes:
                    row = self.connection.execute(
                        "SELECT r.data FROM updates u JOIN revisions r ON r.uid = u.uid AND r.revision = u.revision"
                        " LEFT JOIN approvals a ON a.uid = u.uid WHERE u.id = ? AND u.arrived <= ?"
                        " AND coalesce(a.action, 'not_approved') = 'not_approved'",
                        (superseded_id, cutoff),
                    ).fetchone()
                    if row is not None and superseded_id not in seen:
                        seen.add(superseded_id)
                        yield update_decoder.decode(row[0])

    def obsolete_revisions(self) -> int:
        """How many stored revisions are older than their update's latest."""
        (count,) = self.connection.execute(
            "SELECT count(*) FROM revisions r JOIN updates u ON u.uid = r.uid WHERE r.revision < u.revision"
        ).fetchone()
        return int(count)

    def remove_updates(self, update_ids: Iterable[str]) -> int:
        """Deletes updates with every revision and their approvals (files no longer named go too); one
        transaction. Returns how many were removed."""
        removed = 0
        with self.transaction():
            for update_id in update_ids:
                row = self.connection.execute("SELECT uid FROM updates WHERE id = ?", (update_id,)).fetchone()
                if row is None:
                    continue
                for table in (
                    "update_products",
                    "update_languages",
                    "hardware_ids",
                    "computer_hardware_ids",
                    "update_files",
                    "approvals",
                    "revisions",
                    "updates",
                ):
                    self.connection.execute(f"DELETE FROM {table} WHERE uid = ?", (row[0],))  # noqa: S608 (fixed)
                removed += 1
            self._forget_unnamed_files()
        return removed

    def remove_obsolete_revisions(self) -> int:
        with self.transaction():
            count = self.connection.execute(
                "DELETE FROM revisions WHERE rowid IN (SELECT r.rowid FROM revisions r JOIN updates u"
                " ON u.uid = r.uid WHERE r.revision < u.revision)"
            ).rowcount
            self._forget_unnamed_files()
        return int(count)

    def _forget_unnamed_files(self) -> None:
        self.connection.execute("DELETE FROM files WHERE sha1 NOT IN (SELECT sha1 FROM update_files)")

    # ---- client inventory (inventory-based driver synchronization) ----

    def report_inventory(self, report: InventoryReport) -> None:
        """Keeps a device's inventory, replacing its previous report."""
        with self.transaction():
            self.connection.execute("DELETE FROM inventory WHERE device = ?", (report.device,))
            self.connection.executemany(
                "INSERT OR IGNORE INTO inventory VALUES (?, ?, ?)",
                [(report.device, "device", h) for h in report.hardware_ids]
                + [(report.device, "computer", c) for c in report.computer_hardware_ids],
            )

    def inventory_rollup(self) -> tuple[list[str], list[str]]:
        """The de-duplicated hardware IDs and computer hardware IDs of every device: all that goes upstream (no
        device, no counts)."""
        rows = self.connection.execute("SELECT DISTINCT kind, hardware_id FROM inventory ORDER BY 1, 2").fetchall()
        return [h for kind, h in rows if kind == "device"], [h for kind, h in rows if kind == "computer"]

    def updates_for_device(self, device: str) -> Iterator[Update]:
        """Approved, unexpired updates for a client: every approved update that is not a driver, and approved drivers
        only when the device reported one of their hardware IDs (and, for drivers aimed at particular computers, its
        computer hardware ID)."""
        cursor = self.connection.execute(
            "SELECT r.data FROM approvals a JOIN updates u ON u.uid = a.uid"
            " JOIN revisions r ON r.uid = u.uid AND r.revision = u.revision"
            " WHERE a.action = 'approved' AND NOT u.expired AND ("
            "  NOT EXISTS (SELECT 1 FROM hardware_ids h WHERE h.uid = u.uid)"
            "  OR (EXISTS (SELECT 1 FROM hardware_ids h JOIN inventory i ON i.kind = 'device'"
            "       AND i.hardware_id = h.hardware_id AND i.device = :device WHERE h.uid = u.uid)"
            "   AND (NOT EXISTS (SELECT 1 FROM computer_hardware_ids c WHERE c.uid = u.uid)"
            "    OR EXISTS (SELECT 1 FROM computer_hardware_ids c JOIN inventory i ON i.kind = 'computer'"
            "       AND i.hardware_id = c.computer_hardware_id AND i.device = :device WHERE c.uid = u.uid))))"
            " ORDER BY u.uid",
            {"device": device},
        )
        while page := cursor.fetchmany(PAGE_ROWS):
            for (data,) in page:
                yield update_decoder.decode(data)

    # ---- downstream tokens (stored as SHA-256 only) ----

    def add_token(self, name: str, role: TokenRole = "downstream") -> str:
        """Issues a new bearer token named ``name`` and returns it; only its SHA-256 is kept. A ``downstream`` token
        lets a server synchronize from this one; an ``admin`` token also opens the admin interface."""
        if not TOKEN_NAME.match(name):
            raise InputError(f"token name {name!r} is not allowed; use letters, digits, '.', '_', '-', '@' (max 64)")
        # A fixed prefix: recognisable in a secret scan, and never taken for a command-line option (no leading "-").
        token = "upm_" + secrets.token_urlsafe(32)
        created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        with self.transaction():
            try:
                self.connection.execute(
                    "INSERT INTO tokens VALUES (?, ?, ?, ?)", (name, hash_token(token), created, role)
                )
            except sqlite3.IntegrityError:
                raise InputError(f"a token named {name!r} already exists (revoke it first)") from None
        return token

    def tokens(self) -> list[TokenInfo]:
        rows = self.connection.execute("SELECT name, created, role FROM tokens ORDER BY name")
        return [TokenInfo(name, created, role) for name, created, role in rows]

    def revoke_token(self, name: str) -> None:
        with self.transaction():
            if self.connection.execute("DELETE FROM tokens WHERE name = ?", (name,)).rowcount == 0:
                raise InputError(f"no token named {name!r}")

    def token_role(self, token: str) -> TokenRole | None:
        """The role of the token, or None when it is not a valid (unrevoked) token of this server."""
        row = self.connection.execute("SELECT role FROM tokens WHERE sha256 = ?", (hash_token(token),)).fetchone()
        role: TokenRole | None = None if row is None else row[0]
        return role

    # ---- metadata packages (wsusutil export/import): read inside one snapshot, written in one transaction ----

    def export_counts(self, since: int) -> tuple[int, int]:
        """How many categories and revisions an export since change ``since`` holds (see ``export_revisions``)."""
        (categories,) = self.connection.execute("SELECT count(*) FROM categories WHERE change > ?", (since,)).fetchone()
        (revisions,) = self.connection.execute(
            f"SELECT count(*) FROM revisions r JOIN updates u ON u.uid = r.uid WHERE {_EXPORTED}",  # noqa: S608
            {"since": since},
        ).fetchone()
        return int(categories), int(revisions)

    def export_categories(self, since: int) -> list[bytes]:
        """The stored MessagePack of categories changed after ``since``, families before their products."""
        rows = self.connection.execute(
            "SELECT data FROM categories WHERE change > ? ORDER BY kind = 'product', change", (since,)
        )
        return [bytes(data) for (data,) in rows]

    def export_revisions(self, since: int) -> Iterator[bytes]:
        """The stored MessagePack of every revision stored after ``since``, and of the latest revision of updates
        that expired after it (expiring rewrites that record), grouped by update, oldest revision first."""
        cursor = self.connection.execute(
            f"SELECT r.data FROM revisions r JOIN updates u ON u.uid = r.uid WHERE {_EXPORTED}"  # noqa: S608
            " ORDER BY r.uid, r.revision",
            {"since": since},
        )
        while page := cursor.fetchmany(PAGE_ROWS):
            for (data,) in page:
                yield bytes(data)

    def exported_files(self, since: int) -> Iterator[FileRef]:
        """The files of the latest revision of updates changed after ``since`` (not expired), once each by SHA-1."""
        cursor = self.connection.execute(
            "SELECT DISTINCT f.sha1, f.size, f.name, f.sha256, f.blake3 FROM updates u"
            " JOIN update_files uf ON uf.uid = u.uid JOIN files f ON f.sha1 = uf.sha1"
            " WHERE u.change > ? AND NOT u.expired ORDER BY f.sha1",
            (since,),
        )
        while page := cursor.fetchmany(PAGE_ROWS):
            for sha1, size, name, sha256, blake3 in page:
                yield FileRef(sha1=sha1, size=size, name=name, sha256=sha256, blake3=blake3)

    def import_records(self, records: Iterable[Category | Update]) -> ImportCounts:
        """Stores an exported package's records in ONE transaction (an exception from ``records`` or from a record
        rolls everything back): categories added or changed, revisions not yet stored, and expirations the package
        carries for revisions already here."""
        counts = ImportCounts()
        with self.transaction():
            self._category_keys.clear()
            rows = _UpdateRows()
            for record in records:
                if isinstance(record, Category):
                    counts.categories += self._add_category(record)
                    continue
                known = self.connection.execute("SELECT 1 FROM updates WHERE id = ?", (record.id,)).fetchone()
                if self._add_update(record, rows):
                    counts.revisions += 1
                    counts.updates += known is None
                    counts.expired += record.expired  # a revision that arrives expired is an expiration here too
                elif record.expired and self._update_row(record.id)[1] == record.revision:
                    counts.expired += self._expire_update(record.id)
                if len(rows.uids) >= PAGE_ROWS:
                    rows.write(self.connection)
            rows.write(self.connection)
        return counts


# The tables that describe an update's latest revision, row by row.
_UPDATE_TABLES: Final = ("update_products", "update_languages", "hardware_ids", "computer_hardware_ids", "update_files")


@dataclass
class _UpdateRows:
    """Rows of stored revisions gathered to be written a table at a time."""

    uids: set[int] = field(default_factory=set)
    files: list[tuple[str, int, str, str | None, str | None]] = field(default_factory=list)
    products: list[tuple[int, int]] = field(default_factory=list)
    update_languages: list[tuple[int, str]] = field(default_factory=list)
    languages: set[str] = field(default_factory=set)
    hardware_ids: list[tuple[str, int]] = field(default_factory=list)
    computer_hardware_ids: list[tuple[str, int]] = field(default_factory=list)
    update_files: list[tuple[int, str, str, bool]] = field(default_factory=list)

    def write(self, connection: sqlite3.Connection) -> None:
        connection.executemany(
            "INSERT OR IGNORE INTO files (sha1, size, name, sha256, blake3) VALUES (?, ?, ?, ?, ?)", self.files
        )
        connection.executemany("INSERT INTO update_products VALUES (?, ?)", self.products)
        connection.executemany("INSERT INTO update_languages VALUES (?, ?)", self.update_languages)
        connection.executemany("INSERT OR IGNORE INTO languages VALUES (?)", [(lang,) for lang in self.languages])
        connection.executemany("INSERT OR IGNORE INTO hardware_ids VALUES (?, ?)", self.hardware_ids)
        connection.executemany("INSERT OR IGNORE INTO computer_hardware_ids VALUES (?, ?)", self.computer_hardware_ids)
        connection.executemany("INSERT OR IGNORE INTO update_files VALUES (?, ?, ?, ?)", self.update_files)
        for rows in vars(self).values():
            rows.clear()


# A revision belongs to an export since :since when it was stored after it, or is the latest of an update that
# changed after it (expiring rewrites the latest record in place).
_EXPORTED: Final = "(r.change > :since OR (r.revision = u.revision AND u.change > :since))"


@dataclass
class ImportCounts:
    categories: int = 0
    updates: int = 0
    revisions: int = 0
    expired: int = 0


def _ids(items: Sequence[FilterItem], *, fresh: bool | None) -> str:
    """The IDs of the filter items (all, or only those new to the filter when ``fresh``) as a JSON array for SQL."""
    return json.dumps([item.id for item in items if fresh is None or (not item.delta) == fresh])


def _pages(cursor: sqlite3.Cursor) -> Iterator[list[tuple[str, int]]]:
    while page := cursor.fetchmany(PAGE_ROWS):
        yield page


class SyncState(msgspec.Struct, kw_only=True):
    """What a downstream remembers between synchronizations: which upstream it follows, the anchors that upstream
    returned, and the filter items of the last successful sync (items added since are asked for in full)."""

    upstream_id: str = ""
    category_anchor: str = ""
    update_anchor: str = ""
    approval_anchor: str = ""
    driver_anchor: str = ""
    products: list[str] = msgspec.field(default_factory=list)
    classifications: list[str] = msgspec.field(default_factory=list)
    languages: list[str] = msgspec.field(default_factory=list)
    hardware_ids: list[str] = msgspec.field(default_factory=list)
    computer_hardware_ids: list[str] = msgspec.field(default_factory=list)


def _single_column_pages(cursor: sqlite3.Cursor) -> Iterator[list[str]]:
    while page := cursor.fetchmany(PAGE_ROWS):
        yield [value for (value,) in page]


def storage_failure(error: BaseException, database: Path) -> UpmirrorError | None:
    """The ``UpmirrorError`` a failure of local storage stands for: a full disk (ENOSPC or EDQUOT from a file, or
    SQLite's "database or disk is full") names the path and "disk full"; any other SQLite failure names the store.
    None for everything else."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        where = error.filename if error.filename is not None else "the content directory"
        return DiskFullError(f"disk full: no space left on the device for {where}")
    if isinstance(error, sqlite3.OperationalError) and "full" in str(error):
        return DiskFullError(f"disk full: no space left on the device for the metadata store {database}")
    if isinstance(error, sqlite3.Error):
        return UpmirrorError(f"the metadata store {database} failed: {error}")
    return None


@contextmanager
def storage_failures_as_errors(database: Path) -> Iterator[None]:
    """Turns failures of local storage inside the block into the ``UpmirrorError`` they stand for (see
    ``storage_failure``), so a command ends with one line and its usual exit code instead of a traceback."""
    try:
        yield
    except (OSError, sqlite3.Error) as error:
        failure = storage_failure(error, database)
        if failure is None:
            raise
        raise failure from error
