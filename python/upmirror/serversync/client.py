"""The downstream side of MS-WSUSSS: upmirror synchronizing from Microsoft Update or a WSUS server (or an upmirror
that speaks the WSUS protocol). ``WsusUpstream`` offers the synchronizer the same calls as the upmirror protocol's
client, answered with the same records, so filters, anchors, history, approvals and content behave the same.

The session: GetAuthConfig names the authorization service; GetAuthorizationCookie there, then GetCookie, give the
sync cookie every call carries. The cookie is renewed before it expires, and a call refused with InvalidCookie
authenticates again and is repeated once. ServerBusy backs off and retries; ServerChanged means the upstream is
another server now (the synchronizer starts over in full); any other fault is one line naming the operation.
"""

from __future__ import annotations

import datetime
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Final

import msgspec

from upmirror import _native
from upmirror._native import HttpResponse, content_relative_path
from upmirror.errors import UpmirrorError, one_line
from upmirror.model import (
    PROTOCOL_VERSION,
    Approval,
    ApprovalsResponse,
    CategoriesResponse,
    Category,
    CategoryKind,
    DriverSet,
    DriversRequest,
    FileRef,
    FilterItem,
    RevisionRef,
    RevisionsRequest,
    RevisionsResponse,
    ServerInfo,
    Update,
    UpdateMetadata,
)
from upmirror.serversync import cookies, languages
from upmirror.serversync.records import category_record, classification_of, update_record
from upmirror.serversync.soap import (
    CONTENT_TYPE,
    DSS_AUTH,
    GUID,
    INVALID_AUTHORIZATION_COOKIE,
    INVALID_COOKIE,
    SERVER_BUSY,
    SERVER_CHANGED,
    SERVER_SYNC,
    Element,
    NotSoap,
    SoapFault,
    base64_element,
    element,
    envelope,
    raise_if_fault,
    read_envelope,
    read_update_identities,
    update_identity,
)
from upmirror.sync import batched
from upmirror.upstream import ServerChangedError

MICROSOFT_UPDATE: Final = "https://sws.update.microsoft.com"
SERVER_SYNC_PATH: Final = "/ServerSyncWebService/ServerSyncWebService.asmx"
# A cookie this close to its expiration is renewed before the next call.
RENEW_BEFORE: Final = datetime.timedelta(minutes=5)
BUSY_RETRIES: Final = 5
# HTTP statuses the transport retries for this protocol: not 500, which is how SOAP answers a fault (InvalidCookie,
# ServerChanged, ServerBusy...): the session reacts to the fault's code instead.
SOAP_RETRYABLE_STATUS: Final = frozenset({429, 502, 503, 504})
# The largest answer accepted: Microsoft Update's unpaged GetRevisionIdList of 24,509 revisions is about 3 MB, so
# this holds half a million; above it an answer is refused before it is parsed (huge XML tokens parse slowly).
MAX_ANSWER: Final = 64 << 20
# The longest decryption key taken (AES keys are 16 to 32 bytes; the protocol says nothing of a bound).
MAX_DECRYPTION_KEY: Final = 4096
# The largest driver set XML taken (a set names one computer model's drivers: kilobytes).
MAX_DRIVER_SET_XML: Final = 1 << 20

Send = Callable[[str, str, bytes | None, dict[str, str]], HttpResponse]


def upstream_url(configured: str) -> str:
    """``microsoft-update`` is Microsoft Update's server sync service; anything else is the upstream's URL."""
    return MICROSOFT_UPDATE if configured == "microsoft-update" else configured


class ServerSyncSession:
    """Calls of the server sync web service with a valid cookie, and the fault reactions of the protocol."""

    def __init__(self, base: str, send: Send, *, account: str) -> None:
        self.base = base
        self.send = send
        self.account = account
        self.cookie: tuple[str, str] | None = None  # (Expiration, EncryptedData base64)
        self.expires = datetime.datetime.min.replace(tzinfo=datetime.UTC)
        # Several calls may be in flight (GetUpdateData batches); one of them authenticates at a time.
        self.authenticating = threading.Lock()

    def post(self, path: str, operation: str, namespace: str, parts: Iterable[str]) -> Element:
        body = b"".join(envelope(operation, namespace, parts))
        headers = {"content-type": CONTENT_TYPE, "soapaction": f'"{namespace}/{operation}"'}
        url = f"{self.base}{path}"
        response = self.send("POST", url, body, headers)
        if len(response.body) > MAX_ANSWER:
            raise WsusProtocolError(
                f"{operation}: {url} answered {len(response.body) >> 20} MiB, above the {MAX_ANSWER >> 20} MiB "
                "an answer may have"
            )
        try:
            answer = read_envelope(response.body)
        except NotSoap as error:
            raise WsusProtocolError(f"{operation}: {url} answered HTTP {response.status}, not SOAP ({error})") from None
        raise_if_fault(answer)
        if response.status != 200:
            raise WsusProtocolError(f"{operation}: {url} answered HTTP {response.status}")
        return answer

    def authenticate(self) -> None:
        config = self.post(SERVER_SYNC_PATH, "GetAuthConfig", SERVER_SYNC, [])
        plug_in = config.path("GetAuthConfigResult", "AuthInfo", "AuthPlugInInfo")
        service = plug_in.text_of("ServiceUrl") if plug_in is not None else ""
        if not service:
            raise WsusProtocolError("GetAuthConfig named no authorization service")
        # Relative to the upstream's origin; real WSUS servers may send it with or without a leading slash.
        path = "/" + service.lstrip("/") if not service.startswith("http") else service.removeprefix(self.base)
        answer = self.post(
            path,
            "GetAuthorizationCookie",
            DSS_AUTH,
            [
                element("accountName", self.account),
                element("accountGuid", str(uuid.uuid5(uuid.NAMESPACE_DNS, self.account))),
            ],
        )
        result = answer.child("GetAuthorizationCookieResult")
        if result is None:
            raise WsusProtocolError("GetAuthorizationCookie returned no cookie")
        cookie = self.post(
            SERVER_SYNC_PATH,
            "GetCookie",
            SERVER_SYNC,
            [
                "<authCookies><AuthorizationCookie>",
                element("PlugInId", result.text_of("PlugInId")),
                element("CookieData", result.text_of("CookieData")),
                "</AuthorizationCookie></authCookies>",
                element("protocolVersion", cookies.PROTOCOL_VERSION),
            ],
        ).child("GetCookieResult")
        if cookie is None:
            raise WsusProtocolError("GetCookie returned no cookie")
        expiration = cookie.text_of("Expiration")
        self.cookie = (expiration, cookie.text_of("EncryptedData"))
        self.expires = parse_time(expiration)

    def call(self, operation: str, parts: Sequence[str]) -> Element:
        """One operation of the server sync service with the session's cookie first in its body."""
        busy = 0
        authenticated_again = False
        while True:
            with self.authenticating:
                if self.cookie is None or self.expires - RENEW_BEFORE <= datetime.datetime.now(datetime.UTC):
                    self.authenticate()
                used = self.cookie
            assert used is not None
            cookie = f"<cookie>{element('Expiration', used[0])}{element('EncryptedData', used[1])}</cookie>"
            try:
                answer = self.post(SERVER_SYNC_PATH, operation, SERVER_SYNC, [cookie, *parts])
            except SoapFault as fault:
                if fault.code in (INVALID_COOKIE, INVALID_AUTHORIZATION_COOKIE) and not authenticated_again:
                    with self.authenticating:
                        if self.cookie == used:  # not renewed meanwhile by another call
                            self.cookie = None
                    authenticated_again = True
                    continue
                if fault.code == SERVER_BUSY and busy < BUSY_RETRIES:
                    time.sleep(random.uniform(0, min(30.0, 0.5 * 2**busy)))
                    busy += 1
                    continue
                if fault.code == SERVER_CHANGED:
                    raise ServerChangedError(
                        f"{operation}: the upstream is another server now ({fault.message})"
                    ) from None
                raise WsusProtocolError(
                    f"{operation} failed: {one_line(fault.message)} ({fault.code or 'no code'})"
                ) from None
            result = answer.child(f"{operation}Result")
            if result is None:
                raise WsusProtocolError(f"{operation} answered without a {operation}Result")
            return result


class WsusProtocolError(UpmirrorError):
    """The WSUS upstream refused a call or answered something upmirror cannot use."""


class WsusUpstream:
    """A WSUS-protocol upstream, with the calls the synchronizer makes of any upstream (see ``upstream.Upstream``)."""

    def __init__(self, configured: str, send: Send, *, account: str) -> None:
        self.base = upstream_url(configured)
        self.session = ServerSyncSession(self.base, send, account=account)
        self.batch_limit = 100
        self.kinds: dict[str, CategoryKind] = {}
        # What the downstream already holds (its store): categories, for kinds and the product tree; revisions.
        self.stored_categories: Callable[[], list[Category]] = list
        self.has_revision: Callable[[str, int], bool] = lambda _id, _revision: False
        # Bundled updates name only a product: their classification is the one of the bundle that carries them.
        self.bundle_classification: dict[str, str] = {}
        self.file_urls: dict[str, str] = {}
        # Keys of encrypted files (SHA-1 -> key) fetched with their updates, until the synchronizer stores them.
        self.decryption_keys: dict[str, bytes] = {}
        self.decryption_batch = 100
        self.driver_set_batch = 100
        self.catalog_only = False
        self.parents: dict[str, str | None] = {}
        # Categories this sync's category listing brought that were not known before it.
        self.new_categories: set[str] = set()

    # ---- the calls of any upstream ----

    def server_info(self) -> ServerInfo:
        config = self.session.call("GetConfigData", [])
        # The languages the upstream supports are the Enabled ones; "all" (LanguageID 0) enabled means every
        # language it lists (a downstream WSUS server lists every language it knows, enabling those it synchronizes).
        listed_languages: dict[str, bool] = {}
        every_language = False
        listed = config.child("LanguageUpdateList")
        for item in listed.children("ServerSyncLanguageData") if listed is not None else ():
            locale, enabled = item.int_of("LanguageID", default=-1), item.bool_of("Enabled", default=True)
            if locale == languages.ALL_LANGUAGES:
                every_language = enabled
            elif (code := languages.CODES.get(locale)) is not None:
                listed_languages[code] = enabled
        offered = [code for code, enabled in listed_languages.items() if enabled or every_language]
        if not listed_languages:  # nothing listed: every language the project knows
            offered = sorted(languages.LOCALE_IDS)
        self.batch_limit = max(1, config.int_of("MaxNumberOfUpdatesPerRequest", default=100))
        self.catalog_only = config.bool_of("CatalogOnlySync")
        self.decryption_batch = max(1, config.int_of("MaxUpdatesPerRequestInGetUpdateDecryptionData", default=100))
        self.driver_set_batch = max(1, config.int_of("MaxNumberOfDriverSetsPerRequest", default=100))
        return ServerInfo(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, self.base)),
            version=f"wsus {config.text_of('ProtocolVersion')}",
            protocol_version=PROTOCOL_VERSION,
            languages=sorted(offered),
            max_updates_per_request=self.batch_limit,
            replica=False,
        )

    def categories(self, anchor: str) -> CategoriesResponse:
        result = self.session.call(
            "GetRevisionIdList",
            [
                "<filter>",
                element("Anchor", anchor or None),
                element("GetConfig", True),
                element("Get63LanguageOnly", False),
                "</filter>",
            ],
        )
        refs = read_update_identities(result.child("NewRevisions"))
        # One category may be listed at two revisions: the highest is the current one.
        latest: dict[str, int] = {}
        for update_id, revision in refs:
            latest[update_id] = max(revision, latest.get(update_id, 0))
        found: list[Category] = []
        known = self.known_categories()
        for batch in batched(list(latest.items()), self.batch_limit):
            for metadata, xml in self.update_data(batch):
                category = category_record(metadata, xml)
                if category is not None:
                    found.append(category)
                    self.kinds[category.id] = category.kind
                    self.parents[category.id] = category.parent
                    if category.id not in known:
                        self.new_categories.add(category.id)
        # Parents before children, so the store meets each parent first.
        depth = {c.id: 0 for c in found}
        parents = {c.id: c.parent for c in found}
        for category in found:
            step, seen = category.parent, 0
            while step is not None and seen < 10:
                seen += 1
                step = parents.get(step)
            depth[category.id] = seen
        found.sort(key=lambda c: depth[c.id])
        return CategoriesResponse(anchor=result.text_of("Anchor"), categories=found)

    def revisions(self, request: RevisionsRequest) -> RevisionsResponse:
        """The filter as WSUS servers take it: products, not the families above them (no upstream expands a family),
        so a selected family is sent as its products; a product that appeared under it since the last sync is new to
        the filter (Delta false)."""
        products: dict[str, bool] = {}
        for item in request.products:
            for product_id in self.tree_below(item.id):
                delta = item.delta and product_id not in self.new_categories
                products[product_id] = products.get(product_id, True) and delta
        language_items = [
            f"<LanguageAndDelta>{element('Id', locale)}{element('Delta', item.delta)}</LanguageAndDelta>"
            for item in request.languages
            if (locale := languages.locale_id(item.id)) is not None
        ]
        result = self.session.call(
            "GetRevisionIdList",
            [
                "<filter>",
                element("Anchor", request.anchor or None),
                element("GetConfig", False),
                element("Get63LanguageOnly", False),
                id_and_delta("Categories", [FilterItem(i, d) for i, d in products.items()]),
                id_and_delta("Classifications", request.classifications),
                f"<Languages>{''.join(language_items)}</Languages>",
                "</filter>",
            ],
        )
        refs = new_revisions(result)
        return RevisionsResponse(
            anchor=result.text_of("Anchor"), revisions=refs, expired=self.expired_among(refs, request)
        )

    def expired_among(self, refs: Sequence[RevisionRef], request: RevisionsRequest) -> list[str]:
        """A revision an incremental listing names again although the downstream holds it changed since the anchor
        without a new revision number: WSUS says so when it expires an update. Their metadata is read again, and the
        expired ones are reported as expirations. (A listing that asks for some items in full names every stored
        revision of them, so it is not a sign of change and is left alone.)"""
        in_full = any(not item.delta for item in (*request.products, *request.classifications, *request.languages))
        if not request.anchor or in_full:
            return []
        again = [(ref.update_id, ref.revision) for ref in refs if self.has_revision(ref.update_id, ref.revision)]
        expired = []
        for batch in batched(again, self.batch_limit):
            expired += [m.update_id for m, _ in self.update_data(batch) if m.publication_state == "Expired"]
        return expired

    def updates(self, revisions: Sequence[RevisionRef]) -> list[Update]:
        """The records of these revisions; the keys of their encrypted files are fetched with them (kept in
        ``decryption_keys`` until ``decryption_keys_of`` hands them to the store with the records)."""
        decoded = self.update_data([(ref.update_id, ref.revision) for ref in revisions])
        for metadata, _ in decoded:
            classification = self.classification_of(metadata)
            for bundled_id, _revision in metadata.bundled_updates:
                if classification is not None:
                    self.bundle_classification.setdefault(bundled_id, classification)
        self.decryption_keys.update(self.decryption_data([metadata for metadata, _ in decoded]))
        return [self.update_record(metadata, xml) for metadata, xml in decoded]

    def decryption_keys_of(self, updates: Sequence[Update]) -> dict[str, bytes]:
        """The keys of the encrypted files of these updates (taken out of ``decryption_keys``), to be stored with
        them."""
        wanted = {f.sha1 for update in updates for f in update.files if f.encrypted}
        return {sha1: self.decryption_keys.pop(sha1) for sha1 in wanted if sha1 in self.decryption_keys}

    def decryption_data(self, updates: Sequence[UpdateMetadata]) -> dict[str, bytes]:
        """GetUpdateDecryptionData for the updates that carry encrypted files (IsEncrypted), within the upstream's
        MaxUpdatesPerRequestInGetUpdateDecryptionData: the key of every encrypted file, by SHA-1. A file left without
        a key is an error naming it (never the key), so no update is stored whose files could not be used."""
        encrypted = {
            (m.update_id, m.revision_number): {f.digest: f.file_name for f in m.files if f.encrypted}
            for m in updates
            if any(f.encrypted for f in m.files)
        }
        keys: dict[str, bytes] = {}
        for batch in batched(list(encrypted), self.decryption_batch):
            parts = ["<updateIds>", *(update_identity(i, r) for i, r in batch), "</updateIds>"]
            result = self.session.call("GetUpdateDecryptionData", parts)
            listed = result.child("UpdateFileDecryptionData")
            for entry in listed.children("ServerSyncUpdateFileDecryption") if listed is not None else ():
                files = entry.child("FileDecryptionData")
                for item in files.children("ServerSyncFileDecryption") if files is not None else ():
                    key = item.bytes_of("DecryptionKey")
                    if len(key) > MAX_DECRYPTION_KEY:
                        raise WsusProtocolError(
                            f"GetUpdateDecryptionData answered a key of {len(key)} bytes, above the "
                            f"{MAX_DECRYPTION_KEY} a key may have"
                        )
                    if key:
                        keys[item.bytes_of("FileDigest").hex()] = key
        for (update_id, revision), names in encrypted.items():
            for sha1, name in names.items():
                if sha1 not in keys:
                    raise WsusProtocolError(
                        f"GetUpdateDecryptionData gave no key for the encrypted file {name!r} ({sha1}) of revision "
                        f"{revision} of update {update_id}"
                    )
        return keys

    def approvals(self, anchor: str) -> ApprovalsResponse:
        result = self.session.call(
            "GetDeployments", [element("deploymentAnchor", anchor or None), element("syncAnchor", None)]
        )
        decided: dict[str, Approval] = {}
        deployments = result.child("Deployments")
        for deployment in deployments.children("ServerSyncDeployment") if deployments is not None else ():
            if deployment.int_of("Action", default=0) == 0:  # install
                update_id = deployment.text_of("UpdateId").lower()
                decided[update_id] = Approval(update_id=update_id, action="approved")
        hidden = result.child("HiddenUpdates")
        for item in hidden.children("guid") if hidden is not None else ():
            decided[item.text.lower()] = Approval(update_id=item.text.lower(), action="declined")
        return ApprovalsResponse(anchor=result.text_of("Anchor"), approvals=list(decided.values()))

    def drivers(self, request: DriversRequest) -> RevisionsResponse:
        hardware = "".join(
            f"<HardwareIdAndDelta>{element('Id', item.id)}{element('Delta', item.delta)}</HardwareIdAndDelta>"
            for item in request.hardware_ids
        )
        result = self.session.call(
            "GetDriverIdList",
            [
                "<filter>",
                element("Anchor", request.anchor or None),
                id_and_delta("ComputerIds", request.computer_hardware_ids),
                f"<PnpHardwareIds>{hardware}</PnpHardwareIds>",
                "</filter>",
            ],
        )
        refs = new_revisions(result)
        return RevisionsResponse(
            anchor=result.text_of("Anchor"),
            revisions=refs,
            expired=[],
            driver_sets=self.driver_set_data(driver_set_ids(result, "NewDriverSets")),
            removed_driver_sets=driver_set_ids(result, "RemovedDriverSets"),
        )

    def driver_set_data(self, ids: Sequence[str]) -> list[DriverSet]:
        """GetDriverSetData for the driver sets GetDriverIdList named new, within MaxNumberOfDriverSetsPerRequest:
        each set's driver-targeting XML, kept as received. A set named but not returned, or one not asked for, is an
        error: the listing's anchor would otherwise move past it."""
        found: dict[str, DriverSet] = {}
        for batch in batched(list(dict.fromkeys(ids)), self.driver_set_batch):
            parts = ["<driverSets>", *(element("guid", i) for i in batch), "</driverSets>"]
            result = self.session.call("GetDriverSetData", parts)
            listed = result.child("DriverSets")
            for entry in listed.children("ServerSyncDriverSetData") if listed is not None else ():
                driver_set_id = entry.text_of("DriverSetId").strip().lower()
                xml = entry.text_of("DriverSetXml")
                if driver_set_id not in batch:
                    raise WsusProtocolError(
                        f"GetDriverSetData answered driver set {driver_set_id[:60]!r}, which was not asked for"
                    )
                if len(xml) > MAX_DRIVER_SET_XML:
                    raise WsusProtocolError(
                        f"GetDriverSetData answered {len(xml) >> 10} KiB of XML for driver set {driver_set_id}, above "
                        f"the {MAX_DRIVER_SET_XML >> 10} KiB a set may have"
                    )
                found[driver_set_id] = DriverSet(id=driver_set_id, xml=xml)
            missing = [i for i in batch if i not in found]
            if missing:
                raise WsusProtocolError(f"GetDriverSetData did not return driver set {missing[0]}")
        return list(found.values())

    def content_url(self, file: FileRef) -> str:
        """Microsoft's address for a file of Microsoft Update, else the upstream's /Content by digest (what WSUS
        downstream servers fetch when the upstream sends no address of its own)."""
        return file.url or f"{self.base}/Content/{content_relative_path(file.sha1, file.extension)}"

    def download_files(self, sha1s: Sequence[str]) -> bool:
        """Asks a WSUS upstream to download files it has not yet (after a 404 on /Content); the next sync fetches
        them."""
        for batch in batched(list(sha1s), 100):
            self.session.call(
                "DownloadFiles",
                [
                    "<fileDigestList>",
                    *(base64_element("base64Binary", bytes.fromhex(s)) for s in batch),
                    "</fileDigestList>",
                ],
            )
        return True

    # ---- update data ----

    def update_data(self, refs: Sequence[tuple[str, int]]) -> list[tuple[UpdateMetadata, bytes]]:
        """The metadata and original XML of each identity (within the batch limit), decoded by the core."""
        parts = ["<updateIds>", *(update_identity(update_id, revision) for update_id, revision in refs), "</updateIds>"]
        result = self.session.call("GetUpdateData", parts)
        blobs: list[tuple[bytes, bool]] = []
        updates = result.child("updates")
        for entry in updates.children("ServerSyncUpdateData") if updates is not None else ():
            compressed = entry.child("XmlUpdateBlobCompressed")
            if compressed is not None and compressed.text:
                blobs.append((entry.bytes_of("XmlUpdateBlobCompressed"), True))
            else:
                blob = entry.child("XmlUpdateBlob")
                blobs.append(((blob.verbatim if blob is not None else "").encode(), False))
        urls = result.child("fileUrls")
        for url in urls.children("ServerSyncUrlData") if urls is not None else ():
            address = url.text_of("UssUrl") or (url.text_of("MUUrl") if self.catalog_only else "")
            if address:
                self.file_urls[url.bytes_of("FileDigest").hex()] = address
        decoded = []
        try:
            for (data, compressed_blob), raw in zip(blobs, _native.decode_update_blobs(blobs), strict=True):
                metadata = msgspec.convert(raw, UpdateMetadata)
                xml = (
                    _native.read_cabinet(data, 16 << 20)[0][1].decode("utf-16-le").encode() if compressed_blob else data
                )
                decoded.append((metadata, xml))
        except (UpmirrorError, ValueError) as error:  # the core's InputError, msgspec's and UTF-16's are ValueErrors
            raise WsusProtocolError(f"GetUpdateData answered update metadata that cannot be read: {error}") from None
        returned = {(m.update_id, m.revision_number) for m, _ in decoded}
        missing = [ref for ref in refs if ref not in returned]
        if missing:
            raise WsusProtocolError(f"GetUpdateData did not return revision {missing[0][1]} of {missing[0][0]}")
        return decoded

    def classification_of(self, metadata: UpdateMetadata) -> str | None:
        return classification_of(metadata, self.kind_of)

    def known_categories(self) -> dict[str, CategoryKind]:
        stored = self.stored_categories()
        self.parents.update((c.id, c.parent) for c in stored)
        return {c.id: c.kind for c in stored}

    def kind_of(self, category_id: str) -> CategoryKind | None:
        if category_id not in self.kinds:
            self.kinds.update(self.known_categories())
        return self.kinds.get(category_id)

    def tree_below(self, category_id: str) -> list[str]:
        """A selected family or company as the products under it (itself when it has none: a product)."""
        self.kinds.update(self.known_categories())
        children: dict[str, list[str]] = {}
        for child, parent in self.parents.items():
            if parent is not None:
                children.setdefault(parent, []).append(child)
        found, stack = [], [category_id]
        while stack:
            current = stack.pop()
            below = children.get(current, [])
            if not below:
                found.append(current)
            stack += below
        return sorted(found)

    def update_record(self, metadata: UpdateMetadata, xml: bytes) -> Update:
        """The upmirror record of a software or driver update; its original XML is kept with it."""
        return update_record(
            metadata,
            xml,
            self.kind_of,
            bundle_classification=self.bundle_classification.get(metadata.update_id),
            file_urls=self.file_urls if self.catalog_only else None,
        )


def new_revisions(result: Element) -> list[RevisionRef]:
    """The NewRevisions of a GetRevisionIdList or GetDriverIdList answer."""
    listed = read_update_identities(result.child("NewRevisions"))
    return [RevisionRef(update_id, revision) for update_id, revision in listed]


def driver_set_ids(result: Element, name: str) -> list[str]:
    """The driver set ids (GUIDs, lower case) a GetDriverIdList answer lists under ``name``."""
    listed = result.child(name)
    ids = [item.text.strip().lower() for item in (listed.children("guid") if listed is not None else ())]
    for driver_set_id in ids:
        if not GUID.fullmatch(driver_set_id):
            raise WsusProtocolError(f"GetDriverIdList named driver set {driver_set_id[:60]!r}, which is not a GUID")
    return ids


def id_and_delta(name: str, items: Sequence[FilterItem]) -> str:
    inner = "".join(f"<IdAndDelta>{element('Id', i.id)}{element('Delta', i.delta)}</IdAndDelta>" for i in items)
    return f"<{name}>{inner}</{name}>"


def parse_time(text: str) -> datetime.datetime:
    """An xs:dateTime as WSUS writes it (``2026-06-08T19:32:23.7190987Z``)."""
    cleaned = text.strip().rstrip("Z")
    head, _, fraction = cleaned.partition(".")
    try:
        moment = datetime.datetime.fromisoformat(head)
    except ValueError:
        raise WsusProtocolError(f"the upstream wrote a time upmirror cannot read: {text[:40]!r}") from None
    if fraction:
        moment += datetime.timedelta(microseconds=int(fraction[:6].ljust(6, "0")))
    return moment.replace(tzinfo=datetime.UTC) if moment.tzinfo is None else moment
