"""W4: a first synchronization. A root ``upmirror serve`` holds a generated catalog; a downstream selecting
everything runs ``upmirror sync`` from empty (metadata, then every file, verified). The peer is the raw transfer:
``aria2c -j16`` fetching the same list of ``/Content/...`` URLs from the same server with the same token. Runs
alternate, each from an empty target (a fresh downstream server per run). Targets: sync at most 1.15x the raw
transfer, peak RSS under 300 MB, metadata phase under 5 s.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from pathlib import Path

from tests.support.upmirror_server import UpmirrorServer

from benches.harness import Report, alternate, require, run_quietly
from benches.sync_setup import FULL, QUICK, SyncRun, content_files, everything, fresh_downstream, make_root, run_sync

UPMIRROR_ROW = "upmirror sync (first)"
PEER_ROW = "aria2c -j16 -x1 (raw transfer)"


def run(quick: bool) -> Report:
    tools = require("aria2c")
    sizes = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="upmirror-w4-") as scratch_name:
        scratch = Path(scratch_name)
        root, down, peer_dir, url_list = scratch / "root", scratch / "down", scratch / "aria2c", scratch / "urls"
        token = make_root(root, updates=sizes.updates, content_size=sizes.content_size)
        with UpmirrorServer(root, token=token) as server:
            selection = everything(root, server)
            # A first sync untimed: it warms the page cache and the server, and tells the peer which files to fetch.
            fresh_downstream(down, server.url, token, selection)
            first = run_sync(down)
            files = content_files(down)
            url_list.write_text("".join(f"{server.url}/Content/{path.as_posix()}\n" for path in files))
            work_bytes = sum((down / "content" / path).stat().st_size for path in files)
            runs: list[SyncRun] = []

            def upmirror_sync() -> None:
                runs.append(run_sync(down))

            def raw_transfer() -> None:
                run_quietly(
                    [
                        tools["aria2c"], "-j16", "-x1", "-i", str(url_list), "-d", str(peer_dir),
                        "--header", f"Authorization: Bearer {token}",
                        "--file-allocation=none", "--console-log-level=warn", "--summary-interval=0", "-q",
                    ]
                )  # fmt: skip

            def before_each(name: str) -> None:
                if name == UPMIRROR_ROW:
                    fresh_downstream(down, server.url, token, selection)
                else:
                    shutil.rmtree(peer_dir, ignore_errors=True)
                    peer_dir.mkdir()

            times = alternate({UPMIRROR_ROW: upmirror_sync, PEER_ROW: raw_transfer}, sizes.runs, before_each)
            fetched = len(list(peer_dir.iterdir()))
            if fetched != len(files):
                raise SystemExit(f"aria2c fetched {fetched} of {len(files)} files")

    report = Report(
        "W4",
        f"first sync of {first.record['new_updates']:,} updates and {len(files):,} files "
        f"({work_bytes / 2**30:.2f} GiB) from a root `upmirror serve`",
        work_bytes=work_bytes,
        work_files=len(files),
    )
    report.add_all(times)
    ratio = statistics.median(times[UPMIRROR_ROW]) / statistics.median(times[PEER_ROW])
    peak_rss = max(r.peak_rss for r in runs)
    metadata_runs = [r.record["metadata_seconds"] for r in runs]
    metadata = statistics.median(metadata_runs)
    report.notes.append(
        "| measure | value | target |\n|---|---:|---:|\n"
        f"| sync wall time / raw transfer (medians) | {ratio:.2f}x | <= 1.15x |\n"
        f"| peak RSS of `upmirror sync` (max of runs) | {peak_rss / 1e6:.0f} MB | < 300 MB |\n"
        f"| metadata phase (median) | {metadata:.2f} s | < 5 s |\n"
        f"| metadata phase per run | {', '.join(f'{m:.2f}' for m in metadata_runs)} s | |"
    )
    return report
