"""``upmirror serve``: the sync protocol and the content directory over HTTP (aiohttp on uvloop).

``run`` listens, prints ``listening on http://HOST:PORT`` as its first line of output (port 0 picks a free port,
and the real one is printed), and stops gracefully on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import uvloop
from aiohttp import web

from upmirror.options import Options, ServerDirectory
from upmirror.server.app import build_app


def url_of(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def serve(directory: ServerDirectory, options: Options, host: str, port: int) -> None:
    app = build_app(directory, options)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True, backlog=1024)
        await site.start()
        bound_port = runner.addresses[0][1]
        print(f"listening on {url_of(host, bound_port)}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, stop.set)
        await stop.wait()
        print("stopping", file=sys.stderr, flush=True)
    finally:
        await runner.cleanup()


def run(directory: ServerDirectory, options: Options, host: str, port: int) -> None:
    uvloop.run(serve(directory, options, host, port))
