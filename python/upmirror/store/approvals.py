"""Approvals in the store: approve, decline, reinstate (each decision a change number), what a replica takes from its
upstream, and the decisions a replica asks for since its anchor."""

from __future__ import annotations

from collections.abc import Iterable

from upmirror.model import Approval, ApprovalAction
from upmirror.store.schema import parse_anchor
from upmirror.store.updates import Updates


class Approvals(Updates):
    """The administrator's decisions on stored updates; a replica mirrors its upstream's."""

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
