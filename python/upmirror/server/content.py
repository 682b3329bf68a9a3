"""``/Content/<xx>/<SHA-1><ext>``: update files in the WSUS layout, sent with zero-copy ``sendfile(2)`` (through
the TLS layer in bounded pieces when the server serves TLS).

Everything is answered here, on the event loop: the file is opened and stat'ed inline (a page-cached open costs
microseconds, where aiohttp's FileResponse hands each request to a thread), validators (ETag, Last-Modified) and
conditional requests (If-None-Match, If-Modified-Since, If-Range) are checked, and the body goes straight from the
page cache to the socket with ``os.sendfile`` once the headers have left the transport's buffer (uvloop has no native
``loop.sendfile``), waiting for the socket to drain through a duplicate descriptor the event loop can watch. One
range is a plain 206, several are ``multipart/byteranges``, and an unsatisfiable or malformed range is a 416 with a
message.
"""

from __future__ import annotations

import asyncio
import os
import stat
import uuid
from email.utils import formatdate
from pathlib import Path
from typing import Final

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from multidict import istr

from upmirror import content_relative_path, parse_content_path
from upmirror.errors import one_line

MAX_RANGES: Final = 64
# Under TLS, file bytes are read and written in pieces of this size (sendfile cannot encrypt).
COPY_PIECE: Final = 1 << 20
# Responses up to this size are read and written with their headers in one write instead of sendfile.
SMALL_BODY: Final = 64 << 10


async def send_zero_copy(
    transport: asyncio.BaseTransport, writer: AbstractStreamWriter, file_descriptor: int, offset: int, count: int
) -> None:
    """Sends ``count`` bytes of the file from ``offset`` on the transport's socket, after what is already queued."""
    writer.send_headers()
    await _flushed(transport, writer)
    socket = transport.get_extra_info("socket")
    if socket is None:
        raise ConnectionResetError("connection lost")
    out = socket.fileno()
    loop = asyncio.get_running_loop()
    watched = -1  # a duplicate of the socket for the loop to watch: the transport owns the original descriptor
    try:
        while count > 0:
            try:
                sent = os.sendfile(out, file_descriptor, offset, count)
            except BlockingIOError:
                if watched < 0:
                    watched = os.dup(out)
                await _writable(loop, watched)
                continue
            except OSError as error:
                raise ConnectionResetError(f"connection lost while sending: {error.strerror}") from None
            if sent == 0:
                raise ConnectionResetError("the file ended before the announced length (it was changed)")
            offset += sent
            count -= sent
    finally:
        if watched >= 0:
            os.close(watched)


async def _flushed(transport: asyncio.BaseTransport, writer: AbstractStreamWriter) -> None:
    """Waits until the transport has handed everything queued to the socket (the headers), so bytes sent directly
    on the socket come after them."""
    while transport.get_write_buffer_size():  # type: ignore[attr-defined]
        low, high = transport.get_write_buffer_limits()  # type: ignore[attr-defined]
        transport.set_write_buffer_limits(high=0, low=0)  # type: ignore[attr-defined]
        try:
            await writer.drain()
        finally:
            transport.set_write_buffer_limits(high=high, low=low)  # type: ignore[attr-defined]
        if transport.get_write_buffer_size():  # type: ignore[attr-defined]
            await asyncio.sleep(0.001)


async def _writable(loop: asyncio.AbstractEventLoop, descriptor: int) -> None:
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(descriptor, wake)
    try:
        await ready
    finally:
        loop.remove_writer(descriptor)


def parse_ranges(header: str, size: int) -> list[tuple[int, int]] | None:
    """The satisfiable byte ranges of a Range header as (start, end exclusive); None when the header is not a
    bytes range at all (then the whole file is sent). Raises ValueError when it is malformed or nothing in it can
    be satisfied (416)."""
    unit, _, specs = header.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    parts = [spec.strip() for spec in specs.split(",") if spec.strip()]
    if not parts:
        raise ValueError("empty byte range set")
    if len(parts) > MAX_RANGES:
        raise ValueError(f"more than {MAX_RANGES} ranges in one request")
    ranges = []
    for spec in parts:
        first, dash, last = spec.partition("-")
        if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
            raise ValueError(f"malformed range {spec!r}")
        if first == "":
            if last == "" or int(last) == 0:
                raise ValueError(f"malformed range {spec!r}")
            start, end = max(0, size - int(last)), size
        else:
            start = int(first)
            end = size if last == "" else min(size, int(last) + 1)
            if last != "" and int(last) < start:
                raise ValueError(f"malformed range {spec!r}")
        if start < size:
            ranges.append((start, end))
    if not ranges:
        raise ValueError(f"no range within the file's {size} bytes")
    return ranges


class ContentFiles:
    """The handler of ``/Content/{folder}/{name}`` for one content directory."""

    def __init__(self, content: Path) -> None:
        self.content = f"{content}/"  # joined as text below: pathlib costs more than the rest of a small request

    def relative_path(self, request: web.Request) -> str:
        """The layout path the request names, rebuilt from its parsed digest and extension (never the raw path)."""
        relative = f"{request.match_info['folder']}/{request.match_info['name']}"
        try:
            sha1, extension = parse_content_path(relative)
        except ValueError:
            raise web.HTTPNotFound(text=f"{one_line(repr(relative))} is not the name of a content file\n") from None
        return content_relative_path(sha1, extension)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        relative = self.relative_path(request)
        try:
            descriptor = os.open(self.content + relative, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise web.HTTPNotFound(text=f"no content file {relative}\n") from None
        try:
            status = os.fstat(descriptor)
            if not stat.S_ISREG(status.st_mode):
                raise web.HTTPNotFound(text=f"no content file {relative}\n")
            return await self.answer(request, descriptor, status)
        finally:
            os.close(descriptor)

    async def answer(self, request: web.Request, descriptor: int, status: os.stat_result) -> web.StreamResponse:
        size = status.st_size
        etag = f'"{status.st_mtime_ns:x}-{size:x}"'
        last_modified = formatdate(status.st_mtime, usegmt=True)
        headers = {
            hdrs.ETAG: etag,
            hdrs.LAST_MODIFIED: last_modified,
            hdrs.ACCEPT_RANGES: "bytes",
            hdrs.CONTENT_TYPE: "application/octet-stream",
        }
        if_none_match = request.headers.get(hdrs.IF_NONE_MATCH)
        if if_none_match is not None:
            tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
            if etag in tags or "*" in tags:
                return web.Response(status=304, headers=headers)
        elif (since := request.if_modified_since) is not None and int(status.st_mtime) <= since.timestamp():
            return web.Response(status=304, headers=headers)
        whole = [(0, size, b"")]
        header = request.headers.get(hdrs.RANGE)
        if_range = request.headers.get(hdrs.IF_RANGE)
        if header is None or (if_range is not None and if_range not in (etag, last_modified)):
            return await send_parts(request, descriptor, whole, b"", headers)  # no range, or the client's is stale
        try:
            ranges = parse_ranges(header, size)
        except ValueError as error:
            raise web.HTTPRequestRangeNotSatisfiable(
                headers={hdrs.CONTENT_RANGE: f"bytes */{size}"}, text=f"{one_line(str(error))}\n"
            ) from None
        if ranges is None:
            return await send_parts(request, descriptor, whole, b"", headers)
        if len(ranges) == 1:
            ((start, end),) = ranges
            headers[hdrs.CONTENT_RANGE] = f"bytes {start}-{end - 1}/{size}"
            return await send_parts(request, descriptor, [(start, end, b"")], b"", headers, status=206)
        boundary = uuid.uuid4().hex
        parts = [
            (
                start,
                end,
                f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Range: bytes {start}-{end - 1}/{size}\r\n\r\n".encode(),
            )
            for start, end in ranges
        ]
        headers[hdrs.CONTENT_TYPE] = f"multipart/byteranges; boundary={boundary}"
        return await send_parts(request, descriptor, parts, f"\r\n--{boundary}--\r\n".encode(), headers, status=206)


async def send_copied(response: web.StreamResponse, descriptor: int, offset: int, count: int) -> None:
    """Sends ``count`` bytes of the file from ``offset`` through the response (for TLS), a bounded piece at a time."""
    while count > 0:
        piece = os.pread(descriptor, min(count, COPY_PIECE), offset)
        if not piece:
            raise ConnectionResetError("the file shrank while it was sent")
        await response.write(piece)
        offset += len(piece)
        count -= len(piece)


async def send_parts(
    request: web.Request,
    descriptor: int,
    parts: list[tuple[int, int, bytes]],
    tail: bytes,
    headers: dict[istr, str],
    *,
    status: int = 200,
) -> web.StreamResponse:
    """Sends (start, end, head) parts of the file, each head followed by the bytes zero-copy, then ``tail``."""
    length = sum(len(head) + end - start for start, end, head in parts) + len(tail)
    if length <= SMALL_BODY:
        # A few KiB: read them and let headers and body leave in one write, cheaper than a separate sendfile.
        body = b"".join(head + os.pread(descriptor, end - start, start) for start, end, head in parts) + tail
        return web.Response(status=status, headers=headers, body=body)
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = length
    writer = await response.prepare(request)
    if request.method == hdrs.METH_HEAD or writer is None or request.transport is None:
        await response.write_eof()
        return response
    # Under TLS the bytes must pass through the TLS layer: sendfile would put plain bytes on the socket.
    encrypted = request.transport.get_extra_info("sslcontext") is not None
    for start, end, head in parts:
        if head:
            await response.write(head)
        if encrypted:
            await send_copied(response, descriptor, start, end - start)
        else:
            await send_zero_copy(request.transport, writer, descriptor, start, end - start)
    if tail:
        await response.write(tail)
    await response.write_eof()
    return response
