"""Metadata packages between servers (wsusutil export/import): one file that carries update metadata, full or
incremental since an earlier export, verifiable end to end before anything is imported.

Format (version 1). The file is a zstd stream (with zstd's own frame checksums) of frames; a frame is one kind byte,
a 4-byte big-endian length and that many bytes of MessagePack:

    H  PackageHeader   format name and version, exporting server, its anchor, ``since``, counts
    C  Category        every category changed after ``since`` (families before products), as stored
    U  Update          every revision stored after ``since`` (all revisions, not only the latest: a server that
                       imports holds the same history as the exporter), grouped by update, oldest first; also the
                       latest revision of updates that expired after ``since``. Exactly the stored MessagePack.
    T  PackageTrailer  the counts again and the SHA-256 of every decompressed byte before the trailer frame

Nothing else follows the trailer. The file ends with a seal: a zstd skippable frame (magic 0x184D2A5E, which any
zstd decompressor passes over) holding the tag ``UPMSEAL1`` and the SHA-256 of every compressed byte before it, so
a cut anywhere or a changed byte is caught before decompression starts.

Approvals, settings and files are not in a package (as with WSUS); files travel in a seed bundle
(``upmirror.bundle``) or by ``upmirror content copy``.

Import reads the whole package twice: first to verify it (zstd checksums, SHA-256, counts, every record decoded by
the model's validating decoders, every category an update names known), then again inside one store transaction
that also re-checks the digest, so a package that is tampered, truncated, from a newer upmirror or not a package is
refused with one line and the store stays as it was. Both passes stream: memory does not grow with the package.
Decompression is bounded (frame size, and total size against the compressed size) so a bomb is refused early.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final, TypeVar

import msgspec
import zstandard

from upmirror import content_relative_path
from upmirror.errors import InputError
from upmirror.model import (
    PRODUCT_KINDS,
    Category,
    ImportCounts,
    Update,
    category_decoder,
    msgpack_encoder,
    update_decoder,
)
from upmirror.store import Store

FORMAT_NAME: Final = "upmirror-metadata"
FORMAT_VERSION: Final = 1
HEADER, CATEGORY, UPDATE, TRAILER = b"H", b"C", b"U", b"T"
FRAME_PREFIX: Final = struct.Struct(">cI")
# No record comes near this; a larger length is corruption or an attack.
MAX_FRAME_BYTES: Final = 16 * 1024 * 1024
# Decompression bomb guard: metadata compresses about 5 to 20 times; refuse far beyond that.
MAX_RATIO: Final = 200
MIN_DECOMPRESSED_ALLOWANCE: Final = 256 * 1024 * 1024
READ_SIZE: Final = 1 << 20
R = TypeVar("R")
ZSTD_MAGIC: Final = 0xFD2FB528
# The seal closing the file: a zstd skippable frame (decompressors pass over it) holding the SHA-256 of every byte
# before it.
SEAL: Final = struct.Struct("<II8s32s")
SEAL_MAGIC: Final = 0x184D2A5E
SEAL_TAG: Final = b"UPMSEAL1"


class PackageHeader(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    format: str
    version: int
    server_id: str
    anchor: int
    since: int
    created: str
    categories: int
    revisions: int


class PackageTrailer(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    categories: int
    revisions: int
    sha256: str


class _FormatProbe(msgspec.Struct):
    """Only what every version's header keeps, read before the rest so a newer package gets a clear answer."""

    format: str = ""
    version: int = 0


@dataclass
class ExportSummary:
    path: str
    server_id: str
    anchor: int
    since: int
    categories: int
    revisions: int
    bytes: int
    sha256: str


@dataclass
class ImportReport:
    """What an import did, and which imported updates still lack files in this server's content directory."""

    path: str
    server_id: str
    anchor: int
    since: int
    categories: int = 0
    updates: int = 0
    revisions: int = 0
    expired: int = 0
    missing_files: int = 0
    missing_bytes: int = 0
    lacking_content: list[str] = field(default_factory=list)


# ---- export ----


def export_package(store: Store, path: Path, since: int) -> ExportSummary:
    """Writes the package of everything changed after change ``since`` (0: everything) from one consistent
    snapshot; the file appears complete at ``path`` or not at all."""
    with store.snapshot() as anchor:
        if since > anchor:
            raise InputError(f"--since {since} is ahead of this server (its latest anchor is {anchor})")
        categories, revisions = store.export_counts(since)
        header = PackageHeader(
            format=FORMAT_NAME,
            version=FORMAT_VERSION,
            server_id=store.server_id,
            anchor=anchor,
            since=since,
            created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            categories=categories,
            revisions=revisions,
        )
        with atomic_file(path) as raw:
            sealed = _SealingWriter(raw)
            compressor = zstandard.ZstdCompressor(level=3, write_checksum=True, threads=-1)
            with compressor.stream_writer(sealed, closefd=False) as stream:  # type: ignore[arg-type]
                digest = hashlib.sha256()
                _write_frame(stream, digest, HEADER, msgpack_encoder.encode(header))
                written = [0, 0]
                for blob in store.export_categories(since):
                    _write_frame(stream, digest, CATEGORY, blob)
                    written[0] += 1
                for blob in store.export_revisions(since):
                    _write_frame(stream, digest, UPDATE, blob)
                    written[1] += 1
                trailer = PackageTrailer(categories=written[0], revisions=written[1], sha256=digest.hexdigest())
                _write_frame(stream, None, TRAILER, msgpack_encoder.encode(trailer))
            raw.write(SEAL.pack(SEAL_MAGIC, SEAL.size - 8, SEAL_TAG, sealed.digest.digest()))
    return ExportSummary(
        path=str(path),
        server_id=header.server_id,
        anchor=anchor,
        since=since,
        categories=written[0],
        revisions=written[1],
        bytes=path.stat().st_size,
        sha256=file_sha256(path),
    )


class _SealingWriter:
    """Passes compressed bytes to the file and hashes them for the seal."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


def _write_frame(stream: IO[bytes], digest: hashlib._Hash | None, kind: bytes, payload: bytes) -> None:
    frame = FRAME_PREFIX.pack(kind, len(payload)) + payload
    if digest is not None:
        digest.update(frame)
    stream.write(frame)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[IO[bytes]]:
    """A file written beside ``path`` (``.partial``) that takes its place complete and durable, or not at all."""
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def file_sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


# ---- reading and verifying ----


def _read_exact(stream: IO[bytes], size: int) -> bytes:
    parts = []
    remaining = size
    while remaining:
        part = stream.read(min(remaining, READ_SIZE))
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def read_records(path: Path) -> Iterator[PackageHeader | Category | Update]:
    """Yields the header, then every category and update record, verifying as it goes; the digest and counts are
    checked when the trailer is reached, so a consumer must read to the end before trusting what it got. Every
    fault is an InputError naming the package."""
    try:
        compressed = path.stat().st_size
        file = path.open("rb")
    except OSError as error:
        raise InputError(f"cannot read package {path}: {error.strerror}") from None
    allowance = max(MIN_DECOMPRESSED_ALLOWANCE, MAX_RATIO * compressed)
    with file:
        _check_seal(path, file, compressed)
        yield from _decompressed_records(path, file, allowance)


def _check_seal(path: Path, file: IO[bytes], size: int) -> None:
    """The seal must be there and match every compressed byte: this catches a cut anywhere (even one that only
    loses zstd's closing checksum, which streaming decompression does not notice) and any changed byte."""
    magic = file.read(4)
    if size < SEAL.size or magic != struct.pack("<I", ZSTD_MAGIC):
        if magic == struct.pack("<I", ZSTD_MAGIC):
            raise InputError(f"package {path} is truncated")
        raise InputError(f"{path} is not an upmirror metadata package")
    file.seek(size - SEAL.size)
    seal_magic, seal_size, tag, expected = SEAL.unpack(file.read(SEAL.size))
    if (seal_magic, seal_size, tag) != (SEAL_MAGIC, SEAL.size - 8, SEAL_TAG):
        raise InputError(f"{path} lacks the seal that ends an upmirror package: it is truncated, damaged or not one")
    file.seek(0)
    digest = hashlib.sha256()
    remaining = size - SEAL.size
    while remaining:
        block = file.read(min(remaining, READ_SIZE))
        if not block:
            raise InputError(f"package {path} is truncated")
        digest.update(block)
        remaining -= len(block)
    if digest.digest() != expected:
        raise InputError(f"package {path} does not match its seal (SHA-256): it was changed or damaged")
    file.seek(0)


def _decompressed_records(path: Path, file: IO[bytes], allowance: int) -> Iterator[PackageHeader | Category | Update]:
    with zstandard.ZstdDecompressor().stream_reader(file, read_across_frames=True, closefd=False) as stream:
        try:
            yield from _records(path, stream, allowance)
        except zstandard.ZstdError as error:
            if file.tell() <= READ_SIZE and "Unknown frame descriptor" in str(error):
                raise InputError(f"{path} is not an upmirror metadata package") from None
            raise InputError(f"package {path} is corrupt (zstd: {error}); it was changed or damaged") from None


def _records(path: Path, stream: IO[bytes], allowance: int) -> Iterator[PackageHeader | Category | Update]:
    digest = hashlib.sha256()
    decompressed = 0
    header: PackageHeader | None = None
    counts = [0, 0]
    while True:
        kind, prefix, payload = _read_frame(path, stream)
        decompressed += len(prefix) + len(payload)
        if decompressed > allowance:
            raise InputError(f"package {path} expands beyond {allowance} bytes: refused as a decompression bomb")
        if header is None and kind != HEADER:
            raise InputError(f"{path} is not an upmirror metadata package")
        if kind == TRAILER:
            assert header is not None
            _check_trailer(path, payload, digest.hexdigest(), header, counts)
            if stream.read(1):
                raise InputError(f"package {path} has data after its trailer: it was changed")
            return
        digest.update(prefix)
        digest.update(payload)
        if kind == HEADER and header is None:
            header = _decode_header(path, payload)
            yield header
        elif kind == CATEGORY and counts[1] == 0:
            counts[0] += 1
            yield _decode_record(path, category_decoder, payload)
        elif kind == UPDATE:
            counts[1] += 1
            yield _decode_record(path, update_decoder, payload)
        else:
            raise InputError(f"package {path} has a record of kind {kind!r} out of place: it was changed")


def _read_frame(path: Path, stream: IO[bytes]) -> tuple[bytes, bytes, bytes]:
    """(kind, prefix, payload) of the next frame; the frame size is checked before its payload is read."""
    prefix = _read_exact(stream, FRAME_PREFIX.size)
    if not prefix:
        raise InputError(f"package {path} is truncated: it ends before its trailer")
    if len(prefix) < FRAME_PREFIX.size:
        raise InputError(f"package {path} is truncated")
    kind, size = FRAME_PREFIX.unpack(prefix)
    if size > MAX_FRAME_BYTES:
        raise InputError(f"package {path} has a record of {size} bytes (limit {MAX_FRAME_BYTES}): refused")
    payload = _read_exact(stream, size)
    if len(payload) < size:
        raise InputError(f"package {path} is truncated")
    return kind, prefix, payload


def _decode_record(path: Path, decoder: msgspec.msgpack.Decoder[R], payload: bytes) -> R:
    try:
        return decoder.decode(payload)
    except msgspec.ValidationError as error:
        raise InputError(f"package {path} holds an invalid record ({error}): it was changed or damaged") from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise InputError(f"package {path} holds an unreadable record: it was changed or damaged") from None


def _decode_header(path: Path, payload: bytes) -> PackageHeader:
    try:
        probe = msgspec.msgpack.decode(payload, type=_FormatProbe)
    except (msgspec.ValidationError, msgspec.DecodeError):
        raise InputError(f"{path} is not an upmirror metadata package") from None
    if probe.format != FORMAT_NAME:
        raise InputError(f"{path} is not an upmirror metadata package")
    if probe.version > FORMAT_VERSION:
        raise InputError(
            f"package {path} has format version {probe.version}; this upmirror reads up to {FORMAT_VERSION}: upgrade"
        )
    return _decode_record(path, msgspec.msgpack.Decoder(PackageHeader), payload)


def _check_trailer(path: Path, payload: bytes, digest: str, header: PackageHeader, counts: list[int]) -> None:
    try:
        trailer = msgspec.msgpack.decode(payload, type=PackageTrailer)
    except (msgspec.ValidationError, msgspec.DecodeError):
        raise InputError(f"package {path} has a damaged trailer: it was changed") from None
    if trailer.sha256 != digest:
        raise InputError(f"package {path} does not match its SHA-256: it was changed or damaged; nothing imported")
    if [trailer.categories, trailer.revisions] != counts or [header.categories, header.revisions] != counts:
        raise InputError(f"package {path} does not hold the records its counts announce: it was changed")


# ---- import ----


def verify_package(store: Store, path: Path) -> PackageHeader:
    """The first pass: reads the whole package and checks everything, including that every category an update
    names is in the package or already in this store. Writes nothing."""
    known: dict[str, str] = {category.id: category.kind for category in store.categories()}
    header: PackageHeader | None = None
    for record in read_records(path):
        if isinstance(record, PackageHeader):
            header = record
        elif isinstance(record, Category):
            known[record.id] = record.kind
        else:
            _check_categories(path, record, known)
    assert header is not None
    return header


def _check_categories(path: Path, update: Update, known: dict[str, str]) -> None:
    if known.get(update.classification) != "classification":
        raise InputError(
            f"package {path}: update {update.id} names classification {update.classification}, which neither the "
            "package nor this server holds (import the full package it was exported after first)"
        )
    for product in update.products:
        if known.get(product) not in PRODUCT_KINDS:
            raise InputError(
                f"package {path}: update {update.id} names product {product}, which neither the package nor this "
                "server holds (import the full package it was exported after first)"
            )


def import_package(store: Store, path: Path, content_dir: Path) -> ImportReport:
    """Verifies the package, then stores it in one transaction; reports what was new and which of its updates
    (latest revision in the package, not expired) lack files in ``content_dir``."""
    header = verify_package(store, path)
    report = ImportReport(path=str(path), server_id=header.server_id, anchor=header.anchor, since=header.since)
    checked: set[str] = set()
    previous: Update | None = None

    def records() -> Iterator[Category | Update]:
        nonlocal previous
        for record in read_records(path):
            if isinstance(record, PackageHeader):
                if record != header:
                    raise InputError(f"package {path} changed while it was being imported; nothing imported")
                continue
            if isinstance(record, Update):
                if previous is not None and previous.id != record.id:
                    note_missing(previous, content_dir, report, checked)
                previous = record
            yield record
        if previous is not None:
            note_missing(previous, content_dir, report, checked)

    counts: ImportCounts = store.import_records(records())
    report.categories, report.updates = counts.categories, counts.updates
    report.revisions, report.expired = counts.revisions, counts.expired
    return report


def note_missing(update: Update, content_dir: Path, report: ImportReport, checked: set[str]) -> None:
    """Records the update as lacking content when one of its files is not in the content directory; each missing
    file counts once (``checked`` holds the SHA-1s already found missing)."""
    if update.expired:
        return
    lacking = False
    for ref in update.files:
        # os.path on strings: a hundred thousand updates means a quarter of a million checks.
        present = os.path.isfile(os.path.join(content_dir, content_relative_path(ref.sha1, ref.extension)))  # noqa: PTH113, PTH118
        lacking |= not present
        if not present and ref.sha1 not in checked:
            report.missing_files += 1
            report.missing_bytes += ref.size
            checked.add(ref.sha1)
    if lacking:
        report.lacking_content.append(update.id)
