"""W9a: decode and parse Microsoft-shaped update blobs. A generated catalog (100,000 updates; 10,000 with --quick)
is written as a WSUS upstream sends it: each update's XML by upmirror's own writer (``encode_update_xml`` of the
record's ``update_metadata``), and above 5,120 bytes as XmlUpdateBlobCompressed, a cabinet of UTF-16LE text
(``write_cabinet``; MSZIP, as no LZX compressor is packaged). Everything is in memory or the page cache before the
clock starts.

- upmirror: ``decode_update_blobs`` on all blobs at once (cabinet, text and XML read into a dict per update, on every
  core), and the same followed by ``msgspec.convert`` into ``UpdateMetadata`` records (what a sync stores).
- peer: ``cabextract`` of the compressed blobs (as files, a few thousand per process) plus a Python lxml parse of
  every blob (``etree.fromstring``: a tree, no fields read out), one core.

"files/s" in the table reads as updates per second; GB/s is of the blobs as they arrive (compressed or not).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import msgspec
from lxml import etree  # type: ignore[import-untyped]

from benches.harness import Report, alternate, require
from upmirror import _native
from upmirror.model import UpdateMetadata
from upmirror.serversync import metadata, records
from upmirror.store import Store

FULL = {"updates": 100_000, "runs": 5}
QUICK = {"updates": 10_000, "runs": 5}
# cabextract takes this many cabinets per process (an argument list of 100,000 paths is too long).
CABEXTRACT_BATCH = 2_000


def make_blobs(scratch: Path, updates: int) -> list[tuple[bytes, bool]]:
    """The catalog's updates as (blob, compressed), generated with seed 1 (the same bytes every run)."""
    root = scratch / "root"
    subprocess.run(
        [
            *(sys.executable, "-m", "upmirror.cli", "catalog", "generate", str(root)),
            *("--updates", str(updates), "--content-size", "16M", "--seed", "1"),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=1800,
    )
    blobs: list[tuple[bytes, bool]] = []
    with Store.open(root / "upmirror.db") as store:
        for update_id, revision, _ in list(store.latest_revisions()):
            update = store.update(update_id, revision)
            assert update is not None
            xml = records.encode_xml(records.update_metadata(update))
            compressed = metadata.compress(xml)
            blobs.append((compressed, True) if compressed is not None else (xml.encode(), False))
    shutil.rmtree(root)
    return blobs


def run(quick: bool) -> Report:
    tools = require("cabextract")
    sizes = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="upmirror-w9a-") as scratch_name:
        scratch = Path(scratch_name)
        blobs = make_blobs(scratch, sizes["updates"])
        cabinets = scratch / "cabinets"
        cabinets.mkdir()
        cabinet_paths = []
        for number, (blob, compressed) in enumerate(blobs):
            if compressed:
                path = cabinets / f"{number}.cab"
                path.write_bytes(blob)
                # CFFILE.cbFile of the one member (the CFFILE follows the 36-byte header and the 8-byte CFFOLDER).
                cabinet_paths.append((path, int.from_bytes(blob[44:48], "little")))
        utf16 = etree.XMLParser(encoding="UTF-16LE", resolve_entities=False, no_network=True)
        utf8 = etree.XMLParser(resolve_entities=False, no_network=True)

        def upmirror_decode() -> None:
            decoded = _native.decode_update_blobs(blobs)
            assert len(decoded) == len(blobs)

        def upmirror_records() -> None:
            decoded = [msgspec.convert(d, UpdateMetadata) for d in _native.decode_update_blobs(blobs)]
            assert len(decoded) == len(blobs)

        upmirror_decode()  # warm: the extension loaded, the rayon pool started
        times = alternate(
            {
                "upmirror decode_update_blobs": upmirror_decode,
                "upmirror decode_update_blobs + msgspec records": upmirror_records,
                "cabextract + lxml": lambda: parse_all(blobs, cabinet_paths, tools["cabextract"], utf8, utf16),
            },
            sizes["runs"],
        )
    compressed_count = sum(1 for _, compressed in blobs if compressed)
    wire_bytes = sum(len(blob) for blob, _ in blobs)
    report = Report(
        "W9a",
        f"decode and parse {len(blobs):,} update blobs ({compressed_count:,} compressed cabinets, "
        f"{wire_bytes / 1e6:.1f} MB as sent)",
        work_bytes=wire_bytes,
        work_files=len(blobs),
    )
    report.add_all(times)
    ours = report.rows[0].median
    peer = report.rows[-1].median
    report.notes.append(
        f"upmirror: {len(blobs) / ours:,.0f} updates/s, {wire_bytes / ours / 1e6:.0f} MB/s; cabextract + lxml: "
        f"{len(blobs) / peer:,.0f} updates/s, {wire_bytes / peer / 1e6:.0f} MB/s; target: faster than the peer. "
        f"upmirror uses every core (rayon), the peer one; 2-core machine shared with other work."
    )
    return report


def parse_all(
    blobs: list[tuple[bytes, bool]],
    cabinet_paths: list[tuple[Path, int]],
    cabextract: str,
    utf8: etree.XMLParser,
    utf16: etree.XMLParser,
) -> None:
    """The peer: lxml parses each plain blob, and each cabinet's member as cabextract writes it to a pipe."""
    parsed = 0
    for blob, compressed in blobs:
        if not compressed:
            etree.fromstring(blob, utf8)
            parsed += 1
    parsed += parse_piped(cabinet_paths, cabextract, utf16)
    if parsed != len(blobs):
        raise SystemExit(f"the peer parsed {parsed} of {len(blobs)} blobs")


def parse_piped(cabinet_paths: list[tuple[Path, int]], cabextract: str, utf16: etree.XMLParser) -> int:
    """cabextract -p writes the members of a batch of cabinets one after the other to its standard output; each
    member's length comes from its cabinet's header, so the stream is cut without guessing."""
    parsed = 0
    for start in range(0, len(cabinet_paths), CABEXTRACT_BATCH):
        batch = cabinet_paths[start : start + CABEXTRACT_BATCH]
        output = subprocess.run(
            [cabextract, "-q", "-p", *(str(path) for path, _ in batch)], check=True, stdout=subprocess.PIPE
        ).stdout
        position = 0
        for _, length in batch:
            etree.fromstring(output[position : position + length], utf16)
            position += length
            parsed += 1
        if position != len(output):
            raise SystemExit(f"cabextract wrote {len(output)} bytes, the cabinets hold {position}")
    return parsed
