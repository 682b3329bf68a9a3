"""The aiohttp application of ``upmirror serve``, behind its Rust front: the sync protocol of DESIGN.md for
downstream servers, the client and admin APIs, and the token check of ``/Content`` (which the front serves itself).

Every protocol request needs a downstream's bearer token; so does ``/Content`` unless the administrator opened content
to anonymous clients (``server.anonymous_content``): the front asks ``GET /api/v1/content-access`` with the client's
Authorization header and serves the file on 204. Store queries run on a small pool of threads, each with its own
SQLite connection, so a long listing never stalls file transfers on the event loop. Listings are encoded page by page
into a spooled temporary file and streamed from there, so memory does not grow with the catalog.

Bad input of any kind (malformed, oversized or wrongly typed bodies, unknown IDs, batches over the limit, anchors
this server never gave) is answered with a 4xx status and a one-line message, never a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Final, TypeVar

from aiohttp import hdrs, web
from aiohttp.web_protocol import RequestPayloadError

from upmirror import __version__
from upmirror.errors import InputError, one_line
from upmirror.model import (
    MSGPACK,
    PROTOCOL_VERSION,
    ApprovalsRequest,
    ApprovalsResponse,
    CategoriesResponse,
    ClientUpdatesRequest,
    ClientUpdatesResponse,
    DriversRequest,
    InventoryReport,
    RevisionsRequest,
    Selection,
    ServerInfo,
    UpdatesRequest,
    decode_msgpack,
    msgpack_encoder,
)
from upmirror.options import Options, ServerDirectory
from upmirror.server.admin import Admin
from upmirror.serversync.server import ServerSyncService
from upmirror.store import Listing, Store, TokenRole

MAX_BODY: Final = 16 << 20
STORE_THREADS: Final = 4
SPOOL_IN_MEMORY: Final = 4 << 20
STREAM_CHUNK: Final = 256 << 10
# A token checked valid is trusted this long without asking the store again; a revoked token stops working within
# this time. (The front caches its content-access answers as long: TOKEN_CACHE in rust/core/src/front/backend.rs.)
TOKEN_CACHE_SECONDS: Final = 5.0
# How much lower the backend's CPU priority is than the front's, in nice steps. A worker is several runnable threads
# (event loop, store threads) and there is a worker per core, so the backend needs the largest step for the front to
# keep most of a busy core: 10 left /Content at 0.6x its rate alone under W10's load, 19 at 0.7x (quick runs).
BACKEND_NICE: Final = 19
# The syntax of a bearer token (b64token, RFC 6750 2.1).
BEARER_TOKEN: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")

log = logging.getLogger("upmirror.server")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")
R = TypeVar("R", RevisionsRequest, DriversRequest)


def yield_to_content() -> None:
    """Lowers the calling thread's CPU priority by BACKEND_NICE: the backend's answers (metadata, the WSUS protocol)
    give way to the front's /Content when the cores are busy, so downstreams fetching files are not slowed by others
    asking for metadata. Linux keeps a nice value per thread; threads started later by this one inherit it."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, front_priority() + BACKEND_NICE))


@functools.cache
def front_priority() -> int:
    """The nice value the server started with (the front's): read once, before any thread of it gave way."""
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


class StoreThreads:
    """Runs store work on a few threads, each with its own connection (SQLite connections are per thread), at the
    backend's priority (``yield_to_content``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.executor = ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="store", initializer=yield_to_content)
        self.local = threading.local()
        self.opened: list[Store] = []
        self.lock = threading.Lock()

    def _store(self) -> Store:
        store: Store | None = getattr(self.local, "store", None)
        if store is None:
            store = self.local.store = Store.open(self.path)
            with self.lock:
                self.opened.append(store)
        return store

    async def run(self, work: Callable[[Store], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, lambda: work(self._store()))

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        for store in self.opened:
            store.close()


def msgpack_header(kind: int, count: int) -> bytes:
    """The MessagePack header of an array (kind 0x90) or map (kind 0x80) of ``count`` entries."""
    if count < 16:
        return bytes([kind | count])
    wide = 0xDC if kind == 0x90 else 0xDE
    if count < 1 << 16:
        return bytes([wide]) + count.to_bytes(2, "big")
    return bytes([wide + 1]) + count.to_bytes(4, "big")


def spool_array(pages: Iterator[list[object]]) -> tuple[int, IO[bytes]]:
    """Encodes the items of every page into a spooled file (memory up to SPOOL_IN_MEMORY, then disk); returns the
    item count and the file, rewound. The items are written without the array header, which needs the count."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 (returned to the caller)
    count = 0
    for page in pages:
        encoded = msgpack_encoder.encode(page)
        spool.write(memoryview(encoded)[len(msgpack_header(0x90, len(page))) :])
        count += len(page)
    spool.seek(0)
    return count, spool


class Body:
    """A MessagePack document assembled from byte pieces and spooled files, streamed with a known length."""

    def __init__(self) -> None:
        self.pieces: list[bytes | IO[bytes]] = []
        self.length = 0

    def add(self, piece: bytes) -> None:
        self.pieces.append(piece)
        self.length += len(piece)

    def add_array(self, count: int, items: IO[bytes]) -> None:
        self.add(msgpack_header(0x90, count))
        self.pieces.append(items)
        self.length += items.seek(0, 2)
        items.seek(0)

    def close(self) -> None:
        for piece in self.pieces:
            if not isinstance(piece, bytes):
                piece.close()

    async def send(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={hdrs.CONTENT_TYPE: MSGPACK})
        response.content_length = self.length
        try:
            await response.prepare(request)
            for piece in self.pieces:
                if isinstance(piece, bytes):
                    await response.write(piece)
                else:
                    while chunk := piece.read(STREAM_CHUNK):
                        await response.write(chunk)
            await response.write_eof()
        finally:
            self.close()
        return response


def listing_body(listing: Listing) -> Body:
    """A RevisionsResponse (``{anchor, revisions, expired}``) streamed from a listing; runs on a store thread."""
    body = Body()
    body.add(msgpack_header(0x80, 3) + msgpack_encoder.encode("anchor") + msgpack_encoder.encode(str(listing.anchor)))
    body.add(msgpack_encoder.encode("revisions"))
    body.add_array(*spool_array(listing.revisions))  # type: ignore[arg-type]
    body.add(msgpack_encoder.encode("expired"))
    body.add_array(*spool_array(listing.expired))  # type: ignore[arg-type]
    return body


def msgpack_response(record: object) -> web.Response:
    return web.Response(body=msgpack_encoder.encode(record), content_type=MSGPACK)


class Protocol:
    """The handlers of ``/api/v1``."""

    def __init__(self, stores: StoreThreads, options: Options) -> None:
        self.stores = stores
        self.options = options

    async def server_info(self, _: web.Request) -> web.Response:
        def read(store: Store) -> ServerInfo:
            selection = None
            if not self.options.is_root:
                # What this server holds is what its last successful sync selected; a replica below follows it.
                state = store.sync_state()
                selection = Selection(
                    products=state.products, classifications=state.classifications, languages=state.languages
                )
            return ServerInfo(
                id=store.server_id,
                version=__version__,
                protocol_version=PROTOCOL_VERSION,
                languages=store.languages(),
                max_updates_per_request=self.options.server.max_updates_per_request,
                replica=self.options.source.replica,
                selection=selection,
            )

        return msgpack_response(await self.stores.run(read))

    async def categories(self, request: web.Request) -> web.Response:
        anchor = request.query.get("anchor", "")
        current, categories = await self.stores.run(lambda store: store.categories_since(anchor))
        return msgpack_response(CategoriesResponse(anchor=str(current), categories=categories))

    async def revisions(self, request: web.Request) -> web.StreamResponse:
        return await self._listing(request, RevisionsRequest, Store.revisions_since)

    async def drivers(self, request: web.Request) -> web.StreamResponse:
        return await self._listing(request, DriversRequest, Store.drivers_since)

    async def _listing(
        self, request: web.Request, kind: type[R], list_since: Callable[[Store, R], AbstractContextManager[Listing]]
    ) -> web.StreamResponse:
        wanted = decode_msgpack(await request.read(), kind)

        def encode(store: Store) -> Body:
            with list_since(store, wanted) as listing:
                return listing_body(listing)

        return await (await self.stores.run(encode)).send(request)

    async def updates(self, request: web.Request) -> web.Response:
        wanted = decode_msgpack(await request.read(), UpdatesRequest)
        limit = self.options.server.max_updates_per_request
        if len(wanted.revisions) > limit:
            raise web.HTTPRequestEntityTooLarge(
                max_size=limit,
                actual_size=len(wanted.revisions),
                text=f"{len(wanted.revisions)} updates asked for in one request; this server's limit is {limit}\n",
            )
        refs = [(ref.update_id, ref.revision) for ref in wanted.revisions]
        try:
            blobs = await self.stores.run(lambda store: store.revision_blobs(refs))
        except LookupError as error:
            raise web.HTTPNotFound(text=f"{error.args[0]}\n") from None
        # An UpdatesResponse assembled from the stored MessagePack of each revision, without decoding it.
        body = b"".join(
            [
                msgpack_header(0x80, 1),
                msgpack_encoder.encode("updates"),
                msgpack_header(0x90, len(blobs)),
                *blobs,
            ]
        )
        return web.Response(body=body, content_type=MSGPACK)

    async def approvals(self, request: web.Request) -> web.Response:
        wanted = decode_msgpack(await request.read(), ApprovalsRequest)
        current, approvals = await self.stores.run(lambda store: store.approvals_since(wanted.anchor))
        return msgpack_response(ApprovalsResponse(anchor=str(current), approvals=approvals))


class Clients:
    """The client API: devices report their inventory and ask which approved updates apply to them."""

    def __init__(self, stores: StoreThreads) -> None:
        self.stores = stores

    async def inventory(self, request: web.Request) -> web.Response:
        report = decode_msgpack(await request.read(), InventoryReport)
        await self.stores.run(lambda store: store.report_inventory(report))
        return web.Response(status=204)

    async def updates(self, request: web.Request) -> web.Response:
        wanted = decode_msgpack(await request.read(), ClientUpdatesRequest)
        found = await self.stores.run(lambda store: list(store.updates_for_device(wanted.device)))
        return msgpack_response(ClientUpdatesResponse(updates=found))


class Tokens:
    """Bearer-token checks with a short cache of the roles of tokens known to be valid: a downstream token opens
    the sync protocol and /Content; an admin token opens those and the admin interface."""

    def __init__(self, stores: StoreThreads) -> None:
        self.stores = stores
        self.valid_until: dict[str, tuple[TokenRole, float]] = {}

    def is_known_valid(self, request: web.Request, role: TokenRole) -> bool:
        """True when the request's token was found valid for ``role`` within the cache time: no query, no await."""
        found, until = self.valid_until.get(request.headers.get(hdrs.AUTHORIZATION, ""), ("downstream", 0.0))
        return until > time.monotonic() and opens(found, role)

    async def role_of(self, request: web.Request, *, cached: bool = True) -> TokenRole | None:
        """The role of the request's token, None when it has no valid token; ``cached=False`` asks the store even
        when the token was found valid a moment ago."""
        header = request.headers.get(hdrs.AUTHORIZATION, "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not BEARER_TOKEN.fullmatch(token):
            return None  # tokens this server issues are plain ASCII (b64token, RFC 6750): this is none of them
        now = time.monotonic()
        found, until = self.valid_until.get(header, ("downstream", 0.0))
        if cached and until > now:
            return found
        role = await self.stores.run(lambda store: store.token_role(token))
        if role is None:
            self.valid_until.pop(header, None)
            return None
        if len(self.valid_until) > 10_000:
            self.valid_until.clear()
        self.valid_until[header] = (role, now + TOKEN_CACHE_SECONDS)  # kept in this process's memory only
        return role


def opens(found: TokenRole, needed: TokenRole) -> bool:
    """Whether a token of role ``found`` opens what needs ``needed`` (an admin token opens everything)."""
    return found in (needed, "admin")


async def content_access(_: web.Request) -> web.Response:
    """The front's question before it serves /Content (ACCESS_PATH in rust/core/src/front/backend.rs): 204 when the
    request's token may read content; the guard answers 401 otherwise. The guard asks the store every time: the front
    caches the answer, and a second cache here would double the time a revoked token keeps working."""
    return web.Response(status=204)


def body_problem(error: RequestPayloadError | ConnectionResetError) -> str:
    """What is wrong with a request body, in one line ("Can not decode content-encoding: gzip")."""
    if isinstance(error, ConnectionResetError):
        return "the connection ended before the body did"
    cause = error.__cause__
    return one_line(str(getattr(cause, "message", None) or cause or error))


def build_app(directory: ServerDirectory, options: Options) -> web.Application:
    stores = StoreThreads(directory.database_path)
    protocol = Protocol(stores, options)
    tokens = Tokens(stores)

    def guarded(handler: Handler, *, role: TokenRole = "downstream", cached: bool = True) -> Handler:
        """The handler behind the token check (``cached``: a token found valid moments ago is trusted without a
        query), with bad input mapped to 400 and anything unexpected to a 500 that names an incident in the log
        instead of showing a traceback."""

        async def guard(request: web.Request) -> web.StreamResponse:
            if not (cached and tokens.is_known_valid(request, role)):
                found = await tokens.role_of(request, cached=cached)
                advice = "`upmirror tokens add NAME --admin`" if role == "admin" else "`upmirror tokens add NAME`"
                if found is None:
                    raise web.HTTPUnauthorized(
                        headers={hdrs.WWW_AUTHENTICATE: 'Bearer realm="upmirror"'},
                        text=f"a valid {role} token is needed (issue one with {advice})\n",
                    )
                if not opens(found, role):
                    raise web.HTTPForbidden(text=f"this is a {found} token: an {role} token is needed ({advice})\n")
            try:
                return await handler(request)
            except InputError as error:
                raise web.HTTPBadRequest(text=f"{one_line(str(error))}\n") from None
            except (RequestPayloadError, ConnectionResetError) as error:
                # A body that cannot be decoded (Content-Encoding), or whose connection ended before it did (the
                # front drops a request whose body was malformed): nothing more is read from it, and the connection,
                # whose state is unknown now, closes with the answer if anyone is left to read it (never reused).
                request.content.feed_eof()
                refused = web.HTTPBadRequest(text=f"the request body cannot be read: {body_problem(error)}\n")
                refused.force_close()
                raise refused from None
            except (web.HTTPException, ConnectionError, asyncio.CancelledError):
                raise
            except Exception:
                incident = secrets.token_hex(4)
                log.exception("internal error %s on %s %s", incident, request.method, request.path)
                failed = web.HTTPInternalServerError(text=f"internal error {incident} (see the server log)\n")
                failed.force_close()  # a connection whose request failed is not reused
                raise failed from None

        return guard

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_get("/api/v1/server", guarded(protocol.server_info))
    app.router.add_get("/api/v1/categories", guarded(protocol.categories))
    app.router.add_post("/api/v1/revisions", guarded(protocol.revisions))
    app.router.add_post("/api/v1/updates", guarded(protocol.updates))
    app.router.add_post("/api/v1/approvals", guarded(protocol.approvals))
    app.router.add_post("/api/v1/drivers", guarded(protocol.drivers))
    app.router.add_get("/api/v1/content-access", guarded(content_access, cached=False))

    clients = Clients(stores)
    app.router.add_post("/api/v1/client/inventory", guarded(clients.inventory))
    app.router.add_post("/api/v1/client/updates", guarded(clients.updates))
    admin = Admin(directory)
    app.router.add_get("/api/v1/admin/status", guarded(admin.status, role="admin"))
    app.router.add_post("/api/v1/admin/sync", guarded(admin.synchronize_now, role="admin"))
    # The WSUS protocol: SOAP faults instead of the guard's answers; the token, when required, is checked by
    # GetAuthorizationCookie, and every later call carries the sealed cookie made from it.
    ServerSyncService(stores, options, directory, tokens.role_of).install(app)

    async def close_stores(_: web.Application) -> None:
        stores.close()

    app.on_cleanup.append(close_stores)
    return app
