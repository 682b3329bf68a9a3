"""upmirror: an update-content replication server in the mould of WSUS synchronization.

The fast parts (hashing, downloads, the content store, copies, dedup) live in the Rust extension
``upmirror._native``; this package re-exports them and adds the orchestration a WSUS administrator knows.
"""

from upmirror._native import (
    CopyReport,
    DedupReport,
    DigestMismatchError,
    DownloadJob,
    DownloadReport,
    DuplicateGroup,
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
    VerifyReport,
    __version__,
    content_relative_path,
    copy_content,
    deduplicate,
    hash_file,
    hash_files,
    parse_content_path,
    verify_content,
)
from upmirror.errors import InputError

__all__ = [
    "CopyReport",
    "DedupReport",
    "DigestMismatchError",
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
    "TlsError",
    "UpmirrorError",
    "VerifyReport",
    "__version__",
    "content_relative_path",
    "copy_content",
    "deduplicate",
    "hash_file",
    "hash_files",
    "parse_content_path",
    "verify_content",
]
