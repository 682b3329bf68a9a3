"""Type stubs of the Rust extension; checked against the module by ``python -m mypy.stubtest upmirror._native``."""

from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from os import PathLike
from pathlib import Path
from typing import Final, TypedDict, final

__version__: str
__all__ = [
    "DEFAULT_CONNECTIONS",
    "DEFAULT_CONNECT_TIMEOUT_SECONDS",
    "DEFAULT_READ_TIMEOUT_SECONDS",
    "DEFAULT_RETRIES",
    "RETRYABLE_STATUSES",
    "ContentFront",
    "ContentScan",
    "CopyReport",
    "DedupReport",
    "DownloadJob",
    "DownloadReport",
    "DuplicateGroup",
    "FileDigests",
    "FileOutcome",
    "Hasher",
    "HttpClient",
    "HttpError",
    "HttpResponse",
    "InputError",
    "ProgressSnapshot",
    "ProxyAuthenticationError",
    "StagedReport",
    "TlsError",
    "UnreachableError",
    "UpmirrorError",
    "VerifyReport",
    "__version__",
    "content_relative_path",
    "copy_content",
    "decode_update_blob",
    "decode_update_blobs",
    "deduplicate",
    "encode_update_xml",
    "forget_deleted_content",
    "hash_file",
    "hash_files",
    "parse_content_path",
    "partial_path",
    "place_staged",
    "read_cabinet",
    "scan_content",
    "verify_content",
    "write_cabinet",
]

DEFAULT_RETRIES: Final[int]
DEFAULT_CONNECTIONS: Final[int]
DEFAULT_CONNECT_TIMEOUT_SECONDS: Final[float]
DEFAULT_READ_TIMEOUT_SECONDS: Final[float]
RETRYABLE_STATUSES: Final[frozenset[int]]

class UpmirrorError(Exception):
    """The root of every error upmirror raises on purpose."""

class InputError(UpmirrorError, ValueError):
    """A value given by the user is not allowed; the message names it and what is allowed. Nothing was changed."""

class HttpError(UpmirrorError):
    """A request failed: reset, stalled, an answer that is not HTTP, a redirect that cannot be followed. ``kind``
    names which (unreachable, connect, timed_out, reset, body, redirect, tls, proxy_refused); the message names the
    URL."""

    kind: str

class UnreachableError(HttpError):
    """No connection could be made; the message names the origin, or the proxy when requests go through one."""

class TlsError(HttpError):
    """The TLS handshake failed (untrusted or mismatched certificate)."""

class ProxyAuthenticationError(HttpError):
    """The proxy wants authentication upmirror may not or cannot give; the message says which, never a credential."""

@final
class ProgressSnapshot:
    """A copy of the progress counters, handed to progress callbacks."""

    @property
    def bytes_done(self) -> int: ...
    @property
    def bytes_total(self) -> int: ...
    @property
    def files_done(self) -> int: ...
    @property
    def files_failed(self) -> int: ...
    @property
    def files_total(self) -> int: ...
    @property
    def elapsed_seconds(self) -> float: ...
    @property
    def rate(self) -> float: ...

_ProgressCallback = Callable[[ProgressSnapshot], object]
_StrPath = str | PathLike[str]

@final
class FileDigests:
    """The digests of one file as lower-case hex; ``None`` for an algorithm that was not asked for."""

    @property
    def size(self) -> int: ...
    @property
    def blake3(self) -> str | None: ...
    @property
    def sha256(self) -> str | None: ...
    @property
    def sha1(self) -> str | None: ...
    @property
    def xxh3(self) -> str | None: ...
    def get(self, algorithm: str) -> str | None: ...
    def __eq__(self, value: object, /) -> bool: ...

@final
class Hasher:
    """A streaming hasher for bytes fed from Python, computing several digests at once."""

    def __new__(cls, algorithms: Sequence[str] | None = None) -> Hasher: ...
    def update(self, data: bytes | bytearray) -> None: ...
    @property
    def size(self) -> int: ...
    def finalize(self) -> FileDigests: ...

def hash_file(
    path: _StrPath, algorithms: Sequence[str] | None = None, progress: _ProgressCallback | None = None
) -> FileDigests: ...
def hash_files(
    paths: Sequence[_StrPath],
    algorithms: Sequence[str] | None = None,
    threads: int | None = None,
    progress: _ProgressCallback | None = None,
) -> list[FileDigests | OSError]: ...
def content_relative_path(sha1: str, extension: str) -> str: ...
def forget_deleted_content(directory: _StrPath, relative_paths: Sequence[str]) -> None:
    """Drops files deleted on purpose (cleanup) from the content index, so verification does not report them
    missing."""

def parse_content_path(relative: str) -> tuple[str, str]: ...
def partial_path(content_dir: _StrPath, purpose: str) -> Path:
    """Where to stage a file for ``place_staged``: ``<content_dir>/.partial/<purpose>.part`` (folder created)."""

@final
class StagedReport:
    """What ``place_staged`` did; paths are relative to the content directory."""

    @property
    def digests(self) -> list[FileDigests | None]:
        """Per staged file, in order: size, sha1, sha256, blake3 (``None``: it could not be read)."""
    @property
    def placed(self) -> list[str]: ...
    @property
    def present(self) -> list[str]:
        """Already in place (or named twice): the staged copies were removed."""
    @property
    def refused(self) -> list[tuple[int, str]]:
        """(position in the call, reason); when there is one, nothing was placed and the staged files are gone."""

def place_staged(
    content_dir: _StrPath,
    files: Sequence[tuple[_StrPath, str, str, int, str | None, str | None]],
    progress: Callable[[ProgressSnapshot], object] | None = None,
) -> StagedReport:
    """Verifies staged files (staged path, sha1, extension, size, sha256 | None, blake3 | None) and, when every one
    matches, places them atomically and durably and records them in the content index."""

@final
class ContentScan:
    """A content directory as the store lists it."""

    @property
    def files(self) -> list[tuple[str, str, str]]:
        """(path relative to the directory as found on disk, sha1 lower-case hex, extension) of every layout file."""
    @property
    def outside(self) -> list[str]:
        """Everything else (folders with a trailing ``/``), never taken for content."""

def scan_content(content_dir: _StrPath) -> ContentScan: ...

@final
class HttpResponse:
    """A whole HTTP response: status, headers (in order, names lower-case) and body."""

    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> list[tuple[str, str]]: ...
    @property
    def body(self) -> bytes: ...
    def header(self, name: str) -> str | None: ...

@final
class DownloadJob:
    """One file to download: into the content store (``content``) or as a plain file (``file``)."""

    @staticmethod
    def content(
        url: str, sha1: str, extension: str, size: int, *, sha256: str | None = None, blake3: str | None = None
    ) -> DownloadJob: ...
    @staticmethod
    def file(
        url: str,
        *,
        file_name: str | None = None,
        size: int | None = None,
        sha256: str | None = None,
        blake3: str | None = None,
        sha1: str | None = None,
    ) -> DownloadJob: ...
    @property
    def url(self) -> str: ...
    @property
    def size(self) -> int | None: ...
    @property
    def relative_path(self) -> str: ...

@final
class FileOutcome:
    """What became of one job: ``status`` is "placed", "skipped" or "failed" (``reason`` then names the file)."""

    @property
    def url(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def path(self) -> Path | None: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def bytes_fetched(self) -> int: ...
    @property
    def bytes_reused(self) -> int: ...

@final
class DownloadReport:
    """The result of a download: one outcome per job (in job order) and the byte counts."""

    @property
    def outcomes(self) -> list[FileOutcome]: ...
    @property
    def failures(self) -> list[FileOutcome]: ...
    @property
    def placed(self) -> int: ...
    @property
    def skipped(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def bytes_transferred(self) -> int: ...
    @property
    def bytes_reused(self) -> int: ...
    @property
    def unreachable(self) -> str | None:
        """Why an origin was given up (unreachable past the outage budget), naming it or the proxy; else None."""
    @property
    def elapsed_seconds(self) -> float: ...

@final
class ContentFront:
    """The HTTP front of ``upmirror serve``: serves ``/Content`` from Rust on the listening socket (which it
    duplicates) and forwards every other request to the aiohttp backend on ``backend_socket``, until ``stop()``."""

    def __new__(
        cls,
        listening_fd: int,
        content_dir: _StrPath,
        backend_socket: _StrPath,
        *,
        max_request_body: int,
        anonymous_content: bool = False,
        tls_certificate: _StrPath | None = None,
        tls_key: _StrPath | None = None,
    ) -> ContentFront: ...
    def stop(self) -> None:
        """Stops accepting connections; returns once the requests in flight finished (a few seconds at most)."""

@final
class HttpClient:
    """The one HTTP client, built from the server's options; credentials stay inside and are never shown."""

    def __new__(
        cls,
        *,
        ca_file: _StrPath | None = None,
        verify_tls: bool = True,
        proxy_url: str | None = None,
        proxy_user: str | None = None,
        proxy_domain: str | None = None,
        proxy_password: str | None = None,
        allow_basic_auth: bool = False,
        bearer_token: str | None = None,
        connect_timeout: float = ...,
        read_timeout: float = ...,
        max_connections_per_host: int = ...,
        user_agent: str | None = None,
    ) -> HttpClient: ...
    def request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        *,
        retries: int = 0,
        retry_statuses: AbstractSet[int] | None = None,
        backoff: float | None = None,
    ) -> HttpResponse: ...
    def download(
        self,
        jobs: Sequence[DownloadJob],
        directory: _StrPath,
        *,
        connections: int | None = None,
        chunk_size: int | None = None,
        max_in_flight_bytes: int | None = None,
        retries: int | None = None,
        backoff: float | None = None,
        outage_budget: float | None = None,
        progress: _ProgressCallback | None = None,
    ) -> DownloadReport: ...

@final
class CopyReport:
    """What a content copy did; paths are relative to the content directories."""

    @property
    def files(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def copied(self) -> int: ...
    @property
    def bytes_copied(self) -> int: ...
    @property
    def reflinked(self) -> int: ...
    @property
    def hardlinked(self) -> int: ...
    @property
    def hashed(self) -> int: ...
    @property
    def skipped(self) -> int: ...
    @property
    def rechecked(self) -> int: ...
    @property
    def replaced(self) -> int: ...
    @property
    def corrupt_source(self) -> list[str]: ...
    @property
    def failed(self) -> list[tuple[str, str]]: ...
    @property
    def outside_layout(self) -> list[str]: ...

def copy_content(
    source: _StrPath,
    destination: _StrPath,
    *,
    hardlink: bool = False,
    verify: bool = False,
    threads: int | None = None,
    sync: bool = True,
    progress: _ProgressCallback | None = None,
) -> CopyReport: ...

@final
class VerifyReport:
    """What a content verification found; paths are relative to the content directory."""

    @property
    def files(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def trusted(self) -> int: ...
    @property
    def hashed_ok(self) -> int: ...
    @property
    def bytes_read(self) -> int: ...
    @property
    def corrupt(self) -> list[str]: ...
    @property
    def missing(self) -> list[str]: ...
    @property
    def unreadable(self) -> list[tuple[str, str]]: ...
    @property
    def outside_layout(self) -> list[str]: ...

def verify_content(
    directory: _StrPath, *, full: bool = False, threads: int | None = None, progress: _ProgressCallback | None = None
) -> VerifyReport: ...

@final
class DuplicateGroup:
    """Files with identical bytes; ``paths[0]`` is the one kept."""

    @property
    def size(self) -> int: ...
    @property
    def blake3(self) -> str: ...
    @property
    def paths(self) -> list[str]: ...

@final
class DedupReport:
    """What a deduplication found and did."""

    @property
    def files(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def candidates_by_size(self) -> int: ...
    @property
    def read_whole(self) -> int: ...
    @property
    def groups(self) -> list[DuplicateGroup]: ...
    @property
    def bytes_duplicate(self) -> int: ...
    @property
    def files_linked(self) -> int: ...
    @property
    def bytes_saved(self) -> int: ...
    @property
    def changed(self) -> list[str]: ...
    @property
    def failed(self) -> list[tuple[str, str]]: ...

def deduplicate(
    roots: Sequence[_StrPath],
    *,
    link: str = "hardlink",
    dry_run: bool = False,
    min_size: int = 1,
    threads: int | None = None,
    progress: _ProgressCallback | None = None,
) -> DedupReport: ...

# The WSUS metadata layer (rust/core/src/wsus): update blobs, update XML, cabinets.

class _LocalizedProperties(TypedDict):
    language: str
    title: str
    description: str | None

class _UpdateFile(TypedDict):
    file_name: str
    digest: str
    digest_algorithm: str
    size: int
    modified: str | None
    patching_type: str | None
    sha256: str | None
    languages: list[str]
    encrypted: bool

# "class" is a keyword, hence the functional form.
_DriverMetadata = TypedDict(
    "_DriverMetadata",
    {
        "hardware_id": str,
        "whql_driver_id": str | None,
        "manufacturer": str | None,
        "company": str | None,
        "provider": str | None,
        "driver_ver_date": str | None,
        "driver_ver_version": str | None,
        "class": str | None,
        "distribution_computer_hardware_ids": list[str],
        "target_computer_hardware_ids": list[str],
    },
)

class _UpdateMetadata(TypedDict):
    update_id: str
    revision_number: int
    update_type: str
    default_language: str | None
    publication_state: str | None
    creation_date: str | None
    explicitly_deployable: bool | None
    is_public: bool | None
    handler: str | None
    eula_id: str | None
    kb_article_id: str | None
    support_url: str | None
    more_info_url: str | None
    msrc_severity: str | None
    security_bulletin_id: str | None
    languages: list[str]
    localized_properties: list[_LocalizedProperties]
    category_type: str | None
    parent_category: str | None
    prerequisites: list[str]
    prerequisite_groups: list[list[str]]
    category_groups: list[list[str]]
    bundled_updates: list[tuple[str, int]]
    superseded_updates: list[str]
    files: list[_UpdateFile]
    eula_files: list[_UpdateFile]
    handler_data_type: str | None
    drivers: list[_DriverMetadata]

def decode_update_blob(data: bytes, compressed: bool) -> _UpdateMetadata:
    """Reads one update's XML: XmlUpdateBlob (UTF-8 text, compressed=False) or XmlUpdateBlobCompressed (a cabinet
    holding UTF-16LE text, compressed=True). The GIL is released while decoding. ValueError names a bad blob (bad
    cabinet, above 16 MiB of XML, nesting above 128, a DTD or an undefined entity, a missing identity).

    Keys (ids are lower-case GUIDs, digests lower-case hex; absent values are None or empty lists):
    update_id, revision_number; update_type (Software, Driver, Category, Detectoid); default_language;
    publication_state (Published, Expired); creation_date; explicitly_deployable; is_public; handler (the
    Properties Handler namespace); eula_id; kb_article_id; support_url; more_info_url; msrc_severity;
    security_bulletin_id; languages (Properties' Language children: a language-specific update's languages);
    localized_properties [{language, title, description}]; category_type (Company,
    ProductFamily, Product, UpdateClassification); parent_category (a category's first IsCategory prerequisite);
    prerequisites (ids that must all be installed); prerequisite_groups (AtLeastOne groups); category_groups
    (AtLeastOne IsCategory="true" groups: an update's products and its classification, which the caller tells apart);
    bundled_updates [(update_id, revision_number)]; superseded_updates; files and eula_files [{file_name, digest
    (SHA-1), digest_algorithm, size, modified, patching_type, sha256, languages (the file's Language children),
    encrypted (IsEncrypted)}]; handler_data_type (HandlerSpecificData's
    xsi:type, e.g. Category, CommandLineInstallation, WindowsDriver, Cbs); drivers [{hardware_id, whql_driver_id,
    manufacturer, company, provider, driver_ver_date, driver_ver_version, class, distribution_computer_hardware_ids,
    target_computer_hardware_ids}].
    """

def decode_update_blobs(blobs: list[tuple[bytes, bool]]) -> list[_UpdateMetadata]:
    """decode_update_blob for many (data, compressed) pairs on every core, in order; ValueError names the index of
    the first bad blob."""

def encode_update_xml(metadata: _UpdateMetadata | dict[str, object]) -> str:
    """The update XML a WSUS server sends for a metadata dict with decode_update_blob's keys (update_id,
    revision_number and update_type are required; parent_category is ignored). Reading it back gives the same dict.
    ValueError for an unknown key, a bad value, or a character XML cannot hold."""

def read_cabinet(data: bytes, max_size: int) -> list[tuple[str, bytes]]:
    """The members of a Microsoft cabinet (LZX, MSZIP or stored) as (name, bytes), in the cabinet's order.
    ValueError for a bad or truncated cabinet, or one whose members add up to more than max_size bytes."""

def write_cabinet(members: list[tuple[str, bytes]]) -> bytes:
    """A cabinet of (name, bytes) members in one MSZIP folder."""
