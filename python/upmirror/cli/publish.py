"""``upmirror publish MANIFEST``: a root server takes its own updates (``upmirror.publish`` does the work)."""

from __future__ import annotations

from pathlib import Path

from upmirror.cli.common import EXIT_OK, add_dir_argument, format_bytes, server_directory

# The type checkers read this as True; the records and the store load when the command runs.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    publish = subparsers.add_parser(
        "publish",
        help="publish updates from a manifest and its files (root servers)",
        description="Publish the updates of MANIFEST (JSON: {categories: [...], updates: [...]}); each file is "
        "read from the manifest's folder by its name and verified against the manifest's size and digests.",
    )
    publish.add_argument("manifest", metavar="MANIFEST")
    add_dir_argument(publish)
    publish.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from upmirror.publish import publish  # noqa: PLC0415

    manifest_path = Path(args.manifest).resolve()
    published = publish(server_directory(args), manifest_path)
    print(
        f"published {published.revisions} update revisions ({published.files} files, "
        f"{format_bytes(published.size)}) from {manifest_path}"
    )
    return EXIT_OK
