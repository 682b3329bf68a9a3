"""Type stubs of the Rust extension; checked against the module by ``python -m mypy.stubtest upmirror._native``."""

from collections.abc import Callable, Sequence
from os import PathLike
from typing import final

__version__: str
__all__ = [
    "FileDigests",
    "Hasher",
    "ProgressSnapshot",
    "UpmirrorError",
    "__version__",
    "content_relative_path",
    "hash_file",
    "hash_files",
    "parse_content_path",
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
