"""``upmirror demo``: the main job on an embedded default. A root server with a generated catalog and a downstream
server with the specification's default options, both on loopback, one full synchronization with live progress, a
summary (updates by classification, files, bytes, time, throughput), then both stop and everything is removed."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from upmirror.cli.common import EXIT_FAILURE, EXIT_OK, CommandError, format_bytes, progress_display

UPMIRROR = (sys.executable, "-m", "upmirror.cli")
STARTUP_TIMEOUT = 30.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="a root and a downstream server on loopback, one full synchronization, a summary",
        description="Generate a catalog on a root server, start it on loopback, synchronize a downstream server "
        "with the default options (all Windows products; Critical and Security Updates; English), print a summary "
        "and stop both. Nothing is left behind.",
    )
    parser.add_argument("--updates", type=int, default=5000, help="updates in the generated catalog (default 5000)")
    parser.add_argument("--content-size", default="1G", help="total size of the catalog's files (default 1G)")
    parser.add_argument("--seed", type=int, default=1, help="catalog seed (default 1)")
    parser.set_defaults(handler=run)


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def upmirror(*args: str) -> str:
    import subprocess  # noqa: PLC0415 (subprocess and tempfile load when the demo runs, not for its --help)

    done = subprocess.run([*UPMIRROR, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise CommandError(f"upmirror {args[0]} failed: {done.stderr.strip()}", EXIT_FAILURE)
    return done.stdout


@contextlib.contextmanager
def serving(directory: Path) -> Iterator[str]:
    """``upmirror serve`` on a free loopback port as a child process; yields its URL, stops it on exit."""
    import subprocess  # noqa: PLC0415

    with subprocess.Popen(
        [*UPMIRROR, "serve", "--dir", str(directory), "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as server:
        try:
            assert server.stdout is not None
            line = server.stdout.readline()
            if not line.startswith("listening on "):
                raise CommandError(f"the root server did not start: {line!r}")
            yield line.removeprefix("listening on ").strip()
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()


def run(args: argparse.Namespace) -> int:
    import tempfile  # noqa: PLC0415

    from upmirror.options import ServerDirectory  # noqa: PLC0415 (the sync stack loads only when it runs)
    from upmirror.status import status_document  # noqa: PLC0415
    from upmirror.sync import synchronize  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="upmirror-demo-") as scratch:
        root, downstream = Path(scratch) / "root", Path(scratch) / "downstream"
        step(f"generating a catalog of {args.updates} updates and {args.content_size} of update files")
        started = time.perf_counter()
        print(
            upmirror(
                "catalog",
                "generate",
                str(root),
                "--updates",
                str(args.updates),
                "--content-size",
                args.content_size,
                "--seed",
                str(args.seed),
            ).strip()
        )
        token = upmirror("tokens", "add", "demo-downstream", "--dir", str(root)).strip()
        with serving(root) as url:
            step(f"root server listening on {url}")
            upmirror("init", "--dir", str(downstream), "--upstream", url)
            upmirror("options", "set", "--dir", str(downstream), "source.token", token)
            step("synchronizing the downstream server (all Windows products; Critical and Security Updates; English)")
            with progress_display("Downloading") as progress:
                record = synchronize(
                    ServerDirectory(downstream),
                    on_event=lambda line: print(f"    {line}", flush=True),
                    progress=progress,
                )
        status = status_document(ServerDirectory(downstream))
        seconds = (record.finished - record.started).total_seconds() if record.finished else 0.0
        step(f"synchronization {record.result} in {seconds:.1f} s")
        print("    updates by classification:")
        for title, count in status["updates_by_classification"].items():
            print(f"      {title:<20} {count:>6}")
        print(f"    files: {record.files_downloaded} downloaded, {record.files_failed} failed")
        print(
            f"    bytes: {format_bytes(record.bytes_downloaded)} at "
            f"{format_bytes(record.bytes_downloaded / seconds if seconds else 0)}/s (verified as they arrived)"
        )
        print(f"    total demo time: {time.perf_counter() - started:.1f} s; both servers stopped, files removed")
    return EXIT_OK if record.result == "succeeded" else EXIT_FAILURE
