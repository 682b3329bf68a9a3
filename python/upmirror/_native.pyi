"""Type stubs of the Rust extension; checked against the module by ``python -m mypy.stubtest upmirror._native``."""

from collections.abc import Callable, Sequence
from os import PathLike
from typing import final

__version__: str
__all__ = [
    "CopyReport",
    "DedupReport",
    "DuplicateGroup",
    "FileDigests",
    "Hasher",
    "ProgressSnapshot",
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

class UpmirrorError(Exception):
    """The root of every error upmirror raises on purpose."""

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
def parse_content_path(relative: str) -> tuple[str, str]: ...

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
