"""W7: deduplicate a tree of files, 30% of them duplicates, with decoys of the same size and the same first and last
8 KiB as a duplicated file; upmirror against fclones (group + link), jdupes -r -L and rdfind. Checks that upmirror
finds the groups fclones finds and that no file's bytes change."""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import xxhash
from tests.support.cli import UPMIRROR

from benches.harness import Report, alternate, require, runner

DUPLICATE_SHARE = 0.30
DECOY_SHARE = 0.05
EDGE = 8 << 10


def make_tree(root: Path, files: int, seed: int = 7) -> int:
    """Originals of log-normal sizes (median 16 KiB, 1 KiB to 4 MiB), duplicates of random originals, and decoys;
    spread over 100 folders. Returns the bytes written."""
    generator = random.Random(seed)
    folders = [root / f"d{i:02}" / f"e{i % 7}" for i in range(100)]
    for folder in folders:
        folder.mkdir(parents=True)
    originals: list[bytes] = []
    total = 0
    for index in range(files):
        roll = generator.random()
        if originals and roll < DUPLICATE_SHARE:
            data = generator.choice(originals)
        elif roll < DUPLICATE_SHARE + DECOY_SHARE and (big := [o for o in originals[-50:] if len(o) > 3 * EDGE]):
            model = bytearray(generator.choice(big))
            middle = len(model) // 2
            model[middle : middle + 16] = generator.randbytes(16)
            data = bytes(model)
        else:
            size = min(4 << 20, max(1024, int(math.exp(generator.gauss(math.log(16 << 10), 1.2)))))
            data = generator.randbytes(size)
            originals.append(data)
        (generator.choice(folders) / f"file{index:06}.bin").write_bytes(data)
        total += len(data)
    return total


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): xxhash.xxh3_128_hexdigest(p.read_bytes()) for p in root.rglob("*") if p.is_file()}


def groups_of(listing: list[list[str]], root: Path) -> set[frozenset[str]]:
    return {frozenset(str(Path(p).relative_to(root)) for p in group) for group in listing}


def run(quick: bool) -> Report:
    tools = require("fclones", "jdupes", "rdfind", "cp", "sync")
    runs = 5
    scratch = Path(tempfile.mkdtemp(prefix="upmirror-w7-", dir="/var/tmp"))
    try:
        pristine, work = scratch / "pristine", scratch / "work"
        count = 5_000 if quick else 50_000
        total = make_tree(pristine, count)
        expected = digests(pristine)
        report = Report("W7", f"deduplicate {count:,} files ({DUPLICATE_SHARE:.0%} duplicates, decoys)", total, count)

        def shell(command: str) -> list[str]:
            return ["sh", "-c", command]

        contenders = {
            "upmirror content dedup": [*UPMIRROR, "content", "dedup", str(work), "--json"],
            "fclones group, fclones link (a pipe)": shell(
                f"{tools['fclones']} group '{work}' | {tools['fclones']} link"
            ),
            "jdupes -r -L": [tools["jdupes"], "-r", "-L", "-q", str(work)],
            "rdfind -makehardlinks true": [
                tools["rdfind"],
                "-makehardlinks",
                "true",
                "-outputname",
                str(scratch / "rdfind.txt"),
                str(work),
            ],
            "upmirror content dedup --dry-run (find only)": [
                *UPMIRROR,
                "content",
                "dedup",
                str(work),
                "--dry-run",
                "--json",
            ],
            "fclones group (find only)": [tools["fclones"], "group", str(work)],
        }

        def fresh_tree(_: str) -> None:
            shutil.rmtree(work, ignore_errors=True)
            subprocess.run(["cp", "-a", str(pristine), str(work)], check=True)
            subprocess.run(["sync"], check=True)
            # Every contender starts with the same warm page cache.
            for path in work.rglob("*"):
                if path.is_file():
                    path.read_bytes()

        times = alternate({name: runner(command) for name, command in contenders.items()}, runs, fresh_tree)
        report.add_all(times)

        # Same groups as fclones, and no file's bytes changed by upmirror's linking.
        fresh_tree("")
        fclones_json = subprocess.run(
            [tools["fclones"], "group", "--format", "json", str(work)], check=True, capture_output=True, text=True
        ).stdout
        fclones_groups = groups_of([g["files"] for g in json.loads(fclones_json)["groups"]], work)
        ours = json.loads(
            subprocess.run(
                [*UPMIRROR, "content", "dedup", str(work), "--json"], check=True, capture_output=True, text=True
            ).stdout
        )
        upmirror_groups = groups_of([g["paths"] for g in ours["groups"]], work)
        unchanged = digests(work) == expected
        report.notes.append(
            f"Groups: upmirror {len(upmirror_groups)}, fclones {len(fclones_groups)}, identical: "
            f"{upmirror_groups == fclones_groups}. Bytes saved by upmirror: {ours['bytes_saved']:,}. Every file's "
            f"bytes unchanged after linking: {unchanged}. Page cache warm for every contender."
        )
        return report
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
