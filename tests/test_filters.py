"""Product tree, classification and language semantics of the specification, checked on small hand-made trees."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from upmirror.errors import InputError
from upmirror.filters import ProductTree, check_languages, delta_flags, resolve_names


@dataclass(frozen=True)
class Node:
    id: str
    parent: str | None
    title: str


TREE = [
    Node("windows", None, "Windows"),
    Node("win10", "windows", "Windows 10"),
    Node("win11", "windows", "Windows 11"),
    Node("win11-24h2", "win11", "Windows 11, version 24H2"),
    Node("office", None, "Office"),
    Node("office2021", "office", "Office 2021"),
]


def test_a_parent_takes_its_present_children_and_grandchildren() -> None:
    assert ProductTree(TREE).expand(["windows"]) == {"windows", "win10", "win11", "win11-24h2"}


def test_a_parent_takes_children_added_later() -> None:
    selection = ["windows"]  # the stored selection is the parent itself
    later = ProductTree([*TREE, Node("win12", "windows", "Windows 12")])
    assert "win12" in later.expand(selection)
    assert later.is_selected("win12", selection)


def test_children_never_select_the_parent() -> None:
    tree = ProductTree(TREE)
    assert tree.expand(["win10", "win11"]) == {"win10", "win11", "win11-24h2"}
    assert not tree.is_selected("windows", ["win10", "win11"])
    assert not tree.is_selected("win12-not-yet", ["win10"])


def test_parent_and_child_together_are_the_parent_alone() -> None:
    tree = ProductTree(TREE)
    assert tree.normalize(["win11-24h2", "windows", "office2021"]) == ["windows", "office2021"]
    assert tree.expand(["windows", "win10"]) == tree.expand(["windows"])


def test_names_and_ids_resolve_and_unknown_values_are_named() -> None:
    known = {n.id: n.title for n in TREE}
    assert resolve_names("product", ["Windows 10", "office", "WINDOWS 11"], known) == ["win10", "office", "win11"]
    with pytest.raises(InputError, match=r"unknown product 'Windows 95'; allowed: .*Windows 10"):
        resolve_names("product", ["Windows 95"], known)


def test_languages_must_be_offered_by_the_upstream() -> None:
    check_languages(["en", "de"], ["en", "de", "fr"])
    with pytest.raises(InputError, match=r"language 'ja' is not offered by the upstream server; it offers: de, en"):
        check_languages(["en", "ja"], ["en", "de"])


def test_items_new_since_the_last_sync_are_asked_in_full() -> None:
    assert delta_flags(["windows", "office"], ["windows"]) == {"windows": True, "office": False}
    assert delta_flags(["en"], []) == {"en": False}
