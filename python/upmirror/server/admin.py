"""The admin interface of ``upmirror serve`` (admin token required): the synchronization status and "Synchronize
now". A synchronization runs as its own ``upmirror sync`` process, exactly as from the command line, so the server
keeps serving while it runs and a crash of one cannot take down the other; the sync lock keeps it to one at a time."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Final

from aiohttp import web

from upmirror.options import ServerDirectory
from upmirror.status import status_document
from upmirror.sync import is_sync_running

SYNC_COMMAND: Final = (sys.executable, "-m", "upmirror.cli", "sync", "--json")


async def start_sync(directory: ServerDirectory, *, scheduled: bool) -> asyncio.subprocess.Process:
    """Starts ``upmirror sync`` for the server as a child process; its JSON history record arrives on stdout."""
    return await asyncio.create_subprocess_exec(
        *SYNC_COMMAND,
        "--dir",
        str(directory.root),
        *(["--scheduled"] if scheduled else []),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )


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
        if is_sync_running(self.directory):
            raise web.HTTPConflict(text="a synchronization is already running\n")
        process = await start_sync(self.directory, scheduled=False)
        task = asyncio.create_task(self._reap(process))
        self.running.add(task)
        task.add_done_callback(self.running.discard)
        return web.json_response({"started": True, "pid": process.pid}, status=202)

    async def _reap(self, process: asyncio.subprocess.Process) -> None:
        await process.communicate()
