"""Between update metadata as the WSUS protocol carries it (``UpdateMetadata``, read and written by the Rust core)
and upmirror's records: what upmirror's own categories and updates look like to a WSUS downstream server.

Categories become updates of type Category (families, products and classifications, each with its parent as an
IsCategory prerequisite); updates name their products in one IsCategory group and their classification in another,
carry their files with both digests, their supersedence, and, for drivers, the hardware IDs they install on.

The other way (``category_record``, ``update_record``) serves every reader of WSUS metadata: the WSUS client and the
wsusutil package import. An update's original XML is kept with its record (zstd), to be sent on unchanged.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping
from typing import Final

import msgspec
import zstandard

from upmirror import _native
from upmirror.model import (
    Category,
    CategoryKind,
    FileRef,
    LocalizedProperties,
    LocalizedText,
    MetadataDriver,
    MetadataFile,
    RevisionRef,
    Update,
    UpdateMetadata,
    WsusCategoryType,
)
from upmirror.serversync.languages import metadata_languages

HANDLERS: Final = "http://schemas.microsoft.com/msus/2002/12/UpdateHandlers"
CATEGORY_HANDLER: Final = f"{HANDLERS}/Category"
COMMAND_LINE_HANDLER: Final = f"{HANDLERS}/CommandLineInstallation"
DRIVER_HANDLER: Final = f"{HANDLERS}/WindowsDriver"
# The category types of the WSUS protocol (a detectoid has none: it is an update of type Detectoid).
CATEGORY_TYPES: Final[dict[CategoryKind, WsusCategoryType]] = {
    "company": "Company",
    "family": "ProductFamily",
    "product": "Product",
    "classification": "UpdateClassification",
}
# The language upmirror's titles are written in.
LANGUAGE: Final = "en"
# upmirror's records carry no creation time for categories: they are all said to date from here.
CATEGORY_CREATED: Final = "2026-01-01T00:00:00Z"
KINDS: Final[dict[WsusCategoryType, CategoryKind]] = {wsus: kind for kind, wsus in CATEGORY_TYPES.items()}
# WSUS's "Updates" classification: the last resort for a bundled update whose bundle was not seen (it names only a
# product, and takes the classification of the bundle that carries it).
UPDATES_CLASSIFICATION: Final = "cd5ffd1e-e932-4e3a-bf74-18bf0b1bbd83"
ZSTD_LEVEL: Final = 3


def category_metadata(category: Category) -> UpdateMetadata:
    """A category as the update of type Category a WSUS server sends for it (a detectoid: of type Detectoid)."""
    detectoid = category.kind == "detectoid"
    return UpdateMetadata(
        update_id=category.id,
        revision_number=category.revision,
        update_type="Detectoid" if detectoid else "Category",
        default_language=LANGUAGE,
        publication_state="Published",
        creation_date=CATEGORY_CREATED,
        explicitly_deployable=False,
        is_public=not detectoid,
        handler=None if detectoid else CATEGORY_HANDLER,
        localized_properties=[LocalizedProperties(language=LANGUAGE, title=category.title)],
        category_type=CATEGORY_TYPES.get(category.kind),
        category_groups=[[category.parent]] if category.parent else [],
        handler_data_type=None if detectoid else "Category",
    )


def update_metadata(update: Update) -> UpdateMetadata:
    """An upmirror update as the update XML a WSUS server sends for it: products and classification as IsCategory
    prerequisite groups, files with SHA-1 and SHA-256 (and their languages, and IsEncrypted), the languages of a
    language-specific update, supersedence, drivers' hardware IDs."""
    created = datetime.datetime.combine(update.release_date, datetime.time(), datetime.UTC)
    return UpdateMetadata(
        update_id=update.id,
        revision_number=update.revision,
        update_type="Driver" if update.is_driver else "Software",
        default_language=LANGUAGE,
        publication_state="Expired" if update.expired else "Published",
        creation_date=created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        explicitly_deployable=True,
        is_public=True,
        handler=DRIVER_HANDLER if update.is_driver else COMMAND_LINE_HANDLER,
        kb_article_id=update.kb_article or None,
        languages=list(update.languages),
        eula_id=update.eula or None,
        support_url=update.support_url or None,
        msrc_severity=update.msrc_severity or None,
        localized_properties=[
            LocalizedProperties(language=LANGUAGE, title=update.title, description=update.description or None),
            *(
                LocalizedProperties(language=t.language, title=t.title, description=t.description or None)
                for t in update.localized
            ),
        ],
        category_groups=[list(update.products), [update.classification]],
        superseded_updates=list(update.supersedes),
        prerequisites=list(update.prerequisites),
        bundled_updates=[(ref.update_id, ref.revision) for ref in update.bundled],
        files=[
            MetadataFile(
                file_name=f.name,
                digest=f.sha1,
                size=f.size,
                sha256=f.sha256,
                patching_type=f.patching or ("Express" if f.express else None),
                modified=f.modified,
                languages=list(f.languages),
                encrypted=f.encrypted,
            )
            for f in update.files
        ],
        drivers=[
            MetadataDriver(hardware_id=hardware_id, target_computer_hardware_ids=list(update.computer_hardware_ids))
            for hardware_id in update.hardware_ids
        ],
        handler_data_type="WindowsDriver" if update.is_driver else "CommandLineInstallation",
    )


def encode_xml(metadata: UpdateMetadata) -> str:
    return _native.encode_update_xml(msgspec.to_builtins(metadata))


def update_xml(update: Update) -> str:
    """The update XML a WSUS downstream or a wsusutil package gets: the original when the update came over the WSUS
    protocol or from a wsusutil package (saying Expired once this server holds the update expired, which an upstream
    may announce without a new revision), else generated from the record."""
    original = original_xml(update.xml)
    if original is None:
        return encode_xml(update_metadata(update))
    return marked_expired(original) if update.expired else original


# The start tag of an update's Properties, attribute by attribute (a value may hold any character but its quote).
PROPERTIES_TAG: Final = re.compile(r"""<(?:[\w.-]+:)?Properties((?:\s+[\w:.-]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*/?>""")
PUBLICATION_STATE: Final = re.compile(r"""(\sPublicationState\s*=\s*)("[^"]*"|'[^']*')""")


def marked_expired(xml: str) -> str:
    """Update XML with its PublicationState Expired, everything else as it was."""
    tag = PROPERTIES_TAG.search(xml)
    if tag is None:
        return xml
    attributes = tag[1]
    if PUBLICATION_STATE.search(attributes):
        changed = PUBLICATION_STATE.sub(r'\1"Expired"', attributes, count=1)
    else:
        changed = f'{attributes} PublicationState="Expired"'
    return xml[: tag.start(1)] + changed + xml[tag.end(1) :]


def category_xml(category: Category) -> str:
    """A category's (or detectoid's) update XML: the original when it came over the WSUS protocol, else generated."""
    return original_xml(category.xml) or encode_xml(category_metadata(category))


def original_xml(kept: bytes | None) -> str | None:
    return None if kept is None else zstandard.ZstdDecompressor().decompress(kept).decode()


def keep_xml(xml: bytes) -> bytes:
    """The original XML (UTF-8) as records keep it."""
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(xml)


def decode_blob(data: bytes, *, compressed: bool) -> UpdateMetadata:
    """One XmlUpdateBlob (UTF-8 text) or XmlUpdateBlobCompressed (a cabinet of UTF-16LE XML), read by the core."""
    return msgspec.convert(_native.decode_update_blob(data, compressed), UpdateMetadata)


def category_record(metadata: UpdateMetadata, xml: bytes | None = None) -> Category | None:
    """The category an update of type Category stands for, or the detectoid an update of type Detectoid is (other
    updates: None); ``xml``, the original (UTF-8), is kept with it."""
    if metadata.update_type == "Detectoid":
        kind: CategoryKind = "detectoid"
        parent = None
    elif metadata.update_type == "Category" and metadata.category_type is not None:
        kind = KINDS[metadata.category_type]
        parent = metadata.parent_category or next((g[0] for g in metadata.category_groups if g), None)
    else:
        return None
    title = next((p.title for p in metadata.localized_properties), metadata.update_id)
    return Category(
        id=metadata.update_id,
        kind=kind,
        title=title[:1000],
        parent=parent,
        revision=metadata.revision_number,
        xml=None if xml is None else keep_xml(xml),
    )


def classification_of(metadata: UpdateMetadata, kind_of: Callable[[str], CategoryKind | None]) -> str | None:
    """The classification among the categories an update names (``kind_of`` knows the categories)."""
    for group in metadata.category_groups:
        for category_id in group:
            if kind_of(category_id) == "classification":
                return category_id
    return None


def update_record(
    metadata: UpdateMetadata,
    xml: bytes,
    kind_of: Callable[[str], CategoryKind | None],
    *,
    bundle_classification: str | None = None,
    file_urls: Mapping[str, str] | None = None,
) -> Update:
    """The upmirror record of a software or driver update; its original XML (UTF-8) is kept with it. A bundled
    update that names no classification takes ``bundle_classification`` (the one of the bundle that carries it);
    ``file_urls`` maps SHA-1s to Microsoft's addresses when content is fetched from there."""
    products = [
        category_id
        for group in metadata.category_groups
        for category_id in group
        if kind_of(category_id) in ("company", "family", "product")
    ]
    classification = classification_of(metadata, kind_of) or bundle_classification or UPDATES_CLASSIFICATION
    default = next(
        (p for p in metadata.localized_properties if p.language == (metadata.default_language or "en")),
        metadata.localized_properties[0] if metadata.localized_properties else None,
    )
    title = default.title if default is not None else metadata.update_id
    description = (
        (default.description if default is not None else None)
        or next((p.description for p in metadata.localized_properties if p.description), "")
        or ""
    )
    localized = [
        LocalizedText(language=p.language[:40], title=p.title[:1000], description=(p.description or "")[:10_000])
        for p in metadata.localized_properties
        if p is not default and p.title
    ]
    created = (metadata.creation_date or "2000-01-01")[:10]
    urls = file_urls or {}
    file_languages = [metadata_languages(f.languages) for f in metadata.files]
    # An update that names no languages of its own but whose files do is for the languages of its files.
    languages = metadata_languages(metadata.languages) or list(
        dict.fromkeys(c for codes in file_languages for c in codes)
    )
    return Update(
        id=metadata.update_id,
        revision=metadata.revision_number,
        title=title[:1000],
        classification=classification,
        products=products[:100] or [classification],
        release_date=datetime.date.fromisoformat(created),
        kb_article=(metadata.kb_article_id or "")[:10] if (metadata.kb_article_id or "").isdigit() else "",
        description=description[:10_000],
        localized=localized[:200],
        msrc_severity=(metadata.msrc_severity or "")[:40],
        support_url=(metadata.support_url or "")[:2000],
        eula=(metadata.eula_id or "")[:100],
        languages=languages[:200],
        files=[
            FileRef(
                sha1=f.digest,
                size=f.size,
                name=f.file_name,
                sha256=f.sha256,
                languages=codes,
                express=f.patching_type is not None,
                patching=(f.patching_type or "")[:40],
                modified=f.modified[:40] if f.modified else None,
                encrypted=f.encrypted,
                url=urls.get(f.digest),
            )
            for f, codes in zip(metadata.files, file_languages, strict=True)
        ],
        supersedes=list(metadata.superseded_updates),
        prerequisites=list(metadata.prerequisites)[:1000],
        bundled=[RevisionRef(update_id, revision) for update_id, revision in metadata.bundled_updates[:1000]],
        expired=metadata.publication_state == "Expired",
        hardware_ids=sorted({d.hardware_id for d in metadata.drivers})[:1000],
        computer_hardware_ids=sorted({c.lower() for d in metadata.drivers for c in d.target_computer_hardware_ids})[
            :1000
        ],
        xml=keep_xml(xml),
    )
