"""Between update metadata as the WSUS protocol carries it (``UpdateMetadata``, read and written by the Rust core)
and upmirror's records: what upmirror's own categories and updates look like to a WSUS downstream server.

Categories become updates of type Category (families, products and classifications, each with its parent as an
IsCategory prerequisite); updates name their products in one IsCategory group and their classification in another,
carry their files with both digests, their supersedence, and, for drivers, the hardware IDs they install on.
"""

from __future__ import annotations

import datetime
from typing import Final

import msgspec

from upmirror import _native
from upmirror.model import (
    Category,
    LocalizedProperties,
    MetadataDriver,
    MetadataFile,
    Update,
    UpdateMetadata,
    WsusCategoryType,
)

HANDLERS: Final = "http://schemas.microsoft.com/msus/2002/12/UpdateHandlers"
CATEGORY_HANDLER: Final = f"{HANDLERS}/Category"
COMMAND_LINE_HANDLER: Final = f"{HANDLERS}/CommandLineInstallation"
DRIVER_HANDLER: Final = f"{HANDLERS}/WindowsDriver"
CATEGORY_TYPES: Final[dict[str, WsusCategoryType]] = {
    "family": "ProductFamily",
    "product": "Product",
    "classification": "UpdateClassification",
}
# The language upmirror's titles are written in.
LANGUAGE: Final = "en"
# upmirror's records carry no creation time for categories: they are all said to date from here.
CATEGORY_CREATED: Final = "2026-01-01T00:00:00Z"
# Categories have no revisions in upmirror's store; the protocol names every category at this one.
CATEGORY_REVISION: Final = 1


def category_metadata(category: Category) -> UpdateMetadata:
    """A category as the update of type Category a WSUS server sends for it."""
    return UpdateMetadata(
        update_id=category.id,
        revision_number=CATEGORY_REVISION,
        update_type="Category",
        default_language=LANGUAGE,
        publication_state="Published",
        creation_date=CATEGORY_CREATED,
        explicitly_deployable=False,
        is_public=True,
        handler=CATEGORY_HANDLER,
        localized_properties=[LocalizedProperties(language=LANGUAGE, title=category.title)],
        category_type=CATEGORY_TYPES[category.kind],
        category_groups=[[category.parent]] if category.parent else [],
        handler_data_type="Category",
    )


def update_metadata(update: Update) -> UpdateMetadata:
    """An upmirror update as the update XML a WSUS server sends for it: products and classification as IsCategory
    prerequisite groups, files with SHA-1 and SHA-256, supersedence, drivers' hardware IDs."""
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
        localized_properties=[
            LocalizedProperties(language=LANGUAGE, title=update.title, description=update.description or None)
        ],
        category_groups=[list(update.products), [update.classification]],
        superseded_updates=list(update.supersedes),
        files=[
            MetadataFile(
                file_name=f.name,
                digest=f.sha1,
                size=f.size,
                sha256=f.sha256,
                patching_type="Express" if f.express else None,
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


def decode_blob(data: bytes, *, compressed: bool) -> UpdateMetadata:
    """One XmlUpdateBlob (UTF-8 text) or XmlUpdateBlobCompressed (a cabinet of UTF-16LE XML), read by the core."""
    return msgspec.convert(_native.decode_update_blob(data, compressed), UpdateMetadata)
