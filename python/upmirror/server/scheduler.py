"""The automatic synchronization schedule, run by ``upmirror serve``: at each scheduled time (first synchronization
time, N per day, random offset; options re-read every minute so changes apply without a restart) it starts
``upmirror sync``; when the upstream is unreachable it tries again ``schedule.retries`` times
``schedule.retry_interval_minutes`` apart, as WSUS does, then leaves it to the next scheduled time."""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Final

from upmirror.errors import UpmirrorError
from upmirror.model import SyncRecord
from upmirror.options import ServerDirectory
from upmirror.schedule import Schedule
from upmirror.server.admin import start_sync
from upmirror.store import Store
from upmirror.sync import SyncBusyError

# Options are re-read at least this often while waiting, so a changed schedule takes effect.
RECHECK_SECONDS: Final = 60.0

log = logging.getLogger("upmirror.scheduler")


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def sleep_until(moment: datetime.datetime) -> None:
    while (remaining := (moment - utc_now()).total_seconds()) > 0:
        await asyncio.sleep(remaining)


class Scheduler:
    def __init__(self, directory: ServerDirectory) -> None:
        self.directory = directory

    def schedule(self) -> Schedule | None:
        options = self.directory.load()
        if options.is_root or not options.schedule.automatic:
            return None
        with Store.open(self.directory.database_path) as store:
            return Schedule(options.schedule, seed=store.server_id)

    async def run(self) -> None:
        """Runs until cancelled."""
        while True:
            try:
                schedule = await asyncio.to_thread(self.schedule)
            except UpmirrorError as error:
                log.warning("scheduler: cannot read the options: %s", error)
                schedule = None
            now = utc_now()
            due = schedule.next_sync(now) if schedule else None
            if due is None or (due - now).total_seconds() > RECHECK_SECONDS:
                await asyncio.sleep(RECHECK_SECONDS)
                continue
            await sleep_until(due)
            assert schedule is not None
            await self.sync_with_retries(schedule)

    async def sync_with_retries(self, schedule: Schedule) -> None:
        record = await self.sync_once()
        if record is None or not record.upstream_unreachable:
            return
        for retry in schedule.retry_times(utc_now()):
            await sleep_until(retry)
            record = await self.sync_once()
            if record is None or not record.upstream_unreachable:
                return
        log.warning("scheduler: upstream still unreachable; waiting for the next scheduled time")

    async def sync_once(self) -> SyncRecord | None:
        """Runs one ``upmirror sync`` and returns the history record it wrote (None if it wrote none, e.g. when
        another sync held the lock)."""
        before = await asyncio.to_thread(self.latest_record)
        try:
            process = await start_sync(self.directory, scheduled=True)
        except SyncBusyError:
            return None
        await process.communicate()
        after = await asyncio.to_thread(self.latest_record)
        if after is None or (before is not None and after.id == before.id):
            return None
        log.info("scheduled sync %s%s", after.result, f": {after.error}" if after.error else "")
        return after

    def latest_record(self) -> SyncRecord | None:
        with Store.open(self.directory.database_path) as store:
            history = store.sync_history(limit=1)
        return history[0] if history else None
