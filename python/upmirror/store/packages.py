"""Metadata packages (wsusutil export/import) in the store: what an export since a change number holds, read inside
one snapshot, and an import written in one transaction."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final

from upmirror.model import Category, FileRef, ImportCounts, Update
from upmirror.store.schema import PAGE_ROWS, file_refs, paged_rows
from upmirror.store.updates import UpdateRows, Updates

# A revision belongs to an export since :since when it was stored after it, or is the latest of an update that
# changed after it (expiring rewrites the latest record in place).
_EXPORTED: Final = "(r.change > :since OR (r.revision = u.revision AND u.change > :since))"


class Packages(Updates):
    """Reads exports and writes imports."""

    def export_counts(self, since: int) -> tuple[int, int]:
        """How many categories and revisions an export since change ``since`` holds (see ``export_revisions``)."""
        categories = self._value("SELECT count(*) FROM categories WHERE change > ?", (since,))
        revisions = self._value(
            f"SELECT count(*) FROM revisions r JOIN updates u ON u.uid = r.uid WHERE {_EXPORTED}",  # noqa: S608
            {"since": since},
        )
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
        for (data,) in paged_rows(cursor):
            yield bytes(data)

    def exported_files(self, since: int) -> Iterator[FileRef]:
        """The files of the latest revision of updates changed after ``since`` (not expired), once each by SHA-1."""
        cursor = self.connection.execute(
            "SELECT DISTINCT f.sha1, f.size, f.name, f.sha256, f.blake3, f.url FROM updates u"
            " JOIN update_files uf ON uf.uid = u.uid JOIN files f ON f.sha1 = uf.sha1"
            " WHERE u.change > ? AND NOT u.expired ORDER BY f.sha1",
            (since,),
        )
        yield from file_refs(cursor)

    def import_records(self, records: Iterable[Category | Update]) -> ImportCounts:
        """Stores an exported package's records in ONE transaction (an exception from ``records`` or from a record
        rolls everything back): categories added or changed, revisions not yet stored, and expirations the package
        carries for revisions already here."""
        counts = ImportCounts()
        with self.transaction():
            self._category_keys.clear()
            rows = UpdateRows()
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
