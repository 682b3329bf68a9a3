"""``upmirror demo``: a short tour on generated data. Until synchronization exists it hashes a generated sample set
and prints the throughput of each digest and of all four in one pass."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from upmirror._native import hash_files
from upmirror.cli.common import EXIT_OK, format_bytes

SAMPLE_FILES = 64
SAMPLE_FILE_SIZE = 8 << 20


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("demo", help="run the built-in demonstration on generated data")
    parser.add_argument("--files", type=int, default=SAMPLE_FILES, help="sample files to generate")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="upmirror-demo-") as scratch:
        paths = []
        for index in range(args.files):
            path = Path(scratch) / f"sample-{index:03}.bin"
            path.write_bytes(os.urandom(SAMPLE_FILE_SIZE))
            paths.append(path)
        total = SAMPLE_FILE_SIZE * len(paths)
        print(f"Hashing {len(paths)} generated files, {format_bytes(total)} in all (page cache warm)")
        for algorithms in (["blake3"], ["sha256"], ["sha1"], ["xxh3"], ["blake3", "sha256", "sha1", "xxh3"]):
            started = time.perf_counter()
            hash_files(paths, algorithms)
            seconds = time.perf_counter() - started
            print(f"  {' + '.join(algorithms):<28} {total / seconds / 1e9:6.2f} GB/s")
    return EXIT_OK
