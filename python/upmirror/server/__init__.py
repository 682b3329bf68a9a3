"""``upmirror serve``: the sync protocol and the content directory over HTTP (aiohttp on uvloop).

``run`` binds the listening socket, prints ``listening on http://HOST:PORT`` as its first line of output (port 0
picks a free port, and the real one is printed), and serves it from ``workers`` processes: the first process forks
the others, all accept from the one socket, each with its own event loop, store connections and token cache (a
Python event loop is bound to one core; content serving wants them all). SIGTERM or SIGINT stops every worker
gracefully: open requests finish, then the processes exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Callable

import uvloop
from aiohttp import web

from upmirror.errors import InputError
from upmirror.options import Options, ServerDirectory
from upmirror.server.app import build_app
from upmirror.server.scheduler import Scheduler
from upmirror.store import Store

BACKLOG = 1024
PR_SET_PDEATHSIG = 1


def url_of(host: str, port: int, *, tls: bool = False) -> str:
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def default_workers() -> int:
    return max(1, min(len(os.sched_getaffinity(0)), 8))


def tls_context(options: Options) -> ssl.SSLContext | None:
    """The server's TLS context from its certificate and key files, or None for plain HTTP."""
    if not options.server.tls_certificate:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(options.server.tls_certificate, options.server.tls_key)
    except (OSError, ssl.SSLError) as error:
        raise InputError(
            f"cannot use server.tls_certificate {options.server.tls_certificate!r} with server.tls_key: {error}"
        ) from None
    return context


async def serve(
    directory: ServerDirectory, options: Options, listening: socket.socket, *, scheduler: bool = False
) -> None:
    """Serves on an already bound socket until SIGTERM or SIGINT; ``scheduler`` also runs the automatic
    synchronization schedule (in one process only)."""
    app = build_app(directory, options)
    if scheduler:
        app.cleanup_ctx.append(run_scheduler(directory))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.SockSite(runner, listening, backlog=BACKLOG, ssl_context=tls_context(options)).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def run_scheduler(directory: ServerDirectory) -> Callable[[web.Application], AsyncIterator[None]]:
    async def scheduler_context(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(Scheduler(directory).run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return scheduler_context


def stop_with_parent(parent: int) -> None:
    """A worker gets SIGTERM when the first process dies, even by SIGKILL, so no worker outlives the server."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def run(directory: ServerDirectory, options: Options, host: str, port: int, workers: int = 1) -> None:
    # Open (and migrate) the store once before the workers exist: a bad store fails here, and no two workers race
    # to migrate it.
    Store.open(directory.database_path).close()
    tls_context(options)  # a bad certificate or key fails here, before anything listens
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.create_server((host, port), family=family, backlog=BACKLOG)
    listening.setblocking(False)
    url = url_of(host, listening.getsockname()[1], tls=bool(options.server.tls_certificate))
    print(f"listening on {url}", flush=True)
    sys.stderr.flush()
    children = []
    parent = os.getpid()
    for _ in range(workers - 1):
        pid = os.fork()  # before any thread or event loop exists in this process
        if pid == 0:
            code = 0
            try:
                stop_with_parent(parent)
                uvloop.run(serve(directory, options, listening))
            except BaseException:  # a worker reports and exits; the first one carries on
                import traceback  # noqa: PLC0415

                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        children.append(pid)
    try:
        uvloop.run(serve(directory, options, listening, scheduler=True))
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in children:
            os.waitpid(pid, 0)
        listening.close()
