"""A real HTTP server on loopback whose misbehaviour is planned per path: it resets connections, stalls, answers
500 or 429 (with Retry-After), flips bytes, lies about Content-Length, ignores Range, or trickles at a set rate, and
it counts the body bytes it sent. Upstream servers in the wild do all of these; the download engine must cope.

``with FaultyServer({"/a.bin": data}) as server:`` serves on ``server.url``; ``server.plan("/a.bin", "reset",
"status:500")`` makes the next two requests of that path fail in those ways, then it serves normally again.

``FaultyServer({}, forward_to=upstream.url)`` stands in front of a real server: a path it has no file for is
forwarded there (method, headers and body), and only the planned answers (``status:``, ``redirect:``) are its own;
``server.requests(path)`` counts every request of the path, the planned and the forwarded.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import re
import socket
import ssl
import struct
import threading
import warnings
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType

from aiohttp import ClientSession, web

from tests.support.nginx import free_port, wait_for_port

# Faults, applied to one request each, in plan order:
#   "reset"          send half of the body, then reset the connection (RST)
#   "stall"          send half of the body, then go silent until the client gives up
#   "short"          announce the full length, send half, close cleanly
#   "flip"           send the whole body with one byte changed
#   "status:CODE"    answer CODE with no body; "status:429:SECONDS" adds Retry-After
#   "redirect:PATH"  answer 302 with PATH as Location
FAULT = re.compile(r"^(reset|stall|short|flip|redirect:/\S*|status:\d{3}(:\d+)?)$")
RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
SEND_BLOCK = 64 << 10
STALL_SECONDS = 3600.0
# Headers of one hop, not passed on by the forwarding mode (aiohttp sets its own).
HOP_HEADERS = frozenset({"host", "connection", "keep-alive", "transfer-encoding", "content-length"})
MAX_FORWARDED_BODY = 64 << 20


@dataclass
class PathState:
    data: bytes
    faults: deque[str] = field(default_factory=deque)
    requests: int = 0
    bytes_sent: int = 0
    ranges: list[tuple[int, int]] = field(default_factory=list)
    forwarded: bool = False  # answered by the real server behind (``forward_to``)


def planned_answer(fault: str | None) -> web.Response | None:
    """The answer of a fault that replaces the file: an error status or a redirect."""
    if fault and fault.startswith("status:"):
        _, code, *wait = fault.split(":")
        headers = {"Retry-After": wait[0]} if wait else {}
        return web.Response(status=int(code), headers=headers, text="planned failure\n")
    if fault and fault.startswith("redirect:"):
        return web.Response(status=302, headers={"Location": fault.removeprefix("redirect:")}, text="moved\n")
    return None


class FaultyServer:
    def __init__(
        self,
        files: dict[str, bytes],
        *,
        honour_range: bool = True,
        rate: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
        forward_to: str | None = None,
    ) -> None:
        self.port = free_port()
        self.forward_to = forward_to
        self.honour_range = honour_range
        self.rate = rate  # bytes per second per connection, None for full speed
        self._ssl = ssl_context
        self._lock = threading.Lock()
        self._paths: dict[str, PathState] = {path: PathState(data) for path, data in files.items()}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._runner: web.AppRunner | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._last_headers: dict[str, dict[str, str]] = {}
        self._active = 0
        self._transports: set[asyncio.Transport] = set()
        self._connections_seen = 0
        self._client: ClientSession | None = None
        self.max_active = 0  # the most requests served at the same time

    @property
    def url(self) -> str:
        return f"{'https' if self._ssl else 'http'}://127.0.0.1:{self.port}"

    def plan(self, path: str, *faults: str) -> None:
        for fault in faults:
            if not FAULT.match(fault):
                raise ValueError(f"unknown fault {fault!r}")
        with self._lock:
            state = self._state(path)
            if state is None:
                raise KeyError(f"{path} is not served")
            state.faults.extend(faults)

    def replace(self, path: str, data: bytes) -> None:
        """The file changes upstream (a new ETag)."""
        with self._lock:
            self._paths[path].data = data

    def bytes_sent(self, path: str | None = None) -> int:
        with self._lock:
            states = [self._paths[path]] if path else list(self._paths.values())
            return sum(s.bytes_sent for s in states)

    def requests(self, path: str) -> int:
        with self._lock:
            return self._paths[path].requests

    def last_headers(self, path: str) -> dict[str, str]:
        """The headers of the latest request for ``path`` (also for paths the server does not have)."""
        with self._lock:
            return dict(self._last_headers.get(path, {}))

    def active(self) -> int:
        """Requests being served right now (a killed client's requests end when the server notices)."""
        with self._lock:
            return self._active

    def connections(self) -> int:
        """The TCP connections that carried at least one request since the start."""
        with self._lock:
            return self._connections_seen

    def close_idle_connections(self) -> None:
        """Closes every connection as a server's keep-alive timeout does (a clean close, between requests)."""

        async def close_all() -> None:
            for transport in self._transports:
                transport.close()

        asyncio.run_coroutine_threadsafe(close_all(), self._loop).result(timeout=10)

    def _state(self, path: str) -> PathState | None:
        """The state of a path (None: not served); a path forwarded to the real server gets one at its first plan or
        request."""
        if self.forward_to is not None and path not in self._paths:
            self._paths[path] = PathState(b"", forwarded=True)
        return self._paths.get(path)

    def reset_counters(self) -> None:
        with self._lock:
            for state in self._paths.values():
                state.bytes_sent = 0
                state.requests = 0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self._active += 1
            self.max_active = max(self.max_active, self._active)
        try:
            return await self._respond(request)
        finally:
            with self._lock:
                self._active -= 1

    async def _respond(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            if request.transport is not None and request.transport not in self._transports:
                self._transports.add(request.transport)
                self._connections_seen += 1
            self._last_headers[request.path] = dict(request.headers)
            state = self._state(request.path)
            if state is None:
                raise web.HTTPNotFound()
            state.requests += 1
            fault = state.faults.popleft() if state.faults else None
            data = state.data
        etag = '"' + hashlib.sha1(data).hexdigest()[:16] + '"'
        planned = planned_answer(fault)
        if planned is not None or state.forwarded:
            return planned if planned is not None else await self._forward(request)
        start, end = 0, len(data)
        status = 200
        headers = {"ETag": etag, "Accept-Ranges": "bytes" if self.honour_range else "none"}
        match = RANGE.match(request.headers.get("Range", ""))
        if match and self.honour_range:
            start = int(match.group(1))
            end = min(len(data), int(match.group(2)) + 1) if match.group(2) else len(data)
            if start >= len(data):
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        body = data[start:end]
        if fault == "flip" and body:
            middle = len(body) // 2
            body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :]
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = len(body)
        await response.prepare(request)
        limit = len(body) // 2 if fault in ("reset", "stall", "short") else len(body)
        sent = 0
        while sent < limit:
            block = body[sent : min(limit, sent + SEND_BLOCK)]
            if self.rate:
                # Paced before each block, so a request counts as active only while its bytes flow.
                await asyncio.sleep(len(block) / self.rate)
            await response.write(block)
            sent += len(block)
            with self._lock:
                state.bytes_sent += len(block)
        transport = request.transport
        if fault == "reset" and transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        elif fault == "stall":
            await asyncio.sleep(STALL_SECONDS)
        elif fault == "short" and transport is not None:
            transport.close()
        return response

    async def _forward(self, request: web.Request) -> web.Response:
        """The real server's answer to the request, whole (the sync protocol's bodies are small)."""
        assert self._client is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        async with self._client.request(
            request.method, f"{self.forward_to}{request.path_qs}", headers=headers, data=await request.read()
        ) as answer:
            body = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS}
            return web.Response(status=answer.status, headers=kept, body=body)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())
        # Let the closing of the last connections run before the loop goes away (no unclosed sockets).
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        for _ in range(3):
            self._loop.run_until_complete(asyncio.sleep(0))

    async def _main(self) -> None:
        app = web.Application(client_max_size=MAX_FORWARDED_BODY)
        app.router.add_route("*" if self.forward_to else "GET", "/{tail:.*}", self._handle)
        if self.forward_to is not None:
            # No decompression: bodies pass on as the real server encoded them, with its headers.
            self._client = ClientSession(auto_decompress=False)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self._ssl)
        await site.start()
        self._stop = asyncio.Event()
        self._started.set()
        await self._stop.wait()
        await site.stop()
        # Kept-alive and stalled connections are cut here, so no socket outlives the server.
        for transport in self._transports:
            transport.abort()
        await asyncio.sleep(0)
        await self._runner.cleanup()
        if self._client is not None:
            await self._client.close()

    def __enter__(self) -> FaultyServer:
        self._thread.start()
        self._started.wait(10)
        wait_for_port(self.port)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)
        self._loop.close()
        # Connections the clients cut mid-body (resets, SIGKILL) leave transport objects that only the collector
        # frees; collect them now, while this server is being torn down, not during a later test.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
