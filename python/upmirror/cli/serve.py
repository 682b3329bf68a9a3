"""``upmirror serve``: answer downstream servers (the sync protocol) and serve ``/Content``."""

from __future__ import annotations

import argparse

from upmirror.cli.common import EXIT_OK, CommandError, add_dir_argument, server_directory
from upmirror.errors import InputError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="serve the sync protocol and /Content",
        description="Serve the sync protocol to downstream servers and the content directory, until SIGTERM or "
        "Ctrl-C. The first line printed is `listening on URL`; --port 0 picks a free port.",
    )
    add_dir_argument(serve)
    serve.add_argument("--host", help="address to listen on (default: server.host)")
    serve.add_argument("--port", type=int, help="port to listen on (default: server.port; 0 picks a free one)")
    serve.add_argument(
        "--workers",
        type=int,
        help="processes answering the sync protocol behind the front, which serves /Content itself "
        "(default: the CPUs available, at most 8)",
    )
    serve.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: aiohttp and the server take about 0.3 s to load, which every other command (a sync with
    # nothing to do among them) would otherwise pay at start.
    from upmirror import server  # noqa: PLC0415

    workers = server.default_workers() if args.workers is None else args.workers
    directory = server_directory(args)
    options = directory.load()
    port = options.server.port if args.port is None else args.port
    if not 0 <= port <= 65535:
        raise InputError(f"--port {port} is out of range; use 0 to 65535 (0 picks a free port)")
    if not 1 <= workers <= 64:
        raise InputError(f"--workers {workers} is out of range; use 1 to 64")
    try:
        server.run(directory, options, args.host or options.server.host, port, workers)
    except OSError as error:
        raise CommandError(f"cannot listen on {args.host or options.server.host}:{port}: {error.strerror}") from None
    return EXIT_OK
