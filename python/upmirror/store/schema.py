"""The base of the metadata store: the SQLite database (WAL) with its versioned schema migrations, opening,
transactions, read snapshots, the change counter behind anchors, and the paging every listing reads its rows with.

Anchors. One monotonic change counter per store: every stored revision, expiration, category change and approval
takes the next value, in the same transaction as the change itself. "Since anchor A" means ``change > A``. Clients
see the counter as an opaque string; "" means "from the beginning"; anything else that is not a value this store has
handed out (malformed, negative, or from the future) is refused.

Memory stays flat whatever the catalog size: listings are SQL over indexes, read page by page from a cursor inside
one read transaction (a consistent snapshot with its anchor); nothing materialises the catalog in Python.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Self

from upmirror.errors import InputError
from upmirror.model import FileRef, Update, update_decoder

PAGE_ROWS: Final = 5000

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
    # Where a file is downloaded from when its upstream names an address of its own (Microsoft Update's files).
    """
    ALTER TABLE files ADD COLUMN url TEXT;
    """,
    # The key of an encrypted file (MS-WSUSSS GetUpdateDecryptionData): kept beside the file, never in the records
    # that are listed and sent on.
    """
    ALTER TABLE files ADD COLUMN decryption_key BLOB;
    """,
    # Driver sets taken from a WSUS upstream (GetDriverSetData), kept as received; xml NULL: removed upstream.
    """
    CREATE TABLE driver_sets (id TEXT PRIMARY KEY, xml TEXT, change INTEGER NOT NULL) WITHOUT ROWID;
    CREATE INDEX driver_sets_change ON driver_sets (change);
    """,
    # The updates each bundle's latest revision carries (by id): approving a bundle approves their content.
    """
    CREATE TABLE bundled_updates (uid INTEGER NOT NULL, bundled TEXT NOT NULL, PRIMARY KEY (uid, bundled))
        WITHOUT ROWID;
    CREATE INDEX bundled_updates_bundled ON bundled_updates (bundled);
    """,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)

# SQL: the update ``u`` is carried by a bundle that is approved and not expired (its content is approved with it).
# The subquery does not depend on ``u``: SQLite computes it once.
CARRIED_BY_AN_APPROVED_BUNDLE: Final = (
    "u.id IN (SELECT b.bundled FROM bundled_updates b JOIN approvals ba ON ba.uid = b.uid"
    " JOIN updates bu ON bu.uid = b.uid WHERE ba.action = 'approved' AND NOT bu.expired)"
)


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


def pages(cursor: sqlite3.Cursor) -> Iterator[list[Any]]:
    """The rows of ``cursor``, PAGE_ROWS at a time: memory stays bounded whatever the size of the answer."""
    while page := cursor.fetchmany(PAGE_ROWS):
        yield page


def paged_rows(cursor: sqlite3.Cursor) -> Iterator[Any]:
    """The rows of ``cursor`` one by one, read page by page."""
    for page in pages(cursor):
        yield from page


def column_pages(cursor: sqlite3.Cursor) -> Iterator[list[Any]]:
    """Pages of the values of a one-column query."""
    for page in pages(cursor):
        yield [value for (value,) in page]


# The columns of the files table a FileRef is made of, in file_refs' order (``f.`` where the query names the table so).
FILE_COLUMNS: Final = "sha1, size, name, sha256, blake3, url"


def file_refs(cursor: sqlite3.Cursor) -> Iterator[FileRef]:
    """The files of a query selecting ``FILE_COLUMNS`` from the files table."""
    for sha1, size, name, sha256, blake3, url in paged_rows(cursor):
        yield FileRef(sha1=sha1, size=size, name=name, sha256=sha256, blake3=blake3, url=url)


def decoded_updates(cursor: sqlite3.Cursor) -> Iterator[Update]:
    """The records of a query selecting one stored revision's MessagePack per row."""
    for (data,) in paged_rows(cursor):
        yield update_decoder.decode(data)


class StoreBase:
    """One connection to a server's metadata database. Not shared between threads: open one per thread."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self.connection = connection
        self.path = path

    @classmethod
    def open(cls, path: Path, *, create: bool = False) -> Self:
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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _migrate(self) -> None:
        version = self._value("PRAGMA user_version")
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
        return int(self._value("SELECT value FROM change_counter"))

    def _next_change(self) -> int:
        return int(self._value("UPDATE change_counter SET value = value + 1 RETURNING value"))

    @property
    def server_id(self) -> str:
        return str(self._value("SELECT value FROM settings WHERE key = 'server_id'"))

    def _value(self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
        """The one value of the one row a query answers."""
        (value,) = self.connection.execute(sql, parameters).fetchone()
        return value
