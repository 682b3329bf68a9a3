"""W9b: a first metadata sync from a local MS-WSUSSS upstream. A root ``upmirror serve`` with a generated catalog
(100,000 updates; 10,000 with --quick; content kept small, since only metadata is timed) answers the WSUS protocol
(``server.anonymous_wsus_sync = true``); a downstream with ``source.protocol = "wsus"`` and
``content.store_locally = false`` selects everything and syncs: authorization, cookie, configuration, categories, the
revision list, GetUpdateData in batches of 100 (XML and cabinets decoded by the core), stored. Then the next sync
with nothing changed. Each is ``upmirror sync`` as a child process: wall time with process start, and its peak RSS.
There is no peer: WSUS's own first sync of Microsoft Update takes hours. Targets: first sync under 60 s with peak
RSS under 500 MB, nothing-changed under 2 s (at 100,000 updates).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.cli import UPMIRROR
from tests.support.upmirror_server import UpmirrorServer

from benches.harness import Report
from benches.sync_setup import SyncRun, run_sync
from upmirror import wsus
from upmirror.cli.options import initialize
from upmirror.options import ContentOptions, Options, ServerDirectory, SourceOptions
from upmirror.store import Store

FULL = {"updates": 100_000, "runs": 3}
QUICK = {"updates": 10_000, "runs": 3}


def make_root(directory: Path, updates: int) -> None:
    subprocess.run(
        [
            *UPMIRROR,
            "catalog",
            "generate",
            str(directory),
            *("--updates", str(updates), "--content-size", "16M"),
            "--seed",
            "1",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=1800,
    )
    subprocess.run(
        [*UPMIRROR, "options", "set", "--dir", str(directory), "server.anonymous_wsus_sync", "true"],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def everything(root: Path) -> dict[str, list[str]]:
    """Every product family, every classification, every language of the root's catalog."""
    with Store.open(root / "upmirror.db") as store:
        families = [c.id for c in store.categories() if c.kind == "family"]
        offered = store.languages()
    return {"products": families, "classifications": list(wsus.CLASSIFICATIONS.values()), "languages": offered}


def fresh_wsus_downstream(directory: Path, upstream: str, selection: dict[str, list[str]]) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    options = Options(
        source=SourceOptions(upstream=upstream, protocol="wsus"),
        content=ContentOptions(store_locally=False),
        products=selection["products"],
        classifications=selection["classifications"],
        languages=selection["languages"],
    )
    initialize(ServerDirectory(directory), options)


def run(quick: bool) -> Report:
    sizes = QUICK if quick else FULL
    first: list[SyncRun] = []
    again: list[SyncRun] = []
    with tempfile.TemporaryDirectory(prefix="upmirror-w9b-") as scratch_name:
        scratch = Path(scratch_name)
        root = scratch / "root"
        make_root(root, sizes["updates"])
        downstream = scratch / "downstream"
        with UpmirrorServer(root) as server:
            selection = everything(root)
            for _ in range(sizes["runs"]):
                fresh_wsus_downstream(downstream, server.url, selection)
                first.append(run_sync(downstream))
                again.append(run_sync(downstream))
    stored = first[-1].record["new_updates"]
    metadata_phase = sorted(r.record["metadata_seconds"] for r in first)[len(first) // 2]
    report = Report(
        "W9b",
        f"first metadata sync of a {sizes['updates']:,}-update catalog over MS-WSUSSS, then nothing changed",
        work_files=sizes["updates"],
    )
    report.add("upmirror sync (wsus protocol), first", [r.seconds for r in first], is_upmirror=True)
    report.add("upmirror sync (wsus protocol), nothing changed", [r.seconds for r in again], is_upmirror=True)
    peaks = [r.peak_rss / 1e6 for r in first]
    report.notes.append(
        f"Peak RSS of the first sync: {min(peaks):.0f}-{max(peaks):.0f} MB (target < 500 MB); nothing changed: "
        f"{max(r.peak_rss for r in again) / 1e6:.0f} MB. Targets at 100,000 updates: first < 60 s, next < 2 s. "
        f"Each first sync stored {stored:,} new updates; its metadata phase took {metadata_phase:.1f} s (median). "
        f"2-core machine shared with other work."
    )
    return report
