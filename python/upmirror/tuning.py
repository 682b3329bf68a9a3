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
# The candidates: the largest files this server synchronizes, at most this many and this many bytes in all.
SAMPLE_FILES: Final = 64
SAMPLE_BYTES: Final = 256 * MIB
# The warm-up downloads at most this much, so that it stays short on a slow link.
WARM_UP_BYTES: Final = 32 * MIB
# One run should take about this share of the time budget, so the whole search fits in it: the sample is cut down
# on a slow link, or downloaded several times over (passes) on a fast one, where one pass would be too short to time.
SHARE_OF_BUDGET_PER_RUN: Final = 1 / 24
MAX_PASSES: Final = 16
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
    """The largest files this server synchronizes (its languages, express files as configured) that fit ``count``
    files and ``budget`` bytes, largest first. Only ``count`` files are held while the store is read."""
    needed = store.needed_files(languages=options.languages, only_approved=False, express=options.content.express_files)
    return fit(heapq.nlargest(count, needed, key=lambda f: f.size), budget)


def fit(files: Sequence[FileRef], budget: float) -> list[FileRef]:
    """The files (largest first) that fit in ``budget`` bytes, taken greedily; the smallest one when none fits."""
    chosen: list[FileRef] = []
    total = 0
    for file in sorted(files, key=lambda f: f.size, reverse=True):
        if total + file.size <= budget:
            chosen.append(file)
            total += file.size
    if chosen or not files:
        return chosen
    return [min(files, key=lambda f: f.size)]


class LinkProbe:
    """Downloads a sample of files from the upstream with given settings into a scratch directory, and reports the
    throughput. A client that allows the most connections of the grid is used, so every setting can be tried."""

    def __init__(self, options: Options, files: Sequence[FileRef], scratch: Path, max_connections: int) -> None:
        transfer = msgspec.structs.replace(
            options.transfer, connections=max(max_connections, options.transfer.connections)
        )
        self.client: HttpClient = build_client(msgspec.structs.replace(options, transfer=transfer))
        self.upstream = Upstream(options, self.client)
        self.candidates = list(files)
        self.scratch = scratch
        self.retries = options.transfer.retries
        self.passes = 1
        self.use(fit(self.candidates, WARM_UP_BYTES))

    def use(self, files: Sequence[FileRef]) -> None:
        self.files = list(files)
        self.bytes = sum(f.size for f in files)
        self.jobs = [
            DownloadJob.content(
                self.upstream.content_url(f), f.sha1, f.extension, f.size, sha256=f.sha256, blake3=f.blake3
            )
            for f in files
        ]

    def calibrate(self, rate: float, seconds_per_run: float) -> None:
        """Sizes a run to about ``seconds_per_run`` at ``rate`` bytes per second: fewer files, or more passes."""
        target = rate * seconds_per_run
        self.use(fit(self.candidates, target))
        self.passes = max(1, min(MAX_PASSES, int(target // max(self.bytes, 1))))

    def run(self, setting: Setting) -> float:
        """Bytes per second of the verified downloads of the sample, ``passes`` times, each into a fresh directory
        (wall time of the downloads, placement included; removing the files afterwards is not counted)."""
        transferred, elapsed = 0, 0.0
        for _ in range(self.passes):
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
                elapsed += time.perf_counter() - started
            finally:
                shutil.rmtree(target, ignore_errors=True)
            if report.failed:
                failure = report.failures[0]
                raise MeasurementError(f"download from the upstream failed: {failure.url}: {failure.reason}")
            transferred += report.bytes_transferred
        return transferred / max(elapsed, 1e-9)


@dataclass
class TuneResult:
    files: int
    sample_bytes: int
    passes: int
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
        probe.calibrate(probe.run(current), seconds * SHARE_OF_BUDGET_PER_RUN)

        def measure_rounds(settings: Iterable[Setting], rounds: int, *, always: bool = False) -> None:
            order = list(dict.fromkeys(settings))
            for _ in range(rounds):
                for setting in order:
                    if not always and time.monotonic() >= deadline:
                        return
                    if setting in results and len(results[setting].rates) >= MAX_RUNS:
                        continue
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
        # The current setting, when in the grid, is repeated as often, so the choice is compared with it fairly.
        compared = [*finalists, *([current] if current in results and current not in finalists else [])]
        measure_rounds(compared, MAX_RUNS - 1)
        choice = max(finalists, key=lambda s: results[s].median)
        return TuneResult(
            files=len(probe.files),
            sample_bytes=probe.bytes,
            passes=probe.passes,
            current=current,
            choice=choice,
            measurements=dict(sorted(results.items())),
            seconds=time.monotonic() - started,
        )


def download_rate(options: Options, files: Sequence[FileRef], runs: int = 3, seconds: float = 10.0) -> Measurement:
    """Throughput of the server's current transfer options (``upmirror bench``): a warm-up, then ``runs`` runs of
    about ``seconds`` in all."""
    current = Setting(options.transfer.connections, options.transfer.chunk_size_mib)
    measurement = Measurement()
    with tempfile.TemporaryDirectory(prefix="upmirror-bench-") as scratch:
        probe = LinkProbe(options, files, Path(scratch), current.connections)
        probe.calibrate(probe.run(current), seconds / runs)
        measurement.rates.extend(probe.run(current) for _ in range(runs))
    return measurement
