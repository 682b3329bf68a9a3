"""``upmirror updates list|approve|decline|reinstate`` and ``upmirror products list`` / ``classifications list``:
what the administrator reviews and decides. A replica mirrors its upstream's decisions and refuses its own."""

from __future__ import annotations

import json
import sys

from upmirror.cli.common import EXIT_OK, add_dir_argument, server_directory
from upmirror.cli.options import server_categories
from upmirror.errors import InputError, UpmirrorError

# The type checkers read this as True. The options, the records and the store load when a command runs, not when its
# parser is built.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator

    from upmirror.filters import TreeNode
    from upmirror.model import ApprovalAction, Category, Update
    from upmirror.options import Options
    from upmirror.store import Store

DECISIONS: dict[str, ApprovalAction] = {"approve": "approved", "decline": "declined", "reinstate": "not_approved"}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    updates = subparsers.add_parser("updates", help="list, approve, decline and reinstate updates")
    actions = updates.add_subparsers(metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list the updates this server holds")
    add_dir_argument(listing)
    listing.add_argument(
        "--approval", choices=["approved", "declined", "not_approved"], help="only updates with this decision"
    )
    listing.add_argument("--json", action="store_true", help="print one JSON object per line")
    listing.set_defaults(handler=run_list)
    for verb, help_text in (
        ("approve", "approve updates for installation (their files are then downloaded if deferred)"),
        ("decline", "decline updates: not offered to clients; their files go at the next cleanup"),
        ("reinstate", "return declined updates to 'not approved'"),
    ):
        parser = actions.add_parser(verb, help=help_text)
        add_dir_argument(parser)
        parser.add_argument("update_ids", nargs="+", metavar="UPDATE_ID")
        parser.set_defaults(handler=run_decide, decision=DECISIONS[verb])

    for kind in ("products", "classifications"):
        group = subparsers.add_parser(kind, help=f"the {kind} the upstream offers, the selected ones marked")
        group_actions = group.add_subparsers(metavar="ACTION", required=True)
        show = group_actions.add_parser("list", help=f"list the {kind} (x: selected, +: selected through a parent)")
        add_dir_argument(show)
        show.add_argument("--json", action="store_true", help="print JSON")
        show.set_defaults(handler=run_products if kind == "products" else run_classifications)


def open_server(args: argparse.Namespace) -> tuple[Options, Store]:
    from upmirror.store import Store  # noqa: PLC0415

    directory = server_directory(args)
    options = directory.load()
    return options, Store.open(directory.database_path)


def known_categories(args: argparse.Namespace, kinds: tuple[str, ...]) -> tuple[Options, list[Category]]:
    """The server's options and the categories of ``kinds`` it knows (the upstream's before a first sync)."""
    directory = server_directory(args)
    options = directory.load()
    try:
        categories = server_categories(directory, options)
    except UpmirrorError:
        categories = []  # the upstream cannot be asked now: nothing known yet
    return options, [c for c in categories if c.kind in kinds]


def iter_updates(store: Store, approval: str | None) -> Iterator[tuple[Update, ApprovalAction]]:
    for update_id, _, _ in store.latest_revisions():
        decision = store.approval(update_id)
        if approval is None or decision == approval:
            record = store.update(update_id)
            assert record is not None
            yield record, decision


def run_list(args: argparse.Namespace) -> int:
    _, store = open_server(args)
    with store:
        titles = {c.id: c.title for c in store.categories()}
        for update, decision in iter_updates(store, args.approval):
            if args.json:
                row = {
                    "id": update.id,
                    "revision": update.revision,
                    "title": update.title,
                    "kb": update.kb_article,
                    "classification": titles.get(update.classification, update.classification),
                    "approval": decision,
                    "expired": update.expired,
                    "files": len(update.files),
                    "bytes": sum(f.size for f in update.files),
                }
                sys.stdout.write(json.dumps(row) + "\n")
            else:
                flags = "expired" if update.expired else decision
                print(f"{update.id}  r{update.revision:<3} {flags:<12} {update.title}")
    return EXIT_OK


def run_decide(args: argparse.Namespace) -> int:
    options, store = open_server(args)
    if options.source.replica:
        raise InputError("this server is a replica: it mirrors its upstream's approvals and declines")
    decision: ApprovalAction = args.decision
    with store:
        unknown = [update_id for update_id in args.update_ids if store.update(update_id) is None]
        if unknown:
            raise InputError(f"unknown update {unknown[0]!r}; `upmirror updates list` shows the updates")
        for update_id in args.update_ids:
            if decision == "approved" and store.update(update_id) and store.approval(update_id) == "declined":
                raise InputError(f"update {update_id} is declined; reinstate it before approving it")
        for update_id in args.update_ids:
            {"approved": store.approve, "declined": store.decline, "not_approved": store.reinstate}[decision](update_id)
    print(f"{len(args.update_ids)} update(s) {decision.replace('_', ' ')}")
    return EXIT_OK


def run_products(args: argparse.Namespace) -> int:
    from upmirror.filters import ProductTree  # noqa: PLC0415
    from upmirror.model import PRODUCT_KINDS  # noqa: PLC0415

    options, categories = known_categories(args, PRODUCT_KINDS)
    tree = ProductTree(categories)
    # Depth first, as the WSUS console shows the tree (company, families, products), each level by title.
    rows: list[tuple[TreeNode, int, bool, bool]] = []
    roots: list[TreeNode] = [c for c in categories if c.parent not in tree.nodes]
    stack = [(c, 0) for c in sorted(roots, key=lambda c: c.title, reverse=True)]
    while stack:
        node, depth = stack.pop()
        explicit = node.id in options.products
        implied = not explicit and tree.is_selected(node.id, options.products)
        rows.append((node, depth, explicit, implied))
        below = sorted((tree.nodes[i] for i in tree.children.get(node.id, [])), key=lambda c: c.title, reverse=True)
        stack += [(child, depth + 1) for child in below]
    if args.json:
        print(
            json.dumps(
                [
                    {"id": n.id, "title": n.title, "parent": n.parent, "selected": e or i, "through_parent": i}
                    for n, _, e, i in rows
                ],
                indent=2,
            )
        )
        return EXIT_OK
    if not rows:
        print("no products known yet: synchronize once to learn the upstream's products")
    for node, depth, explicit, implied in rows:
        mark = "x" if explicit else ("+" if implied else " ")
        print(f"[{mark}] {'    ' * depth}{node.title}  ({node.id})")
    return EXIT_OK


def run_classifications(args: argparse.Namespace) -> int:
    options, categories = known_categories(args, ("classification",))
    classifications = sorted(categories, key=lambda c: c.title)
    if args.json:
        print(
            json.dumps(
                [{"id": c.id, "title": c.title, "selected": c.id in options.classifications} for c in classifications],
                indent=2,
            )
        )
        return EXIT_OK
    if not classifications:
        print("no classifications known yet: synchronize once to learn the upstream's classifications")
    for c in classifications:
        print(f"[{'x' if c.id in options.classifications else ' '}] {c.title}  ({c.id})")
    return EXIT_OK
