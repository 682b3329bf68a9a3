"""W4m: the metadata side of W4 and W5 at full catalog size. A root with the full 20,000-update catalog but only
200 MiB of content (so the run takes a minute, not an hour): the first sync's metadata phase (target under 5 s) and
peak RSS (under 300 MB), then syncs with nothing changed while every one of the ~49,000 files is present (W5's
target: under 1 s). ``--quick`` uses the W4 quick catalog (2,000 updates).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.support.upmirror_server import UpmirrorServer

from benches.harness import Report
from benches.sync_setup import FULL, QUICK, everything, fresh_downstream, make_root, run_sync

CONTENT = "200M"


def run(quick: bool) -> Report:
    sizes = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="upmirror-w4m-") as scratch_name:
        scratch = Path(scratch_name)
        root, down = scratch / "root", scratch / "down"
        token = make_root(root, updates=sizes.updates, content_size=CONTENT)
        with UpmirrorServer(root, token=token) as server:
            fresh_downstream(down, server.url, token, everything(root, server))
            first = run_sync(down)
            unchanged = [run_sync(down) for _ in range(sizes.runs)]
    record = first.record
    report = Report(
        "W4m",
        f"first sync of {record['new_updates']:,} updates ({record['files_downloaded']:,} files, "
        f"{CONTENT} of content), then syncs with nothing changed",
    )
    report.add(
        "upmirror sync (first): metadata phase (target < 5 s)", [first.record["metadata_seconds"]], is_upmirror=True
    )
    report.add("upmirror sync (first): whole sync", [first.seconds], is_upmirror=True)
    report.add("upmirror sync, nothing changed (target < 1 s)", [run.seconds for run in unchanged], is_upmirror=True)
    report.notes.append(f"Peak RSS of the first sync: {first.peak_rss / 2**20:.0f} MiB (target < 300 MB).")
    return report
