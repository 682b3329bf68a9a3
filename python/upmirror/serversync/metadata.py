"""Update metadata as the WSUS protocol carries it: what this server's records look like as update XML (categories as
updates of type Category, software and driver updates with their product and classification prerequisite groups and
their files with both digests), compressed in a cabinet above the size WSUS compresses at, and the store lookups the
protocol's answers are made of.

Updates, categories and detectoids that came from Microsoft Update or a WSUS server (or a wsusutil package) are sent
on with their original XML; upmirror's own records (``catalog generate``, ``publish``) get XML generated from the
record by the Rust core, which also parses it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from upmirror import _native
from upmirror.serversync import records
from upmirror.serversync.soap import INVALID_PARAMETERS, SoapFault

if TYPE_CHECKING:
    from upmirror.store import Store

# Above this many bytes of XML a WSUS server sends an update compressed (XmlUpdateBlobCompressed): a cabinet holding
# the XML in UTF-16LE.
COMPRESS_ABOVE: Final = 5120
CABINET_MEMBER: Final = "blob"


@dataclass(frozen=True)
class FileLocation:
    """Where a downstream fetches one file: this server's /Content, or Microsoft's address when the file came from
    Microsoft Update."""

    sha1: str
    extension: str
    microsoft_url: str = ""


@dataclass(frozen=True)
class UpdateDocument:
    """One update's entry of a GetUpdateData answer."""

    update_id: str
    revision: int
    xml: str
    compressed: bytes | None
    files: list[FileLocation] = field(default_factory=list)


def category_revisions_since(store: Store, since: int) -> list[tuple[str, int]]:
    """The categories (companies, families, products, classifications) and detectoids changed since change
    ``since``, as identities at their current revisions."""
    _, categories = store.categories_since(str(since))
    return [(category.id, category.revision) for category in categories]


def latest_revisions(store: Store, update_ids: Iterable[str]) -> list[tuple[str, int]]:
    """(id, latest revision) of each stored update named."""
    found = []
    for update_id in update_ids:
        update = store.update(update_id)
        if update is not None:
            found.append((update.id, update.revision))
    return found


def update_documents(store: Store, refs: Sequence[tuple[str, int]]) -> list[UpdateDocument]:
    """The documents of the asked identities, in order; an identity this server does not hold is a bad parameter."""
    documents = []
    for update_id, revision in refs:
        update = store.update(update_id, revision)
        if update is not None:
            xml = records.update_xml(update)
            files = [FileLocation(f.sha1, f.extension, f.url or "") for f in update.files]
        else:
            category = store.category(update_id)
            if category is None or revision != category.revision:
                raise SoapFault(
                    INVALID_PARAMETERS, f"updateIds: revision {revision} of {update_id} is not on this server"
                )
            xml = records.category_xml(category)
            files = []
        documents.append(UpdateDocument(update_id, revision, xml, compress(xml), files))
    return documents


def compress(xml: str) -> bytes | None:
    """The cabinet WSUS sends instead of the XML above COMPRESS_ABOVE bytes (None below it)."""
    if len(xml) <= COMPRESS_ABOVE:
        return None
    return _native.write_cabinet([(CABINET_MEMBER, xml.encode("utf-16-le"))])


def decryption_keys(store: Store, refs: Sequence[tuple[str, int]]) -> list[list[tuple[str, bytes | None]]]:
    """(SHA-1, key) of each encrypted file of each update, as the store keeps them (None: no key is known); updates
    without encrypted files have none. An identity this server does not hold is a bad parameter."""
    try:
        return store.decryption_keys(refs)
    except LookupError as unknown:
        raise SoapFault(INVALID_PARAMETERS, f"updateIds: {unknown.args[0]} is not on this server") from None


def unknown_files(store: Store, digests: Iterable[str]) -> list[str]:
    """The SHA-1s (hex) that name no file a live update of this server needs."""
    return [
        sha1
        for sha1 in digests
        if next(iter(store.needed_files(languages=None, only_approved=False, express=True, sha1=sha1)), None) is None
    ]
