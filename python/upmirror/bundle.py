"""Seed bundles: a metadata package and the content files it needs, for a server with no network path to this one
(``upmirror export --with-content``).

A bundle is a directory:

    manifest.json     written last (a bundle without it is incomplete): format, version, and the size and SHA-256
                      of every other file in the bundle
    metadata.upm      the metadata package (``upmirror.package``)
    content-000.tar   one tar stream of the content files, members named by their WSUS layout path
    content-001.tar   (``XX/<SHA1><ext>``), cut into parts of at most the chunk size so each fits any medium
    ...

Import checks the manifest, every part's size and SHA-256 and the whole metadata package before it writes
anything; then it stages the content files under the content directory's ``.partial`` and has the content store
place them a batch at a time (``place_staged``: each file's SHA-1 must match its name; placed atomically and
durably, recorded in the content index), and finally imports the metadata in one transaction.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from upmirror import content_relative_path, hash_files, parse_content_path, partial_path, place_staged
from upmirror.errors import InputError, UpmirrorError
from upmirror.package import ExportSummary, ImportReport, export_package, import_package, verify_package
from upmirror.store import Store

BUNDLE_FORMAT: Final = "upmirror-seed-bundle"
BUNDLE_VERSION: Final = 1
MANIFEST_NAME: Final = "manifest.json"
METADATA_NAME: Final = "metadata.upm"
PART_NAME: Final = re.compile(r"^content-[0-9]{3,6}\.tar$")
COPY_BLOCK: Final = 1 << 20
# Content files staged before the store places them: a batch is one flush of the disk and one write of the content
# index, and what an interrupted import has to stage again.
PLACE_BATCH_FILES: Final = 2000
PLACE_BATCH_BYTES: Final = 1 << 30


class BundleFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    size: int
    sha256: str


class BundleManifest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    format: str
    version: int
    metadata: BundleFile
    parts: list[BundleFile]
    files: int
    bytes: int
    # Files the exported updates name that the exporting server did not hold (so they are not in the bundle).
    missing: int


@dataclass
class BundleSummary:
    package: ExportSummary
    parts: int
    files: int
    bytes: int
    missing: int


def is_bundle(path: Path) -> bool:
    return path.is_dir()


# ---- writing ----


class _PartWriter:
    """A write-only stream that cuts what it is given into files of at most ``chunk_size`` bytes, hashing each."""

    def __init__(self, directory: Path, chunk_size: int) -> None:
        self.directory = directory
        self.chunk_size = chunk_size
        self.parts: list[BundleFile] = []
        self._open_next()

    def _open_next(self) -> None:
        self._name = f"content-{len(self.parts):03d}.tar"
        self._handle = (self.directory / self._name).open("wb")
        self._digest = hashlib.sha256()
        self._size = 0

    def _close_current(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        self.parts.append(BundleFile(name=self._name, size=self._size, sha256=self._digest.hexdigest()))

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            if self._size == self.chunk_size:
                self._close_current()
                self._open_next()
            take = view[: self.chunk_size - self._size]
            self._handle.write(take)
            self._digest.update(take)
            self._size += len(take)
            view = view[len(take) :]
        return len(data)

    def close(self) -> None:
        self._close_current()


def export_bundle(store: Store, directory: Path, content_dir: Path, since: int, chunk_size: int) -> BundleSummary:
    """Writes a seed bundle into ``directory`` (new or empty): the package, the content parts, then the manifest."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise InputError(f"{directory} exists and is not an empty directory: a bundle needs its own directory")
    directory.mkdir(parents=True, exist_ok=True)
    package = export_package(store, directory / METADATA_NAME, since)
    parts = _PartWriter(directory, chunk_size)
    files = size = missing = 0
    with tarfile.open(fileobj=parts, mode="w|", format=tarfile.GNU_FORMAT) as archive:  # type: ignore[call-overload]
        for ref in store.exported_files(since):
            relative = content_relative_path(ref.sha1, ref.extension)
            try:
                file = (content_dir / relative).open("rb")
            except FileNotFoundError:
                missing += 1
                continue
            with file:
                # A plain header built here: gettarinfo would look up user and group names for every file, and a
                # fractional mtime would add an extended header to each.
                info = tarfile.TarInfo(relative)
                status = os.fstat(file.fileno())
                info.size, info.mtime, info.mode = status.st_size, int(status.st_mtime), 0o644
                archive.addfile(info, file)
            # The streaming writer remembers every member; a bundle of a million files must not.
            archive.members.clear()
            files += 1
            size += info.size
    parts.close()
    manifest = BundleManifest(
        format=BUNDLE_FORMAT,
        version=BUNDLE_VERSION,
        metadata=BundleFile(name=METADATA_NAME, size=package.bytes, sha256=package.sha256),
        parts=parts.parts,
        files=files,
        bytes=size,
        missing=missing,
    )
    partial = directory / (MANIFEST_NAME + ".partial")
    partial.write_bytes(msgspec.json.format(msgspec.json.encode(manifest)) + b"\n")
    partial.replace(directory / MANIFEST_NAME)
    return BundleSummary(package=package, parts=len(parts.parts), files=files, bytes=size, missing=missing)


# ---- reading ----


def read_manifest(directory: Path) -> BundleManifest:
    path = directory / MANIFEST_NAME
    try:
        data = path.read_bytes()
    except OSError:
        raise InputError(f"{directory} is not a seed bundle (no {MANIFEST_NAME}) or it is incomplete") from None
    try:
        manifest = msgspec.json.decode(data, type=BundleManifest)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise InputError(f"seed bundle manifest {path} is damaged: {error}") from None
    if manifest.format != BUNDLE_FORMAT:
        raise InputError(f"{directory} is not an upmirror seed bundle")
    if manifest.version > BUNDLE_VERSION:
        raise InputError(f"seed bundle {directory} has version {manifest.version}; this upmirror reads up to 1")
    if manifest.metadata.name != METADATA_NAME or not all(PART_NAME.match(part.name) for part in manifest.parts):
        raise InputError(f"seed bundle manifest {path} names unexpected files: refused")
    return manifest


def verify_bundle(directory: Path, manifest: BundleManifest) -> None:
    """Every file the manifest lists has its size and SHA-256 (hashed in parallel by the native hasher)."""
    listed = [manifest.metadata, *manifest.parts]
    for item in listed:
        path = directory / item.name
        if not path.is_file():
            raise InputError(f"seed bundle {directory} lacks {item.name}: it is incomplete")
        if path.stat().st_size != item.size:
            raise InputError(f"seed bundle file {path} has the wrong size: it is truncated or changed")
    results = hash_files([directory / item.name for item in listed], algorithms=["sha256"])
    for item, digests in zip(listed, results, strict=True):
        if isinstance(digests, OSError):
            raise InputError(f"cannot read seed bundle file {directory / item.name}: {digests}")
        if digests.sha256 != item.sha256:
            raise InputError(f"seed bundle file {directory / item.name} does not match its SHA-256: it was changed")


class _PartReader:
    """The parts read back as one stream."""

    def __init__(self, paths: list[Path]) -> None:
        self._paths = iter(paths)
        self._handle = None if not paths else next(self._paths).open("rb")

    def read(self, size: int = -1) -> bytes:
        while self._handle is not None:
            data = self._handle.read(size)
            if data:
                return data
            self._handle.close()
            following = next(self._paths, None)
            self._handle = None if following is None else following.open("rb")
        return b""


def _members(directory: Path, manifest: BundleManifest) -> Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]]:
    reader = _PartReader([directory / part.name for part in manifest.parts])
    with tarfile.open(fileobj=reader, mode="r|") as archive:  # type: ignore[call-overload]
        for member in archive:
            yield member, archive
            archive.members.clear()  # the streaming reader remembers every member otherwise


def place_content(directory: Path, manifest: BundleManifest, content_dir: Path) -> tuple[int, int]:
    """Places every content file of the bundle that the content directory lacks, each only after its SHA-1 matched
    its name; returns (files placed, files already present)."""
    placed = present = 0
    batch: list[tuple[Path, str, str, int, None, None]] = []
    batch_names: list[str] = []  # the members staged in the batch, by position
    batch_bytes = 0

    def place_batch() -> None:
        nonlocal placed, present, batch_bytes
        report = place_staged(content_dir, batch)
        for position, reason in report.refused:
            raise InputError(f"seed bundle {directory}: {batch_names[position]} {reason}: refused")
        placed += len(report.placed)
        present += len(report.present)
        batch.clear()
        batch_names.clear()
        batch_bytes = 0

    try:
        for member, archive in _members(directory, manifest):
            try:
                sha1, extension = parse_content_path(member.name)
            except (UpmirrorError, ValueError):
                raise InputError(
                    f"seed bundle {directory} holds {member.name!r}, not a content path: refused"
                ) from None
            if not member.isfile() or content_relative_path(sha1, extension) != member.name:
                raise InputError(f"seed bundle {directory} holds {member.name!r}, not a content file: refused")
            if (content_dir / member.name).is_file() or member.name in batch_names:
                present += 1
                continue
            source = archive.extractfile(member)
            assert source is not None
            staged = partial_path(content_dir, f"bundle-{sha1}{extension}")
            batch.append((staged, sha1, extension, member.size, None, None))
            batch_names.append(member.name)
            with staged.open("wb") as out:
                shutil.copyfileobj(source, out, COPY_BLOCK)
            batch_bytes += member.size
            if len(batch) >= PLACE_BATCH_FILES or batch_bytes >= PLACE_BATCH_BYTES:
                place_batch()
        if batch:
            place_batch()
    except tarfile.TarError as error:
        raise InputError(f"seed bundle {directory} has a damaged content archive: {error}") from None
    finally:
        for staged, *_ in batch:  # a batch not placed (an error, Ctrl-C) leaves nothing staged
            staged.unlink(missing_ok=True)
    return placed, present


def import_bundle(store: Store, directory: Path, content_dir: Path) -> tuple[ImportReport, int, int]:
    """Verifies the whole bundle, places its content, then imports its metadata (content first, as WSUS advises)."""
    manifest = read_manifest(directory)
    verify_bundle(directory, manifest)
    verify_package(store, directory / METADATA_NAME)
    placed, present = place_content(directory, manifest, content_dir)
    return import_package(store, directory / METADATA_NAME, content_dir), placed, present
