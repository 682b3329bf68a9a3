"""The metadata store: categories, every revision of every update, approvals, downstream tokens, client inventory
and the synchronization history, in SQLite (WAL), with versioned schema migrations and indexes shaped by what the
filters and the sync protocol ask.

``Store`` is one connection to it, combining one class per part: schema.py (the base: migrations, opening,
transactions, snapshots and anchors, paging), categories.py, updates.py, filter_rule.py (what a downstream's filter
selects), approvals.py, synchronization.py (needed files, sync state and history), cleanup.py, inventory.py,
tokens.py and packages.py (export/import); failures.py says what a failure of local storage stands for."""

from upmirror.model import TokenInfo, TokenRole
from upmirror.store.approvals import Approvals
from upmirror.store.cleanup import Cleanup
from upmirror.store.failures import storage_failures_as_errors
from upmirror.store.filter_rule import FilterRule, Listing
from upmirror.store.inventory import Inventory
from upmirror.store.packages import Packages
from upmirror.store.schema import PAGE_ROWS, SCHEMA_VERSION, parse_anchor
from upmirror.store.synchronization import Synchronization
from upmirror.store.tokens import Tokens

__all__ = [
    "PAGE_ROWS",
    "SCHEMA_VERSION",
    "Listing",
    "Store",
    "TokenInfo",
    "TokenRole",
    "parse_anchor",
    "storage_failures_as_errors",
]


class Store(FilterRule, Approvals, Packages, Synchronization, Cleanup, Inventory, Tokens):
    """One connection to a server's metadata database, with every part of the store. Not shared between threads:
    open one per thread."""
