"""What the synchronization benchmarks (W4, W5) share: a root ``upmirror serve`` with a generated catalog, downstream
servers that select everything the root offers, and one ``upmirror sync`` run measured from outside (wall time,
peak RSS of the child process, its history record)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from tests.support.cli import UPMIRROR
from tests.support.upmirror_server import UpmirrorServer, add_token

from benches.harness import run_with_peak_rss
from upmirror import wsus
from upmirror.cli.options import initialize
from upmirror.options import Options, ServerDirectory, SourceOptions
from upmirror.store import Store


@dataclass(frozen=True)
class Sizes:
    updates: int
    content_size: str
    runs: int


# BENCHMARKS.md: 20,000 updates and 4 GiB of content; --quick: 2,000 updates and 512 MiB.
FULL = Sizes(updates=20_000, content_size="4G", runs=5)
QUICK = Sizes(updates=2_000, content_size="512M", runs=3)


def make_root(directory: Path, *, updates: int, content_size: str) -> str:
    """Generates the root's catalog (seed 1, the same bytes every run) and returns a downstream token for it."""
    subprocess.run(
        [
            *UPMIRROR,
            "catalog",
            "generate",
            str(directory),
            "--updates",
            str(updates),
            "--content-size",
            content_size,
            "--seed",
            "1",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return add_token(directory, "bench")


def everything(root: Path, server: UpmirrorServer) -> dict[str, list[str]]:
    """A filter selecting the whole catalog: every product family, all eleven classifications, every language the
    root offers (as GET /api/v1/server lists them)."""
    with Store.open(root / "upmirror.db") as store:
        families = [c.id for c in store.categories() if c.kind == "family"]
    languages = msgspec.msgpack.decode(server.call("GET", "/api/v1/server").body)["languages"]
    return {"products": families, "classifications": list(wsus.CLASSIFICATIONS.values()), "languages": languages}


def fresh_downstream(directory: Path, upstream: str, token: str, selection: dict[str, list[str]]) -> None:
    """An empty downstream server (what `upmirror init` + `options set` make), replacing any previous one."""
    shutil.rmtree(directory, ignore_errors=True)
    options = Options(
        source=SourceOptions(upstream=upstream, token=token),
        products=selection["products"],
        classifications=selection["classifications"],
        languages=selection["languages"],
    )
    initialize(ServerDirectory(directory), options)


@dataclass
class SyncRun:
    seconds: float
    peak_rss: int  # bytes, of the `upmirror sync` process
    record: dict[str, Any]


def run_sync(directory: Path) -> SyncRun:
    """``upmirror sync --dir DIRECTORY --json`` as a child process: its wall time (process start included), its
    own peak RSS (``run_with_peak_rss``) and its history record; a sync that does not succeed stops the benchmark."""
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        status, peak_rss = run_with_peak_rss(
            [*UPMIRROR, "sync", "--dir", str(directory), "--json"], stdout=stdout, stderr=stderr
        )
        seconds = time.perf_counter() - started
        stdout.seek(0)
        stderr.seek(0)
        output, errors = stdout.read(), stderr.read()
    if status != 0:
        raise SystemExit(f"upmirror sync failed ({status}): {errors.decode(errors='replace')[-2000:]}")
    record = json.loads(output)
    if record["result"] != "succeeded":
        raise SystemExit(f"upmirror sync ended {record['result']}: {record['error'] or record['failed_files'][:3]}")
    return SyncRun(seconds, peak_rss, record)


def content_files(directory: Path) -> list[Path]:
    """The files of a downstream's content directory (not its in-progress downloads), relative to it."""
    content = directory / "content"
    return sorted(
        path.relative_to(content)
        for path in content.glob("*/*")
        if path.is_file() and not path.parent.name.startswith(".")
    )
