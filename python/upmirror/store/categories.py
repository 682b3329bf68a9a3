"""The update source's categories in the store: companies, product families, products (a tree), classifications and
detectoids, each change taking a change number; the internal keys that updates and filters refer to them by."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from upmirror.errors import InputError
from upmirror.model import PARENT_KINDS, PRODUCT_KINDS, Category, category_decoder, msgpack_encoder
from upmirror.store.schema import StoreBase, parse_anchor


class Categories(StoreBase):
    """The category tree and classifications, and their internal keys."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        super().__init__(connection, path)
        # Category ID -> (internal key, kind) for storing updates; categories are few and change rarely.
        self._category_keys: dict[str, tuple[int, str]] = {}

    def add_categories(self, categories: Iterable[Category]) -> int:
        """Adds new categories and applies changed ones (one change number each); returns how many changed.
        A product's parent must already be stored or come earlier in ``categories``."""
        changed = 0
        self._category_keys.clear()
        with self.transaction():
            for category in categories:
                changed += self._add_category(category)
        return changed

    def _add_category(self, category: Category) -> bool:
        data = msgpack_encoder.encode(category)
        row = self.connection.execute("SELECT data FROM categories WHERE id = ?", (category.id,)).fetchone()
        if row is not None and row[0] == data:
            return False
        if category.parent is not None and self._category_kind(category.parent) not in PARENT_KINDS[category.kind]:
            allowed = " or ".join(PARENT_KINDS[category.kind]) or "no category"
            raise InputError(
                f"category {category.id} ({category.kind}) names parent {category.parent}: not a {allowed}"
            )
        self.connection.execute(
            "INSERT INTO categories (id, kind, parent, change, data) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, parent = excluded.parent, "
            "change = excluded.change, data = excluded.data",
            (category.id, category.kind, category.parent, self._next_change(), data),
        )
        return True

    def _category_key(self, category_id: str, kinds: tuple[str, ...]) -> int:
        """The internal key of a stored category of one of ``kinds``; anything else is bad input naming it."""
        known = self._category_keys.get(category_id)
        if known is None:
            row = self.connection.execute("SELECT cid, kind FROM categories WHERE id = ?", (category_id,)).fetchone()
            if row is not None:
                known = self._category_keys[category_id] = (int(row[0]), str(row[1]))
        if known is None or known[1] not in kinds:
            raise InputError(f"unknown {kinds[-1]} {category_id!r}")
        return known[0]

    def _category_kind(self, category_id: str) -> str | None:
        row = self.connection.execute("SELECT kind FROM categories WHERE id = ?", (category_id,)).fetchone()
        return None if row is None else str(row[0])

    def categories_since(self, anchor: str) -> tuple[int, list[Category]]:
        """Categories added or changed since ``anchor``, each kind after the kinds it may hang under (companies,
        families, products), so a reader meets every parent first (the tree is small)."""
        with self.snapshot() as current:
            since = parse_anchor(anchor, current)
            rows = self.connection.execute(
                "SELECT data FROM categories WHERE change > ? "
                "ORDER BY CASE kind WHEN 'family' THEN 1 WHEN 'product' THEN 2 ELSE 0 END, change",
                (since,),
            ).fetchall()
        return current, [category_decoder.decode(data) for (data,) in rows]

    def categories(self) -> list[Category]:
        return self.categories_since("")[1]

    def category(self, category_id: str) -> Category | None:
        row = self.connection.execute("SELECT data FROM categories WHERE id = ?", (category_id,)).fetchone()
        return None if row is None else category_decoder.decode(row[0])

    def _category_ids(self, ids: Iterable[str], kind: str, *, expand: bool) -> list[int]:
        """Internal keys of the named categories of ``kind`` (products: expanded to every descendant in the tree as
        it is now); an unknown ID is bad input naming it."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        kinds = PRODUCT_KINDS if kind == "product" else (kind,)
        rows = self.connection.execute(
            "SELECT id, cid FROM categories WHERE id IN (SELECT value FROM json_each(?)) "
            "AND kind IN (SELECT value FROM json_each(?))",
            (json.dumps(wanted), json.dumps(kinds)),
        ).fetchall()
        found: dict[str, int] = dict(rows)
        unknown = [category_id for category_id in wanted if category_id not in found]
        if unknown:
            raise InputError(
                f"unknown {kind} {unknown[0]!r}" + (f" (and {len(unknown) - 1} more)" * (len(unknown) > 1))
            )
        if not expand:
            return list(found.values())
        expanded = self.connection.execute(
            "WITH RECURSIVE tree(cid, id) AS ("
            " SELECT cid, id FROM categories WHERE cid IN (SELECT value FROM json_each(?))"
            " UNION SELECT c.cid, c.id FROM categories c JOIN tree ON c.parent = tree.id)"
            " SELECT cid FROM tree",
            (json.dumps(list(found.values())),),
        ).fetchall()
        return [cid for (cid,) in expanded]
