"""Client inventory (inventory-based driver synchronization): each device's reported hardware IDs, their
de-duplicated roll-up that goes upstream, the approved updates a client gets, and the driver sets a WSUS upstream
answered for the roll-up (kept as received, passed on to downstream servers)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from upmirror.model import DriverSet, InventoryReport, Update
from upmirror.store.schema import CARRIED_BY_AN_APPROVED_BUNDLE, StoreBase, decoded_updates


class Inventory(StoreBase):
    """What clients reported, and what they are offered."""

    def report_inventory(self, report: InventoryReport) -> None:
        """Keeps a device's inventory, replacing its previous report."""
        with self.transaction():
            self.connection.execute("DELETE FROM inventory WHERE device = ?", (report.device,))
            self.connection.executemany(
                "INSERT OR IGNORE INTO inventory VALUES (?, ?, ?)",
                [(report.device, "device", h) for h in report.hardware_ids]
                + [(report.device, "computer", c) for c in report.computer_hardware_ids],
            )

    def take_driver_sets(self, driver_sets: Sequence[DriverSet], removed: Iterable[str]) -> int:
        """Stores driver sets new or changed upstream and marks the removed ones, in one transaction, each change
        with the next change number (downstream servers list them by anchor); returns how many changed."""
        changed = 0
        with self.transaction():
            for driver_set in driver_sets:
                row = self.connection.execute("SELECT xml FROM driver_sets WHERE id = ?", (driver_set.id,)).fetchone()
                if row is None or row[0] != driver_set.xml:
                    self.connection.execute(
                        "INSERT OR REPLACE INTO driver_sets VALUES (?, ?, ?)",
                        (driver_set.id, driver_set.xml, self._next_change()),
                    )
                    changed += 1
            for driver_set_id in removed:
                row = self.connection.execute("SELECT xml FROM driver_sets WHERE id = ?", (driver_set_id,)).fetchone()
                if row is not None and row[0] is not None:
                    self.connection.execute(
                        "UPDATE driver_sets SET xml = NULL, change = ? WHERE id = ?",
                        (self._next_change(), driver_set_id),
                    )
                    changed += 1
        return changed

    def driver_sets_since(self, since: int) -> tuple[list[str], list[str]]:
        """The ids of the driver sets new or changed since change ``since``, and of those removed since then."""
        rows = self.connection.execute(
            "SELECT id, xml IS NULL FROM driver_sets WHERE change > ? ORDER BY change", (since,)
        ).fetchall()
        return [i for i, removed in rows if not removed], [i for i, removed in rows if removed]

    def driver_sets(self, ids: Iterable[str]) -> list[DriverSet]:
        """The stored driver sets of these ids, in order; unknown and removed ones are left out."""
        found = []
        for driver_set_id in ids:
            row = self.connection.execute("SELECT xml FROM driver_sets WHERE id = ?", (driver_set_id,)).fetchone()
            if row is not None and row[0] is not None:
                found.append(DriverSet(id=driver_set_id, xml=row[0]))
        return found

    def inventory_rollup(self) -> tuple[list[str], list[str]]:
        """The de-duplicated hardware IDs and computer hardware IDs of every device: all that goes upstream (no
        device, no counts)."""
        rows = self.connection.execute("SELECT DISTINCT kind, hardware_id FROM inventory ORDER BY 1, 2").fetchall()
        return [h for kind, h in rows if kind == "device"], [h for kind, h in rows if kind == "computer"]

    def updates_for_device(self, device: str) -> Iterator[Update]:
        """Approved, unexpired updates for a client, with the updates approved bundles carry: every such update that
        is not a driver, and drivers only when the device reported one of their hardware IDs (and, for drivers aimed
        at particular computers, its computer hardware ID)."""
        cursor = self.connection.execute(
            "SELECT r.data FROM updates u JOIN revisions r ON r.uid = u.uid AND r.revision = u.revision"  # noqa: S608 (fixed SQL)
            " WHERE NOT u.expired"
            " AND (u.uid IN (SELECT uid FROM approvals WHERE action = 'approved')"
            f"  OR {CARRIED_BY_AN_APPROVED_BUNDLE})"
            " AND ("
            "  NOT EXISTS (SELECT 1 FROM hardware_ids h WHERE h.uid = u.uid)"
            "  OR (EXISTS (SELECT 1 FROM hardware_ids h JOIN inventory i ON i.kind = 'device'"
            "       AND i.hardware_id = h.hardware_id AND i.device = :device WHERE h.uid = u.uid)"
            "   AND (NOT EXISTS (SELECT 1 FROM computer_hardware_ids c WHERE c.uid = u.uid)"
            "    OR EXISTS (SELECT 1 FROM computer_hardware_ids c JOIN inventory i ON i.kind = 'computer'"
            "       AND i.hardware_id = c.computer_hardware_id AND i.device = :device WHERE c.uid = u.uid))))"
            " ORDER BY u.uid",
            {"device": device},
        )
        yield from decoded_updates(cursor)
