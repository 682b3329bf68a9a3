"""``upmirror publish MANIFEST``: a root server takes its own updates.

The manifest (JSON, a ``PublishManifest``) lists categories to add and updates to publish; each update file is read
from the manifest's folder by its ``name``. Every file is copied to the content directory's staging folder and the
copy is hashed: it must have the size and every digest the manifest gives (missing SHA-256/blake3 are filled in).
Only when the whole manifest checks out are the files moved into the WSUS layout and the updates stored, so a bad
manifest is refused with one line naming the problem and changes nothing.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import msgspec

from upmirror import content_relative_path, hash_files
from upmirror.cli.common import EXIT_OK, add_dir_argument, format_bytes
from upmirror.errors import InputError
from upmirror.model import FileRef, PublishManifest, Update, decode_json
from upmirror.options import ServerDirectory
from upmirror.store import Store


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    publish = subparsers.add_parser(
        "publish",
        help="publish updates from a manifest and its files (root servers)",
        description="Publish the updates of MANIFEST (JSON: {categories: [...], updates: [...]}); each file is "
        "read from the manifest's folder by its name and verified against the manifest's size and digests.",
    )
    publish.add_argument("manifest", metavar="MANIFEST")
    add_dir_argument(publish)
    publish.set_defaults(handler=run)


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
        if category.parent is not None and known.get(category.parent) != "family":
            raise InputError(f"category {category.id} names parent {category.parent}, which is not a product family")
    for update in manifest.updates:
        if known.get(update.classification) != "classification":
            raise InputError(f"update {update.id} names unknown classification {update.classification}")
        for product in update.products:
            if known.get(product) not in ("family", "product"):
                raise InputError(f"update {update.id} names unknown product {product}")


def stage_and_verify(manifest: PublishManifest, source: Path, staging: Path) -> dict[str, tuple[FileRef, Path]]:
    """Copies each distinct file of the manifest (by content path: several updates may carry one file) into staging
    and checks the copy against the size and every digest the manifest gives, wherever it names the file. Returns,
    by content path, the completed record (missing digests filled in) and the staged path."""
    named: dict[str, list[tuple[Update, FileRef]]] = {}
    for update in manifest.updates:
        for ref in update.files:
            named.setdefault(content_relative_path(ref.sha1, ref.extension), []).append((update, ref))
    staged: list[tuple[str, Path]] = []
    for relative, mentions in named.items():
        update, ref = mentions[0]
        original = source / ref.name
        if not original.is_file():
            raise InputError(f"update {update.id}: file {ref.name!r} is not in {source}")
        copy = staging / f"publish-{ref.sha1}{ref.extension}"
        shutil.copyfile(original, copy)
        staged.append((relative, copy))
    results = hash_files([copy for _, copy in staged], algorithms=["sha1", "sha256", "blake3"])
    completed = {}
    for (relative, copy), digests in zip(staged, results, strict=True):
        for update, ref in named[relative]:
            if isinstance(digests, OSError):
                raise InputError(f"update {update.id}: cannot read {ref.name!r}: {digests}")
            if digests.size != ref.size:
                raise InputError(
                    f"update {update.id}: {ref.name!r} has {digests.size} bytes, the manifest says {ref.size}"
                )
            for algorithm in ("sha1", "sha256", "blake3"):
                expected = getattr(ref, algorithm)
                if expected is not None and digests.get(algorithm) != expected:
                    raise InputError(f"update {update.id}: {ref.name!r} does not match its {algorithm} in the manifest")
        assert not isinstance(digests, OSError)
        first = named[relative][0][1]
        completed[relative] = (msgspec.structs.replace(first, sha256=digests.sha256, blake3=digests.blake3), copy)
    return completed


def with_digests(ref: FileRef, completed: FileRef) -> FileRef:
    """The update's own record of a file (its name may differ) with the digests the staged copy was checked for."""
    return msgspec.structs.replace(ref, sha256=completed.sha256, blake3=completed.blake3)


def run(args: argparse.Namespace) -> int:
    directory = ServerDirectory.from_arg(args.dir)
    options = directory.load()
    if not options.is_root:
        raise InputError(f"{directory.root} syncs from {options.source.upstream}: only a root server publishes")
    manifest_path = Path(args.manifest).resolve()
    manifest = read_manifest(manifest_path)
    content = directory.content_dir(options)
    staging = content / ".partial"
    staging.mkdir(parents=True, exist_ok=True)
    placed: list[Path] = []  # files this publish put in place, taken out again if it fails
    with Store.open(directory.database_path) as store:
        check_categories(store, manifest)
        try:
            staged = stage_and_verify(manifest, manifest_path.parent, staging)
            updates = [
                msgspec.structs.replace(
                    update,
                    files=[
                        with_digests(ref, staged[content_relative_path(ref.sha1, ref.extension)][0])
                        for ref in update.files
                    ],
                )
                for update in manifest.updates
            ]
            for relative, (_, copy) in staged.items():
                final = content / relative
                if final.is_file():
                    copy.unlink()  # already in the store: digest-named content is the same bytes
                    continue
                final.parent.mkdir(exist_ok=True)
                copy.replace(final)
                placed.append(final)
            store.add_categories(manifest.categories)
            added = store.add_updates(updates)
        except BaseException:
            for final in placed:
                final.unlink(missing_ok=True)
            for leftover in staging.glob("publish-*"):
                leftover.unlink(missing_ok=True)
            raise
    size = sum(ref.size for ref, _ in staged.values())
    print(f"published {added} update revisions ({len(staged)} files, {format_bytes(size)}) from {manifest_path}")
    return EXIT_OK
