"""``upmirror catalog generate|revise``: make a directory a root server with a realistic, seeded catalog, and apply
a month of change to it (for incremental-sync tests and benchmarks)."""

from __future__ import annotations

import argparse
import time

from upmirror.cli.common import EXIT_OK, format_bytes, parse_size, server_directory
from upmirror.cli.options import initialize
from upmirror.errors import InputError

# The type checkers read this as True; what a command needs loads when it runs, not when its parser is built.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from upmirror.options import Options, ServerDirectory
    from upmirror.store import Store


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    catalog = subparsers.add_parser("catalog", help="generate or revise a realistic test catalog")
    actions = catalog.add_subparsers(metavar="ACTION", required=True)
    make = actions.add_parser(
        "generate",
        help="make DIR a root server with a generated catalog",
        description="Make DIR a root server (initializing it if needed) holding a catalog shaped like Microsoft "
        "Update's: the same seed gives the same updates and the same file bytes.",
    )
    make.add_argument("dir", metavar="DIR")
    make.add_argument(
        "--updates",
        type=int,
        default=2000,
        help="how many updates to approve (default 2000); the updates bundles carry come on top",
    )
    make.add_argument("--content-size", default="256M", help="total size of the update files, e.g. 4G (default 256M)")
    make.add_argument("--seed", type=int, default=1, help="the seed (default 1)")
    make.set_defaults(handler=run_generate)
    change = actions.add_parser(
        "revise",
        help="apply a month of change to a generated catalog",
        description="New updates (some in a new product under an existing family), new revisions of existing "
        "updates, and expirations; each is a change downstream servers pick up incrementally.",
    )
    change.add_argument("dir", metavar="DIR")
    change.add_argument("--seed", type=int, default=1, help="the seed (default 1)")
    change.set_defaults(handler=run_revise)


def open_root(directory: ServerDirectory) -> tuple[Options, Store]:
    from upmirror.store import Store  # noqa: PLC0415

    options = directory.load()
    if not options.is_root:
        raise InputError(f"{directory.root} syncs from {options.source.upstream}: only a root server takes a catalog")
    return options, Store.open(directory.database_path)


def run_generate(args: argparse.Namespace) -> int:
    from upmirror.catalog import generate  # noqa: PLC0415
    from upmirror.options import Options  # noqa: PLC0415

    if not 0 <= args.updates <= 10_000_000:
        raise InputError(f"--updates {args.updates} is out of range; use 0 to 10000000")
    try:
        content_size = parse_size(args.content_size)
    except ValueError:
        raise InputError(f"--content-size {args.content_size!r} is not a size; use e.g. 4G, 512M, 64K") from None
    directory = server_directory(args)
    if not directory.exists():
        initialize(directory, Options())
    options, store = open_root(directory)
    started = time.monotonic()
    with store:
        if store.update_count():
            raise InputError(f"{directory.root} already holds {store.update_count()} updates; use an empty server")
        summary = generate.generate(
            store, directory.content_dir(options), updates=args.updates, content_size=content_size, seed=args.seed
        )
    print(
        f"generated {summary.updates} updates ({summary.expired} expired), {summary.files} files, "
        f"{format_bytes(summary.content_bytes)} in {directory.root} ({time.monotonic() - started:.1f} s)"
    )
    return EXIT_OK


def run_revise(args: argparse.Namespace) -> int:
    from upmirror.catalog import generate  # noqa: PLC0415

    directory = server_directory(args)
    options, store = open_root(directory)
    with store:
        before = store.anchor()
        summary = generate.revise(store, directory.content_dir(options), seed=args.seed)
        after = store.anchor()
    print(
        f"revised {directory.root}: {summary.updates} new updates, {summary.revised} new revisions, "
        f"{summary.expired} expired, new products: {', '.join(summary.new_products) or 'none'}; "
        f"{summary.files} new files ({format_bytes(summary.content_bytes)}); changes {before} -> {after}"
    )
    return EXIT_OK
