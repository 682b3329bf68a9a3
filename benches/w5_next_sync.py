"""W5: the next synchronization. After a first sync of everything a root ``upmirror serve`` offers, (a) sync again
with nothing changed: the wall time of ``upmirror sync`` including process start (target under 1 s); (b) after
``upmirror catalog revise`` on the root (a month of change: new updates, new revisions, expirations), sync again: the
bytes the root actually sent, counted by a TCP relay between the two servers (independent of upmirror's own
accounting), against the size of the files that changed (target: proportional to the change).
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
from pathlib import Path

from tests.support.cli import UPMIRROR
from tests.support.relay import CountingRelay
from tests.support.upmirror_server import UpmirrorServer

from benches.harness import Report
from benches.sync_setup import FULL, QUICK, content_files, everything, fresh_downstream, make_root, run_sync


def run(quick: bool) -> Report:
    sizes = QUICK if quick else FULL
    unchanged: list[float] = []
    revised: list[float] = []
    rows = []
    with tempfile.TemporaryDirectory(prefix="upmirror-w5-") as scratch_name:
        scratch = Path(scratch_name)
        root, down = scratch / "root", scratch / "down"
        token = make_root(root, updates=sizes.updates, content_size=sizes.content_size)
        with UpmirrorServer(root, token=token) as server, CountingRelay(server.port) as relay:
            fresh_downstream(down, relay.url, token, everything(root, server))
            first = run_sync(down)
            for _ in range(sizes.runs):
                relay.reset()
                unchanged.append(run_sync(down).seconds)
            idle_bytes = relay.downstream_bytes / sizes.runs
            for _ in range(sizes.runs):
                # The root keeps serving while it revises (its store is SQLite in WAL mode).
                subprocess.run([*UPMIRROR, "catalog", "revise", str(root)], check=True, stdout=subprocess.DEVNULL)
                before = set(content_files(down))
                relay.reset()
                after_revision = run_sync(down)
                revised.append(after_revision.seconds)
                new_files = set(content_files(down)) - before
                changed_bytes = sum((down / "content" / path).stat().st_size for path in new_files)
                record = after_revision.record
                rows.append(
                    f"| {record['new_updates']} new, {record['revised_updates']} revised, "
                    f"{record['expired_updates']} expired | {len(new_files)} files, {changed_bytes / 2**20:.1f} MiB "
                    f"| {relay.downstream_bytes / 2**20:.1f} MiB | {relay.downstream_bytes / changed_bytes:.3f} "
                    f"| {after_revision.seconds:.2f} s (metadata {record['metadata_seconds']:.2f} s) |"
                )

    report = Report(
        "W5",
        f"next sync after a first sync of {first.record['new_updates']:,} updates "
        f"({first.record['bytes_downloaded'] / 2**30:.2f} GiB): nothing changed / after `catalog revise`",
    )
    report.add("upmirror sync, nothing changed (target < 1 s)", unchanged, is_upmirror=True)
    report.add("upmirror sync, after `catalog revise`", revised, is_upmirror=True)
    report.notes.append(
        f"Nothing changed: median {statistics.median(unchanged):.3f} s, {idle_bytes / 1024:.1f} KiB sent by the root "
        "per sync.\n\n"
        "| change on the root | files that changed | bytes the root sent (relay) | sent / changed | sync time |\n"
        "|---|---:|---:|---:|---:|\n" + "\n".join(rows)
    )
    return report
