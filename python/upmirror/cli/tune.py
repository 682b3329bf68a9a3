"""``upmirror tune`` (measure the link to the upstream; choose connections and chunk size for it) and
``upmirror bench`` (this machine's hashing throughput per digest, and the download throughput of the current
options), both measured with upmirror's own engine."""

from __future__ import annotations

import argparse
import json
import math
import sys

from upmirror.cli.common import EXIT_OK, CommandError, add_dir_argument, format_bytes, server_directory, size_argument
from upmirror.errors import InputError

# The type checkers read this as True; importing it from `typing` would cost a command milliseconds of start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from upmirror.model import FileRef
    from upmirror.options import Options, ServerDirectory
    from upmirror.tuning import Measurement, Setting, TuneResult

DEFAULT_SECONDS = 60.0
MAX_SECONDS = 3600.0
DIGESTS = ("blake3", "sha256", "sha1", "xxh3")
BENCH_RUNS = 3
BENCH_DOWNLOAD_SECONDS = 10.0
NOISY_SPREAD = 0.25  # runs of the chosen setting further apart than this: say the figures are soft


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tune = subparsers.add_parser(
        "tune",
        help="measure the link to the upstream; choose connections and chunk size for it",
        description="Download a few of the largest files the upstream serves into a temporary directory (not the "
        "content directory) with several numbers of connections and chunk sizes, alternating settings and taking "
        "medians of repeats, within --seconds. Prints throughput per setting and the choice; --apply saves the "
        "choice as transfer.connections and transfer.chunk_size_mib. The server must have synchronized once.",
    )
    add_dir_argument(tune)
    tune.add_argument("--apply", action="store_true", help="save the chosen settings in the server's options")
    tune.add_argument("--json", action="store_true", help="print the measurements and the choice as JSON")
    tune.add_argument(
        "--seconds", default=str(DEFAULT_SECONDS), help=f"time budget of the search (default {DEFAULT_SECONDS:g})"
    )
    tune.add_argument("--connections", default="4,8,16,32", help="numbers of connections to try (default 4,8,16,32)")
    tune.add_argument("--chunk-sizes", default="2,4,8,16", help="chunk sizes in MiB to try (default 2,4,8,16)")
    tune.set_defaults(handler=run_tune)

    bench = subparsers.add_parser(
        "bench",
        help="measure hashing on this machine and downloading from the upstream",
        description="Hash a generated file in a temporary directory with each digest and with all in one pass, "
        "and, when the server directory is a downstream server that knows files, download a sample of them from "
        "its upstream with the current transfer options. Medians of repeated runs, with their spread.",
    )
    add_dir_argument(bench)
    bench.add_argument("--json", action="store_true", help="print the measurements as JSON")
    bench.add_argument("--size", type=size_argument, default="512M", help="size of the hashed file (default 512M)")
    bench.add_argument(
        "--seconds", default=str(BENCH_DOWNLOAD_SECONDS), help="time for the download runs (default %(default)s)"
    )
    bench.set_defaults(handler=run_bench)


def parse_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= MAX_SECONDS:  # also refuses nan
        raise InputError(f"--seconds takes a number of seconds above 0 and at most {MAX_SECONDS:g}, not {text!r}")
    return seconds


def parse_grid(option: str, text: str, maximum: int) -> list[int]:
    """A comma-separated list of whole numbers from 1 to ``maximum`` (the bounds of the option it will set)."""
    try:
        values = [int(word) for word in text.split(",") if word.strip()]
    except ValueError:
        values = []
    if not values or any(not 1 <= value <= maximum for value in values):
        raise InputError(f"{option} takes comma-separated whole numbers from 1 to {maximum}, not {text!r}")
    return list(dict.fromkeys(values))


def downstream_files(directory: ServerDirectory, options: Options) -> list[FileRef]:
    """The sample of files to download, or a one-line failure when the server knows none yet."""
    from upmirror.store import Store  # noqa: PLC0415
    from upmirror.tuning import sample_files  # noqa: PLC0415

    with Store.open(directory.database_path) as store:
        files = sample_files(store, options)
    if not files:
        raise CommandError(
            f"{directory.root} knows no update files yet: synchronize once first (`upmirror sync --dir "
            f"{directory.root}`), then measure"
        )
    return files


def rate_text(rate: float) -> str:
    return f"{format_bytes(rate)}/s"


def run_tune(args: argparse.Namespace) -> int:
    from upmirror.options import set_option  # noqa: PLC0415
    from upmirror.tuning import MeasurementError, tune  # noqa: PLC0415

    seconds = parse_seconds(args.seconds)
    connections_grid = parse_grid("--connections", args.connections, 256)
    chunk_grid = parse_grid("--chunk-sizes", args.chunk_sizes, 1024)
    directory = server_directory(args)
    options = directory.load()
    if options.is_root:
        raise InputError(f"{directory.root} is a root server: it has no upstream link to tune")
    files = downstream_files(directory, options)

    def show_run(setting: Setting, rate: float) -> None:
        if not args.json:
            print(f"  {setting.connections} connections, {setting.chunk_size_mib} MiB chunks: {rate_text(rate)}")

    if not args.json:
        print(f"measuring the link to {options.source.upstream} for about {seconds:g} s")
    try:
        result = tune(
            options,
            files,
            seconds=seconds,
            connections_grid=connections_grid,
            chunk_grid=chunk_grid,
            on_run=show_run,
        )
    except MeasurementError as error:
        raise CommandError(str(error)) from None

    if args.apply:
        latest = directory.load()  # the options as they are now, should they have changed while measuring
        latest = set_option(latest, "transfer.connections", str(result.choice.connections))
        latest = set_option(latest, "transfer.chunk_size_mib", str(result.choice.chunk_size_mib))
        directory.save(latest)
    if args.json:
        json.dump(tune_record(result, applied=args.apply), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_tune(result, applied=args.apply, directory=directory)
    return EXIT_OK


def tune_record(result: TuneResult, *, applied: bool) -> dict[str, Any]:
    return {
        "files": result.files,
        "sample_bytes": result.sample_bytes,
        "passes": result.passes,
        "seconds": round(result.seconds, 2),
        "current": {"connections": result.current.connections, "chunk_size_mib": result.current.chunk_size_mib},
        "choice": {"connections": result.choice.connections, "chunk_size_mib": result.choice.chunk_size_mib},
        "measurements": [setting_record(s, m) for s, m in result.measurements.items()],
        "applied": applied,
    }


def setting_record(setting: Setting, measurement: Measurement) -> dict[str, float | int]:
    return {"connections": setting.connections, "chunk_size_mib": setting.chunk_size_mib, **measurement.as_dict()}


def measurement_row(label: str, measurement: Measurement) -> str:
    return (
        f"{label}  {rate_text(measurement.median):>13}  {len(measurement.rates):>4}  "
        f"{rate_text(min(measurement.rates)):>13}  {rate_text(max(measurement.rates)):>13}  "
        f"{measurement.spread:>6.0%}"
    )


def print_tune(result: TuneResult, *, applied: bool, directory: ServerDirectory) -> None:
    print(
        f"\n{result.files} files ({format_bytes(result.sample_bytes)}) x {result.passes} per run, "
        f"{result.seconds:.0f} s in all; "
        "median of the runs, spread = (max - min) / median"
    )
    print(f"{'connections':>11}  {'chunk':>7}  {'median':>13}  {'runs':>4}  {'min':>13}  {'max':>13}  {'spread':>6}")
    for setting, measurement in result.measurements.items():
        marks = ("  <- choice" if setting == result.choice else "") + (
            "  (current)" if setting == result.current else ""
        )
        print(measurement_row(f"{setting.connections:>11}  {setting.chunk_size_mib:>3} MiB", measurement) + marks)
    choice = result.choice
    chosen = f"transfer.connections {choice.connections} transfer.chunk_size_mib {choice.chunk_size_mib}"
    chosen_runs = result.measurements[choice]
    current_runs = result.measurements.get(result.current)
    versus = f" ({chosen_runs.median / current_runs.median - 1:+.0%} over the current options)" if current_runs else ""
    print(f"\nchoice: {choice.connections} connections, {choice.chunk_size_mib} MiB chunks{versus}")
    if chosen_runs.spread > NOISY_SPREAD:
        print(f"the runs disagree by {chosen_runs.spread:.0%}: the link is noisy; more --seconds gives firmer figures")
    if applied:
        print(f"applied: {chosen}")
    elif choice == result.current:
        print("the current options are already this choice")
    else:
        print(f"to use it: upmirror tune --apply, or upmirror options set --dir {directory.root} {chosen}")


def run_bench(args: argparse.Namespace) -> int:
    explicit = args.dir is not None
    directory = server_directory(args)
    if explicit and not directory.exists():
        directory.load()  # raises the one-line "not a server directory" error
    if args.size < 1:
        raise InputError("--size must be at least 1 byte")
    seconds = parse_seconds(args.seconds)

    hashing = bench_hashing(args.size)
    download, note = bench_download(directory, seconds)  # (setting, measurement) or None
    if args.json:
        record: dict[str, Any] = {
            "hash_file_bytes": args.size,
            "hashing": {name: m.as_dict() for name, m in hashing.items()},
            "download": setting_record(*download) if download else None,
            "download_note": note,
        }
        json.dump(record, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK

    print(f"{'what':<28}  {'median':>13}  {'runs':>4}  {'min':>13}  {'max':>13}  {'spread':>6}")
    for name, measurement in hashing.items():
        print(measurement_row(f"{'hash ' + name:<28}", measurement))
    if download:
        setting, measurement = download
        label = f"download {setting.connections} x {setting.chunk_size_mib} MiB"
        print(measurement_row(f"{label:<28}", measurement))
    print(f"\nhashed a {format_bytes(args.size)} file (page cache warm); {note}")
    return EXIT_OK


def bench_hashing(size: int) -> dict[str, Measurement]:
    """Hashes one generated file with each digest alone and with all in one pass, alternating, BENCH_RUNS times."""
    import tempfile  # noqa: PLC0415
    import time  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from upmirror._native import hash_file  # noqa: PLC0415
    from upmirror.tuning import Measurement  # noqa: PLC0415

    choices = {name: [name] for name in DIGESTS} | {"all in one pass": list(DIGESTS)}
    runs = {name: Measurement() for name in choices}
    with tempfile.TemporaryDirectory(prefix="upmirror-bench-") as scratch:
        path = Path(scratch) / "sample.bin"
        write_sample(path, size)
        hash_file(path, list(DIGESTS))  # warms the page cache: every run reads from memory
        for _ in range(BENCH_RUNS):
            for name, algorithms in choices.items():
                started = time.perf_counter()
                hash_file(path, algorithms)
                runs[name].rates.append(size / max(time.perf_counter() - started, 1e-9))
    return runs


def write_sample(path: Path, size: int) -> None:
    """A file of ``size`` seeded pseudo-random bytes (digests run at the same speed on any content)."""
    import random  # noqa: PLC0415

    block = random.Random(20261123).randbytes(1 << 20)
    with path.open("wb") as f:
        remaining = size
        while remaining:
            written = f.write(block[: min(remaining, len(block))])
            remaining -= written


def bench_download(directory: ServerDirectory, seconds: float) -> tuple[tuple[Setting, Measurement] | None, str]:
    """The download throughput of the current options (connections, chunk size), or why it was not measured."""
    from upmirror.tuning import MeasurementError, Setting, download_rate  # noqa: PLC0415

    if not directory.exists():
        return None, "download not measured: no server directory (give --dir)"
    options = directory.load()
    if options.is_root:
        return None, "download not measured: a root server has no upstream"
    try:
        files = downstream_files(directory, options)
    except CommandError as error:
        return None, f"download not measured: {error}"
    try:
        measurement = download_rate(options, files, runs=BENCH_RUNS, seconds=seconds)
    except MeasurementError as error:
        raise CommandError(str(error)) from None
    setting = Setting(options.transfer.connections, options.transfer.chunk_size_mib)
    return (
        setting,
        measurement,
    ), (f"downloaded the largest files it synchronizes from {options.source.upstream} into a temporary directory")
