"""Which updates a server synchronizes: the product tree, classifications and languages as WSUS defines them.

- Selecting a product family (a parent) selects every product under it, present and future: the selection stores
  the parent, and expansion happens against the tree as it is at each synchronization.
- Selecting children never selects the parent; a parent selected with its child is the same as the parent alone.
- A downstream server may select only languages its upstream offers.
- A filter item added since the last synchronization is asked for in full (delta = false); the others stay
  incremental.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from upmirror.errors import InputError


class TreeNode(Protocol):
    """What the filters need of a category record."""

    @property
    def id(self) -> str: ...
    @property
    def parent(self) -> str | None: ...
    @property
    def title(self) -> str: ...


class ProductTree:
    """The product families and products as the upstream currently offers them."""

    def __init__(self, categories: Iterable[TreeNode]) -> None:
        self.nodes: dict[str, TreeNode] = {c.id: c for c in categories}
        self.children: dict[str, list[str]] = {}
        for node in self.nodes.values():
            if node.parent is not None:
                self.children.setdefault(node.parent, []).append(node.id)

    def descendants(self, product_id: str) -> set[str]:
        found: set[str] = set()
        stack = [product_id]
        while stack:
            for child in self.children.get(stack.pop(), []):
                if child not in found:
                    found.add(child)
                    stack.append(child)
        return found

    def expand(self, selected: Iterable[str]) -> set[str]:
        """The selection with every descendant of each selected item, as the tree is now."""
        expanded: set[str] = set()
        for product_id in selected:
            expanded.add(product_id)
            expanded |= self.descendants(product_id)
        return expanded

    def ancestors(self, product_id: str) -> list[str]:
        chain: list[str] = []
        node = self.nodes.get(product_id)
        while node is not None and node.parent is not None and node.parent not in chain:
            chain.append(node.parent)
            node = self.nodes.get(node.parent)
        return chain

    def is_selected(self, product_id: str, selected: Iterable[str]) -> bool:
        """Selected itself, or through a selected ancestor."""
        chosen = set(selected)
        return product_id in chosen or any(a in chosen for a in self.ancestors(product_id))

    def normalize(self, selected: Iterable[str]) -> list[str]:
        """Drops items already covered by a selected ancestor (parent + child is the parent alone)."""
        chosen = list(dict.fromkeys(selected))
        return [p for p in chosen if not any(a in chosen for a in self.ancestors(p))]


def resolve_names(kind: str, values: Iterable[str], known: Mapping[str, str]) -> list[str]:
    """Turns names or ids given by the administrator into ids; ``known`` maps id -> title. An unknown value is an
    InputError naming it and what is allowed."""
    by_title = {title.casefold(): identifier for identifier, title in known.items()}
    resolved: list[str] = []
    for value in values:
        if value in known:
            resolved.append(value)
        elif value.casefold() in by_title:
            resolved.append(by_title[value.casefold()])
        else:
            allowed = ", ".join(sorted(known.values())) or "none (synchronize once to learn the upstream's list)"
            raise InputError(f"unknown {kind} {value!r}; allowed: {allowed}")
    return list(dict.fromkeys(resolved))


def check_languages(selected: Iterable[str], offered: Iterable[str]) -> None:
    """A downstream server may select only languages its upstream offers."""
    offered_set = set(offered)
    missing = [language for language in selected if language not in offered_set]
    if missing:
        offers = ", ".join(sorted(offered_set))
        raise InputError(f"language {missing[0]!r} is not offered by the upstream server; it offers: {offers}")


def delta_flags(current: Iterable[str], last_synced: Iterable[str]) -> dict[str, bool]:
    """For each selected item, whether it can be asked for incrementally (it was in the last successful sync's
    filter) or must be asked for in full (it is new since then)."""
    previous = set(last_synced)
    return {item: item in previous for item in current}
