"""The upstream side of MS-WSUSSS in ``upmirror serve``: WSUS downstream servers (and upmirror servers that speak
the WSUS protocol) authorize, take a cookie, and synchronize categories, updates, deployments and content from this
server as from a WSUS server, at the paths they use:

- ``/DssAuthWebService/DssAuthWebService.asmx``: GetAuthorizationCookie;
- ``/ServerSyncWebService/ServerSyncWebService.asmx``: GetAuthConfig, GetCookie, GetConfigData, GetRevisionIdList,
  GetUpdateData, GetUpdateDecryptionData, GetDeployments, DownloadFiles, GetDriverIdList, GetDriverSetData,
  GetRelatedRevisionsForUpdates (ignored: an empty answer, as the specification allows) and Ping.

Every failure a downstream can cause is a SOAP fault with the ErrorCode the specification gives (HTTP 500, as SOAP
1.1 answers faults); a body that is not a SOAP envelope at all is a 400; nothing is ever answered with a traceback.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from upmirror import __version__, content_relative_path
from upmirror.errors import InputError, one_line
from upmirror.model import Approval, DriversRequest, FilterItem, RevisionsRequest
from upmirror.options import Options, ServerDirectory
from upmirror.serversync import cookies, languages, metadata
from upmirror.serversync.anchors import format_anchor, parse_anchor
from upmirror.serversync.soap import (
    CONTENT_TYPE,
    DSS_AUTH,
    FILE_DIGESTS_MISSING,
    GUID,
    INTERNAL_SERVER_ERROR,
    INVALID_AUTHORIZATION_COOKIE,
    INVALID_PARAMETERS,
    MONITORABLE,
    SERVER_SYNC,
    Element,
    NotSoap,
    SoapFault,
    base64_element,
    decode_base64,
    element,
    envelope,
    fault_envelope,
    read_envelope,
    read_update_identities,
    update_identity,
)

if TYPE_CHECKING:
    from upmirror.server.app import StoreThreads
    from upmirror.store import Store

SERVER_SYNC_PATH: Final = "/ServerSyncWebService/ServerSyncWebService.asmx"
DSS_AUTH_PATH: Final = "/DssAuthWebService/DssAuthWebService.asmx"
# The largest SOAP request accepted: a GetUpdateData of 10,000 identities is about 1.5 MB.
MAX_REQUEST: Final = 4 << 20
# Limits announced in GetConfigData, as Microsoft Update announces them.
MAX_DRIVER_SETS: Final = 100
MAX_COMPUTER_IDS: Final = 200
MAX_HARDWARE_IDS: Final = 450
MAX_DECRYPTION_IDS: Final = 500
MAX_DOWNLOAD_DIGESTS: Final = 100
# The builtin computer groups of WSUS: approvals of a server without groups apply to "All Computers".
ALL_COMPUTERS: Final = "a0a08746-4dbe-4a37-9adf-9e7652c0b421"
UNASSIGNED_COMPUTERS: Final = "b73ca6ed-5727-47f3-84de-015e03f6a88a"
DEPLOYMENT_NAMESPACE: Final = uuid.UUID("0b7e7a52-2f7a-4c55-9c36-7c1a4d2b8f10")
NEVER: Final = "9999-12-31T23:59:59.997Z"
EPOCH: Final = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)

log = logging.getLogger("upmirror.serversync")
Operation = Callable[[Element], Awaitable[Iterable[str]]]


@dataclass(frozen=True)
class Answer:
    """An operation's answer: the response element's name and its parts."""

    name: str
    parts: Iterable[str]


class ServerSyncService:
    """The handlers of both web services over one store; ``token_role`` says which kind of upmirror token a request
    showed (None without a valid one), for servers that require a downstream token."""

    def __init__(
        self,
        stores: StoreThreads,
        options: Options,
        directory: ServerDirectory,
        token_role: Callable[[web.Request], Awaitable[str | None]],
    ) -> None:
        self.stores = stores
        self.options = options
        self.directory = directory
        self.key = cookies.cookie_key(directory.root)
        self.fetching: set[asyncio.Task[tuple[bytes, bytes]]] = set()
        self.token_role = token_role
        self.lifetime = datetime.timedelta(seconds=options.server.cookie_lifetime_seconds)
        self.operations: dict[tuple[str, str], Callable[[Element, web.Request], Awaitable[Answer]]] = {
            (DSS_AUTH, "GetAuthorizationCookie"): self.get_authorization_cookie,
            (SERVER_SYNC, "GetAuthConfig"): self.get_auth_config,
            (SERVER_SYNC, "GetCookie"): self.get_cookie,
            (SERVER_SYNC, "GetConfigData"): self.get_config_data,
            (SERVER_SYNC, "GetRevisionIdList"): self.get_revision_id_list,
            (SERVER_SYNC, "GetUpdateData"): self.get_update_data,
            (SERVER_SYNC, "GetUpdateDecryptionData"): self.get_update_decryption_data,
            (SERVER_SYNC, "GetDeployments"): self.get_deployments,
            (SERVER_SYNC, "DownloadFiles"): self.download_files,
            (SERVER_SYNC, "GetDriverIdList"): self.get_driver_id_list,
            (SERVER_SYNC, "GetDriverSetData"): self.get_driver_set_data,
            (SERVER_SYNC, "GetRelatedRevisionsForUpdates"): self.get_related_revisions,
            (MONITORABLE, "Ping"): self.ping,
        }

    def install(self, app: web.Application) -> None:
        for path in (SERVER_SYNC_PATH, DSS_AUTH_PATH):
            app.router.add_post(path, self.handle)
            # The authorization path comes from GetAuthConfig relative to the upstream's origin, and real WSUS
            # downstream servers have been seen to request it with a doubled leading slash.
            app.router.add_post("/" + path, self.handle)

    # ---- the HTTP side: envelope in, envelope or fault out ----

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > MAX_REQUEST:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_REQUEST, actual_size=request.content_length)
        try:
            body = await request.read()
        except (RequestPayloadError, ConnectionResetError):
            refused = web.HTTPBadRequest(text="the request body cannot be read\n")
            refused.force_close()
            raise refused from None
        if len(body) > MAX_REQUEST:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_REQUEST, actual_size=len(body))
        try:
            operation = read_envelope(body)
        except NotSoap as error:
            raise web.HTTPBadRequest(text=f"{one_line(str(error))}\n") from None
        namespace = operation.node.tag.partition("}")[0].lstrip("{")
        service = DSS_AUTH if request.path.endswith(DSS_AUTH_PATH) else SERVER_SYNC
        handler = self.operations.get((namespace, operation.name))
        try:
            if handler is None or (service == DSS_AUTH) != (namespace == DSS_AUTH):
                raise SoapFault(
                    INVALID_PARAMETERS, f"{operation.name} is not an operation of {request.path}", client_fault=True
                )
            answer = await handler(operation, request)
        except SoapFault as fault:
            return fault_response(fault)
        except InputError as error:
            return fault_response(SoapFault(INVALID_PARAMETERS, one_line(str(error)), client_fault=True))
        except Exception:
            incident = secrets.token_hex(4)
            log.exception("internal error %s in %s", incident, operation.name)
            return fault_response(SoapFault(INTERNAL_SERVER_ERROR, f"internal error {incident} (see the server log)"))
        response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE})
        await response.prepare(request)
        for piece in envelope(answer.name, namespace, answer.parts):
            await response.write(piece)
        await response.write_eof()
        return response

    def cookie(self, operation: Element) -> cookies.SyncCookie:
        found = operation.child("cookie")
        data = decode_base64(found.text_of("EncryptedData"), "cookie/EncryptedData") if found is not None else None
        return cookies.read_sync_cookie(self.key, data)

    # ---- authorization ----

    async def get_authorization_cookie(self, operation: Element, request: web.Request) -> Answer:
        token = await self.token_role(request)
        if token is None and not self.options.server.anonymous_wsus_sync:
            raise SoapFault(
                INVALID_AUTHORIZATION_COOKIE,
                "this server requires a downstream token (Authorization: Bearer, `upmirror tokens add NAME`), or "
                "server.anonymous_wsus_sync = true for WSUS downstream servers",
            )
        account = operation.text_of("accountName") or "unnamed downstream server"
        data = cookies.authorization_cookie(self.key, account, token)
        parts = [
            "<GetAuthorizationCookieResult>",
            element("PlugInId", cookies.PLUG_IN_ID),
            base64_element("CookieData", data),
            "</GetAuthorizationCookieResult>",
        ]
        return Answer("GetAuthorizationCookieResponse", parts)

    async def get_auth_config(self, _: Element, __: web.Request) -> Answer:
        parts = [
            "<GetAuthConfigResult>",
            element("LastChange", "2026-01-01T00:00:00Z"),
            "<AuthInfo><AuthPlugInInfo>",
            element("PlugInID", cookies.PLUG_IN_ID),
            element("ServiceUrl", DSS_AUTH_PATH.lstrip("/")),
            "<Parameter />",
            "</AuthPlugInInfo></AuthInfo>",
            "</GetAuthConfigResult>",
        ]
        return Answer("GetAuthConfigResponse", parts)

    async def get_cookie(self, operation: Element, _: web.Request) -> Answer:
        version = operation.text_of("protocolVersion") or cookies.PROTOCOL_VERSION
        authorization: dict[str, object] | None = None
        auth_cookies = operation.child("authCookies")
        for cookie in auth_cookies.children("AuthorizationCookie") if auth_cookies is not None else ():
            data = decode_base64(cookie.text_of("CookieData"), "AuthorizationCookie/CookieData")
            authorization = cookies.read_authorization_cookie(self.key, cookie.text_of("PlugInId"), data)
        if authorization is None:
            old = operation.child("oldCookie")
            if old is None:
                raise SoapFault(INVALID_AUTHORIZATION_COOKIE, "GetCookie needs an authorization cookie")
            renewed = cookies.read_sync_cookie(self.key, decode_base64(old.text_of("EncryptedData"), "oldCookie"))
            authorization = {"account": renewed.account}
        expires, data = cookies.sync_cookie(self.key, authorization, version, self.lifetime)
        parts = [
            "<GetCookieResult>",
            element("Expiration", xml_time(expires)),
            base64_element("EncryptedData", data),
            "</GetCookieResult>",
        ]
        return Answer("GetCookieResponse", parts)

    # ---- configuration ----

    async def get_config_data(self, operation: Element, _: web.Request) -> Answer:
        self.cookie(operation)

        root = self.options.is_root

        def read(store: Store) -> tuple[int, list[str], set[str]]:
            current, _ = store.categories_since("")
            # A root holds every language its updates come in; a downstream the languages of its last successful
            # sync: those are the ones it supports (Enabled), and what a replica below it takes.
            return current, store.languages(), set() if root else set(store.sync_state().languages)

        current, offered, synchronized = await self.stores.run(read)
        parse_anchor(operation.text_of("configAnchor") or None, current)
        language_parts = [language_data(languages.ALL_LANGUAGES, "all", "all", enabled=root)]
        for code in offered:
            locale = languages.locale_id(code)
            if locale is not None:
                enabled = root or code in synchronized
                language_parts.append(language_data(locale, code, languages.language_name(code), enabled=enabled))
        parts = [
            "<GetConfigDataResult>",
            element("CatalogOnlySync", not self.options.content.store_locally),
            element("LazySync", False),
            element("ServerHostsPsfFiles", False),
            element("MaxNumberOfComputerIdsInRequest", MAX_COMPUTER_IDS),
            element("MaxNumberOfDriverSetsPerRequest", MAX_DRIVER_SETS),
            element("MaxNumberOfPnpHardwareIdsInRequest", MAX_HARDWARE_IDS),
            element("MaxNumberOfUpdatesPerRequest", self.options.server.max_updates_per_request),
            element("NewConfigAnchor", format_anchor(current)),
            element("ProtocolVersion", cookies.PROTOCOL_VERSION),
            "<LanguageUpdateList>",
            *language_parts,
            "</LanguageUpdateList>",
            element("MaxUpdatesPerRequestInGetUpdateDecryptionData", MAX_DECRYPTION_IDS),
            "</GetConfigDataResult>",
        ]
        return Answer("GetConfigDataResponse", parts)

    # ---- metadata ----

    async def get_revision_id_list(self, operation: Element, _: web.Request) -> Answer:
        self.cookie(operation)
        wanted = operation.child("filter")
        if wanted is None:
            raise SoapFault(INVALID_PARAMETERS, "GetRevisionIdList needs a filter", client_fault=True)
        anchor_text = wanted.text_of("Anchor") or None
        get_config = wanted.bool_of("GetConfig")
        categories = id_and_delta(wanted, "Categories")
        classifications = id_and_delta(wanted, "Classifications")
        language_ids = language_and_delta(wanted)

        def listing(store: Store) -> tuple[int, list[tuple[str, int]]]:
            current = store.anchor()
            since = parse_anchor(anchor_text, current)
            if get_config:
                return current, metadata.category_revisions_since(store, since)
            offered = set(store.languages())
            codes = [FilterItem(code, delta) for code, delta in language_ids if code in offered]
            if not language_ids:  # no language named: every language (WSUS's "all")
                codes = [FilterItem(code, True) for code in sorted(offered)]
            request = RevisionsRequest(
                anchor=str(since), products=categories, classifications=classifications, languages=codes
            )
            with store.revisions_since(request) as found:
                # Expired updates are listed too: a downstream learns of an expiration from the revision's XML.
                revisions = [ref for page in found.revisions for ref in page]
                expired = [update_id for page in found.expired for update_id in page]
                return found.anchor, revisions + metadata.latest_revisions(store, expired)

        current, revisions = await self.stores.run(listing)
        parts = ["<GetRevisionIdListResult>", element("Anchor", format_anchor(current)), "<NewRevisions>"]
        return Answer(
            "GetRevisionIdListResponse",
            [*parts, *update_identities(revisions), "</NewRevisions>", "</GetRevisionIdListResult>"],
        )

    async def get_update_data(self, operation: Element, request: web.Request) -> Answer:
        self.cookie(operation)
        refs = read_update_identities(operation.child("updateIds"))
        limit = self.options.server.max_updates_per_request
        if len(refs) > limit:
            raise SoapFault(
                INVALID_PARAMETERS, f"updateIds: {len(refs)} identities asked for; the limit is {limit} per request"
            )
        documents = await self.stores.run(lambda store: metadata.update_documents(store, refs))
        # Files are named at this server's own /Content, by the address the downstream reached it at.
        content_base = f"{request.scheme}://{request.host}"
        parts: list[str] = ["<GetUpdateDataResult><updates>"]
        files: dict[str, metadata.FileLocation] = {}
        for document in documents:
            parts.append("<ServerSyncUpdateData>")
            parts.append(update_identity(document.update_id, document.revision, tag="Id"))
            # The schema's order: Id, XmlUpdateBlob, FileDigestList, XmlUpdateBlobCompressed.
            if document.compressed is None:
                parts.append(element("XmlUpdateBlob", document.xml))
            if document.files:
                parts.append("<FileDigestList>")
                parts += [base64_element("base64Binary", bytes.fromhex(f.sha1)) for f in document.files]
                parts.append("</FileDigestList>")
            if document.compressed is not None:
                parts.append(base64_element("XmlUpdateBlobCompressed", document.compressed))
            parts.append("</ServerSyncUpdateData>")
            files.update((f.sha1, f) for f in document.files)
        parts.append("</updates><fileUrls>")
        for location in files.values():
            own = f"{content_base}/Content/{content_relative_path(location.sha1, location.extension)}"
            parts += [
                "<ServerSyncUrlData>",
                base64_element("FileDigest", bytes.fromhex(location.sha1)),
                element("MUUrl", location.microsoft_url or own),
                element("UssUrl", own),
                "</ServerSyncUrlData>",
            ]
        parts.append("</fileUrls></GetUpdateDataResult>")
        return Answer("GetUpdateDataResponse", parts)

    async def get_update_decryption_data(self, operation: Element, _: web.Request) -> Answer:
        self.cookie(operation)
        refs = read_update_identities(operation.child("updateIds"))
        if len(refs) > MAX_DECRYPTION_IDS:
            raise SoapFault(INVALID_PARAMETERS, f"updateIds: more than {MAX_DECRYPTION_IDS} identities")
        keys = await self.stores.run(lambda store: metadata.decryption_keys(store, refs))
        parts = ["<GetUpdateDecryptionDataResult><UpdateFileDecryptionData>"]
        for (update_id, revision), file_keys in zip(refs, keys, strict=True):
            parts.append("<ServerSyncUpdateFileDecryption>")
            parts.append(update_identity(update_id, revision, tag="UpdateId"))
            parts.append("<FileDecryptionData>")
            for sha1, key in file_keys:
                parts += [
                    "<ServerSyncFileDecryption>",
                    base64_element("FileDigest", bytes.fromhex(sha1)),
                    base64_element("DecryptionKey", key),
                    "</ServerSyncFileDecryption>",
                ]
            parts.append("</FileDecryptionData></ServerSyncUpdateFileDecryption>")
        parts.append("</UpdateFileDecryptionData></GetUpdateDecryptionDataResult>")
        return Answer("GetUpdateDecryptionDataResponse", parts)

    async def get_related_revisions(self, operation: Element, _: web.Request) -> Answer:
        self.cookie(operation)
        return Answer("GetRelatedRevisionsForUpdatesResponse", ["<GetRelatedRevisionsForUpdatesResult />"])

    # ---- deployments (replica downstream servers) ----

    async def get_deployments(self, operation: Element, _: web.Request) -> Answer:
        self.cookie(operation)
        anchor_text = operation.text_of("deploymentAnchor") or None

        def read(store: Store) -> tuple[int, list[Approval], dict[str, int]]:
            since = parse_anchor(anchor_text, store.anchor())
            current, approvals = store.approvals_since(str(since))
            revisions = dict(metadata.latest_revisions(store, [a.update_id for a in approvals]))
            return current, approvals, revisions

        current, approvals, revisions = await self.stores.run(read)
        parts = [
            "<GetDeploymentsResult>",
            element("Anchor", format_anchor(current)),
            "<Groups>",
            target_group(ALL_COMPUTERS, None, "All Computers"),
            target_group(UNASSIGNED_COMPUTERS, ALL_COMPUTERS, "Unassigned Computers"),
            "</Groups><Deployments>",
        ]
        for approval in approvals:
            if approval.action == "approved":
                parts.append(deployment(approval.update_id, revisions.get(approval.update_id, 1)))
        parts.append("</Deployments><DeadDeployments>")
        parts += [
            element("guid", deployment_guid(a.update_id))
            for a in approvals
            if a.action != "approved" and a.update_id in revisions
        ]
        parts.append("</DeadDeployments><HiddenUpdates>")
        parts += [element("guid", a.update_id) for a in approvals if a.action == "declined"]
        parts.append("</HiddenUpdates><AcceptedEulas /></GetDeploymentsResult>")
        return Answer("GetDeploymentsResponse", parts)

    # ---- content ----

    async def download_files(self, operation: Element, _: web.Request) -> Answer:
        """A downstream asks this server to fetch files it has not downloaded yet (after a 404 on /Content). Files
        this server knows are fetched by its next synchronization (every needed file is); unknown ones are a
        FileDigestsMissing fault."""
        self.cookie(operation)
        listed = operation.child("fileDigestList")
        digests = [decode_base64(item.text, "fileDigestList").hex() for item in (listed.children() if listed else ())]
        if len(digests) > MAX_DOWNLOAD_DIGESTS:
            raise SoapFault(INVALID_PARAMETERS, f"fileDigestList: more than {MAX_DOWNLOAD_DIGESTS} digests")
        missing = await self.stores.run(lambda store: metadata.unknown_files(store, digests))
        if missing:
            raise SoapFault(
                FILE_DIGESTS_MISSING, f"{len(missing)} of the digests name no file of this server's updates"
            )
        if not self.options.is_root and self.options.content.store_locally:
            await self.fetch_from_upstream()
        return Answer("DownloadFilesResponse", [])

    async def fetch_from_upstream(self) -> None:
        """A downstream server that lacks files its own downstream asked for starts a synchronization, whose content
        phase fetches every needed file not in place (one at a time: a sync already running does it)."""
        from upmirror.server.admin import start_sync  # noqa: PLC0415 (admin imports the sync stack)
        from upmirror.sync import SyncBusyError  # noqa: PLC0415

        try:
            process = await start_sync(self.directory, scheduled=True)
        except SyncBusyError:
            return
        task = asyncio.create_task(process.communicate())
        self.fetching.add(task)
        task.add_done_callback(self.fetching.discard)

    # ---- drivers (inventory-based synchronization) ----

    async def get_driver_id_list(self, operation: Element, _: web.Request) -> Answer:
        self.cookie(operation)
        wanted = operation.child("filter")
        if wanted is None:
            raise SoapFault(INVALID_PARAMETERS, "GetDriverIdList needs a filter", client_fault=True)
        anchor_text = wanted.text_of("Anchor") or None
        hardware = [(item.text_of("Id"), item.bool_of("Delta")) for item in children_of(wanted, "PnpHardwareIds")]
        computers = [item.text_of("Id").lower() for item in children_of(wanted, "ComputerIds")]
        if len(hardware) > MAX_HARDWARE_IDS or len(computers) > MAX_COMPUTER_IDS:
            raise SoapFault(
                INVALID_PARAMETERS,
                f"at most {MAX_HARDWARE_IDS} PnpHardwareIds and {MAX_COMPUTER_IDS} ComputerIds per request",
            )

        def listing(store: Store) -> tuple[int, list[tuple[str, int]], list[str], list[str]]:
            since = parse_anchor(anchor_text, store.anchor())
            request = DriversRequest(
                anchor=str(since),
                hardware_ids=[FilterItem(hid, delta) for hid, delta in hardware if hid],
                computer_hardware_ids=[FilterItem(cid, True) for cid in computers],
            )
            with store.drivers_since(request) as found:
                revisions = [ref for page in found.revisions for ref in page]
                # The driver sets this server took from its upstream (for the computer IDs its own clients
                # reported) go to a downstream that names computer IDs; what a set matches is in its XML, which
                # upmirror does not read. No computer IDs: no driver sets (the specification's rule).
                new_sets, removed_sets = store.driver_sets_since(since)
                return found.anchor, revisions, new_sets if computers else [], removed_sets if since else []

        current, revisions, new_sets, removed_sets = await self.stores.run(listing)
        parts = [
            "<GetDriverIdListResult>",
            element("Anchor", format_anchor(current)),
            "<NewRevisions>",
            *update_identities(revisions),
            "</NewRevisions><NewDriverSets>",
            *(element("guid", i) for i in new_sets),
            "</NewDriverSets><RemovedDriverSets>",
            *(element("guid", i) for i in removed_sets),
            "</RemovedDriverSets></GetDriverIdListResult>",
        ]
        return Answer("GetDriverIdListResponse", parts)

    async def get_driver_set_data(self, operation: Element, _: web.Request) -> Answer:
        """The driver-targeting XML of the named driver sets this server holds (unknown and removed ones are left
        out); more than MaxNumberOfDriverSetsPerRequest, or no list, is InvalidParameters."""
        self.cookie(operation)
        listed = operation.child("driverSets")
        if listed is None:
            raise SoapFault(INVALID_PARAMETERS, "GetDriverSetData needs driverSets", client_fault=True)
        ids = [item.text.strip().lower() for item in listed.children()]
        if len(ids) > MAX_DRIVER_SETS:
            raise SoapFault(INVALID_PARAMETERS, f"driverSets: {len(ids)} asked for; the limit is {MAX_DRIVER_SETS}")
        for driver_set_id in ids:
            if not GUID.fullmatch(driver_set_id):
                raise SoapFault(INVALID_PARAMETERS, f"driverSets: {driver_set_id[:60]!r} is not a GUID")
        found = await self.stores.run(lambda store: store.driver_sets(ids))
        parts = ["<GetDriverSetDataResult><DriverSets>"]
        for driver_set in found:
            parts += [
                "<ServerSyncDriverSetData>",
                element("DriverSetId", driver_set.id),
                element("DriverSetXml", driver_set.xml),
                "</ServerSyncDriverSetData>",
            ]
        parts.append("</DriverSets></GetDriverSetDataResult>")
        return Answer("GetDriverSetDataResponse", parts)

    # ---- monitoring ----

    async def ping(self, operation: Element, request: web.Request) -> Answer:
        operation.int_of("pingLevel", default=0)
        now = xml_time(datetime.datetime.now(datetime.UTC))
        parts = [
            "<PingResult>",
            element("SuccessFlag", True),
            element("ServicesTime", now),
            element("ServicesName", f"upmirror {__version__}"),
            element("ServicesMachine", request.host),
            element("IsHttps", request.secure),
            element("RequestContentType", request.content_type),
            element("ConfigFileLastModifiedTime", now),
            element("ConfigFileNextExpirationTime", NEVER),
            element("ConfigFileExpirationModuloInMinutes", 0),
            "</PingResult>",
        ]
        return Answer("PingResponse", parts)


# ---- pieces of answers ----


def fault_response(fault: SoapFault) -> web.Response:
    return web.Response(status=500, body=fault_envelope(fault), headers={"Content-Type": CONTENT_TYPE})


def xml_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def language_data(locale: int, short: str, long: str, *, enabled: bool) -> str:
    return (
        "<ServerSyncLanguageData>"
        + element("LanguageID", locale)
        + element("ShortLanguage", short)
        + element("LongLanguage", long)
        + element("Enabled", enabled)
        + "</ServerSyncLanguageData>"
    )


def update_identities(refs: Iterable[tuple[str, int]]) -> Iterator[str]:
    for update_id, revision in refs:
        yield update_identity(update_id, revision)


def children_of(parent: Element, name: str) -> Iterator[Element]:
    listed = parent.child(name)
    return listed.children() if listed is not None else iter(())


def id_and_delta(wanted: Element, name: str) -> list[FilterItem]:
    items = []
    for item in children_of(wanted, name):
        category_id = item.text_of("Id").lower()
        if not GUID.fullmatch(category_id):
            raise SoapFault(INVALID_PARAMETERS, f"{name}: {category_id[:60]!r} is not a GUID")
        items.append(FilterItem(category_id, item.bool_of("Delta")))
    return items


def language_and_delta(wanted: Element) -> list[tuple[str, bool]]:
    """The filter's languages by code; IDs this server does not know are left out (they match nothing here)."""
    found = []
    for item in children_of(wanted, "Languages"):
        code = languages.CODES.get(item.int_of("Id"))
        if code is not None:
            found.append((code, item.bool_of("Delta")))
    return found


def target_group(group_id: str, parent: str | None, name: str) -> str:
    return (
        "<ServerSyncTargetGroup>"
        + element("TargetGroupID", group_id)
        + element("ParentGroupId", parent or "00000000-0000-0000-0000-000000000000")
        + element("Name", name)
        + element("IsBuiltin", True)
        + "</ServerSyncTargetGroup>"
    )


def deployment_guid(update_id: str) -> str:
    return str(uuid.uuid5(DEPLOYMENT_NAMESPACE, update_id))


def deployment(update_id: str, revision: int) -> str:
    """An approval for installation to All Computers, without a deadline."""
    return (
        "<ServerSyncDeployment>"
        + element("UpdateId", update_id)
        + element("RevisionNumber", revision)
        + element("Action", 0)
        + element("AdminName", "upmirror")
        + element("Deadline", NEVER)
        + element("IsAssigned", True)
        + element("GoLiveTime", xml_time(EPOCH))
        + element("DeploymentGuid", deployment_guid(update_id))
        + element("TargetGroupId", ALL_COMPUTERS)
        + element("DownloadPriority", 1)
        + "</ServerSyncDeployment>"
    )
