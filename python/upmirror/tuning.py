"""Measuring a downstream server's link to its upstream with the native download engine, and choosing the number of
connections and the Range chunk size that move its files fastest (``upmirror tune`` and ``upmirror bench``).

Machines and links are noisy, so the search follows BENCHMARKS.md: settings are alternated (A B C A B C ...), each
setting's figure is the median of its runs, and the spread (max - min over the median) is reported with it. The
search is coarse first (connections at one chunk size, then chunk sizes at the best connections), then repeats the
few best settings until the time budget is spent. Files go to a temporary directory, never the content directory.
"""

from __future__ import annotations

import heapq
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgspec

from upmirror._native import DownloadJob, HttpClient
from upmirror.errors import UpmirrorError
from upmirror.model import FileRef
from upmirror.options import Options
from upmirror.store import Store
from upmirror.upstream import Upstream, build_client

MIB: Final = 1 << 20
CONNECTIONS_GRID: Final = (4, 8, 16, 32)
CHUNK_MIB_GRID: Final = (2, 4, 8, 16)
# The sample: the largest files the upstream serves, at most this many and this many bytes in all.
SAMPLE_FILES: Final = 8
SAMPLE_BYTES: Final = 256 * MIB
# One download of the sample should take about this share of the time budget, so the search fits in it.
SHARE_OF_BUDGET_PER_RUN: Final = 1 / 24
FINALISTS: Final = 3
MAX_RUNS: Final = 7


class MeasurementError(UpmirrorError):
    """A measurement could not be made: nothing to download yet, or the upstream failed to deliver."""


@dataclass(frozen=True, order=True)
class Setting:
    connections: int
    chunk_size_mib: int


@dataclass
class Measurement:
    """The throughputs (bytes per second) of every run of one piece of work."""

    rates: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    @property
    def spread(self) -> float:
        """(max - min) / median: how far the runs disagree (0.1 = 10 %)."""
        return (max(self.rates) - min(self.rates)) / self.median if self.median else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "runs": len(self.rates),
            "median_bytes_per_second": round(self.median),
            "min_bytes_per_second": round(min(self.rates)),
            "max_bytes_per_second": round(max(self.rates)),
            "spread": round(self.spread, 3),
        }


def sample_files(
    store: Store, options: Options, count: int = SAMPLE_FILES, budget: int = SAMPLE_BYTES
) -> list[FileRef]:
    """The largest files this server synchronizes (its languages, express files as configured), at most ``count``
    of them and ``budget`` bytes in all (at least one file). Only ``count`` files are held while the store is read."""
    needed = store.needed_files(languages=options.languages, only_approved=False, express=options.content.express_files)
    largest = heapq.nlargest(count, needed, key=lambda f: f.size)
    chosen: list[FileRef] = []
    total = 0
    for file in largest:
        if chosen and total + file.size > budget:
            continue
        chosen.append(file)
        total += file.size
    return chosen


class LinkProbe:
    """Downloads one sample of files from the upstream with given settings into a scratch directory, and reports the
    throughput. A client that allows the most connections of the grid is used, so every setting can be tried."""

    def __init__(self, options: Options, files: Sequence[FileRef], scratch: Path, max_connections: int) -> None:
        transfer = msgspec.structs.replace(
            options.transfer, connections=max(max_connections, options.transfer.connections)
        )
        capped = msgspec.structs.replace(options, transfer=transfer)
        self.client: HttpClient = build_client(capped)
        upstream = Upstream(options, self.client)
        self.jobs = [
            DownloadJob.content(upstream.content_url(f), f.sha1, f.extension, f.size, sha256=f.sha256, blake3=f.blake3)
            for f in files
        ]
        self.files = list(files)
        self.bytes = sum(f.size for f in files)
        self.scratch = scratch
        self.retries = options.transfer.retries

    def shrink_to(self, byte_target: float) -> None:
        """Keeps the largest files that fit ``byte_target`` (at least one), so that one run stays short."""
        kept, total = 0, 0
        for file in self.files:
            if kept and total + file.size > byte_target:
                break
            kept += 1
            total += file.size
        self.files, self.jobs, self.bytes = self.files[:kept], self.jobs[:kept], total

    def run(self, setting: Setting) -> float:
        """Bytes per second of one verified download of the sample (wall time, placement included)."""
        target = Path(tempfile.mkdtemp(prefix="run-", dir=self.scratch))
        try:
            started = time.perf_counter()
            report = self.client.download(
                self.jobs,
                target,
                connections=setting.connections,
                chunk_size=setting.chunk_size_mib * MIB,
                retries=self.retries,
            )
            elapsed = time.perf_counter() - started
        finally:
            shutil.rmtree(target, ignore_errors=True)
        if report.failed:
            failure = report.failures[0]
            raise MeasurementError(f"download from the upstream failed: {failure.url}: {failure.reason}")
        return report.bytes_transferred / max(elapsed, 1e-9)


@dataclass
class TuneResult:
    files: int
    sample_bytes: int
    current: Setting
    choice: Setting
    measurements: dict[Setting, Measurement]  # in the order of the settings (connections, then chunk size)
    seconds: float


def tune(
    options: Options,
    files: Sequence[FileRef],
    *,
    seconds: float,
    connections_grid: Sequence[int] = CONNECTIONS_GRID,
    chunk_grid: Sequence[int] = CHUNK_MIB_GRID,
    on_run: Callable[[Setting, float], None] | None = None,
) -> TuneResult:
    """Searches the grid within ``seconds`` (a warm-up and the coarse pass always run) and returns the setting with
    the best median among the finalists, those repeated most."""
    current = Setting(options.transfer.connections, options.transfer.chunk_size_mib)
    started = time.monotonic()
    deadline = started + seconds
    results: dict[Setting, Measurement] = {}

    with tempfile.TemporaryDirectory(prefix="upmirror-tune-") as scratch:
        probe = LinkProbe(options, files, Path(scratch), max(connections_grid))
        # The warm-up fills the upstream's page cache (the first run would otherwise be slower for every setting)
        # and sizes the sample so the whole search fits the budget.
        warm_rate = probe.run(current)
        probe.shrink_to(warm_rate * seconds * SHARE_OF_BUDGET_PER_RUN)

        def measure_rounds(settings: Iterable[Setting], rounds: int, *, always: bool = False) -> None:
            order = list(dict.fromkeys(settings))
            for _ in range(rounds):
                for setting in order:
                    if not always and time.monotonic() >= deadline:
                        return
                    rate = probe.run(setting)
                    results.setdefault(setting, Measurement()).rates.append(rate)
                    if on_run:
                        on_run(setting, rate)

        middle_chunk = (
            current.chunk_size_mib if current.chunk_size_mib in chunk_grid else sorted(chunk_grid)[len(chunk_grid) // 2]
        )
        measure_rounds((Setting(c, middle_chunk) for c in connections_grid), 1, always=True)
        best_connections = max(results, key=lambda s: results[s].median).connections
        measure_rounds((Setting(best_connections, k) for k in chunk_grid), 1)
        finalists = sorted(results, key=lambda s: results[s].median, reverse=True)[:FINALISTS]
        measure_rounds(finalists, MAX_RUNS - 1)
        choice = max(finalists, key=lambda s: results[s].median)
        return TuneResult(
            files=len(probe.files),
            sample_bytes=probe.bytes,
            current=current,
            choice=choice,
            measurements=dict(sorted(results.items())),
            seconds=time.monotonic() - started,
        )


def download_rate(options: Options, files: Sequence[FileRef], runs: int = 3) -> Measurement:
    """Throughput of the server's current transfer options (``upmirror bench``): a warm-up, then ``runs`` runs."""
    current = Setting(options.transfer.connections, options.transfer.chunk_size_mib)
    measurement = Measurement()
    with tempfile.TemporaryDirectory(prefix="upmirror-bench-") as scratch:
        probe = LinkProbe(options, files, Path(scratch), current.connections)
        probe.run(current)
        measurement.rates.extend(probe.run(current) for _ in range(runs))
    return measurement
