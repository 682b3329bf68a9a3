"""Updates in the store: every revision of every update as the MessagePack record it arrived as, the latest one
described row by row (products, languages, hardware IDs, files) for the filters; expirations; the counts and listings
of what is stored."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Final

import msgspec

from upmirror.errors import InputError
from upmirror.model import PRODUCT_KINDS, FileRef, Update, category_decoder, msgpack_encoder, update_decoder
from upmirror.store.categories import Categories
from upmirror.store.schema import FILE_COLUMNS, file_refs, paged_rows

# The tables that describe an update's latest revision, row by row.
INSERT_FILE: Final = f"INSERT OR IGNORE INTO files ({FILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"  # noqa: S608 (fixed SQL)
UPDATE_TABLES: Final = (
    "update_products",
    "update_languages",
    "hardware_ids",
    "computer_hardware_ids",
    "update_files",
    "bundled_updates",
)


class UpdateRows:
    """Rows of stored revisions gathered to be written a table at a time."""

    def __init__(self) -> None:
        self.uids: set[int] = set()
        self.files: list[tuple[str, int, str, str | None, str | None, str | None]] = []
        self.products: list[tuple[int, int]] = []
        self.update_languages: list[tuple[int, str]] = []
        self.languages: set[str] = set()
        self.hardware_ids: list[tuple[str, int]] = []
        self.computer_hardware_ids: list[tuple[str, int]] = []
        self.update_files: list[tuple[int, str, str, bool]] = []
        self.bundled_updates: list[tuple[int, str]] = []

    def write(self, connection: sqlite3.Connection) -> None:
        connection.executemany(INSERT_FILE, self.files)
        connection.executemany("INSERT INTO update_products VALUES (?, ?)", self.products)
        connection.executemany("INSERT INTO update_languages VALUES (?, ?)", self.update_languages)
        connection.executemany("INSERT OR IGNORE INTO languages VALUES (?)", [(lang,) for lang in self.languages])
        connection.executemany("INSERT OR IGNORE INTO hardware_ids VALUES (?, ?)", self.hardware_ids)
        connection.executemany("INSERT OR IGNORE INTO computer_hardware_ids VALUES (?, ?)", self.computer_hardware_ids)
        connection.executemany("INSERT OR IGNORE INTO update_files VALUES (?, ?, ?, ?)", self.update_files)
        connection.executemany("INSERT OR IGNORE INTO bundled_updates VALUES (?, ?)", self.bundled_updates)
        for rows in vars(self).values():
            rows.clear()


class Updates(Categories):
    """Stores and reads updates; an update names stored categories."""

    def add_updates(self, updates: Iterable[Update], decryption_keys: Mapping[str, bytes] | None = None) -> int:
        """Stores revisions in one transaction; returns how many were new. Every revision is kept; the newest one
        describes the update for filtering. A revision already stored is skipped (adding is idempotent). The
        update's products and classification must be stored categories. ``decryption_keys`` (SHA-1 -> key) are the
        keys of encrypted files of these updates, stored with the files in the same transaction; a key for a file
        none of them carries encrypted is refused (naming the SHA-1, never the key)."""
        added = 0
        with self.transaction():
            rows = UpdateRows()
            encrypted: set[str] = set()
            for update in updates:
                added += self._add_update(update, rows)
                encrypted.update(f.sha1 for f in update.files if f.encrypted)
            rows.write(self.connection)
            keys = decryption_keys or {}
            stray = sorted(set(keys) - encrypted)
            if stray:
                raise InputError(f"a decryption key is given for file {stray[0]}, which no update carries encrypted")
            self.connection.executemany(
                "UPDATE files SET decryption_key = ? WHERE sha1 = ?", [(key, sha1) for sha1, key in keys.items()]
            )
        return added

    def _add_update(self, update: Update, rows: UpdateRows) -> bool:
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
        products = [self._category_key(product, PRODUCT_KINDS) for product in update.products]
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
        rows.files.extend((f.sha1, f.size, f.name, f.sha256, f.blake3, f.url) for f in update.files)
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
            for table in UPDATE_TABLES:
                self.connection.execute(f"DELETE FROM {table} WHERE uid = ?", (uid,))  # noqa: S608 (fixed names)
        rows.uids.add(uid)
        languages = sorted(set(update.languages))
        rows.products.extend((uid, product) for product in products)
        rows.update_languages.extend((uid, language) for language in languages)
        rows.languages.update(languages)
        rows.hardware_ids.extend((hardware_id, uid) for hardware_id in update.hardware_ids)
        rows.computer_hardware_ids.extend((computer, uid) for computer in update.computer_hardware_ids)
        rows.update_files.extend((uid, f.sha1, json.dumps(sorted(f.languages)), f.express) for f in update.files)
        rows.bundled_updates.extend((uid, ref.update_id) for ref in update.bundled)
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
        return bytes(self._value("SELECT data FROM revisions WHERE uid = ? AND revision = ?", (uid, revision)))

    def update(self, update_id: str, revision: int | None = None) -> Update | None:
        """One revision of an update (its latest when ``revision`` is None), or None when not stored."""
        row = self.connection.execute(
            "SELECT r.data FROM updates u JOIN revisions r ON r.uid = u.uid "
            "WHERE u.id = ? AND r.revision = coalesce(?, u.revision)",
            (update_id, revision),
        ).fetchone()
        return None if row is None else update_decoder.decode(row[0])

    def decryption_keys(self, refs: Sequence[tuple[str, int]]) -> list[list[tuple[str, bytes | None]]]:
        """For each (update id, revision), its encrypted files as (SHA-1, key), the key None where none is stored;
        an unknown revision is a LookupError naming it."""
        found = []
        for update_id, revision in refs:
            update = self.update(update_id, revision)
            if update is None:
                raise LookupError(f"unknown revision {revision} of update {update_id}")
            files = []
            for f in update.files:
                if f.encrypted:
                    row = self.connection.execute(
                        "SELECT decryption_key FROM files WHERE sha1 = ?", (f.sha1,)
                    ).fetchone()
                    files.append((f.sha1, None if row is None or row[0] is None else bytes(row[0])))
            found.append(files)
        return found

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
        for update_id, revision, expired in paged_rows(cursor):
            yield update_id, revision, bool(expired)

    def update_counts_by_classification(self) -> dict[str, int]:
        """How many (non-expired) updates the store holds in each classification, by title."""
        rows = self.connection.execute(
            "SELECT c.data, count(*) FROM updates u JOIN categories c ON c.cid = u.classification"
            " WHERE NOT u.expired GROUP BY u.classification ORDER BY count(*) DESC"
        )
        return {category_decoder.decode(data).title: int(count) for data, count in rows}

    def update_count(self) -> int:
        return int(self._value("SELECT count(*) FROM updates"))

    def revision_count(self) -> int:
        return int(self._value("SELECT count(*) FROM revisions"))

    def languages(self) -> list[str]:
        """Every language some stored update carries: what this server offers downstream."""
        return [language for (language,) in self.connection.execute("SELECT language FROM languages ORDER BY 1")]

    def mean_file_size(self) -> float | None:
        mean = self._value("SELECT avg(size) FROM files")
        return None if mean is None else float(mean)

    def content_files(self) -> Iterator[FileRef]:
        """Every file some stored revision names, by SHA-1, read page by page."""
        yield from file_refs(
            self.connection.execute(f"SELECT {FILE_COLUMNS} FROM files ORDER BY sha1")  # noqa: S608 (fixed SQL)
        )
