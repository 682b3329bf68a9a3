"""The realistic catalog generator: a root server's updates and files, shaped like Microsoft Update's, determined
entirely by a seed.

Updates get the real classifications in realistic proportions (security updates and drivers dominate), products by
classification (drivers under the driver products, definitions under Defender), the detectoid of their product as a
prerequisite (drivers excepted), some cumulative updates as bundles carrying the update that holds their files
(approving the bundle approves that content), about a third of them language
specific with one file per language, supersedence chains per product line and per device, a few expired updates,
and drivers with PCI/USB hardware IDs drawn from a shared pool of devices (so several drivers match one device).
File sizes are log-normal (many small files, a few of hundreds of MiB) scaled so that they add up to the requested
content size; file bytes are a seeded pool with a per-file header, written once to the content directory's staging
folder (their SHA-1 computed natively as they are written, to name them) and placed in the WSUS layout by the
content store, which verifies them, computes their SHA-256 and blake3, places them durably and indexes them.

Memory is bounded: updates are planned, written, hashed and stored in batches.
"""

from __future__ import annotations

import array
import datetime
import math
import random
import re
import uuid
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgspec

from upmirror import Hasher, UpmirrorError, partial_path, place_staged, wsus
from upmirror.catalog import tree
from upmirror.model import Category, FileRef, RevisionRef, Update
from upmirror.store import Store

BATCH_UPDATES: Final = 1000
MIN_FILE_SIZE: Final = 128  # room for the per-file header that keeps every file distinct
SIZE_SIGMA: Final = 2.5  # log-normal spread of file sizes: a median of a few KiB, a tail of hundreds of MiB
POOL_SIZE: Final = 8 << 20
HEADER_SIZE: Final = 96
SMALL_FILE: Final = 256 << 10  # built whole in memory, hashed and written in one piece
EXPIRED_SHARE: Final = 0.03
# Every fourth catalog position that is a cumulative update is a bundle carrying the update that holds the files.
BUNDLE_EVERY: Final = 4
CUMULATIVE_CLASSES: Final = ("Security Updates", "Update Rollups")
FIRST_RELEASE: Final = datetime.date(2016, 1, 12)
CATALOG_YEARS: Final = 10

C = wsus.CLASSIFICATIONS
# Classification title -> weight: the mix of a WSUS catalog with drivers.
CLASSIFICATION_WEIGHTS: Final[dict[str, int]] = {
    "Security Updates": 30,
    "Updates": 18,
    "Drivers": 16,
    "Critical Updates": 8,
    "Definition Updates": 6,
    "Update Rollups": 6,
    "Driver Sets": 4,
    "Feature Packs": 3,
    "Service Packs": 3,
    "Tools": 3,
    "Upgrades": 3,
}
DRIVER_CLASSES: Final = ("Drivers", "Driver Sets")
DEVICE_VENDORS: Final = (
    ("Intel", 0x8086, "PCI"),
    ("Realtek", 0x10EC, "PCI"),
    ("NVIDIA", 0x10DE, "PCI"),
    ("AMD", 0x1002, "PCI"),
    ("Broadcom", 0x14E4, "PCI"),
    ("Logitech", 0x046D, "USB"),
    ("Synaptics", 0x06CB, "USB"),
    ("Qualcomm", 0x17CB, "PCI"),
)
DEVICE_CLASSES: Final = ("System", "Net", "Display", "MEDIA", "Bluetooth", "HIDClass", "Firmware", "USB")
DEVICE_POOL: Final = 2000
COMPUTER_POOL: Final = 200


@dataclass
class PlannedFile:
    name: str
    weight: float
    languages: list[str] = field(default_factory=list)
    express: bool = False


@dataclass
class Written:
    """A file written to the staging folder, with the SHA-1 that names it."""

    path: Path
    sha1: str
    size: int


@dataclass
class PlannedUpdate:
    """An update before its files exist: everything but the digests."""

    fields: dict[str, object]
    files: list[PlannedFile]


@dataclass
class Summary:
    updates: int = 0
    files: int = 0
    content_bytes: int = 0
    expired: int = 0
    revised: int = 0
    new_products: list[str] = field(default_factory=list)


class Planner:
    """Plans updates one by one from a seeded random generator: titles, products, languages, files, supersedence,
    driver hardware IDs. Supersedence chains are kept per product line / device, so memory stays bounded."""

    def __init__(self, rng: random.Random, products: list[Category], count_hint: int) -> None:
        self.rng = rng
        self.count_hint = max(count_hint, 1)
        by_title = {p.title: p for p in products}
        self.drivers = [by_title[t] for t in tree.DRIVER_PRODUCTS if t in by_title]
        self.definitions = [by_title[t] for t in tree.DEFINITION_PRODUCTS if t in by_title]
        special = set(tree.DRIVER_PRODUCTS) | set(tree.DEFINITION_PRODUCTS)
        self.software = [p for p in products if p.title not in special]
        self.upgrades = [p for p in self.software if p.title.startswith("Windows 1")]
        self.classes = list(CLASSIFICATION_WEIGHTS)
        self.class_weights = list(CLASSIFICATION_WEIGHTS.values())
        # Devices shared by drivers: (vendor, hardware ID, device class).
        device_rng = random.Random(rng.getrandbits(64))
        self.devices = []
        for _ in range(DEVICE_POOL):
            vendor, vendor_id, bus = device_rng.choice(DEVICE_VENDORS)
            device = device_rng.randrange(0x10000)
            hardware_id = (
                f"PCI\\VEN_{vendor_id:04X}&DEV_{device:04X}"
                if bus == "PCI"
                else f"USB\\VID_{vendor_id:04X}&PID_{device:04X}"
            )
            self.devices.append((vendor, hardware_id, device_rng.choice(DEVICE_CLASSES)))
        self.computers = [str(uuid.UUID(int=device_rng.getrandbits(128), version=4)) for _ in range(COMPUTER_POOL)]
        self.chains: dict[str, str] = {}

    def guid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def plan(self, index: int, *, product: Category | None = None) -> list[PlannedUpdate]:
        """The update of catalog position ``index``: one update, or a bundle after the update it carries."""
        rng = self.rng
        class_title = rng.choices(self.classes, self.class_weights)[0]
        if product is not None and class_title in (*DRIVER_CLASSES, "Definition Updates"):
            class_title = "Security Updates"
        released = FIRST_RELEASE + datetime.timedelta(days=int(index * CATALOG_YEARS * 365 / self.count_hint))
        month = f"{released.year}-{released.month:02d}"
        kb = str(5_000_000 + index)
        update_id = self.guid()
        fields: dict[str, object] = {
            "id": update_id,
            "revision": rng.choice((1, 1, 1, 2, 3)) + (rng.randrange(200) if rng.random() < 0.2 else 0),
            "classification": C[class_title],
            "release_date": released,
            "expired": rng.random() < EXPIRED_SHARE,
        }
        files: list[PlannedFile] = []
        if class_title in DRIVER_CLASSES:
            vendor, hardware_id, device_class = rng.choice(self.devices)
            version = f"{rng.randrange(1, 32)}.{rng.randrange(100)}.{rng.randrange(10000)}.{rng.randrange(1000)}"
            chosen = [rng.choice(self.drivers)]
            chain = hardware_id
            fields |= {
                "title": f"{vendor} - {device_class} - {version}",
                "hardware_ids": [hardware_id, f"{hardware_id}&SUBSYS_{rng.randrange(1 << 32):08X}"],
                "computer_hardware_ids": rng.sample(self.computers, rng.randrange(1, 4)) if rng.random() < 0.2 else [],
                "description": f"{vendor} {device_class} driver update released in {month}",
            }
            files.append(PlannedFile(f"{vendor.lower()}-{device_class.lower()}-{kb}.cab", self.weight()))
        elif class_title == "Definition Updates":
            chosen = [rng.choice(self.definitions)]
            chain = "definitions"
            fields |= {
                "title": f"Security Intelligence Update for {chosen[0].title} - KB2267602 "
                f"(Version 1.{400 + index // 1000}.{index % 1000}.0)",
                "kb_article": "2267602",
            }
            files.append(PlannedFile(f"mpam-fe-{index}.exe", self.weight()))
        else:
            pool = self.upgrades if class_title == "Upgrades" else self.software
            chosen = [product] if product is not None else [rng.choice(pool)]
            if product is None and rng.random() < 0.1:
                sibling = rng.choice([p for p in pool if p.parent == chosen[0].parent])
                if sibling.id != chosen[0].id:
                    chosen.append(sibling)
            name = chosen[0].title
            kind = "Cumulative Update" if class_title in CUMULATIVE_CLASSES else class_title[:-1]
            fields |= {
                "title": f"{month} {kind} for {name} for x64-based Systems (KB{kb})",
                "kb_article": kb,
                "description": f"Install this update to resolve issues in {name}.",
            }
            chain = f"{chosen[0].id}/{class_title}"
            stem = f"{re.sub('[^a-z0-9]+', '', name.lower())[:24]}-kb{kb}-x64"
            if rng.random() < 0.35:
                languages = self.pick_languages()
                fields["languages"] = languages
                files += [PlannedFile(f"{stem}-{lang}.cab", self.weight(), [lang]) for lang in languages]
            else:
                extension = rng.choice((".msu", ".msu", ".cab", ".exe", ".msi", ".msp"))
                files.append(PlannedFile(f"{stem}{extension}", self.weight()))
            if rng.random() < 0.1:
                files.append(PlannedFile(f"{stem}-express.psf", self.weight(), express=True))
        fields["products"] = [p.id for p in chosen]
        if class_title not in DRIVER_CLASSES:
            fields["prerequisites"] = [tree.detectoid_id(chosen[0].title)]
        return self.in_chain(
            chain, fields, files, bundle=class_title in CUMULATIVE_CLASSES and index % BUNDLE_EVERY == 0
        )

    def in_chain(
        self, chain: str, fields: dict[str, object], files: list[PlannedFile], *, bundle: bool
    ) -> list[PlannedUpdate]:
        """The planned update, most often superseding the previous one of its chain (product line or device)."""
        previous = self.chains.get(chain)
        if previous is not None and self.rng.random() < 0.7:
            fields["supersedes"] = [previous]
        self.chains[chain] = str(fields["id"])
        return as_bundle(fields, files) if bundle else [PlannedUpdate(fields, files)]

    def pick_languages(self) -> list[str]:
        count = self.rng.choices((1, 2, 3, 5, 10, len(tree.LANGUAGES)), (30, 15, 15, 15, 15, 10))[0]
        return sorted(self.rng.sample(tree.LANGUAGES, count))

    def weight(self) -> float:
        return self.rng.lognormvariate(0.0, SIZE_SIGMA)


def as_bundle(fields: dict[str, object], files: list[PlannedFile]) -> list[PlannedUpdate]:
    """A planned update as Microsoft Update ships a cumulative one: a bundle, which is what is approved and holds no
    file, after the update it carries (the same update in all but supersedence), which holds the files."""
    carried = str(uuid.uuid5(uuid.UUID(str(fields["id"])), "bundled"))
    leaf = {name: value for name, value in fields.items() if name != "supersedes"} | {"id": carried, "revision": 1}
    return [PlannedUpdate(leaf, files), PlannedUpdate(fields | {"bundled": [RevisionRef(carried, 1)]}, [])]


class ContentWriter:
    """Writes file bytes (seeded pool + per-file header) to the staging folder, hashing their SHA-1 as they go, and
    has the content store place them under their SHA-1 in the WSUS layout, a batch at a time."""

    def __init__(self, content: Path, seed: object) -> None:
        self.content = content
        self.pool = memoryview(random.Random(f"pool-{seed}").randbytes(POOL_SIZE))
        self.seed = seed
        self.unplaced: set[Path] = set()  # written, not yet handed to the store

    def write(self, tag: str, size: int) -> Written:
        """Writes one file to the staging folder; its SHA-1 is computed from the bytes as they are written."""
        header = f"upmirror catalog {self.seed} file {tag}\n".encode().ljust(HEADER_SIZE, b".")[:size]
        offset = zlib.crc32(tag.encode()) % POOL_SIZE  # files start at different places in the pool
        pieces: list[bytes | memoryview] = [header]
        remaining = size - len(header)
        while remaining:
            pieces.append(self.pool[offset : offset + remaining])
            remaining -= len(pieces[-1])
            offset = 0
        hasher = Hasher(["sha1"])
        path = partial_path(self.content, f"catalog-{tag}")
        self.unplaced.add(path)
        with path.open("wb") as f:
            if size <= SMALL_FILE:
                data = b"".join(pieces)
                hasher.update(data)
                f.write(data)
            else:
                for piece in pieces:  # a pool-sized piece at a time: a large file is never whole in memory
                    chunk = bytes(piece)
                    hasher.update(chunk)
                    f.write(chunk)
        sha1 = hasher.finalize().sha1
        assert sha1 is not None
        return Written(path, sha1, size)

    def place_files(self, written: list[tuple[PlannedFile, Written]]) -> list[FileRef]:
        """Has the content store verify and place the written files in one call; their records get the SHA-256 and
        blake3 it computed."""
        refs = [
            FileRef(
                sha1=item.sha1,
                size=item.size,
                name=planned.name,
                languages=planned.languages,
                express=planned.express,
            )
            for planned, item in written
        ]
        report = place_staged(
            self.content,
            [
                (item.path, ref.sha1, ref.extension, ref.size, None, None)
                for ref, (_, item) in zip(refs, written, strict=True)
            ],
        )
        self.unplaced.difference_update(item.path for _, item in written)
        for position, reason in report.refused:
            raise UpmirrorError(f"generated file {refs[position].name} {reason}")
        placed = []
        for ref, digests in zip(refs, report.digests, strict=True):
            assert digests is not None
            placed.append(msgspec.structs.replace(ref, sha256=digests.sha256, blake3=digests.blake3))
        return placed

    def place(self, batch: list[tuple[PlannedUpdate, list[Written]]]) -> list[Update]:
        """Places the batch's written files and builds the finished Update records."""
        refs = iter(
            self.place_files([pair for planned, paths in batch for pair in zip(planned.files, paths, strict=True)])
        )
        return [
            Update(**planned.fields, files=[next(refs) for _ in planned.files])  # type: ignore[arg-type]
            for planned, _ in batch
        ]

    def close(self) -> None:
        """Removes what was written and never placed (an interrupted run), and the staging folder when empty."""
        for path in self.unplaced:
            path.unlink(missing_ok=True)
        self.unplaced.clear()
        staging = partial_path(self.content, "catalog").parent
        if not any(staging.iterdir()):
            staging.rmdir()


def write_updates(
    store: Store,
    *,
    writer: ContentWriter,
    planned: Iterator[PlannedUpdate],
    size_of: Callable[[PlannedFile], int],
    tag: str,
    summary: Summary,
) -> None:
    """Writes, places and stores planned updates batch by batch. A batch is placed (verified, flushed to the disk,
    renamed) on a thread of its own while the next one is written, so the disk's flush overlaps the writing; batches
    are stored in order, each once its files are in place."""
    batch: list[tuple[PlannedUpdate, list[Written]]] = []
    number = 0
    placing: Future[list[Update]] | None = None

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="upmirror-catalog-place") as placer:

        def store_placed() -> None:
            nonlocal placing
            if placing is None:
                return
            updates = placing.result()
            placing = None
            store.add_updates(updates)
            summary.updates += len(updates)
            summary.expired += sum(u.expired for u in updates)

        def flush() -> None:
            nonlocal placing
            store_placed()
            placing = placer.submit(writer.place, list(batch))
            batch.clear()

        for update in planned:
            files = []
            for planned_file in update.files:
                size = size_of(planned_file)
                files.append(writer.write(f"{tag}-{number}", size))
                summary.files += 1
                summary.content_bytes += size
                number += 1
            batch.append((update, files))
            if len(batch) >= BATCH_UPDATES:
                flush()
        if batch:
            flush()
        store_placed()


def generate(store: Store, content: Path, *, updates: int, content_size: int, seed: int) -> Summary:
    """Fills an empty store and content directory with a catalog determined by ``seed``."""
    categories = tree.categories()
    store.add_categories(categories)
    products = [c for c in categories if c.kind == "product"]

    def plans() -> Iterator[PlannedUpdate]:
        planner = Planner(random.Random(seed), products, updates)
        return (planned for index in range(updates) for planned in planner.plan(index))

    # Two passes over the same seeded plan: the first collects the size weights (8 bytes a file), so the second can
    # scale every file to make the requested total, within the bounds of a single file.
    weights = array.array("d", (f.weight for plan in plans() for f in plan.files))
    largest = max(MIN_FILE_SIZE, content_size // 8)
    scale = content_size / (sum(weights) or 1.0)
    for _ in range(8):  # clamping moves the total; converge on the scale that makes it right
        total = sum(min(largest, max(MIN_FILE_SIZE, w * scale)) for w in weights) or 1.0
        scale *= content_size / total
    del weights

    def size_of(planned_file: PlannedFile) -> int:
        return min(largest, max(MIN_FILE_SIZE, round(planned_file.weight * scale)))

    summary = Summary()
    writer = ContentWriter(content, seed)
    try:
        write_updates(store, writer=writer, planned=plans(), size_of=size_of, tag="g", summary=summary)
    finally:
        writer.close()
    return summary


def revise(store: Store, content: Path, *, seed: int) -> Summary:
    """A realistic month of change on an existing catalog: a new product under an existing family with updates of
    its own, new updates elsewhere, new revisions of some updates (one in three with a new file), and expirations.
    Deterministic for a given seed and store state."""
    anchor = store.anchor()
    rng = random.Random(f"revise-{seed}-{anchor}")
    count = store.update_count()
    summary = Summary()
    existing = {c.id for c in store.categories()}
    new_product = next(
        (tree.product(f, t) for f, t in tree.FUTURE_PRODUCTS if tree.category_id(t) not in existing), None
    )
    if new_product is not None:
        store.add_categories([new_product, tree.detectoid(new_product.title)])
        summary.new_products.append(new_product.title)
    products = [c for c in store.categories() if c.kind == "product"]
    mean_size = store.mean_file_size() or 64 << 10
    mean_weight = math.exp(SIZE_SIGMA**2 / 2)

    def size_of(planned_file: PlannedFile) -> int:
        return max(MIN_FILE_SIZE, min(256 << 20, round(planned_file.weight / mean_weight * mean_size)))

    planner = Planner(rng, products, count)
    new_count = max(5, count // 50)
    for_new_product = new_count // 5 if new_product is not None else 0
    planned = [
        update
        for i in range(new_count)
        for update in planner.plan(count + i, product=new_product if i < for_new_product else None)
    ]
    writer = ContentWriter(content, f"{seed}-{anchor}")
    try:
        write_updates(store, writer=writer, planned=iter(planned), size_of=size_of, tag=f"r{anchor}", summary=summary)
        revise_existing(store, writer, planner, rng, anchor=anchor, count=count, size_of=size_of, summary=summary)
    finally:
        writer.close()
    return summary


def revise_existing(
    store: Store,
    writer: ContentWriter,
    planner: Planner,
    rng: random.Random,
    *,
    anchor: int,
    count: int,
    size_of: Callable[[PlannedFile], int],
    summary: Summary,
) -> None:
    """New revisions of some existing updates (one in three with a new file), and expirations of others; ``anchor``
    and ``count`` are the store's before the change began."""
    # Reservoir-sample existing, unexpired updates to revise and to expire (one pass, bounded memory).
    revise_count, expire_count = max(3, count // 100), max(2, count // 200)
    wanted = revise_count + expire_count
    sample: list[str] = []
    seen = 0
    for update_id, _, expired in store.latest_revisions():
        if expired or seen >= count:
            continue
        seen += 1
        if len(sample) < wanted:
            sample.append(update_id)
        elif (slot := rng.randrange(seen)) < wanted:
            sample[slot] = update_id
    rng.shuffle(sample)
    current_records = []
    extras: list[tuple[PlannedFile, Written]] = []  # new files, placed together: one flush, one index write
    for number, update_id in enumerate(sample[:revise_count]):
        current = store.update(update_id)
        assert current is not None
        extra = None
        if rng.random() < 1 / 3:
            extra = PlannedFile(f"revision-{current.revision + 1}-{number}.cab", planner.weight())
            extras.append((extra, writer.write(f"v{anchor}-{number}", size_of(extra))))
            summary.files += 1
            summary.content_bytes += extras[-1][1].size
        current_records.append((current, extra is not None))
    placed = iter(writer.place_files(extras) if extras else [])
    revised = [
        msgspec.structs.replace(
            current,
            revision=current.revision + 1,
            description=f"{current.description} Revised with change {anchor}."[-10_000:],
            files=[*current.files, next(placed)] if has_extra else current.files,
        )
        for current, has_extra in current_records
    ]
    store.add_updates(revised)
    summary.revised = len(revised)
    summary.expired = store.expire(sample[revise_count:])
