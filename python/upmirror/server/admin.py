"""The admin interface of ``upmirror serve`` (admin token required): the synchronization status and "Synchronize
now". A synchronization runs as its own ``upmirror sync`` process, exactly as from the command line, so the server
keeps serving while it runs and a crash of one cannot take down the other. The sync lock keeps it to one at a time:
the server takes it before starting the process and hands it down, so a second "synchronize now" in the same moment
(in any worker) is refused rather than started."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Final

from aiohttp import web

from upmirror.options import ServerDirectory
from upmirror.status import status_document
from upmirror.sync import LOCK_FD_VARIABLE, SyncBusyError, take_sync_lock

SYNC_COMMAND: Final = (sys.executable, "-m", "upmirror.cli", "sync", "--json")


async def start_sync(directory: ServerDirectory, *, scheduled: bool) -> asyncio.subprocess.Process:
    """Takes the server's sync lock and starts ``upmirror sync`` as a child process holding it; its JSON history
    record arrives on stdout. Raises SyncBusyError while a synchronization runs."""
    lock = take_sync_lock(directory)
    try:
        return await asyncio.create_subprocess_exec(
            *SYNC_COMMAND,
            "--dir",
            str(directory.root),
            *(["--scheduled"] if scheduled else []),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            pass_fds=(lock.fileno(),),
            env={**os.environ, LOCK_FD_VARIABLE: str(lock.fileno())},
        )
    finally:
        lock.close()  # the child's copy holds the lock now


class Admin:
    def __init__(self, directory: ServerDirectory) -> None:
        self.directory = directory
        self.running: set[asyncio.Task[None]] = set()

    async def status(self, _: web.Request) -> web.Response:
        document = await asyncio.to_thread(status_document, self.directory)
        return web.json_response(document, dumps=lambda data: json.dumps(data, default=str))

    async def synchronize_now(self, _: web.Request) -> web.Response:
        options = self.directory.load()
        if options.is_root:
            raise web.HTTPBadRequest(text="this is a root server: it has no update source to synchronize from\n")
        try:
            process = await start_sync(self.directory, scheduled=False)
        except SyncBusyError:
            raise web.HTTPConflict(text="a synchronization is already running\n") from None
        task = asyncio.create_task(self._reap(process))
        self.running.add(task)
        task.add_done_callback(self.running.discard)
        return web.json_response({"started": True, "pid": process.pid}, status=202)

    async def _reap(self, process: asyncio.subprocess.Process) -> None:
        await process.communicate()
