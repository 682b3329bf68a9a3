"""W1: hash one large file (page cache warm) with each digest, against the peer tool of that digest, and all digests
in one pass against the slowest single digest.

upmirror runs as users run it (the ``upmirror hash`` command, Python start-up included), and also through the Python
API in a warm process (``hash_file``) to show the engine's own speed.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import upmirror
from benches.harness import Report, alternate, make_file, require, run_quietly

FULL_SIZE = 2 << 30
QUICK_SIZE = 512 << 20


def run(quick: bool) -> Report:
    tools = require("b3sum", "openssl", "xxhsum", "sha1sum")
    size = QUICK_SIZE if quick else FULL_SIZE
    runs = 3 if quick else 5
    cli = [sys.executable, "-m", "upmirror.cli", "hash"]
    with tempfile.TemporaryDirectory(prefix="upmirror-w1-") as scratch:
        path = Path(scratch) / "data.bin"
        make_file(path, size, seed=1)
        subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # warm the page cache
        file = str(path)
        contenders = {
            "upmirror hash --algo blake3": lambda: run_quietly([*cli, "--algo", "blake3", file]),
            "b3sum": lambda: run_quietly([tools["b3sum"], file]),
            "upmirror hash --algo sha256": lambda: run_quietly([*cli, "--algo", "sha256", file]),
            "openssl dgst -sha256": lambda: run_quietly([tools["openssl"], "dgst", "-sha256", file]),
            "upmirror hash --algo sha1": lambda: run_quietly([*cli, "--algo", "sha1", file]),
            "openssl dgst -sha1": lambda: run_quietly([tools["openssl"], "dgst", "-sha1", file]),
            "sha1sum": lambda: run_quietly([tools["sha1sum"], file]),
            "upmirror hash --algo xxh3": lambda: run_quietly([*cli, "--algo", "xxh3", file]),
            "xxhsum -H3": lambda: run_quietly([tools["xxhsum"], "-H3", file]),
            "upmirror hash --json (all four, one pass)": lambda: run_quietly([*cli, "--json", file]),
            "upmirror API blake3+sha256+sha1 (one pass)": lambda: upmirror.hash_file(
                path, ["blake3", "sha256", "sha1"]
            ),
            "upmirror API sha256 alone": lambda: upmirror.hash_file(path, ["sha256"]),
            "upmirror API blake3 alone": lambda: upmirror.hash_file(path, ["blake3"]),
        }
        times = alternate(contenders, runs)

    report = Report("W1", f"hash a {size >> 20} MiB file, page cache warm", work_bytes=size)
    pairs = [
        ("upmirror hash --algo blake3", "b3sum"),
        ("upmirror hash --algo sha256", "openssl dgst -sha256"),
        ("upmirror hash --algo sha1", "openssl dgst -sha1"),
        ("upmirror hash --algo xxh3", "xxhsum -H3"),
    ]
    for ours, peer in pairs:
        report.add(ours, times[ours], is_upmirror=True)
        report.add(peer, times[peer])
    report.add("sha1sum", times["sha1sum"])
    for name in [n for n in times if n.startswith(("upmirror hash --json", "upmirror API"))]:
        report.add(name, times[name], is_upmirror=True)
    report.notes.append(markdown_ratios(times, pairs))
    return report


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def markdown_ratios(times: dict[str, list[float]], pairs: list[tuple[str, str]]) -> str:
    """Each digest against its own peer (>1: upmirror faster), and the one-pass cost against sha256 alone."""
    lines = ["| digest | upmirror vs its peer |", "|---|---:|"]
    for ours, peer in pairs:
        lines.append(f"| {ours.rsplit(' ', 1)[1]} vs {peer} | {median(times[peer]) / median(times[ours]):.2f}x |")
    one_pass = median(times["upmirror API blake3+sha256+sha1 (one pass)"]) / median(times["upmirror API sha256 alone"])
    lines.append(f"| blake3+sha256+sha1 one pass / slowest single (sha256) | {one_pass:.2f} (target <= 1.10) |")
    return "\n".join(lines)
