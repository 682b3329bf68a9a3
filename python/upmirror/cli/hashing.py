"""``upmirror hash FILE...``: one-pass multi-digest hashing of files, printed as ``b3sum``/``sha256sum`` print it."""

from __future__ import annotations

import argparse
import sys

from upmirror._native import hash_files
from upmirror.cli.common import EXIT_OK, EXIT_USAGE, print_error, progress_display

# A command's start is its imports (W12): typing and json load only where they are used.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from upmirror._native import FileDigests

ALGORITHMS = ("blake3", "sha256", "sha1", "xxh3")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "hash",
        help="hash files with blake3, sha256, sha1 and xxh3 in one pass",
        description="Hash files in a single read pass. Prints one line per file as b3sum or sha256sum does; "
        "--json prints all four digests and the size.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--algo", choices=ALGORITHMS, default="blake3", help="the digest to print (default blake3)")
    parser.add_argument("--json", action="store_true", help="print all four digests and sizes as JSON")
    parser.add_argument("--threads", type=int, default=None, help="files hashed at once (default: one per core)")
    parser.set_defaults(handler=run)


def checksum_line(digest: str, path: str) -> str:
    """A line in the coreutils/b3sum format; names with a backslash or newline are escaped and marked by a leading
    backslash, as those tools do."""
    if "\\" in path or "\n" in path:
        return "\\" + digest + "  " + path.replace("\\", "\\\\").replace("\n", "\\n")
    return f"{digest}  {path}"


def run(args: argparse.Namespace) -> int:
    if args.threads is not None and args.threads < 1:
        print_error(f"--threads must be at least 1, not {args.threads}")
        return EXIT_USAGE
    algorithms = list(ALGORITHMS) if args.json else [args.algo]
    with progress_display("Hashing") as progress:
        results = hash_files(args.files, algorithms, threads=args.threads, progress=progress)

    failed = False
    records: list[dict[str, Any]] = []
    for path, result in zip(args.files, results, strict=True):
        if isinstance(result, OSError):
            failed = True
            print_error(f"cannot hash {path}: {result.strerror or result}")
            continue
        if args.json:
            records.append({"path": path, **digest_fields(result)})
        else:
            print(checksum_line(result.get(args.algo) or "", path))
    if args.json:
        import json  # noqa: PLC0415

        json.dump(records, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return EXIT_USAGE if failed else EXIT_OK


def digest_fields(digests: FileDigests) -> dict[str, Any]:
    return {"size": digests.size, **{name: digests.get(name) for name in ALGORITHMS}}
