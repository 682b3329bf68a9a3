"""W6: copy a content directory (a few large files, many 1 MiB files, very many 64 KiB files) into an empty one, again
with nothing changed, and again with one destination file damaged; upmirror against cp -a, rsync -a, rclone copy and
tar | tar. upmirror's source has a content index (as a verified content directory has); the rows say where it does
not, and which rows flush to disk (the peers do not)."""

from __future__ import annotations

import functools
import hashlib
import random
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from tests.support.cli import UPMIRROR

import upmirror
from benches.harness import Report, alternate, require, run_quietly, runner

INDEX_FILE = ".upmirror-index"

# (count, size) of the files of the source directory.
FULL = [(4, 512 << 20), (2000, 1 << 20), (20_000, 64 << 10)]
QUICK = [(4, 64 << 10 << 10), (200, 1 << 20), (2000, 64 << 10)]


def make_source(root: Path, shape: list[tuple[int, int]], seed: int = 6) -> tuple[int, int]:
    """Seeded random files at their layout paths; returns (files, bytes)."""
    generator = random.Random(seed)
    files = total = 0
    for count, size in shape:
        for _ in range(count):
            data = generator.randbytes(size)
            path = root / upmirror.content_relative_path(hashlib.sha1(data).hexdigest(), ".cab")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            files += 1
            total += size
    return files, total


def run(quick: bool) -> Report:
    require("cp", "rsync", "rclone", "tar", "sync")
    runs = 5
    scratch = Path(tempfile.mkdtemp(prefix="upmirror-w6-", dir="/var/tmp"))
    try:
        source, destination = scratch / "src", scratch / "dst"
        files, total = make_source(source, QUICK if quick else FULL)
        run_quietly([*UPMIRROR, "content", "verify", str(source)])  # the source's content index, built once
        index, index_aside = source / INDEX_FILE, scratch / "index-aside"
        shutil.copyfile(index, index_aside)
        size_label = f"{total / 2**30:.2f} GiB" if total >= 2**30 else f"{total / 2**20:.0f} MiB"
        report = Report("W6", f"copy a content directory, {files:,} files, {size_label}", total, files)

        def upmirror_copy(*options: str) -> list[str]:
            return [*UPMIRROR, "content", "copy", str(source), str(destination), *options]

        def shell(command: str) -> list[str]:
            return ["sh", "-c", command]

        first_copy = {
            "upmirror copy": upmirror_copy(),
            "upmirror copy --no-sync": upmirror_copy("--no-sync"),
            "upmirror copy --verify (reads every byte)": upmirror_copy("--verify"),
            "upmirror copy, source not indexed (reads every byte)": upmirror_copy(),
            "cp -a": ["cp", "-a", f"{source}/.", str(destination)],
            "cp -a; sync": shell(f"cp -a '{source}/.' '{destination}' && sync"),
            "rsync -a": ["rsync", "-a", f"{source}/", f"{destination}/"],
            "rclone copy": ["rclone", "copy", str(source), str(destination)],
            "tar -c, tar -x (a pipe)": shell(
                f"mkdir -p '{destination}' && tar -C '{source}' -cf - . | tar -C '{destination}' -xf -"
            ),
        }

        def fresh_destination(name: str) -> None:
            shutil.rmtree(destination, ignore_errors=True)
            if "not indexed" in name:
                index.unlink(missing_ok=True)
            elif not index.exists():
                shutil.copyfile(index_aside, index)
            # Writes left dirty by the previous contender must not be flushed on this one's time.
            subprocess.run(["sync"], check=True)

        times = alternate({name: runner(command) for name, command in first_copy.items()}, runs, fresh_destination)
        for name, seconds in times.items():
            report.add(f"first copy: {name}", seconds, is_upmirror=name.startswith("upmirror"))
        shutil.copyfile(index_aside, index)

        # A complete destination (made by upmirror, so it has its index), copied again with nothing changed.
        fresh_destination("")
        run_quietly(upmirror_copy())
        again = {
            "upmirror copy": upmirror_copy(),
            "rsync -a": ["rsync", "-a", f"{source}/", f"{destination}/"],
            "rclone copy": ["rclone", "copy", str(source), str(destination)],
        }
        unchanged: dict[str, Callable[[], object]] = {name: runner(command) for name, command in again.items()}
        # The same work without the interpreter's start and imports (most of a no-change run from the command line).
        unchanged["upmirror.copy_content() in-process"] = lambda: upmirror.copy_content(source, destination)
        times = alternate(unchanged, runs, lambda _: subprocess.run(["sync"], check=True))
        for name, seconds in times.items():
            report.add(f"nothing changed: {name}", seconds, is_upmirror=name.startswith("upmirror"))

        # One destination file damaged (rewritten, so its modification time moved): each tool must find and fix it.
        victim = sorted(p for p in destination.rglob("*.cab"))[files // 2]
        good = victim.read_bytes()
        found: dict[str, bool] = {}

        def damage(_: str) -> None:
            victim.write_bytes(bytes([good[0] ^ 0xFF]) + good[1:])
            subprocess.run(["sync"], check=True)

        def checked(name: str, command: list[str]) -> None:
            run_quietly(command)
            found[name] = victim.read_bytes() == good

        times = alternate(
            {name: functools.partial(checked, name, command) for name, command in again.items()}, runs, damage
        )
        for name, seconds in times.items():
            report.add(
                f"one file damaged: {name}",
                seconds,
                is_upmirror=name.startswith("upmirror"),
                note="fixed" if found[name] else "NOT fixed",
            )
        report.notes.append(
            "Ratios are against the first upmirror row. upmirror's default flushes to disk (syncfs) before it records "
            "files in its index; `--no-sync` and the peers do not, so `cp -a; sync` is the like-for-like peer of the "
            "default. Damaged-file rows: "
            + ", ".join(f"{n}: {'fixed' if ok else 'NOT fixed'}" for n, ok in found.items())
        )
        return report
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
