"""``upmirror fetch URL... --to DIR``: the download engine on its own, the way a person tries it.

Files are named after the URL's last path segment, placed in DIR only once complete (and verified when --sha256 or
--blake3 is given); unfinished state lives in DIR/.partial/, so running the same command again resumes.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import time
from pathlib import Path

from upmirror._native import DEFAULT_CONNECTIONS, DEFAULT_RETRIES, DownloadJob, DownloadReport, HttpClient
from upmirror.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    CommandError,
    format_bytes,
    print_error,
    progress_display,
    size_argument,
)
from upmirror.errors import InputError

# The proxy password is read from the environment, never from the command line (where `ps` would show it).
PROXY_PASSWORD_VARIABLE = "UPMIRROR_PROXY_PASSWORD"  # noqa: S105 (a variable name, not a secret)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "fetch",
        help="download URLs with the chunked, parallel, resumable engine",
        description="Download URLs into DIR: large files in parallel Range chunks, small files many at once, "
        "transient failures retried. Files appear only when complete (and verified, with --sha256/--blake3); "
        "an interrupted run resumes when the same command is run again. Exit 1 names the files that failed.",
    )
    parser.add_argument("urls", nargs="+", metavar="URL")
    parser.add_argument("--to", required=True, type=Path, metavar="DIR", help="the directory to download into")
    parser.add_argument("--sha256", metavar="HEX", help="expected SHA-256 (one URL only)")
    parser.add_argument("--blake3", metavar="HEX", help="expected BLAKE3 (one URL only)")
    parser.add_argument("--connections", type=int, help="connections at once (default: the engine's, measured)")
    parser.add_argument("--chunk-size", type=size_argument, help="Range chunk size, e.g. 8M (default: the engine's)")
    parser.add_argument(
        "--retries", type=int, help=f"retries per request after a transient failure (default {DEFAULT_RETRIES})"
    )
    parser.add_argument("--ca-file", type=Path, help="PEM CA bundle to trust instead of the system roots")
    parser.add_argument("--insecure", action="store_true", help="do not verify TLS certificates (unsafe)")
    parser.add_argument("--proxy", metavar="URL", help="HTTP proxy URL (without credentials)")
    parser.add_argument(
        "--proxy-user", metavar="USER", help=f"proxy user; the password comes from ${PROXY_PASSWORD_VARIABLE}"
    )
    parser.add_argument("--proxy-domain", metavar="DOMAIN", help="the proxy user's Windows domain")
    parser.add_argument(
        "--allow-basic-auth", action="store_true", help="allow sending the proxy password with Basic authentication"
    )
    parser.add_argument("--json", action="store_true", help="print the outcome of every file as JSON")
    parser.set_defaults(handler=run)


def build_jobs(args: argparse.Namespace) -> list[DownloadJob]:
    if (args.sha256 or args.blake3) and len(args.urls) != 1:
        raise InputError("--sha256 and --blake3 apply to a single URL; give one URL with them")
    jobs = []
    for url in args.urls:
        try:
            jobs.append(DownloadJob.file(url, sha256=args.sha256, blake3=args.blake3))
        except ValueError as error:
            raise InputError(str(error)) from None
    names = [job.relative_path for job in jobs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InputError(f"several URLs would be saved as {', '.join(duplicates)}; fetch them into separate folders")
    return jobs


def run(args: argparse.Namespace) -> int:
    if args.connections is not None and args.connections < 1:
        raise InputError("--connections must be at least 1")
    if args.retries is not None and args.retries < 0:
        raise InputError("--retries must be at least 0")
    jobs = build_jobs(args)
    try:
        client = HttpClient(
            ca_file=args.ca_file,
            verify_tls=not args.insecure,
            proxy_url=args.proxy,
            proxy_user=args.proxy_user,
            proxy_domain=args.proxy_domain,
            proxy_password=os.environ.get(PROXY_PASSWORD_VARIABLE),
            allow_basic_auth=args.allow_basic_auth,
            max_connections_per_host=max(DEFAULT_CONNECTIONS, args.connections or 0),
        )
    except ValueError as error:
        raise InputError(str(error)) from None
    except FileNotFoundError as error:
        raise InputError(f"{error.filename}: {error.strerror}") from None
    args.to.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        with progress_display("Downloading") as progress:
            report = client.download(
                jobs,
                args.to,
                connections=args.connections,
                chunk_size=args.chunk_size,
                retries=args.retries,
                progress=progress,
            )
    except ValueError as error:
        raise InputError(str(error)) from None
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CommandError(
                f"disk full writing {error.filename}; nothing incomplete was placed. Free space and run the same "
                "command again to resume"
            ) from None
        raise
    elapsed = time.monotonic() - started
    if args.json:
        json.dump([outcome_fields(o) for o in report.outcomes], sys.stdout, indent=2)
        sys.stdout.write("\n")
    print_summary(report, elapsed)
    for failure in report.failures:
        print_error(f"failed: {failure.reason}")
    return EXIT_FAILURE if report.failed else EXIT_OK


def print_summary(report: DownloadReport, elapsed: float) -> None:
    rate = report.bytes_transferred / elapsed if elapsed > 0 else 0.0
    reused = f", {format_bytes(report.bytes_reused)} resumed" if report.bytes_reused else ""
    print(
        f"{report.placed} fetched, {report.skipped} already present, {report.failed} failed: "
        f"{format_bytes(report.bytes_transferred)} in {elapsed:.1f} s ({format_bytes(rate)}/s){reused}",
        file=sys.stderr if report.failed else sys.stdout,
    )


def outcome_fields(outcome: object) -> dict[str, object]:
    fields = ("url", "status", "path", "reason", "bytes_fetched", "bytes_reused")
    return {
        name: str(value) if name == "path" and value is not None else value
        for name in fields
        for value in [getattr(outcome, name)]
    }
