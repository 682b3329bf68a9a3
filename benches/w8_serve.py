"""W8: serve content to a downloader. ``upmirror serve`` and nginx serve the same content directory (nginx through a
``Content`` link, so the URLs are the same) to the same client, curl: one large file on one connection, and many
small files (1-64 KiB, log-normal) over 16 parallel connections. upmirror checks the downstream token on every
request; nginx checks nothing.
"""

from __future__ import annotations

import hashlib
import random
import tempfile
from pathlib import Path

from tests.support.nginx import NginxServer
from tests.support.upmirror_server import UpmirrorServer

from benches.harness import Report, alternate, make_file, require, run_quietly
from upmirror import content_relative_path
from upmirror.cli.options import initialize
from upmirror.options import Options, ServerDirectory
from upmirror.store import Store

FULL = {"big": 2 << 30, "small_files": 5000, "runs": 5}
QUICK = {"big": 512 << 20, "small_files": 1000, "runs": 3}


def place(content: Path, source: Path, extension: str) -> str:
    """Moves ``source`` to its place in the WSUS layout; returns its path relative to the content directory."""
    digest = hashlib.sha1()
    with source.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    relative = content_relative_path(digest.hexdigest(), extension)
    (content / relative).parent.mkdir(exist_ok=True)
    source.replace(content / relative)
    return relative


def make_content(content: Path, big: int, small_files: int) -> tuple[str, list[str]]:
    make_file(content / "big.tmp", big, seed=8)
    big_path = place(content, content / "big.tmp", ".cab")
    rng = random.Random(8)
    small = []
    for number in range(small_files):
        size = min(64 << 10, max(1 << 10, int(rng.lognormvariate(9.5, 0.8))))
        path = content / "small.tmp"
        path.write_bytes(rng.randbytes(size))
        small.append(place(content, path, (".cab", ".msu", ".exe")[number % 3]))
    return big_path, small


def run(quick: bool) -> Report:
    tools = require("curl", "nginx")
    sizes = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="upmirror-w8-") as scratch_name:
        scratch = Path(scratch_name)
        directory = ServerDirectory(scratch / "server")
        initialize(directory, Options())
        content = directory.content_dir(directory.load())
        big, small = make_content(content, sizes["big"], sizes["small_files"])
        with Store.open(directory.database_path) as store:
            token = store.add_token("bench")
        www = scratch / "www"
        www.mkdir()
        (www / "Content").symlink_to(content)
        auth = f"Authorization: Bearer {token}"

        def big_file(base: str) -> None:
            run_quietly([tools["curl"], "--fail", "-s", "-H", auth, "-o", "/dev/null", f"{base}/Content/{big}"])

        def small_files(base: str, config: Path) -> None:
            if not config.exists():
                config.write_text("".join(f'url = "{base}/Content/{p}"\noutput = "/dev/null"\n' for p in small))
            run_quietly([tools["curl"], "--fail", "-s", "-Z", "--parallel-max", "16", "-H", auth, "-K", str(config)])

        with UpmirrorServer(directory.root) as upmirror_server, NginxServer(www) as nginx_url:
            ours, theirs = upmirror_server.url, nginx_url
            big_file(ours)  # warm the page cache and both servers
            big_file(theirs)
            times = alternate(
                {
                    "upmirror serve: one large file": lambda: big_file(ours),
                    "nginx: one large file": lambda: big_file(theirs),
                    "upmirror serve: small files": lambda: small_files(ours, scratch / "ours.cfg"),
                    "nginx: small files": lambda: small_files(theirs, scratch / "theirs.cfg"),
                },
                sizes["runs"],
            )
        small_bytes = sum((content / p).stat().st_size for p in small)

    report = Report(
        "W8",
        f"serve one {sizes['big'] >> 20} MiB file and {len(small)} files of 1-64 KiB to curl",
        work_bytes=sizes["big"],
    )
    report.add("upmirror serve: one large file", times["upmirror serve: one large file"], is_upmirror=True)
    report.add("nginx: one large file", times["nginx: one large file"])
    small_report = Report("W8-small", f"{len(small)} small files", work_bytes=small_bytes, work_files=len(small))
    small_report.add("upmirror serve: small files", times["upmirror serve: small files"], is_upmirror=True)
    small_report.add("nginx: small files", times["nginx: small files"])
    report.notes.append(small_report.markdown())
    report.notes.append(ratios(times))
    return report


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def ratios(times: dict[str, list[float]]) -> str:
    lines = ["| transfer | upmirror / nginx throughput (target >= 0.8) |", "|---|---:|"]
    for kind in ("one large file", "small files"):
        ratio = median(times[f"nginx: {kind}"]) / median(times[f"upmirror serve: {kind}"])
        lines.append(f"| {kind} | {ratio:.2f}x |")
    return "\n".join(lines)
