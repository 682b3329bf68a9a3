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
from upmirror.cli.common import EXIT_OK, format_bytes
from upmirror.cli.options import add_dir_argument
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


def stage_and_verify(update: Update, source: Path, staging: Path) -> list[tuple[FileRef, Path]]:
    """Copies the update's files into staging and checks each copy; returns the completed records and staged
    paths."""
    staged = []
    for ref in update.files:
        original = source / ref.name
        if not original.is_file():
            raise InputError(f"update {update.id}: file {ref.name!r} is not in {source}")
        copy = staging / f"publish-{ref.sha1}{ref.extension}"
        shutil.copyfile(original, copy)
        staged.append((ref, copy))
    results = hash_files([copy for _, copy in staged], algorithms=["sha1", "sha256", "blake3"])
    completed = []
    for (ref, copy), digests in zip(staged, results, strict=True):
        if isinstance(digests, OSError):
            raise InputError(f"update {update.id}: cannot read {ref.name!r}: {digests}")
        if digests.size != ref.size:
            raise InputError(f"update {update.id}: {ref.name!r} has {digests.size} bytes, the manifest says {ref.size}")
        for algorithm in ("sha1", "sha256", "blake3"):
            expected = getattr(ref, algorithm)
            if expected is not None and digests.get(algorithm) != expected:
                raise InputError(f"update {update.id}: {ref.name!r} does not match its {algorithm} in the manifest")
        completed.append((msgspec.structs.replace(ref, sha256=digests.sha256, blake3=digests.blake3), copy))
    return completed


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
    placed: list[tuple[Path, Path]] = []
    with Store.open(directory.database_path) as store:
        check_categories(store, manifest)
        updates = []
        try:
            for update in manifest.updates:
                completed = stage_and_verify(update, manifest_path.parent, staging)
                updates.append(msgspec.structs.replace(update, files=[ref for ref, _ in completed]))
                placed += [(copy, content / content_relative_path(ref.sha1, ref.extension)) for ref, copy in completed]
        except BaseException:
            for copy, _ in placed:
                copy.unlink(missing_ok=True)
            for leftover in staging.glob("publish-*"):
                leftover.unlink(missing_ok=True)
            raise
        for copy, final in placed:
            final.parent.mkdir(exist_ok=True)
            copy.replace(final)
        store.add_categories(manifest.categories)
        added = store.add_updates(updates)
    size = sum(ref.size for update in updates for ref in update.files)
    print(f"published {added} update revisions ({len(placed)} files, {format_bytes(size)}) from {manifest_path}")
    return EXIT_OK
