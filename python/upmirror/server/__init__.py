"""``upmirror serve``: the sync protocol and the content directory over HTTP.

``run`` binds the listening socket and prints ``listening on http://HOST:PORT`` as its first line of output (port 0
picks a free port, and the real one is printed). Every connection is accepted by the Rust front
(``ContentFront``, rust/core/src/front), which answers ``/Content`` itself and forwards everything else to the aiohttp
application (aiohttp on uvloop, app.py). That application listens on a Unix socket in a private directory only the
front uses, served by ``workers`` processes: the first process forks the others before any thread exists, then
starts the front and the synchronization schedule. The workers' threads run at a lower CPU priority than the
front's (``yield_to_content``), so /Content keeps its rate while metadata answers keep the cores busy. TLS, when
configured, ends at the front. SIGTERM or SIGINT stops
everything gracefully: the front stops accepting and lets requests in flight finish, then the workers exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import ssl
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import uvloop
from aiohttp import web

from upmirror._native import ContentFront
from upmirror.errors import InputError
from upmirror.options import Options, ServerDirectory
from upmirror.server.app import MAX_BODY, build_app, front_priority, yield_to_content
from upmirror.server.log import start_log, stop_log
from upmirror.server.scheduler import Scheduler
from upmirror.store import Store

BACKLOG = 1024
# The private folder of a running server's backend socket: <temp>/upmirror-serve-<server pid>-<random>.
PRIVATE_PREFIX = "upmirror-serve-"
PR_SET_PDEATHSIG = 1

log = logging.getLogger("upmirror.server")


def url_of(host: str, port: int, *, tls: bool = False) -> str:
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def default_workers() -> int:
    return max(1, min(len(os.sched_getaffinity(0)), 8))


def check_tls_files(options: Options) -> None:
    """Refuses a certificate and key that do not load, before anything listens. (TLS itself ends at the Rust front,
    which starts only after the workers exist; a bad file found there would surface after "listening on".)"""
    if not options.server.tls_certificate:
        return
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            options.server.tls_certificate, options.server.tls_key
        )
    except (OSError, ssl.SSLError) as error:
        raise InputError(
            f"cannot use server.tls_certificate {options.server.tls_certificate!r} with server.tls_key: {error}"
        ) from None


def start_front(
    directory: ServerDirectory, options: Options, listening: socket.socket, backend: socket.socket
) -> ContentFront:
    """The Rust front on the public socket, forwarding to the backend socket; TLS ends here when configured."""
    tls = options.server.tls_certificate
    try:
        return ContentFront(
            listening.fileno(),
            directory.content_dir(options),
            backend.getsockname(),
            max_request_body=MAX_BODY,
            anonymous_content=options.server.anonymous_content,
            tls_certificate=tls or None,
            tls_key=options.server.tls_key if tls else None,
        )
    except ValueError as error:
        raise InputError(str(error)) from None


async def serve(
    directory: ServerDirectory,
    options: Options,
    backend: socket.socket,
    front: Callable[[], ContentFront] | None = None,
) -> None:
    """Serves the application on the bound backend socket until SIGTERM or SIGINT. ``front`` (in one process only)
    starts the front once the backend answers, and the automatic synchronization schedule runs beside it."""
    app = build_app(directory, options)
    if front is not None:
        app.cleanup_ctx.append(run_scheduler(directory))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.SockSite(runner, backend, backlog=BACKLOG).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, stop.set)
        running = front() if front is not None else None
        yield_to_content()  # after the front started its threads, which keep the normal priority
        try:
            await stop.wait()
        finally:
            if running is not None:  # the backend keeps answering while the front's requests finish
                await loop.run_in_executor(None, running.stop)
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


def remove_stale_private_folders() -> None:
    """Removes the backend-socket folders of servers that died without cleaning up (SIGKILL, power loss). The folder
    names carry the server's process ID; a folder whose process still runs, or that another user owns, is left alone."""
    for folder in Path(tempfile.gettempdir()).glob(f"{PRIVATE_PREFIX}*-*"):
        pid_text = folder.name.removeprefix(PRIVATE_PREFIX).split("-", 1)[0]
        if not pid_text.isdigit() or not folder.is_dir() or folder.stat().st_uid != os.getuid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:  # alive, under another user
            continue


def bind_backend(private: Path) -> socket.socket:
    """The aiohttp workers' socket: a Unix socket in a directory only this user can enter."""
    backend = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    backend.bind(str(private / "backend.sock"))
    backend.listen(BACKLOG)
    backend.setblocking(False)
    return backend


def run(directory: ServerDirectory, options: Options, host: str, port: int, workers: int = 1) -> None:
    # Open (and migrate) the store once before the workers exist: a bad store fails here, and no two workers race
    # to migrate it.
    Store.open(directory.database_path).close()
    check_tls_files(options)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.create_server((host, port), family=family, backlog=BACKLOG)
    url = url_of(host, listening.getsockname()[1], tls=bool(options.server.tls_certificate))
    print(f"listening on {url}", flush=True)
    sys.stderr.flush()
    remove_stale_private_folders()
    private = Path(tempfile.mkdtemp(prefix=f"{PRIVATE_PREFIX}{os.getpid()}-"))
    backend = bind_backend(private)
    children = []
    parent = os.getpid()
    front_priority()  # read before any worker gives way
    for _ in range(workers - 1):
        pid = os.fork()  # before any thread or event loop exists in this process
        if pid == 0:
            code = 0
            try:
                stop_with_parent(parent)
                yield_to_content()
                listening.close()
                start_log(directory.logs, rotates=False)
                uvloop.run(serve(directory, options, backend))
            except BaseException:  # a worker reports and exits; the first one carries on
                import traceback  # noqa: PLC0415

                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        children.append(pid)
    handlers = start_log(directory.logs, rotates=True)
    log.info("listening on %s with %d worker process(es)", url, workers)
    try:
        uvloop.run(serve(directory, options, backend, lambda: start_front(directory, options, listening, backend)))
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in children:
            os.waitpid(pid, 0)
        listening.close()
        backend.close()
        shutil.rmtree(private, ignore_errors=True)
        log.info("stopped")
        stop_log(handlers)
