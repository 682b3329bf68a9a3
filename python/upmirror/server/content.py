"""``/Content/<xx>/<SHA-1><ext>``: update files in the WSUS layout, sent with zero-copy ``sendfile(2)``.

aiohttp's FileResponse already handles HEAD, a single Range, ETag/Last-Modified and conditional requests, but under
uvloop (which has no native ``loop.sendfile``) it falls back to reading the file through Python in chunks. Here the
body goes straight from the page cache to the socket with ``os.sendfile`` once the headers have left the
transport's buffer, waiting for the socket to drain through a duplicate descriptor the event loop can watch.
Requests with a Range header are answered here (aiohttp handles one range only, and says nothing on a 416): one
range as a plain 206, several as ``multipart/byteranges``, each part sent the same way, and an unsatisfiable or
malformed range as 416 with a message.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from email.utils import formatdate
from pathlib import Path
from typing import IO, Any, Final

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from multidict import istr

from upmirror import content_relative_path, parse_content_path

MAX_RANGES: Final = 64


class ZeroCopyFileResponse(web.FileResponse):
    """FileResponse whose body is sent with ``os.sendfile`` on the event loop's own socket."""

    async def _sendfile(self, request: web.BaseRequest, fobj: IO[Any], offset: int, count: int) -> AbstractStreamWriter:
        writer = await web.StreamResponse.prepare(self, request)
        assert writer is not None
        transport = request.transport
        if transport is None or transport.get_extra_info("sslcontext") is not None or self.compression:
            return await self._sendfile_fallback(writer, fobj, offset, count)
        await send_zero_copy(transport, writer, fobj.fileno(), offset, count)
        await web.StreamResponse.write_eof(self)
        return writer


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
        self.content = content

    def path_of(self, request: web.Request) -> Path:
        relative = f"{request.match_info['folder']}/{request.match_info['name']}"
        try:
            sha1, extension = parse_content_path(relative)
        except ValueError:
            raise web.HTTPNotFound(text=f"{relative!r} is not the name of a content file\n") from None
        return self.content / content_relative_path(sha1, extension)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = self.path_of(request)
        if not path.is_file():
            raise web.HTTPNotFound(text=f"no content file {path.parent.name}/{path.name}\n")
        header = request.headers.get(hdrs.RANGE)
        if header is None:
            return ZeroCopyFileResponse(path)
        return await self.ranges(request, path, header)

    async def ranges(self, request: web.Request, path: Path, header: str) -> web.StreamResponse:
        try:
            file = path.open("rb")
        except FileNotFoundError:
            raise web.HTTPNotFound(text=f"no content file {path.parent.name}/{path.name}\n") from None
        with file:
            status = os.fstat(file.fileno())
            size = status.st_size
            etag = f'"{status.st_mtime_ns:x}-{size:x}"'  # the same validator FileResponse gives
            last_modified = formatdate(status.st_mtime, usegmt=True)
            if_range = request.headers.get(hdrs.IF_RANGE)
            validators = {hdrs.ETAG: etag, hdrs.LAST_MODIFIED: last_modified, hdrs.ACCEPT_RANGES: "bytes"}
            if if_range is not None and if_range not in (etag, last_modified):
                # The client's copy is stale: the whole file, as if there were no Range.
                return await send_parts(request, file, [(0, size, b"")], b"", validators)
            try:
                ranges = parse_ranges(header, size)
            except ValueError as error:
                raise web.HTTPRequestRangeNotSatisfiable(
                    headers={hdrs.CONTENT_RANGE: f"bytes */{size}"}, text=f"{error}\n"
                ) from None
            if ranges is None:
                return await send_parts(request, file, [(0, size, b"")], b"", validators)
            if len(ranges) == 1:
                ((start, end),) = ranges
                validators[hdrs.CONTENT_RANGE] = f"bytes {start}-{end - 1}/{size}"
                return await send_parts(request, file, [(start, end, b"")], b"", validators, status=206)
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
            validators[hdrs.CONTENT_TYPE] = f"multipart/byteranges; boundary={boundary}"
            return await send_parts(request, file, parts, f"\r\n--{boundary}--\r\n".encode(), validators, status=206)


async def send_parts(
    request: web.Request,
    file: IO[bytes],
    parts: list[tuple[int, int, bytes]],
    tail: bytes,
    headers: dict[istr, str],
    *,
    status: int = 200,
) -> web.StreamResponse:
    """Sends (start, end, head) parts of the file, each head followed by the bytes zero-copy, then ``tail``."""
    response = web.StreamResponse(status=status, headers=headers)
    if hdrs.CONTENT_TYPE not in headers:
        response.content_type = "application/octet-stream"
    response.content_length = sum(len(head) + end - start for start, end, head in parts) + len(tail)
    writer = await response.prepare(request)
    if request.method == hdrs.METH_HEAD or writer is None or request.transport is None:
        await response.write_eof()
        return response
    for start, end, head in parts:
        if head:
            await response.write(head)
        await send_zero_copy(request.transport, writer, file.fileno(), start, end - start)
    if tail:
        await response.write(tail)
    await response.write_eof()
    return response
