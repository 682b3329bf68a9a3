"""The filter rule of WSUS synchronization computed independently of the store, from plain update records: what a
revisions request must return. Tests compare the store's and the server's answers with this."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from upmirror.model import Category, RevisionsRequest, Update
from upmirror.store import Store


@dataclass(frozen=True)
class Expected:
    revisions: set[tuple[str, int]]
    expired: set[str]


def descendants(categories: Iterable[Category], roots: Iterable[str]) -> set[str]:
    children: dict[str, list[str]] = {}
    for category in categories:
        if category.parent is not None:
            children.setdefault(category.parent, []).append(category.id)
    found: set[str] = set()
    stack = list(roots)
    while stack:
        current = stack.pop()
        if current not in found:
            found.add(current)
            stack += children.get(current, [])
    return found


def expected_answer(
    updates: Iterable[Update], categories: list[Category], request: RevisionsRequest, changed: set[str] | None
) -> Expected:
    """``changed``: ids of updates whose latest revision or expiration came after the request's anchor (None: all,
    for a first sync)."""
    products = descendants(categories, (i.id for i in request.products))
    products_new = descendants(categories, (i.id for i in request.products if not i.delta))
    classes = {i.id for i in request.classifications}
    classes_new = {i.id for i in request.classifications if not i.delta}
    languages = {i.id for i in request.languages}
    languages_new = {i.id for i in request.languages if not i.delta}
    revisions, expired = set(), set()
    for update in updates:
        matches = (
            bool(products.intersection(update.products))
            and update.classification in classes
            and (not update.languages or bool(languages.intersection(update.languages)))
        )
        if not matches:
            continue
        is_changed = changed is None or update.id in changed
        if update.expired:
            if is_changed:
                expired.add(update.id)
            continue
        through_new = (
            bool(products_new.intersection(update.products))
            or update.classification in classes_new
            or bool(languages_new.intersection(update.languages))
        )
        if is_changed or through_new:
            revisions.add((update.id, update.revision))
    return Expected(revisions, expired)


def latest_records(store: Store) -> list[Update]:
    """The latest revision of every stored update, in storage order."""
    records = []
    for update_id, _, _ in store.latest_revisions():
        record = store.update(update_id)
        assert record is not None
        records.append(record)
    return records
