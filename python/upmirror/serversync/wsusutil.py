"""wsusutil export packages: what ``wsusutil export`` writes and ``wsusutil import`` reads, so metadata moves between
upmirror and WSUS servers without a network path.

A package is a Microsoft cabinet (``MSCF``) holding two members:

    metadata.txt  one line per update revision, ``{guid},{revision:08x},{length:08x},{xml}`` and CR LF, where the
                  length counts the XML's UTF-16 code units (a .NET string's length); detectoids first, then
                  classifications, companies, families and products (parents before children), then updates,
                  bundled updates before the bundles that carry them
    package.xml   ExportPackage{ServerID, CreationTime, FormatVersion "1.0", ProtocolVersion "1.20"} with
                  Languages/Language{Id, ShortName, LongName, Enabled}, Files/File{Digest, MUUrl, Name} and
                  Updates/Update{UpdateId, RevisionNumber} (every line of metadata.txt) with Files/File{Digest},
                  Categories/Category{Value} and Classifications/Classification{Value}

Updates that came from a WSUS upstream are written with their original XML; upmirror's own records with the XML the
core generates for them (``records.update_metadata``). As in WSUS's own exporter, Files lists the files that have a
Microsoft address (MUUrl); content moves separately. The cabinet is written with CFDATA checksums. WSUS names its
exports ``export.xml.gz``, but what it writes there is this cabinet: the name does not change the format, and
``import`` recognises a package by its signature.

Import reads the whole cabinet (MSZIP or LZX, checksums checked when present), parses every line's XML with the core,
checks that each line's length, identity and XML agree, that package.xml lists exactly the lines, and that every
category an update names is in the package or already in the store; only then are the records stored, in ONE
transaction. Anything wrong is one line naming the package and the line, and nothing is imported. Detectoids are read
and checked but not stored (upmirror keeps no applicability rules).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar
from xml.etree import ElementTree

import msgspec
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from upmirror import _native
from upmirror.errors import InputError
from upmirror.model import (
    PARENT_KINDS,
    Category,
    CategoryKind,
    Update,
    UpdateMetadata,
    category_decoder,
    msgpack_encoder,
    update_decoder,
)
from upmirror.package import ImportReport, atomic_file, file_sha256, note_missing
from upmirror.serversync import languages, records
from upmirror.store import Store

SIGNATURE: Final = b"MSCF"
METADATA_TXT: Final = "metadata.txt"
PACKAGE_XML: Final = "package.xml"
FORMAT_VERSION: Final = "1.0"
PROTOCOL_VERSION: Final = "1.20"
# Metadata compresses about 20 times in a cabinet (WSUS: 16 MB of metadata.txt in 0.7 MB); refuse far beyond that.
MAX_RATIO: Final = 200
MIN_ALLOWANCE: Final = 256 * 1024 * 1024
# Lines handed to the core at once (it parses a batch on every core).
DECODE_BATCH: Final = 4096
GUID_TEXT: Final = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
LINE_HEAD: Final = re.compile(rf"({GUID_TEXT}),([0-9A-Fa-f]{{8}}),([0-9A-Fa-f]{{8}}),")
# metadata.txt lists detectoids first, then the categories in this order.
CATEGORY_ORDER: Final[dict[CategoryKind, int]] = {
    "detectoid": 0,
    "classification": 1,
    "company": 2,
    "family": 3,
    "product": 4,
}
R = TypeVar("R", Category, Update)


@dataclass
class WsusExportSummary:
    path: str
    server_id: str
    categories: int
    revisions: int
    files: int
    bytes: int
    sha256: str


@dataclass
class Line:
    """One line of metadata.txt: an update revision and its XML."""

    number: int
    update_id: str
    revision: int
    xml: str


@dataclass
class WsusPackage:
    """A package read and checked: its lines' metadata, and what package.xml adds."""

    server_id: str
    lines: list[Line]
    metadata: list[UpdateMetadata]
    file_urls: dict[str, str] = field(default_factory=dict)


def is_wsus_package(path: Path) -> bool:
    """A file that starts as a cabinet does: what wsusutil writes, whatever its name (``export.xml.gz``)."""
    try:
        with path.open("rb") as file:
            return file.read(len(SIGNATURE)) == SIGNATURE
    except OSError:
        return False


# ---- export ----


def export_wsus_package(store: Store, path: Path, language_codes: Sequence[str]) -> WsusExportSummary:
    """Writes every category and update revision of the store as a wsusutil package (always a full export, as
    wsusutil's); the file appears complete at ``path`` or not at all."""
    with store.snapshot():
        categories = [category_decoder.decode(blob) for blob in store.export_categories(0)]
        updates = [update_decoder.decode(blob) for blob in store.export_revisions(0)]
        server_id = store.server_id
    categories = parents_first(categories)
    texts = {(u.id, u.revision): records.update_xml(u) for u in updates}
    updates = bundled_first(updates, texts)
    lines = [metadata_line(c.id, c.revision, records.category_xml(c)) for c in categories]
    lines += [metadata_line(u.id, u.revision, texts[u.id, u.revision]) for u in updates]
    package = package_xml(server_id, language_codes, categories, updates)
    cabinet = _native.write_cabinet([(METADATA_TXT, "".join(lines).encode()), (PACKAGE_XML, package)])
    with atomic_file(path) as file:
        file.write(cabinet)
    return WsusExportSummary(
        path=str(path),
        server_id=server_id,
        categories=len(categories),
        revisions=len(updates),
        files=len({f.sha1 for u in updates for f in u.files if f.url}),
        bytes=len(cabinet),
        sha256=file_sha256(path),
    )


def parents_first(categories: Iterable[Category]) -> list[Category]:
    """Detectoids, classifications, then companies, families and products, each category after its parent."""
    parents = {c.id: c.parent for c in categories}

    def depth(category_id: str) -> int:
        steps, parent = 0, parents.get(category_id)
        while parent is not None and steps < len(parents):
            steps, parent = steps + 1, parents.get(parent)
        return steps

    return sorted(categories, key=lambda c: (CATEGORY_ORDER[c.kind], depth(c.id), c.id))


def bundled_first(updates: Sequence[Update], texts: dict[tuple[str, int], str]) -> list[Update]:
    """The revisions grouped by update (oldest first), each update after the updates its bundles carry."""
    groups: dict[str, list[Update]] = {}
    for update in updates:
        groups.setdefault(update.id, []).append(update)
    carried: dict[str, set[str]] = {}
    originals = [u for u in updates if u.xml is not None]
    blobs = [(texts[u.id, u.revision].encode(), False) for u in originals]
    for update, raw in zip(originals, _native.decode_update_blobs(blobs), strict=True):
        carried.setdefault(update.id, set()).update(bundled for bundled, _ in raw["bundled_updates"])
    ordered: list[Update] = []
    placed: set[str] = set()

    def place(update_id: str, path: frozenset[str]) -> None:
        if update_id in placed or update_id in path or update_id not in groups:
            return
        for bundled in sorted(carried.get(update_id, ())):
            place(bundled, path | {update_id})
        placed.add(update_id)
        ordered.extend(sorted(groups[update_id], key=lambda u: u.revision))

    for update_id in groups:
        place(update_id, frozenset())
    return ordered


def utf16_length(text: str) -> int:
    """The length WSUS writes: UTF-16 code units (a character beyond the BMP counts two)."""
    return len(text) if text.isascii() else len(text.encode("utf-16-le")) // 2


def metadata_line(update_id: str, revision: int, xml: str) -> str:
    return f"{update_id},{revision:08x},{utf16_length(xml):08x},{xml}\r\n"


def package_xml(
    server_id: str, language_codes: Sequence[str], categories: Sequence[Category], updates: Sequence[Update]
) -> bytes:
    root = ElementTree.Element(
        "ExportPackage",
        ServerID=server_id,
        CreationTime=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        FormatVersion=FORMAT_VERSION,
        ProtocolVersion=PROTOCOL_VERSION,
    )
    listed = ElementTree.SubElement(root, "Languages")
    for code in language_codes:
        locale = languages.locale_id(code)
        if locale is not None:
            attributes = {"Id": str(locale), "ShortName": code, "LongName": languages.language_name(code)}
            ElementTree.SubElement(listed, "Language", attributes, Enabled="1")
    files = ElementTree.SubElement(root, "Files")
    seen: set[str] = set()
    for update in updates:
        for ref in update.files:
            if ref.url and ref.sha1 not in seen:
                seen.add(ref.sha1)
                ElementTree.SubElement(files, "File", Digest=digest_base64(ref.sha1), MUUrl=ref.url, Name=ref.name)
    entries = ElementTree.SubElement(root, "Updates")
    for category in categories:
        entry = ElementTree.SubElement(entries, "Update", UpdateId=category.id, RevisionNumber=str(category.revision))
        for name in ("Files", "Categories", "Classifications"):
            ElementTree.SubElement(entry, name)
    for update in updates:
        entry = ElementTree.SubElement(entries, "Update", UpdateId=update.id, RevisionNumber=str(update.revision))
        own_files = ElementTree.SubElement(entry, "Files")
        for ref in update.files:
            ElementTree.SubElement(own_files, "File", Digest=digest_base64(ref.sha1))
        products = ElementTree.SubElement(entry, "Categories")
        for product in update.products:
            ElementTree.SubElement(products, "Category", Value=product)
        ElementTree.SubElement(ElementTree.SubElement(entry, "Classifications"), "Classification").set(
            "Value", update.classification
        )
    return b'<?xml version="1.0" encoding="utf-8"?>' + ElementTree.tostring(root, encoding="unicode").encode()


def digest_base64(sha1: str) -> str:
    return base64.b64encode(bytes.fromhex(sha1)).decode()


# ---- reading and verifying ----


def read_wsus_package(path: Path) -> WsusPackage:
    """The package at ``path``, every part of it checked (see the module's description); InputError otherwise."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"cannot read package {path}: {error.strerror}") from None
    try:
        members = _native.read_cabinet(data, max(MIN_ALLOWANCE, MAX_RATIO * len(data)))
    except ValueError as error:
        raise InputError(f"wsusutil package {path} is damaged or not one ({error}); nothing imported") from None
    found = {name.lower(): content for name, content in members}
    for needed in (METADATA_TXT, PACKAGE_XML):
        if needed not in found:
            raise InputError(f"wsusutil package {path} holds no {needed}: it is not a wsusutil export")
    lines = parse_metadata_txt(path, found[METADATA_TXT])
    metadata = decode_lines(path, lines)
    package = WsusPackage(server_id="", lines=lines, metadata=metadata)
    read_package_xml(path, found[PACKAGE_XML], package)
    return package


def metadata_text(path: Path, data: bytes) -> str:
    """metadata.txt as text: UTF-8 (with or without a byte-order mark), or UTF-16LE after its byte-order mark."""
    try:
        if data.startswith(b"\xff\xfe"):
            return data[2:].decode("utf-16-le")
        return data.removeprefix(b"\xef\xbb\xbf").decode()
    except UnicodeDecodeError as error:
        raise InputError(f"wsusutil package {path}: metadata.txt is not text (byte {error.start}); damaged") from None


def parse_metadata_txt(path: Path, data: bytes) -> list[Line]:
    text = metadata_text(path, data)
    lines: list[Line] = []
    position, number = 0, 0
    while position < len(text):
        number += 1
        head = LINE_HEAD.match(text, position)
        if head is None:
            raise InputError(
                f"wsusutil package {path}: metadata.txt line {number} is not `guid,revision,length,xml`; damaged"
            )
        length = int(head[3], 16)
        start = head.end()
        end = min(start + length, len(text))
        while end > start and utf16_length(text[start:end]) > length:
            end -= 1
        xml = text[start:end]
        after = text[end : end + 2]
        if utf16_length(xml) != length or not (after.startswith("\n") or after == "\r\n" or end == len(text)):
            raise InputError(
                f"wsusutil package {path}: metadata.txt line {number} ({head[1]}) does not hold the {length} "
                "characters of XML it announces; damaged"
            )
        lines.append(Line(number, head[1].lower(), int(head[2], 16), xml))
        position = end + (2 if after == "\r\n" else 1)
    if not lines:
        raise InputError(f"wsusutil package {path}: metadata.txt is empty")
    return lines


def decode_lines(path: Path, lines: Sequence[Line]) -> list[UpdateMetadata]:
    """Every line's XML parsed by the core; the identity in the XML must be the line's."""
    decoded: list[UpdateMetadata] = []
    seen: set[tuple[str, int]] = set()
    for start in range(0, len(lines), DECODE_BATCH):
        batch = lines[start : start + DECODE_BATCH]
        try:
            raws = _native.decode_update_blobs([(line.xml.encode(), False) for line in batch])
        except ValueError as error:
            raise InputError(
                f"wsusutil package {path}: metadata.txt holds XML that does not parse ({error}, from line "
                f"{batch[0].number}); damaged"
            ) from None
        for line, raw in zip(batch, raws, strict=True):
            metadata = msgspec.convert(raw, UpdateMetadata)
            if (metadata.update_id, metadata.revision_number) != (line.update_id, line.revision):
                raise InputError(
                    f"wsusutil package {path}: metadata.txt line {line.number} names {line.update_id} revision "
                    f"{line.revision} but its XML is {metadata.update_id} revision {metadata.revision_number}; damaged"
                )
            if (line.update_id, line.revision) in seen:
                raise InputError(
                    f"wsusutil package {path}: metadata.txt names {line.update_id} revision {line.revision} twice"
                )
            seen.add((line.update_id, line.revision))
            decoded.append(metadata)
    return decoded


def read_package_xml(path: Path, data: bytes, package: WsusPackage) -> None:
    """The server id and Microsoft's file addresses; package.xml must list exactly the revisions of metadata.txt."""
    try:
        root = fromstring(data)
    except (ElementTree.ParseError, DefusedXmlException) as error:
        raise InputError(f"wsusutil package {path}: package.xml is not XML upmirror reads ({error}); damaged") from None
    if root.tag != "ExportPackage":
        raise InputError(f"wsusutil package {path}: package.xml is not an ExportPackage")
    if root.get("FormatVersion") != FORMAT_VERSION:
        raise InputError(
            f"wsusutil package {path} has format version {root.get('FormatVersion')}; upmirror reads {FORMAT_VERSION}"
        )
    package.server_id = root.get("ServerID", "")
    listed: set[tuple[str, int]] = set()
    for entry in root.iterfind("Updates/Update"):
        revision = entry.get("RevisionNumber", "")
        if not revision.isdigit():
            raise InputError(f"wsusutil package {path}: package.xml names revision {revision!r}; damaged")
        listed.add((entry.get("UpdateId", "").lower(), int(revision)))
    lines = {(line.update_id, line.revision) for line in package.lines}
    if listed != lines:
        odd = sorted(listed ^ lines)[0]
        raise InputError(
            f"wsusutil package {path}: package.xml and metadata.txt disagree about {odd[0]} revision {odd[1]}; damaged"
        )
    for entry in root.iterfind("Files/File"):
        url = entry.get("MUUrl")
        try:
            sha1 = base64.b64decode(entry.get("Digest", ""), validate=True).hex()
        except binascii.Error:
            raise InputError(f"wsusutil package {path}: package.xml names a file digest that is not base64") from None
        if url:
            package.file_urls[sha1] = url


# ---- import ----


def package_records(store: Store, path: Path, package: WsusPackage) -> tuple[list[Category], list[Update]]:
    """The package's categories (parents first) and update revisions as records, each validated; every category an
    update or a category names must be in the package or in the store."""
    categories: list[Category] = []
    lines = {(line.update_id, line.revision): line for line in package.lines}
    for metadata in package.metadata:
        category = records.category_record(metadata, lines[metadata.update_id, metadata.revision_number].xml.encode())
        if category is not None:
            categories.append(_validated(path, category_decoder, category))
    kinds: dict[str, CategoryKind] = {c.id: c.kind for c in store.categories()}
    kinds.update((c.id, c.kind) for c in categories)
    categories = [_under_its_parent(path, category, kinds) for category in categories]
    software = [m for m in package.metadata if m.update_type in ("Software", "Driver")]
    carrier: dict[str, str] = {}
    for metadata in software:
        classification = records.classification_of(metadata, kinds.get)
        for bundled, _ in metadata.bundled_updates:
            if classification is not None:
                carrier.setdefault(bundled, classification)
    updates = []
    for metadata in software:
        unknown = [c for group in metadata.category_groups for c in group if c not in kinds]
        if unknown:
            raise InputError(
                f"wsusutil package {path}: update {metadata.update_id} names category {unknown[0]}, which neither "
                "the package nor this server holds"
            )
        xml = lines[metadata.update_id, metadata.revision_number].xml.encode()
        try:
            record = records.update_record(
                metadata,
                xml,
                kinds.get,
                bundle_classification=carrier.get(metadata.update_id),
                file_urls=package.file_urls,
            )
        except ValueError as error:
            raise InputError(f"wsusutil package {path}: update {metadata.update_id}: {error}") from None
        updates.append(_validated(path, update_decoder, record))
    updates.sort(key=lambda u: u.revision)
    return parents_first(categories), updates


def _under_its_parent(path: Path, category: Category, kinds: dict[str, CategoryKind]) -> Category:
    """A category's parent must be one the package or the store holds, of a kind the tree allows (PARENT_KINDS)."""
    if category.parent is not None and kinds.get(category.parent) not in PARENT_KINDS[category.kind]:
        raise InputError(
            f"wsusutil package {path}: category {category.id} has parent {category.parent}, which is not a "
            f"{' or '.join(PARENT_KINDS[category.kind]) or 'category'} the package or this server holds"
        )
    return category


def _validated(path: Path, decoder: msgspec.msgpack.Decoder[R], record: R) -> R:
    """The record through the model's validating decoder: a value the model does not allow is bad input."""
    try:
        return decoder.decode(msgpack_encoder.encode(record))
    except msgspec.ValidationError as error:
        raise InputError(f"wsusutil package {path}: {record.id} does not make a valid record ({error})") from None


def import_wsus_package(store: Store, path: Path, content_dir: Path) -> ImportReport:
    """Reads and checks the whole package, then stores it in one transaction; reports what was new and which
    imported updates lack files in ``content_dir``."""
    package = read_wsus_package(path)
    categories, updates = package_records(store, path, package)
    report = ImportReport(path=str(path), server_id=package.server_id, anchor=0, since=0)
    counts = store.import_records(itertools.chain(categories, updates))
    report.categories, report.updates = counts.categories, counts.updates
    report.revisions, report.expired = counts.revisions, counts.expired
    latest: dict[str, Update] = {}
    for update in updates:
        latest[update.id] = update
    checked: set[str] = set()
    for update in latest.values():
        note_missing(update, content_dir, report, checked)
    return report
