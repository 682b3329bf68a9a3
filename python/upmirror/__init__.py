"""upmirror: an update-content replication server in the mould of WSUS synchronization.

The fast parts (hashing, downloads, the content store, copies, dedup) live in the Rust extension
``upmirror._native``; this package re-exports them and adds the orchestration a WSUS administrator knows.
"""

from upmirror._native import (
    DigestMismatchError,
    DownloadJob,
    DownloadReport,
    FileDigests,
    FileOutcome,
    Hasher,
    HttpClient,
    HttpError,
    HttpResponse,
    ProgressSnapshot,
    ProxyAuthenticationError,
    TlsError,
    UpmirrorError,
    __version__,
    content_relative_path,
    hash_file,
    hash_files,
    parse_content_path,
)
from upmirror.errors import InputError

__all__ = [
    "DigestMismatchError",
    "DownloadJob",
    "DownloadReport",
    "FileDigests",
    "FileOutcome",
    "Hasher",
    "HttpClient",
    "HttpError",
    "HttpResponse",
    "InputError",
    "ProgressSnapshot",
    "ProxyAuthenticationError",
    "TlsError",
    "UpmirrorError",
    "__version__",
    "content_relative_path",
    "hash_file",
    "hash_files",
    "parse_content_path",
]
