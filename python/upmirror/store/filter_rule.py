"""The filter rule of the store: which updates a downstream with a given filter must fetch (revisions requests), and
which drivers an inventory roll-up asks for (drivers requests), as SQL over the update tables, read lazily from one
snapshot.

Which updates a revisions request returns (the filter rule of WSUS synchronization). Let P be the products the
request names, each expanded to itself and all its descendants in the tree as it is now (so a parent stands for its
present and future children), C the classifications and L the languages. An update (its latest revision) *matches*
when it has a product in P, its classification is in C, and it has a language in L or is language-neutral. Items
with ``delta`` false were newly added to the downstream's filter; call their parts P_new, C_new, L_new. The answer
lists every non-expired matching update that

  - changed since the anchor (a new update or a new revision: ``change > anchor``), or
  - matches through a new item: it has a product in P_new, or its classification is in C_new, or it carries a
    language in L_new,

so a newly selected product, classification or language brings in full everything the whole filter now accepts
through it (a new language brings every selected update carrying that language), while the rest stays incremental.
Expired lists the matching updates whose expiration came after the anchor.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

from upmirror.errors import InputError
from upmirror.model import DriversRequest, FilterItem, RevisionsRequest
from upmirror.store.schema import column_pages, pages, parse_anchor
from upmirror.store.updates import Updates


class Listing(NamedTuple):
    """The answer to a revisions or drivers request, read lazily from one consistent snapshot: ``anchor`` is the
    change counter of that snapshot; ``revisions`` yields pages of (update id, revision); ``expired`` pages of
    update ids."""

    anchor: int
    revisions: Iterator[list[tuple[str, int]]]
    expired: Iterator[list[str]]


def _ids(items: Sequence[FilterItem], *, fresh: bool | None) -> str:
    """The IDs of the filter items (all, or only those new to the filter when ``fresh``) as a JSON array for SQL."""
    return json.dumps([item.id for item in items if fresh is None or (not item.delta) == fresh])


# The filter rule's tests of an update ``u``, each against a parameter holding a JSON array of category keys or
# language codes.
def _has_product(keys: str) -> str:
    return (
        "EXISTS (SELECT 1 FROM update_products p WHERE p.uid = u.uid"  # noqa: S608 (fixed names)
        f" AND p.product IN (SELECT value FROM json_each(:{keys})))"
    )


def _in_classification(keys: str) -> str:
    return f"u.classification IN (SELECT value FROM json_each(:{keys}))"  # noqa: S608 (fixed names)


def _has_language(codes: str) -> str:
    return (
        "EXISTS (SELECT 1 FROM update_languages l WHERE l.uid = u.uid"  # noqa: S608 (fixed names)
        f" AND l.language IN (SELECT value FROM json_each(:{codes})))"
    )


class FilterRule(Updates):
    """Answers revisions and drivers requests (the rule above)."""

    @contextmanager
    def revisions_since(self, request: RevisionsRequest) -> Iterator[Listing]:
        """The updates a downstream with this filter must fetch, and those that expired, since its anchor."""
        with self.snapshot() as current:
            since = parse_anchor(request.anchor, current)
            offered = set(self.languages())
            unknown = [item.id for item in request.languages if item.id not in offered]
            if unknown:
                raise InputError(f"language {unknown[0]!r} is not offered by this server")
            parameters = {
                "since": since,
                "products": self._items(request.products, "product", fresh=None),
                "products_new": self._items(request.products, "product", fresh=True),
                "classifications": self._items(request.classifications, "classification", fresh=None),
                "classifications_new": self._items(request.classifications, "classification", fresh=True),
                "languages": _ids(request.languages, fresh=None),
                "languages_new": _ids(request.languages, fresh=True),
            }
            matches = (
                f"{_has_product('products')} AND {_in_classification('classifications')}"
                f" AND (u.neutral OR {_has_language('languages')})"
            )
            tests_of_new_items = [
                test(f"{name}_new")
                for test, name, items in (
                    (_has_product, "products", request.products),
                    (_in_classification, "classifications", request.classifications),
                    (_has_language, "languages", request.languages),
                )
                if any(not item.delta for item in items)
            ]
            # Without new items the answer is only what changed: then the change index drives the query, so a sync
            # with nothing new costs almost nothing whatever the catalog's size.
            wanted = " OR ".join(["u.change > :since", *tests_of_new_items])
            revisions = self.connection.execute(
                f"SELECT u.id, u.revision FROM updates u WHERE NOT u.expired AND {matches}"  # noqa: S608 (fixed SQL)
                f" AND ({wanted}) ORDER BY u.uid",
                parameters,
            )
            expired = self.connection.execute(
                f"SELECT u.id FROM updates u WHERE u.expired AND u.change > :since AND {matches} ORDER BY u.uid",  # noqa: S608
                parameters,
            )
            yield Listing(current, pages(revisions), column_pages(expired))

    def _items(self, items: Sequence[FilterItem], kind: str, *, fresh: bool | None) -> str:
        """The internal keys of the filter items (all, or only the new ones when ``fresh``) as a JSON array."""
        chosen = [item.id for item in items if fresh is None or (not item.delta) == fresh]
        return json.dumps(self._category_ids(chosen, kind, expand=kind == "product"))

    @contextmanager
    def drivers_since(self, request: DriversRequest) -> Iterator[Listing]:
        """Driver updates for an inventory roll-up: those with a reported hardware ID and, when they target
        particular computers, a reported computer hardware ID; changed since the anchor or matching a newly
        reported ID (the same delta rule as revisions)."""
        with self.snapshot() as current:
            since = parse_anchor(request.anchor, current)
            parameters = {
                "since": since,
                "hardware": _ids(request.hardware_ids, fresh=None),
                "hardware_new": _ids(request.hardware_ids, fresh=True),
                "computers": _ids(request.computer_hardware_ids, fresh=None),
                "computers_new": _ids(request.computer_hardware_ids, fresh=True),
            }
            candidates = (
                "WITH candidates(uid) AS (SELECT DISTINCT h.uid FROM hardware_ids h"
                " WHERE h.hardware_id IN (SELECT value FROM json_each(:hardware)))"
                " SELECT {columns} FROM candidates JOIN updates u ON u.uid = candidates.uid"
                " WHERE (NOT EXISTS (SELECT 1 FROM computer_hardware_ids c WHERE c.uid = u.uid)"
                " OR EXISTS (SELECT 1 FROM computer_hardware_ids c WHERE c.uid = u.uid"
                " AND c.computer_hardware_id IN (SELECT value FROM json_each(:computers))))"
                " AND {condition} ORDER BY u.uid"
            )
            through_new_id = (
                "EXISTS (SELECT 1 FROM hardware_ids h WHERE h.uid = u.uid"
                " AND h.hardware_id IN (SELECT value FROM json_each(:hardware_new)))"
                " OR EXISTS (SELECT 1 FROM computer_hardware_ids c WHERE c.uid = u.uid"
                " AND c.computer_hardware_id IN (SELECT value FROM json_each(:computers_new)))"
            )
            revisions = self.connection.execute(
                candidates.format(
                    columns="u.id, u.revision", condition=f"NOT u.expired AND (u.change > :since OR {through_new_id})"
                ),
                parameters,
            )
            expired = self.connection.execute(
                candidates.format(columns="u.id", condition="u.expired AND u.change > :since"), parameters
            )
            yield Listing(current, pages(revisions), column_pages(expired))
