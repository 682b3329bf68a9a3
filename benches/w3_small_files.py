"""W3 of BENCHMARKS.md: many small files (1-64 KiB, log-normal sizes) from nginx on loopback, upmirror against
``aria2c -j16``, ``curl -Z --parallel-max 16``, ``wget2 --max-threads=16`` and ``rclone copy --transfers 16``.

upmirror gets the same URL list as the peers (no sizes, no digests), so each file costs it one Range request whose
answer is the whole file; it places every file by an atomic rename after an fsync (free here: targets are on
tmpfs, /dev/shm, for every contender). Its peak RSS for the run is printed as a note (memory flat in file count).
"""

from __future__ import annotations

import math
import random
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from tests.support.nginx import NginxServer

from benches.harness import Report, alternate, require, run_quietly, run_with_peak_rss
from benches.w2_download import rclone_http_copy
from upmirror import DownloadJob, HttpClient


def make_files(folder: Path, count: int, seed: int) -> int:
    """Log-normal sizes clamped to 1-64 KiB (median about 12 KiB); returns the total bytes."""
    generator = random.Random(seed)
    total = 0
    for index in range(count):
        size = int(min(64 << 10, max(1 << 10, generator.lognormvariate(math.log(12 << 10), 0.8))))
        (folder / f"f{index:06d}.bin").write_bytes(generator.randbytes(size))
        total += size
    return total


def peak_rss_mib(command: list[str]) -> float:
    """Runs a command and returns its peak resident memory."""
    status, peak_rss = run_with_peak_rss(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if status != 0:
        raise SystemExit(f"{command[:3]} failed with status {status}")
    return peak_rss / 2**20


def run(quick: bool) -> Report:
    tools = require("curl", "aria2c", "wget2", "rclone", "nginx")
    count = 1000 if quick else 10_000
    runs = 3 if quick else 5
    scratch = Path(tempfile.mkdtemp(prefix="upmirror-w3-", dir="/dev/shm"))
    try:
        www = scratch / "www"
        target = scratch / "target"
        www.mkdir()
        total = make_files(www, count, seed=3)
        names = sorted(p.name for p in www.iterdir())
        with NginxServer(www, autoindex=True) as url:
            urls = [f"{url}/{name}" for name in names]
            url_list = scratch / "urls.txt"
            url_list.write_text("".join(u + "\n" for u in urls))
            curl_config = scratch / "curl.cfg"
            curl_config.write_text(
                "".join(f'url = "{u}"\noutput = "{target / n}"\n' for u, n in zip(urls, names, strict=True))
            )
            client = HttpClient()
            jobs = [DownloadJob.file(u) for u in urls]

            def upmirror() -> None:
                report = client.download(jobs, target)
                if report.failed:
                    raise SystemExit(f"upmirror failed: {report.failures[0].reason}")

            contenders: dict[str, Callable[[], object]] = {
                "upmirror": upmirror,
                "aria2c -j16": lambda: run_quietly(
                    [tools["aria2c"], "-q", "-j16", "--allow-overwrite=true", "-i", str(url_list), "-d", str(target)]
                ),
                "curl -Z --parallel-max 16": lambda: run_quietly(
                    [tools["curl"], "-sf", "-Z", "--parallel-max", "16", "-K", str(curl_config)]
                ),
                "wget2 --max-threads=16": lambda: run_quietly(
                    [tools["wget2"], "-q", "--max-threads=16", "-i", str(url_list), "-P", str(target)]
                ),
                "rclone copy --transfers 16": lambda: run_quietly(
                    rclone_http_copy(tools["rclone"], url, "", target, "--http-no-head", "--transfers", "16")
                ),
            }

            def clear(_: str) -> None:
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir()

            times = alternate(contenders, runs, before_each=clear)
            clear("rss")
            rss = peak_rss_mib(
                [sys.executable, "-m", "upmirror.cli", "fetch", *urls[: min(count, 2000)], "--to", str(target)]
            )
        report = Report("W3", "many small files (1-64 KiB) from nginx on loopback", work_bytes=total, work_files=count)
        report.add_all(times)
        report.notes.append(
            f"{count} files, {total / 2**20:.1f} MiB, {runs} alternating runs, targets on tmpfs. "
            f"Peak RSS of `upmirror fetch` for {min(count, 2000)} URLs: {rss:.0f} MiB (Python included)."
        )
        report.notes.append(
            f"(this process: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)"
        )
        return report
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
