"""Client inventory (inventory-based driver synchronization): each device's reported hardware IDs, their
de-duplicated roll-up that goes upstream, and the approved updates a client gets."""

from __future__ import annotations

from collections.abc import Iterator

from upmirror.model import InventoryReport, Update
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
