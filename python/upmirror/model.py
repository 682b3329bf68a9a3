"""The records of upmirror, defined once: categories, update files, updates, approvals, server info, and every request
and response of the sync protocol (DESIGN.md). The wire (MessagePack) and the metadata store use the same records and
the module-level encoders/decoders below, so a record read from the store is sent as it is.

Field constraints (GUID shapes, hex digests, plain file names, list lengths) are part of the records, so a malformed
body or manifest is refused by the decoder with a message naming the field, before any code looks at it.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Final, Literal, TypeVar

import msgspec

from upmirror._native import content_relative_path
from upmirror.errors import InputError

PROTOCOL_VERSION: Final = 1
MSGPACK: Final = "application/msgpack"

# Lists in a request are bounded so that a hostile body cannot make the server build a huge filter.
MAX_FILTER_ITEMS: Final = 10_000
MAX_HARDWARE_IDS: Final = 100_000
# The batch limit of /api/v1/updates is the server's own option; this only bounds decoding.
MAX_BATCH_DECODE: Final = 10_000

Guid = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
Sha1Hex = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{40}$")]
Sha256Hex = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
# An original file name: no directory part, no leading dot, printable; the content path comes from the SHA-1 anyway.
FileName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_+~-][A-Za-z0-9_.+~ ()-]{0,199}$")]
Language = Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8}){0,2}$")]
HardwareId = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
# Anchors are opaque to clients: "" asks for everything, otherwise the value a previous answer returned.
Anchor = Annotated[str, msgspec.Meta(max_length=40)]

# A detectoid is not a category in the filter's sense: it is the applicability check that updates name as a
# prerequisite, and Microsoft Update lists it with the categories (GetConfig), so it travels with them.
CategoryKind = Literal["company", "family", "product", "classification", "detectoid"]
# The kinds of category that are products in the filter's sense: a company or a family stands for everything below.
PRODUCT_KINDS: Final[tuple[CategoryKind, ...]] = ("company", "family", "product")
# The tree of Microsoft Update: what a category of each kind may hang under (a company and a classification under
# nothing; a family under its company; a product under its family, or its company).
PARENT_KINDS: Final[dict[CategoryKind, tuple[CategoryKind, ...]]] = {
    "company": (),
    "family": ("company",),
    "product": ("family", "company"),
    "classification": (),
    "detectoid": (),
}
ApprovalAction = Literal["approved", "declined", "not_approved"]


class Category(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A company, a product family, a product (``parent`` names the category above), an update classification, or a
    detectoid. Categories that came over the WSUS protocol keep their revision and their original XML (zstd), which
    is sent on unchanged to WSUS downstreams; upmirror's own categories are at revision 1."""

    id: Guid
    kind: CategoryKind
    title: Title
    parent: Guid | None = None
    revision: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)] = 1
    xml: Annotated[bytes, msgspec.Meta(max_length=4 << 20)] | None = None


class FileRef(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One file of an update. SHA-1 names it in the content layout; the others verify it (blake3 is present when
    the metadata comes from upmirror). ``languages`` empty means the file serves every language."""

    sha1: Sha1Hex
    size: Annotated[int, msgspec.Meta(ge=0)]
    name: FileName
    sha256: Sha256Hex | None = None
    blake3: Sha256Hex | None = None
    languages: list[Language] = msgspec.field(default_factory=list)
    # An express or delta file (WSUS's PatchingType, kept as ``patching``): fetched only with content.express_files.
    express: bool = False
    patching: Annotated[str, msgspec.Meta(max_length=40)] = ""
    # The file's modification time as its metadata states it (WSUS's Modified), when it does.
    modified: Annotated[str, msgspec.Meta(max_length=40)] | None = None
    # The bytes are encrypted (Microsoft Update's ESD files): clients need the file's decryption key, which the store
    # keeps beside the file (never in this record, which is listed and sent on freely).
    encrypted: bool = False
    # Where the file is downloaded from when its upstream names an address of its own (Microsoft Update's download
    # servers); None: the upstream's /Content, by digest.
    url: Annotated[str, msgspec.Meta(max_length=2000, pattern=r"^https?://")] | None = None

    def __post_init__(self) -> None:
        # The content store's grammar of a content name (rust/core/src/store.rs) is the one grammar: a name whose
        # extension it would refuse is refused here, when the record is decoded, with the store's own words.
        content_relative_path(self.sha1, self.extension)

    @property
    def extension(self) -> str:
        """The original extension (``.cab``), which the WSUS layout keeps."""
        dot = self.name.rfind(".")
        return self.name[dot:].lower() if dot > 0 else ""


class RevisionRef(msgspec.Struct, frozen=True, array_like=True):
    """(update id, revision number): how the protocol names one revision of one update."""

    update_id: Guid
    revision: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]


class LocalizedText(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An update's title and description in one more language (WSUS metadata carries them per language)."""

    language: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    title: Title
    description: Annotated[str, msgspec.Meta(max_length=10_000)] = ""


class Update(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One revision of an update. ``languages`` empty means language-neutral. Drivers carry the hardware IDs they
    install on and, when targeted at particular machines, computer hardware IDs."""

    id: Guid
    revision: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
    title: Title
    classification: Guid
    products: Annotated[list[Guid], msgspec.Meta(min_length=1, max_length=100)]
    release_date: datetime.date
    kb_article: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{0,10}$")] = ""
    description: Annotated[str, msgspec.Meta(max_length=10_000)] = ""
    # The title and description above are in the update's default language; these are the others.
    localized: Annotated[list[LocalizedText], msgspec.Meta(max_length=200)] = msgspec.field(default_factory=list)
    # Microsoft's severity rating (Critical, Important, Moderate, Low) of a security update, its support page, and
    # the license terms the update asks to be accepted (an update id of WSUS metadata).
    msrc_severity: Annotated[str, msgspec.Meta(max_length=40)] = ""
    support_url: Annotated[str, msgspec.Meta(max_length=2000)] = ""
    eula: Annotated[str, msgspec.Meta(max_length=100)] = ""
    languages: Annotated[list[Language], msgspec.Meta(max_length=200)] = msgspec.field(default_factory=list)
    files: Annotated[list[FileRef], msgspec.Meta(max_length=1000)] = msgspec.field(default_factory=list)
    supersedes: Annotated[list[Guid], msgspec.Meta(max_length=1000)] = msgspec.field(default_factory=list)
    # Updates and detectoids that must be present before this one applies (WSUS's prerequisites).
    prerequisites: Annotated[list[Guid], msgspec.Meta(max_length=1000)] = msgspec.field(default_factory=list)
    # A bundle: the revisions of the updates it carries, whose files are what gets installed. Approving the bundle
    # approves their content.
    bundled: Annotated[list[RevisionRef], msgspec.Meta(max_length=1000)] = msgspec.field(default_factory=list)
    expired: bool = False
    hardware_ids: Annotated[list[HardwareId], msgspec.Meta(max_length=1000)] = msgspec.field(default_factory=list)
    computer_hardware_ids: Annotated[list[Guid], msgspec.Meta(max_length=1000)] = msgspec.field(default_factory=list)
    # The update's original XML (zstd), when it came over the WSUS protocol: sent on unchanged to WSUS downstreams.
    xml: Annotated[bytes, msgspec.Meta(max_length=4 << 20)] | None = None

    @property
    def is_driver(self) -> bool:
        return bool(self.hardware_ids)


class Approval(msgspec.Struct, frozen=True, kw_only=True):
    """The administrator's decision on an update; replicas mirror these. ``not_approved`` is what reinstating a
    declined update returns it to."""

    update_id: Guid
    action: ApprovalAction


class Selection(msgspec.Struct, frozen=True, kw_only=True):
    """What a downstream server synchronizes (as of its last successful sync): products (a parent stands for its
    children, present and future), classifications and languages. A replica below it takes this as its own."""

    products: list[str]
    classifications: list[str]
    languages: list[str]


class ServerInfo(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /api/v1/server``: who the upstream is and what it offers. ``selection`` is None for a root server,
    which holds everything it offers."""

    id: Guid
    version: str
    protocol_version: int
    languages: list[str]
    max_updates_per_request: int
    replica: bool
    selection: Selection | None = None


class CategoriesResponse(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /api/v1/categories?anchor=A``: categories added or changed since A, and the anchor to pass next."""

    anchor: str
    categories: list[Category]


class FilterItem(msgspec.Struct, frozen=True, array_like=True):
    """One selected product, classification, language or hardware ID. ``delta`` false asks for everything the item
    matches now (an item newly added to the downstream's filter); true asks only for changes since the anchor."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    delta: bool = True


FilterList = Annotated[list[FilterItem], msgspec.Meta(max_length=MAX_FILTER_ITEMS)]


class RevisionsRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/v1/revisions``: the downstream's filter with the anchor of its last successful sync."""

    anchor: Anchor = ""
    products: FilterList = msgspec.field(default_factory=list)
    classifications: FilterList = msgspec.field(default_factory=list)
    languages: FilterList = msgspec.field(default_factory=list)


class DriverSet(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A driver set of Microsoft Update (MS-WSUSSS GetDriverSetData): a computer hardware ID's driver-targeting XML
    (the drivers for that model of computer, with operating-system prerequisites). Its format is not published:
    upmirror keeps the XML as received and passes it on, and reads nothing in it."""

    id: Guid
    xml: Annotated[str, msgspec.Meta(max_length=1 << 20)]


class RevisionsResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The latest revisions to fetch and the updates that expired, with the anchor to pass next. Also the answer of
    ``/api/v1/drivers``, where a WSUS upstream adds the driver sets new or removed since the anchor."""

    anchor: str
    revisions: list[RevisionRef]
    expired: list[str]
    driver_sets: list[DriverSet] = msgspec.field(default_factory=list)
    removed_driver_sets: list[Guid] = msgspec.field(default_factory=list)


class UpdatesRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/v1/updates``: revisions to fetch, at most the server's ``max_updates_per_request``."""

    revisions: Annotated[list[RevisionRef], msgspec.Meta(max_length=MAX_BATCH_DECODE)]


class UpdatesResponse(msgspec.Struct, frozen=True, kw_only=True):
    updates: list[Update]


class ApprovalsRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/v1/approvals``: a replica asks for approvals and declines since its anchor."""

    anchor: Anchor = ""


class ApprovalsResponse(msgspec.Struct, frozen=True, kw_only=True):
    anchor: str
    approvals: list[Approval]


class DriversRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/v1/drivers``: the de-duplicated roll-up of the hardware IDs (and computer hardware IDs) the
    downstream's clients reported; IDs first reported since the last sync have ``delta`` false."""

    anchor: Anchor = ""
    hardware_ids: Annotated[list[FilterItem], msgspec.Meta(max_length=MAX_HARDWARE_IDS)] = msgspec.field(
        default_factory=list
    )
    computer_hardware_ids: Annotated[list[FilterItem], msgspec.Meta(max_length=MAX_HARDWARE_IDS)] = msgspec.field(
        default_factory=list
    )


class InventoryReport(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/v1/client/inventory``: a client device reports the hardware IDs of its attached devices and its
    computer hardware IDs (non-identifying: no names, no serial numbers). A new report replaces the previous one."""

    device: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]
    hardware_ids: Annotated[list[HardwareId], msgspec.Meta(max_length=10_000)] = msgspec.field(default_factory=list)
    computer_hardware_ids: Annotated[list[Guid], msgspec.Meta(max_length=100)] = msgspec.field(default_factory=list)


class ClientUpdatesRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/v1/client/updates``: which approved updates apply to this device."""

    device: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]


class ClientUpdatesResponse(msgspec.Struct, frozen=True, kw_only=True):
    """Approved, unexpired updates; drivers only for devices the client reported (server-side filtering)."""

    updates: list[Update]


class PublishManifest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``upmirror publish MANIFEST`` (JSON): categories to add and updates to publish; each file is read from the
    manifest's folder by its ``name`` and must match the size and every digest the manifest gives. A file marked
    ``encrypted`` needs its key in ``decryption_keys`` (SHA-1 -> base64), which WSUS downstream servers are given
    by GetUpdateDecryptionData."""

    categories: list[Category] = msgspec.field(default_factory=list)
    updates: list[Update] = msgspec.field(default_factory=list)
    decryption_keys: dict[Sha1Hex, Annotated[bytes, msgspec.Meta(min_length=1, max_length=4096)]] = msgspec.field(
        default_factory=dict
    )


SyncTrigger = Literal["manual", "scheduled"]
SyncResult = Literal["running", "succeeded", "partial", "failed"]


class SyncRecord(msgspec.Struct, kw_only=True):
    """One synchronization attempt in the history: when, why, how it ended, and what it moved. ``partial`` means
    the metadata is complete but some files failed (``failed_files`` names them); ``failed`` names its error."""

    id: int = 0
    trigger: SyncTrigger = "manual"
    upstream: str = ""
    started: datetime.datetime
    finished: datetime.datetime | None = None
    result: SyncResult = "running"
    categories: int = 0
    new_updates: int = 0
    revised_updates: int = 0
    expired_updates: int = 0
    approvals: int = 0
    files_downloaded: int = 0
    files_present: int = 0
    files_failed: int = 0
    bytes_downloaded: int = 0
    # How long the metadata phase (categories, revisions, update metadata, anchors) took, in seconds.
    metadata_seconds: float = 0.0
    failed_files: list[str] = msgspec.field(default_factory=list)
    error: str = ""
    upstream_unreachable: bool = False


class SyncState(msgspec.Struct, kw_only=True):
    """What a downstream remembers between synchronizations: which upstream it follows, the anchors that upstream
    returned, and the filter items of the last successful sync (items added since are asked for in full)."""

    upstream_id: str = ""
    category_anchor: str = ""
    update_anchor: str = ""
    approval_anchor: str = ""
    driver_anchor: str = ""
    products: list[str] = msgspec.field(default_factory=list)
    classifications: list[str] = msgspec.field(default_factory=list)
    languages: list[str] = msgspec.field(default_factory=list)
    hardware_ids: list[str] = msgspec.field(default_factory=list)
    computer_hardware_ids: list[str] = msgspec.field(default_factory=list)


class ImportCounts(msgspec.Struct, kw_only=True):
    """What an imported metadata package changed here: categories added or changed, updates new to this server,
    revisions stored, expirations taken."""

    categories: int = 0
    updates: int = 0
    revisions: int = 0
    expired: int = 0


# A downstream token lets a server synchronize from this one; an admin token also opens the admin interface.
TokenRole = Literal["downstream", "admin"]


class TokenInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A bearer token as the server lists it: its name, when it was issued, its role (never the token itself)."""

    name: str
    created: str
    role: TokenRole


# Reusable encoders and decoders (msgspec's fast path: build them once).
# ---- update metadata of the WSUS protocol (MS-WSUSSS): what the Rust core reads from update XML and writes back ----

WsusUpdateType = Literal["Software", "Driver", "Category", "Detectoid"]
WsusCategoryType = Literal["Company", "ProductFamily", "Product", "UpdateClassification"]


class MetadataFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One ``upd:File`` of update XML; digests in lower-case hex (SHA-1 names the content, SHA-256 verifies it)."""

    file_name: str
    digest: str
    size: int
    digest_algorithm: str = "SHA1"
    modified: str | None = None
    patching_type: str | None = None
    sha256: str | None = None
    # The file's own languages (none: every language of its update), and whether its bytes are encrypted.
    languages: list[str] = msgspec.field(default_factory=list)
    encrypted: bool = False


class MetadataDriver(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One hardware ID a driver update installs on, with the computers it is distributed to or aimed at."""

    hardware_id: str
    whql_driver_id: str | None = None
    manufacturer: str | None = None
    company: str | None = None
    provider: str | None = None
    driver_ver_date: str | None = None
    driver_ver_version: str | None = None
    # "class" in the XML, a keyword here.
    driver_class: str | None = msgspec.field(default=None, name="class")
    distribution_computer_hardware_ids: list[str] = msgspec.field(default_factory=list)
    target_computer_hardware_ids: list[str] = msgspec.field(default_factory=list)


class LocalizedProperties(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    language: str
    title: str
    description: str | None = None


class UpdateMetadata(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One update's XML as the Rust core reads it (``decode_update_blob``) and writes it (``encode_update_xml``):
    categories and detectoids are updates too. ``category_groups`` are the prerequisite groups marked IsCategory: an
    update's products, and in another group its classification; a category's parent."""

    update_id: str
    revision_number: int
    update_type: WsusUpdateType
    default_language: str | None = None
    publication_state: Literal["Published", "Expired"] | None = None
    creation_date: str | None = None
    explicitly_deployable: bool | None = None
    is_public: bool | None = None
    handler: str | None = None
    eula_id: str | None = None
    kb_article_id: str | None = None
    support_url: str | None = None
    more_info_url: str | None = None
    msrc_severity: str | None = None
    security_bulletin_id: str | None = None
    # The languages of a language-specific update (Properties' Language children); none: language-neutral.
    languages: list[str] = msgspec.field(default_factory=list)
    localized_properties: list[LocalizedProperties] = msgspec.field(default_factory=list)
    category_type: WsusCategoryType | None = None
    parent_category: str | None = None
    prerequisites: list[str] = msgspec.field(default_factory=list)
    prerequisite_groups: list[list[str]] = msgspec.field(default_factory=list)
    category_groups: list[list[str]] = msgspec.field(default_factory=list)
    bundled_updates: list[tuple[str, int]] = msgspec.field(default_factory=list)
    superseded_updates: list[str] = msgspec.field(default_factory=list)
    files: list[MetadataFile] = msgspec.field(default_factory=list)
    eula_files: list[MetadataFile] = msgspec.field(default_factory=list)
    handler_data_type: str | None = None
    drivers: list[MetadataDriver] = msgspec.field(default_factory=list)


msgpack_encoder: Final = msgspec.msgpack.Encoder()
json_encoder: Final = msgspec.json.Encoder()
update_decoder: Final = msgspec.msgpack.Decoder(Update)
category_decoder: Final = msgspec.msgpack.Decoder(Category)
sync_record_decoder: Final = msgspec.msgpack.Decoder(SyncRecord)

T = TypeVar("T")
_msgpack_decoders: dict[type, msgspec.msgpack.Decoder] = {}  # type: ignore[type-arg]


def decode_msgpack(data: bytes, kind: type[T]) -> T:
    """Decodes a MessagePack body as ``kind``; anything malformed or wrongly typed is an InputError naming the
    field."""
    decoder = _msgpack_decoders.get(kind)
    if decoder is None:
        decoder = _msgpack_decoders[kind] = msgspec.msgpack.Decoder(kind)
    try:
        result: T = decoder.decode(data)
    except msgspec.ValidationError as error:
        raise InputError(f"invalid {kind.__name__}: {error}") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as error:  # msgspec lets invalid UTF-8 in keys through
        raise InputError(f"malformed {kind.__name__} body: {error}") from None
    return result


def decode_json(data: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(data, type=kind)
    except msgspec.ValidationError as error:
        raise InputError(f"invalid {kind.__name__}: {error}") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as error:  # msgspec lets invalid UTF-8 in keys through
        raise InputError(f"malformed {kind.__name__}: {error}") from None
