"""``upmirror tokens add|list|revoke``: the bearer tokens downstream servers present to this server. A token is
printed once, when issued; the server keeps only its SHA-256."""

from __future__ import annotations

import argparse
import json

from upmirror.cli.common import EXIT_OK, add_dir_argument, server_directory

# The type checkers read this as True; what a command needs loads when it runs, not when its parser is built.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from upmirror.store import Store


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tokens = subparsers.add_parser("tokens", help="issue, list and revoke downstream and admin tokens")
    actions = tokens.add_subparsers(metavar="ACTION", required=True)
    add = actions.add_parser("add", help="issue a token named NAME and print it (only this once)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--admin", action="store_true", help="an admin token: also opens the admin interface")
    add_dir_argument(add)
    add.set_defaults(handler=run_add)
    listing = actions.add_parser("list", help="list token names and when they were issued")
    add_dir_argument(listing)
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=run_list)
    revoke = actions.add_parser("revoke", help="revoke the token named NAME")
    revoke.add_argument("name", metavar="NAME")
    add_dir_argument(revoke)
    revoke.set_defaults(handler=run_revoke)


def open_store(args: argparse.Namespace) -> Store:
    from upmirror.store import Store  # noqa: PLC0415

    directory = server_directory(args)
    directory.load()  # a clear error when DIR is not a server directory
    return Store.open(directory.database_path)


def run_add(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        print(store.add_token(args.name, "admin" if args.admin else "downstream"))
    return EXIT_OK


def run_list(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        tokens = store.tokens()
    if args.json:
        print(json.dumps([{"name": t.name, "created": t.created, "role": t.role} for t in tokens], indent=2))
    else:
        for token in tokens:
            print(f"{token.name}\t{token.role}\t{token.created}")
    return EXIT_OK


def run_revoke(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        store.revoke_token(args.name)
    print(f"revoked {args.name}")
    return EXIT_OK
