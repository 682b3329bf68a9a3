"""What a server needs of its content, and its synchronization state and history: the files the content directory
should hold, which updates and revisions are already here, the anchors and filter of the last sync, the attempts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence

import msgspec

from upmirror.model import FileRef, SyncRecord, SyncState, msgpack_encoder, sync_record_decoder
from upmirror.store.schema import CARRIED_BY_AN_APPROVED_BUNDLE, StoreBase, file_refs


class Synchronization(StoreBase):
    """What a sync asks of the store besides the updates themselves."""

    def needed_files(
        self, *, languages: Sequence[str] | None, only_approved: bool, express: bool, sha1: str | None = None
    ) -> Iterator[FileRef]:
        """Every file the content directory should hold, once each by SHA-1, read page by page: files of the latest
        revision of updates that are neither expired nor declined (and, when content waits for approval, approved or
        carried by an approved bundle), whose languages include a selected one or are neutral (``languages`` None:
        every file), skipping express files unless asked. ``sha1`` narrows the answer to that one file (is it
        needed?)."""
        conditions = ["NOT u.expired", "coalesce(a.action, 'not_approved') != 'declined'"]
        if sha1 is not None:
            conditions.append("uf.sha1 = :sha1")
        if only_approved:
            conditions.append(f"(a.action = 'approved' OR {CARRIED_BY_AN_APPROVED_BUNDLE})")
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
            "SELECT f.sha1, f.size, f.name, f.sha256, f.blake3, f.url FROM files f WHERE EXISTS (SELECT 1"  # noqa: S608 (fixed SQL)
            " FROM update_files uf JOIN updates u ON u.uid = uf.uid LEFT JOIN approvals a ON a.uid = u.uid"
            f" WHERE uf.sha1 = f.sha1 AND {' AND '.join(conditions)}) ORDER BY f.sha1",
            {"languages": json.dumps(list(languages or [])), "sha1": sha1},
        )
        yield from file_refs(cursor)

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
