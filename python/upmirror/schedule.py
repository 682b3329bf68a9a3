"""The automatic synchronization schedule of WSUS: a first synchronization time of day and 1 to 24 synchronizations
per day spread evenly over 24 hours (4 a day from 03:00: 03:00, 09:00, 15:00, 21:00), each shifted by a random
offset so that many servers do not hit their source at once. Times are UTC.

The offset of a slot is derived from a per-server seed and the slot's time, so it is random across servers and slots
but stable for one server: a restarted scheduler picks the same time again instead of syncing twice.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from upmirror.options import ScheduleOptions

DAY = timedelta(days=1)


class Schedule:
    """When the next automatic synchronization is due. ``seed`` is the server's identity (its id)."""

    def __init__(self, options: ScheduleOptions, seed: str) -> None:
        self.options = options
        self.seed = seed
        self.first_sync = time.fromisoformat(options.first_sync).replace(tzinfo=UTC)
        self.interval = DAY / options.per_day
        # An offset never pushes a slot past the next one.
        self.max_offset = min(
            timedelta(minutes=options.max_random_offset_minutes), self.interval - timedelta(minutes=1)
        )

    def slots_of_day(self, day: datetime) -> list[datetime]:
        """The unshifted times on the UTC calendar day of ``day``, in order."""
        start = datetime.combine(day.astimezone(UTC).date(), self.first_sync)
        midnight = datetime.combine(start.date(), time(0, tzinfo=UTC))
        slots = [midnight + (start - midnight + index * self.interval) % DAY for index in range(self.options.per_day)]
        return sorted(slots)

    def offset_of(self, slot: datetime) -> timedelta:
        """The random offset of one slot: uniform in [0, max_offset], a pure function of (seed, slot)."""
        if self.max_offset <= timedelta(0):
            return timedelta(0)
        import hashlib  # noqa: PLC0415 (OpenSSL loads on use: `upmirror status` of a manual schedule needs none)

        digest = hashlib.sha256(f"{self.seed}|{slot.astimezone(UTC).isoformat()}".encode()).digest()
        fraction = int.from_bytes(digest[:8], "big") / 2**64
        return timedelta(seconds=round(fraction * self.max_offset.total_seconds()))

    def next_sync(self, after: datetime) -> datetime | None:
        """The first scheduled time (offset included) strictly after ``after``; None when synchronizing manually."""
        if not self.options.automatic:
            return None
        after = after.astimezone(UTC)
        for day_shift in (-1, 0, 1, 2):
            for slot in self.slots_of_day(after + day_shift * DAY):
                due = slot + self.offset_of(slot)
                if due > after:
                    return due
        raise AssertionError("a day always has a slot")

    def retry_times(self, failed_at: datetime) -> list[datetime]:
        """When an unreachable upstream is tried again: ``retries`` times, ``retry_interval_minutes`` apart (WSUS
        retries twice about 15 minutes apart), then the next scheduled time takes over."""
        interval = timedelta(minutes=self.options.retry_interval_minutes)
        return [failed_at + (attempt + 1) * interval for attempt in range(self.options.retries)]
