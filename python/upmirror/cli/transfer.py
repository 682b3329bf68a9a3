"""``upmirror export FILE`` and ``upmirror import FILE``: update metadata between servers without a network path
(wsusutil export/import), full or incremental since an earlier export, optionally as a seed bundle with content, or
as a wsusutil package (a cabinet WSUS imports, and import reads WSUS's)."""

from __future__ import annotations

import argparse
from pathlib import Path

from upmirror.cli.common import EXIT_OK, add_dir_argument, format_bytes, server_directory, size_argument
from upmirror.errors import InputError

DEFAULT_CHUNK_SIZE = 4 << 30
# How many updates lacking content the text report names (--json names them all).
NAMED_LACKING = 20


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = subparsers.add_parser(
        "export",
        help="write a metadata package (or a seed bundle with content) for another server",
        description="Write every category and update revision of this server into FILE (a zstd package with a "
        "SHA-256 manifest), or with --since only what changed after the anchor a previous export printed. With "
        "--with-content FILE is a directory holding the package and the content files, cut into checksummed parts. "
        "With --format wsus FILE is a wsusutil package (a cabinet of package.xml and metadata.txt) that `wsusutil "
        "import` takes: always a full export, metadata only.",
    )
    export.add_argument("file", metavar="FILE")
    export.add_argument(
        "--format", choices=("upmirror", "wsus"), default="upmirror", help="upmirror's package, or wsusutil's cabinet"
    )
    export.add_argument("--since", default="", metavar="ANCHOR", help="only changes after this export anchor")
    export.add_argument("--with-content", action="store_true", help="write a seed bundle directory with content")
    export.add_argument(
        "--chunk-size", type=size_argument, default=DEFAULT_CHUNK_SIZE, help="largest content part (default 4G)"
    )
    add_dir_argument(export)
    export.add_argument("--json", action="store_true", help="print the summary as JSON")
    export.set_defaults(handler=run_export)

    imports = subparsers.add_parser(
        "import",
        help="import a metadata package or seed bundle (autonomous servers)",
        description="Verify FILE (a package from `upmirror export`, a seed bundle directory, or a wsusutil export "
        "cabinet from WSUS or `upmirror export --format wsus`) completely, then "
        "import it in one transaction; report which imported updates lack content here. A tampered, truncated or "
        "foreign package is refused and nothing changes. Replicas cannot import.",
    )
    imports.add_argument("file", metavar="FILE")
    add_dir_argument(imports)
    imports.add_argument("--json", action="store_true", help="print the report as JSON")
    imports.set_defaults(handler=run_import)


def run_export(args: argparse.Namespace) -> int:
    import dataclasses  # noqa: PLC0415 (the reports; start-up time)
    import json  # noqa: PLC0415

    from upmirror.bundle import export_bundle  # noqa: PLC0415 (start-up time: heavy modules on use)
    from upmirror.package import export_package  # noqa: PLC0415
    from upmirror.store import Store, parse_anchor  # noqa: PLC0415

    directory = server_directory(args)
    options = directory.load()
    if args.chunk_size < 1 << 20:
        raise InputError(f"--chunk-size {args.chunk_size} is too small (at least 1M)")
    target = Path(args.file).resolve()
    if args.format == "wsus":
        return _export_wsus(args, directory.database_path, target, options.languages)
    with Store.open(directory.database_path) as store:
        since = parse_anchor(args.since, store.anchor())
        if args.with_content:
            bundle = export_bundle(store, target, directory.content_dir(options), since, args.chunk_size)
            summary = bundle.package
            extra = dataclasses.asdict(bundle) | {"package": None}
        else:
            summary = export_package(store, target, since)
            extra = {}
    if args.json:
        print(json.dumps(dataclasses.asdict(summary) | {k: v for k, v in extra.items() if v is not None}))
        return EXIT_OK
    kind = "incremental since " + str(since) if since else "full"
    print(
        f"exported {summary.categories} categories and {summary.revisions} update revisions ({kind}) to {target}: "
        f"{format_bytes(summary.bytes)}, sha256 {summary.sha256}"
    )
    if args.with_content:
        print(f"content: {extra['files']} files, {format_bytes(extra['bytes'])} in {extra['parts']} parts", end="")
        print(f"; {extra['missing']} files were not in this server's content directory" if extra["missing"] else "")
    print(f"next incremental export: --since {summary.anchor}")
    return EXIT_OK


def _export_wsus(args: argparse.Namespace, database: Path, target: Path, languages: list[str]) -> int:
    import dataclasses  # noqa: PLC0415 (the reports; start-up time)
    import json  # noqa: PLC0415

    from upmirror.serversync.wsusutil import export_wsus_package  # noqa: PLC0415 (start-up time)
    from upmirror.store import Store  # noqa: PLC0415

    if args.since or args.with_content:
        raise InputError(
            "--format wsus writes a full export of metadata, as wsusutil does: no --since, no --with-content"
        )
    with Store.open(database) as store:
        summary = export_wsus_package(store, target, languages)
    if args.json:
        print(json.dumps(dataclasses.asdict(summary)))
        return EXIT_OK
    print(
        f"exported {summary.categories} categories and {summary.revisions} update revisions to {target} as a "
        f"wsusutil package: {format_bytes(summary.bytes)}, sha256 {summary.sha256}"
    )
    return EXIT_OK


def run_import(args: argparse.Namespace) -> int:
    import dataclasses  # noqa: PLC0415 (the reports; start-up time)
    import json  # noqa: PLC0415

    from upmirror.bundle import import_bundle, is_bundle  # noqa: PLC0415 (start-up time: heavy modules on use)
    from upmirror.package import import_package  # noqa: PLC0415
    from upmirror.serversync.wsusutil import import_wsus_package, is_wsus_package  # noqa: PLC0415
    from upmirror.store import Store  # noqa: PLC0415
    from upmirror.sync import sync_lock  # noqa: PLC0415

    directory = server_directory(args)
    options = directory.load()
    if options.source.replica:
        raise InputError(f"{directory.root} is a replica: metadata cannot be imported into a replica (WSUS rule)")
    source = Path(args.file).resolve()
    if not source.exists():
        raise InputError(f"no package at {source}")
    content_dir = directory.content_dir(options)
    placed = present = None
    # The sync lock: an import and a synchronization (or a second import) never write at the same time.
    with sync_lock(directory), Store.open(directory.database_path) as store:
        if is_bundle(source):
            report, placed, present = import_bundle(store, source, content_dir)
        elif is_wsus_package(source):
            report = import_wsus_package(store, source, content_dir)
        else:
            report = import_package(store, source, content_dir)
    if args.json:
        content = {} if placed is None else {"files_placed": placed, "files_present": present}
        print(json.dumps(dataclasses.asdict(report) | content))
        return EXIT_OK
    if placed is not None:
        print(f"placed {placed} verified content files ({present} were already present)")
    print(
        f"imported {report.categories} new categories, {report.updates} new updates, {report.revisions} new "
        f"revisions, {report.expired} expirations from {source}"
    )
    lacking = report.lacking_content
    if lacking:
        named = ", ".join(lacking[:NAMED_LACKING]) + (
            f" and {len(lacking) - NAMED_LACKING} more" * (len(lacking) > NAMED_LACKING)
        )
        print(
            f"{len(lacking)} updates lack content here ({report.missing_files} files, "
            f"{format_bytes(report.missing_bytes)}): {named}"
        )
    else:
        print("every imported update has its content here")
    return EXIT_OK
