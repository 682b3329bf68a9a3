"""Publishing on a root server: the updates of a manifest (a ``PublishManifest``) and their files join the server.

Each update file is read from the manifest's folder by its ``name`` and copied to the content directory's staging
folder, and the content store places the copies in one call (``place_staged``): each must have the size and every
digest the manifest gives (missing SHA-256/blake3 are filled in from what it computed), and one that does not refuses
the whole set, so a bad manifest is refused with one line naming the problem and changes nothing. The updates are
stored once the files are in place; if that fails, the files this publish placed are taken out again.

An encrypted file (``"encrypted": true``) is published with its key (``decryption_keys``: SHA-1 -> base64); the
store keeps the key beside the file, and WSUS downstream servers get it from GetUpdateDecryptionData. The key is
never printed.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import NamedTuple

import msgspec

from upmirror import content_relative_path, forget_deleted_content, partial_path, place_staged
from upmirror.errors import InputError
from upmirror.model import PARENT_KINDS, PRODUCT_KINDS, FileRef, PublishManifest, Update, decode_json
from upmirror.options import ServerDirectory
from upmirror.store import Store


class Published(NamedTuple):
    """What one publish added: update revisions, distinct files, and their bytes."""

    revisions: int
    files: int
    size: int


def publish(directory: ServerDirectory, manifest_path: Path) -> Published:
    """Publishes the manifest at ``manifest_path`` on the root server in ``directory``: all of it, or nothing."""
    options = directory.load()
    if not options.is_root:
        raise InputError(f"{directory.root} syncs from {options.source.upstream}: only a root server publishes")
    manifest = read_manifest(manifest_path)
    content = directory.content_dir(options)
    with Store.open(directory.database_path) as store:
        check_categories(store, manifest)
        check_decryption_keys(manifest)
        completed, placed = stage_and_place(manifest, manifest_path.parent, content)
        updates = [
            msgspec.structs.replace(
                update,
                files=[
                    with_digests(ref, completed[content_relative_path(ref.sha1, ref.extension)]) for ref in update.files
                ],
            )
            for update in manifest.updates
        ]
        try:
            store.add_categories(manifest.categories)
            added = store.add_updates(updates, manifest.decryption_keys)
        except BaseException:
            # All or nothing: the files this publish placed go again, and the content index forgets them.
            for relative in placed:
                (content / relative).unlink(missing_ok=True)
            forget_deleted_content(content, placed)
            raise
    return Published(added, len(completed), sum(ref.size for ref in completed.values()))


def read_manifest(path: Path) -> PublishManifest:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"cannot read manifest {path}: {error.strerror}") from None
    return decode_json(data, PublishManifest)


def check_categories(store: Store, manifest: PublishManifest) -> None:
    """Every product and classification an update names must be known (stored, or added by the manifest)."""
    known = {c.id: c.kind for c in store.categories()} | {c.id: c.kind for c in manifest.categories}
    for category in manifest.categories:
        allowed = PARENT_KINDS[category.kind]
        if category.parent is not None and known.get(category.parent) not in allowed:
            raise InputError(
                f"category {category.id} names parent {category.parent}, which is not a "
                f"{' or '.join(allowed) or 'category'} (a {category.kind} hangs under one)"
            )
    for update in manifest.updates:
        if known.get(update.classification) != "classification":
            raise InputError(f"update {update.id} names unknown classification {update.classification}")
        for product in update.products:
            if known.get(product) not in PRODUCT_KINDS:
                raise InputError(f"update {update.id} names unknown product {product}")


def check_decryption_keys(manifest: PublishManifest) -> None:
    """Every encrypted file has a key, and every key belongs to an encrypted file (errors name files, never keys)."""
    encrypted = {f.sha1 for update in manifest.updates for f in update.files if f.encrypted}
    for update in manifest.updates:
        for ref in update.files:
            if ref.encrypted and ref.sha1 not in manifest.decryption_keys:
                raise InputError(
                    f"update {update.id}: {ref.name!r} is encrypted, but decryption_keys gives no key for {ref.sha1}"
                )
    for sha1 in manifest.decryption_keys:
        if sha1 not in encrypted:
            raise InputError(f"decryption_keys: {sha1} names no file the manifest marks encrypted")


DIGESTS = ("sha256", "blake3")


def expected_digests(mentions: list[tuple[Update, FileRef]]) -> dict[str, str | None]:
    """The SHA-256 and blake3 the manifest gives a file, wherever it names it; two different values are refused."""
    expected: dict[str, str | None] = dict.fromkeys(DIGESTS)
    first_update = mentions[0][0]
    for update, ref in mentions:
        for algorithm in DIGESTS:
            value = getattr(ref, algorithm)
            if value is None:
                continue
            if expected[algorithm] not in (None, value):
                raise InputError(
                    f"update {update.id}: {ref.name!r} gives another {algorithm} than update {first_update.id} "
                    "gives the same file"
                )
            expected[algorithm] = value
    return expected


def stage_and_place(manifest: PublishManifest, source: Path, content: Path) -> tuple[dict[str, FileRef], list[str]]:
    """Copies each distinct file of the manifest (by content path: several updates may carry one file) into the
    content directory's staging folder and has the content store check and place them all at once. Returns, by
    content path, the completed record (missing digests filled in), and the content paths this call placed."""
    named: dict[str, list[tuple[Update, FileRef]]] = {}
    for update in manifest.updates:
        for ref in update.files:
            named.setdefault(content_relative_path(ref.sha1, ref.extension), []).append((update, ref))
    staged: list[tuple[Path, str, str, int, str | None, str | None]] = []
    try:
        for mentions in named.values():
            update, ref = mentions[0]
            original = source / ref.name
            if not original.is_file():
                raise InputError(f"update {update.id}: file {ref.name!r} is not in {source}")
            size = original.stat().st_size
            for other_update, other in mentions:
                if other.size != size:
                    raise InputError(
                        f"update {other_update.id}: {other.name!r} has {size} bytes, the manifest says {other.size}"
                    )
            expected = expected_digests(mentions)
            copy = partial_path(content, f"publish-{ref.sha1}{ref.extension}")
            staged.append((copy, ref.sha1, ref.extension, ref.size, expected["sha256"], expected["blake3"]))
            shutil.copyfile(original, copy)
        report = place_staged(content, staged)
    except BaseException:
        for copy, *_ in staged:
            copy.unlink(missing_ok=True)
        raise
    mentions_in_order = list(named.values())
    for position, reason in report.refused:
        update, ref = mentions_in_order[position][0]
        raise InputError(f"update {update.id}: {ref.name!r} {reason}")
    completed = {}
    for (relative, mentions), digests in zip(named.items(), report.digests, strict=True):
        assert digests is not None
        first = mentions[0][1]
        completed[relative] = msgspec.structs.replace(first, sha256=digests.sha256, blake3=digests.blake3)
    return completed, report.placed


def with_digests(ref: FileRef, completed: FileRef) -> FileRef:
    """The update's own record of a file (its name may differ) with the digests the staged copy was checked for."""
    return msgspec.structs.replace(ref, sha256=completed.sha256, blake3=completed.blake3)
