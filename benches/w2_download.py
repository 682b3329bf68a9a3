"""W2a and W2b of BENCHMARKS.md: one large file from nginx on loopback, unlimited (W2a) and with ``limit_rate 25m``
per connection (W2b, a WAN link), upmirror (BLAKE3 verified while it streams) against curl, aria2c, wget2 and rclone.
A second upmirror row, the same engine with no digest to check, shows what the verification costs.

Every contender writes into a tmpfs folder (/dev/shm), so the figures measure transfer and verification, not this
machine's disk flush: upmirror fsyncs each placed file (free on tmpfs), the peers never do.

Defaults of the engine (``fetch.rs``: 16 connections, 4 MiB chunks) were chosen with this module (``python -m
benches.w2_download --tune`` prints the grid). On loopback (W2a) the two cores are the limit, not the sockets, and
4 to 16 connections are within this shared machine's noise of each other. Under a per-connection cap (W2b)
throughput grows with connections, and 16 matches ``aria2c -x16``. With 16 connections on 256 MiB at 25m, medians
were 16 MiB chunks 0.97 s, 8 MiB 0.80 s, 4 MiB 0.72 s, 2 MiB 0.55 s: smaller chunks balance the tail better and
each new request also starts with nginx's send burst. 2 MiB was not taken, because on a real WAN every chunk costs
one idle round trip per connection (at 50 ms RTT and 25 MB/s that is 40% idle with 2 MiB, 25% with 4 MiB).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import blake3
from tests.support.nginx import NginxServer

from benches.harness import Report, alternate, make_file, require, run_quietly
from upmirror import DownloadJob, HttpClient

NAME = "big.bin"
RATE_PER_CONNECTION = 25 * 2**20  # nginx "25m" is 25 MiB/s


def rclone_http_copy(rclone: str, url: str, source: str, target: Path, *options: str) -> list[str]:
    """``rclone copy`` from an HTTP server (its ``:http:`` backend on the fly), with no configuration file."""
    return [rclone, "copy", "--config", "/dev/null", "--http-url", url, f":http:{source}", str(target), *options]


def contenders(url: str, target: Path, digest: str, tools: dict[str, str]) -> dict[str, Callable[[], object]]:
    client = HttpClient()
    file_url = f"{url}/{NAME}"

    def upmirror(job: DownloadJob) -> Callable[[], None]:
        def download() -> None:
            report = client.download([job], target)
            if report.failed:
                raise SystemExit(f"upmirror failed: {report.failures[0].reason}")

        return download

    return {
        "upmirror (blake3 verified)": upmirror(DownloadJob.file(file_url, blake3=digest)),
        # What the verification costs: the same engine with no digest to check (not a result: nothing is verified).
        "transfer alone: upmirror with no digest": upmirror(DownloadJob.file(file_url)),
        "curl -o": lambda: run_quietly([tools["curl"], "-sf", "-o", str(target / NAME), file_url]),
        "aria2c -x16 -s16 -k1M": lambda: run_quietly(
            [
                tools["aria2c"],
                "-q",
                "-x16",
                "-s16",
                "-k1M",
                "--file-allocation=falloc",
                "--allow-overwrite=true",
                "--auto-file-renaming=false",
                "-d",
                str(target),
                "-o",
                NAME,
                file_url,
            ]
        ),
        "wget2 --chunk-size=64M --max-threads=8": lambda: run_quietly(
            [tools["wget2"], "-q", "--chunk-size=64M", "--max-threads=8", "-O", str(target / NAME), file_url]
        ),
        "rclone --multi-thread-streams 8": lambda: run_quietly(
            rclone_http_copy(tools["rclone"], url, NAME, target, "--multi-thread-streams", "8")
        ),
    }


def measure(workload: str, title: str, limit_rate: str | None, quick: bool) -> Report:
    tools = require("curl", "aria2c", "wget2", "rclone", "nginx")
    size = (256 if quick else 2048) << 20
    runs = 3 if quick else 5
    scratch = Path(tempfile.mkdtemp(prefix="upmirror-w2-", dir="/dev/shm"))
    try:
        www = scratch / "www"
        target = scratch / "target"
        www.mkdir()
        make_file(www / NAME, size, seed=2)
        # Streamed from a mapping (blake3-py, independent of upmirror), so this process stays small.
        digest = blake3.blake3(max_threads=blake3.blake3.AUTO).update_mmap(www / NAME).hexdigest()

        def clear(_: str) -> None:
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()

        with NginxServer(www, limit_rate=limit_rate) as url:
            times = alternate(contenders(url, target, digest, tools), runs, before_each=clear)
        report = Report(workload, title, work_bytes=size, work_files=1)
        report.add_all(times)
        if limit_rate:
            floor = 0.9 * 16 * RATE_PER_CONNECTION
            report.notes.append(
                f"Target: at least 0.9 x 16 connections x 25 MiB/s = {floor / 1e9:.2f} GB/s, and faster than aria2c."
            )
        report.notes.append(f"{size >> 20} MiB file, {runs} alternating runs, targets on tmpfs.")
        report.notes.append(
            "'transfer alone' is upmirror with no digest to check: its distance to the first row is what verifying "
            "costs (BLAKE3 alone: each chunk hashed as a subtree while it streams; with other digests, the file read "
            "back and hashed), work none of the peers does."
        )
        return report
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(quick: bool) -> Report:
    """W2a: unlimited loopback."""
    return measure("W2a", "download one large file from nginx on loopback", None, quick)


def run_wan(quick: bool) -> Report:
    """W2b: nginx limit_rate 25m per connection."""
    return measure("W2b", "download one large file, nginx limit_rate 25m per connection", "25m", quick)


def tune() -> None:
    """Prints W2a and W2b times for a grid of connections and chunk sizes (the measurement behind the defaults)."""
    size = 256 << 20
    scratch = Path(tempfile.mkdtemp(prefix="upmirror-tune-", dir="/dev/shm"))
    try:
        www = scratch / "www"
        www.mkdir()
        make_file(www / NAME, size, seed=2)
        digest = blake3.blake3(max_threads=blake3.blake3.AUTO).update_mmap(www / NAME).hexdigest()
        for limit in (None, "25m"):
            with NginxServer(www, limit_rate=limit) as url:
                client = HttpClient(max_connections_per_host=32)
                grid: dict[str, Callable[[], object]] = {}
                for connections in (4, 8, 16, 24):
                    for chunk in (4 << 20, 8 << 20, 16 << 20):
                        target = scratch / f"t{connections}-{chunk}"

                        def fetch(
                            c: int = connections, k: int = chunk, t: Path = target, client: HttpClient = client
                        ) -> None:
                            shutil.rmtree(t, ignore_errors=True)
                            client.download(
                                [DownloadJob.file(f"{url}/{NAME}", blake3=digest)], t, connections=c, chunk_size=k
                            )

                        grid[f"{connections} conn, {chunk >> 20} MiB"] = fetch
                times = alternate(grid, 3)
                for name, seconds in times.items():
                    print(f"limit={limit or 'none'} {name}: {sorted(seconds)[1]:.3f} s", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    if "--tune" in sys.argv:
        tune()
