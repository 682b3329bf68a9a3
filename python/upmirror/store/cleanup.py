"""The Server Cleanup Wizard's queries and removals: which updates each cleanup option applies to, obsolete
revisions, and the deletions (files no longer named by any update go with them)."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Iterator

from upmirror.model import Update, update_decoder
from upmirror.store.schema import StoreBase, decoded_updates
from upmirror.store.updates import UPDATE_TABLES


class Cleanup(StoreBase):
    """What ``upmirror cleanup`` finds and removes."""

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
        yield from decoded_updates(self.connection.execute(queries[kind]))

    def _superseded(self, min_age_days: float) -> Iterator[Update]:
        cutoff = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=min_age_days)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        approved = self.connection.execute(
            "SELECT r.data FROM approvals a JOIN updates u ON u.uid = a.uid"
            " JOIN revisions r ON r.uid = u.uid AND r.revision = u.revision WHERE a.action = 'approved'"
        )
        seen: set[str] = set()
        for update in decoded_updates(approved):
            for superseded_id in update.supersedes:
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
        return int(
            self._value(
                "SELECT count(*) FROM revisions r JOIN updates u ON u.uid = r.uid WHERE r.revision < u.revision"
            )
        )

    def remove_updates(self, update_ids: Iterable[str]) -> int:
        """Deletes updates with every revision and their approvals (files no longer named go too); one
        transaction. Returns how many were removed."""
        removed = 0
        with self.transaction():
            for update_id in update_ids:
                row = self.connection.execute("SELECT uid FROM updates WHERE id = ?", (update_id,)).fetchone()
                if row is None:
                    continue
                for table in (*UPDATE_TABLES, "approvals", "revisions", "updates"):
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
