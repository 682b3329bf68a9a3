"""What every benchmark shares (BENCHMARKS.md): alternating runs of upmirror and its peers on the same data,
medians, ratios, the machine's own limits, a JSON result per workload and a Markdown table.

A workload module exposes ``run(quick: bool) -> Report``; ``python -m benches`` runs them all.
"""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def require(*tools: str) -> dict[str, str]:
    """Paths of peer tools; a missing one is an error (`.ci/run` and BENCHMARKS.md say how to install them)."""
    found = {tool: shutil.which(tool) for tool in tools}
    missing = [tool for tool, path in found.items() if path is None]
    if missing:
        raise SystemExit(f"missing peer tools: {', '.join(missing)} (see BENCHMARKS.md for how to install them)")
    return {tool: path for tool, path in found.items() if path is not None}


def drop_caches() -> None:
    """For cold runs: write back dirty pages and drop the page cache (needs root)."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def alternate(
    contenders: Mapping[str, Callable[[], object]],
    runs: int,
    before_each: Callable[[str], object] | None = None,
) -> dict[str, list[float]]:
    """Times each contender ``runs`` times, alternating A B C A B C ... so machine noise hits all alike.

    ``before_each(name)`` runs untimed before every run (clearing a target directory, dropping caches).
    """
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(runs):
        for name, action in contenders.items():
            if before_each is not None:
                before_each(name)
            started = time.perf_counter()
            action()
            times[name].append(time.perf_counter() - started)
    return times


def run_quietly(command: list[str], **kwargs: object) -> None:
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]


# Runs the command given after the path of a file where it writes the command's peak RSS (KiB) and exits with the
# command's status. A child's ru_maxrss starts from its parent's RSS at fork, so a command measured straight from
# this (possibly large, after earlier workloads) benchmark process would report the benchmark's own high-water mark.
_PEAK_RSS_OF_CHILD = (
    "import os, subprocess, sys\n"
    "child = subprocess.Popen(sys.argv[2:])\n"
    "_, status, usage = os.wait4(child.pid, 0)\n"
    "open(sys.argv[1], 'w').write(str(usage.ru_maxrss))\n"
    "code = os.waitstatus_to_exitcode(status)\n"
    "sys.exit(code if code >= 0 else 128 - code)\n"
)


def run_with_peak_rss(command: list[str], **popen: Any) -> tuple[int, int]:
    """Runs ``command`` (``popen`` as for subprocess.run, e.g. stdout=) through a small intermediate interpreter and
    returns its exit status and its own peak RSS in bytes."""
    with tempfile.TemporaryDirectory() as scratch:
        measured = Path(scratch) / "peak-rss"
        done = subprocess.run([sys.executable, "-c", _PEAK_RSS_OF_CHILD, str(measured), *command], check=False, **popen)
        return done.returncode, int(measured.read_text()) * 1024


def runner(command: list[str]) -> Callable[[], None]:
    """A contender for `alternate` that runs a command quietly."""
    return lambda: run_quietly(command)


@dataclass
class Row:
    name: str
    seconds: list[float]
    is_upmirror: bool = False
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def spread(self) -> float:
        """(max - min) / median: how noisy the runs were."""
        return (max(self.seconds) - min(self.seconds)) / self.median if self.median else 0.0


@dataclass
class Report:
    """One workload's results: upmirror's row(s) and the peers', with the amount of work for rates."""

    workload: str
    title: str
    work_bytes: int | None = None
    work_files: int | None = None
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, seconds: list[float], *, is_upmirror: bool = False, note: str = "") -> None:
        self.rows.append(Row(name, seconds, is_upmirror, note))

    def add_all(self, times: dict[str, list[float]], upmirror_prefix: str = "upmirror") -> None:
        for name, seconds in times.items():
            self.add(name, seconds, is_upmirror=name.startswith(upmirror_prefix))

    def rate(self, row: Row) -> str:
        parts = []
        if self.work_bytes:
            parts.append(f"{self.work_bytes / row.median / 1e9:.2f} GB/s")
        if self.work_files:
            parts.append(f"{self.work_files / row.median:,.0f} files/s")
        return ", ".join(parts)

    def markdown(self) -> str:
        """The table: each row's median, rate, spread, and its speed relative to the first upmirror row
        (>1 means upmirror is faster than that row)."""
        reference = next((r for r in self.rows if r.is_upmirror), self.rows[0])
        lines = [
            f"**{self.workload}: {self.title}**",
            "",
            "| contender | median | rate | spread | upmirror speed-up |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in self.rows:
            ratio = row.median / reference.median if reference.median else float("nan")
            label = f"**{row.name}**" if row.is_upmirror else row.name
            lines.append(
                f"| {label} | {row.median:.3f} s | {self.rate(row)} | {row.spread:.0%} | "
                f"{'—' if row is reference else f'{ratio:.2f}x'} |"
            )
        lines.extend(f"\n{note}" for note in self.notes)
        return "\n".join(lines)

    def write(self) -> Path:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"{self.workload}.json"
        document = {
            "workload": self.workload,
            "title": self.title,
            "machine": machine(),
            "work_bytes": self.work_bytes,
            "work_files": self.work_files,
            "rows": [{**asdict(r), "median": r.median, "spread": r.spread} for r in self.rows],
            "notes": self.notes,
            "markdown": self.markdown(),
        }
        path.write_text(json.dumps(document, indent=2) + "\n")
        return path


def machine() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "cpu": _cpu_model(),
        "kernel": platform.release(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def make_file(path: Path, size: int, seed: int) -> None:
    """Writes ``size`` pseudo-random bytes determined by ``seed`` (the same bytes in every run and for every peer)."""
    generator = random.Random(seed)
    block = 1 << 20
    with path.open("wb") as f:
        remaining = size
        while remaining:
            n = min(block, remaining)
            f.write(generator.randbytes(n))
            remaining -= n
