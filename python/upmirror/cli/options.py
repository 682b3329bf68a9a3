"""``upmirror init`` (a new server directory) and ``upmirror options show|set`` (the Options page)."""

from __future__ import annotations

import re
import sys

from upmirror.cli.common import EXIT_OK, add_dir_argument, server_directory
from upmirror.errors import InputError, UpmirrorError

# The type checkers read this as True. The options, the records and the store load when a command runs, not when its
# parser is built (`upmirror init --help` starts as fast as a bare command).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import TypeVar

    from upmirror.model import Category
    from upmirror.options import Options, ServerDirectory
    from upmirror.upstream import Upstream

    T = TypeVar("T")

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = subparsers.add_parser(
        "init",
        help="create a server directory",
        description="Create a server directory: upmirror.toml (options, mode 0600), the metadata database, "
        "content/ and logs/. Without --upstream the server is a root server.",
    )
    add_dir_argument(init)
    init.add_argument("--content-dir", help="keep update files here instead of DIR/content")
    init.add_argument("--upstream", default="", help="the upstream server's URL, e.g. https://wsus1:8531")
    init.add_argument("--replica", action="store_true", help="mirror the upstream's approvals (a replica server)")
    init.set_defaults(handler=run_init)

    options = subparsers.add_parser("options", help="show or change the server's options")
    actions = options.add_subparsers(metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print the options (secrets hidden)")
    add_dir_argument(show)
    show.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    show.set_defaults(handler=run_show)
    change = actions.add_parser(
        "set",
        help="set options, e.g. `schedule.per_day 4` or `languages en,de`",
        description="Set one or more options at once (KEY VALUE [KEY VALUE ...]); they are checked together and "
        "saved together, or not at all.",
    )
    add_dir_argument(change)
    change.add_argument("key", help="section.name, or products / classifications / languages")
    change.add_argument("value", help="the new value; lists are comma-separated")
    change.add_argument("more", nargs="*", metavar="KEY VALUE", help="further pairs")
    change.set_defaults(handler=run_set)


def run_init(args: argparse.Namespace) -> int:
    from upmirror.options import Options, validate_upstream_url  # noqa: PLC0415

    directory = server_directory(args)
    if directory.exists():
        raise InputError(f"{directory.root} is already a server directory")
    if args.replica and not args.upstream:
        raise InputError("--replica needs --upstream: a replica mirrors an upstream server")
    options = Options()
    options.source.upstream = validate_upstream_url(args.upstream)
    options.source.replica = args.replica
    if args.content_dir:
        options.content.directory = args.content_dir
    initialize(directory, options)
    role = "root server" if options.is_root else ("replica" if args.replica else "autonomous downstream server")
    print(f"initialized {role} in {directory.root}")
    return EXIT_OK


def initialize(directory: ServerDirectory, options: Options) -> None:
    """Creates the server directory's parts: options, metadata database, content and logs folders."""
    from upmirror.store import Store  # noqa: PLC0415

    directory.root.mkdir(parents=True, exist_ok=True)
    directory.save(options)
    directory.content_dir(options).mkdir(parents=True, exist_ok=True)
    directory.logs.mkdir(exist_ok=True)
    Store.open(directory.database_path, create=True).close()


def run_show(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    import tomli_w  # noqa: PLC0415

    redacted = server_directory(args).load().redacted()
    if args.json:
        json.dump(redacted, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(tomli_w.dumps(redacted))
    return EXIT_OK


def run_set(args: argparse.Namespace) -> int:
    from upmirror.options import set_option, validate  # noqa: PLC0415

    directory = server_directory(args)
    options = directory.load(check=False)  # values that no longer fit together can be repaired here
    words = [args.key, args.value, *args.more]
    if len(words) % 2:
        raise InputError(f"option {words[-1]!r} has no value: give KEY VALUE pairs")
    pairs = list(zip(words[::2], words[1::2], strict=True))
    updated = options
    for key, text in pairs:
        value = text
        if key in ("products", "classifications", "languages") and options.source.replica:
            raise InputError(f"this server is a replica: its {key} follow its upstream and cannot be changed here")
        if key in ("products", "classifications"):
            value = ",".join(resolve_categories(directory, key, text, updated))
        updated = set_option(updated, key, value, check=False)
    validate(updated)
    if any(key == "languages" for key, _ in pairs):
        check_offered_languages(directory, updated)
    directory.save(updated)
    shown = updated.redacted()
    for key, _ in pairs:
        section, _, name = key.partition(".")
        print(f"{key} = {shown[section][name] if name else shown[section]}")
    return EXIT_OK


def ask_upstream(options: Options, question: Callable[[Upstream], T]) -> T:
    """One question to the upstream, asked once: a person is waiting, and a failure is theirs to judge."""
    import msgspec  # noqa: PLC0415

    from upmirror.upstream import Upstream  # noqa: PLC0415 (only the commands that ask pay for it)

    once = msgspec.structs.replace(options, transfer=msgspec.structs.replace(options.transfer, retries=0))
    try:
        return question(Upstream(once))
    except (OSError, ValueError) as error:  # the client could not be built (source.ca_file)
        raise UpmirrorError(str(error)) from None


def check_offered_languages(directory: ServerDirectory, options: Options) -> None:
    """After a first sync, a downstream's languages must be among those its upstream offers (one question to it;
    when it cannot be asked, the next sync checks)."""
    from upmirror.filters import check_languages  # noqa: PLC0415
    from upmirror.store import Store  # noqa: PLC0415

    if options.is_root:
        return
    with Store.open(directory.database_path) as store:
        synchronized = bool(store.sync_state().upstream_id)
    if not synchronized:
        return
    try:
        offered = ask_upstream(options, lambda upstream: upstream.server_info().languages)
    except UpmirrorError:
        return
    check_languages(options.languages, offered)


def server_categories(directory: ServerDirectory, options: Options) -> list[Category]:
    """The categories the server knows: those stored, else (a downstream before its first sync) the upstream's,
    asked for and not stored. Raises UpmirrorError when the upstream cannot be asked."""
    from upmirror.store import Store  # noqa: PLC0415

    with Store.open(directory.database_path) as store:
        categories = store.categories()
    if categories or options.is_root:
        return categories
    return ask_upstream(options, lambda upstream: upstream.categories("").categories)


def resolve_categories(directory: ServerDirectory, key: str, text: str, options: Options) -> list[str]:
    """Products or classifications named by title or id, checked against those the server knows (from its
    upstream, or its own catalog); a parent and its child together are stored as the parent alone."""
    from upmirror.filters import ProductTree, resolve_names  # noqa: PLC0415
    from upmirror.model import PRODUCT_KINDS  # noqa: PLC0415

    values = [item.strip() for item in text.split(",") if item.strip()]
    try:
        categories = server_categories(directory, options)
    except UpmirrorError as error:
        if all(GUID.match(value) for value in values):
            return values  # ids are taken as they are and checked by the first sync
        raise InputError(
            f"{key} {text!r}: names need the upstream's list, and it could not be asked ({error}); "
            "give ids, or synchronize once"
        ) from None
    kinds = PRODUCT_KINDS if key == "products" else ("classification",)
    known = {c.id: c.title for c in categories if c.kind in kinds}
    if not known and all(GUID.match(value) for value in values):
        return values  # nothing known yet: ids are taken as they are and checked by the first sync
    resolved = resolve_names(key.rstrip("s"), values, known)
    if key == "products":
        resolved = ProductTree([c for c in categories if c.kind in kinds]).normalize(resolved)
    return resolved
