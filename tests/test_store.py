"""The metadata store: the filter rule (against an independent computation, on a generated and revised catalog),
anchors, revisions, approvals, tokens, drivers, migrations, and memory that stays flat with the catalog's size."""

from __future__ import annotations

import datetime
import json
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.catalog_rules import expected_answer, latest_records
from upmirror import wsus
from upmirror.catalog import generate, tree
from upmirror.errors import InputError
from upmirror.model import Category, DriversRequest, FilterItem, RevisionsRequest, Update
from upmirror.store import SCHEMA_VERSION, Store


@dataclass
class RevisedCatalog:
    store: Store
    before_anchor: str
    categories: list[Category]
    updates: list[Update]  # latest revisions after the revision
    changed: set[str]  # ids new, revised or expired since before_anchor


@pytest.fixture(scope="module")
def revised(tmp_path_factory: pytest.TempPathFactory) -> RevisedCatalog:
    root = tmp_path_factory.mktemp("catalog")
    store = Store.open(root / "upmirror.db", create=True)
    generate.generate(store, root / "content", updates=600, content_size=2 << 20, seed=11)
    before = {u.id: (u.revision, u.expired) for u in latest_records(store)}
    before_anchor = str(store.anchor())
    generate.revise(store, root / "content", seed=3)
    updates = latest_records(store)
    changed = {u.id for u in updates if before.get(u.id) != (u.revision, u.expired)}
    return RevisedCatalog(store, before_anchor, store.categories(), updates, changed)


def listing(store: Store, request: RevisionsRequest) -> tuple[set[tuple[str, int]], set[str]]:
    with store.revisions_since(request) as result:
        revisions = {(i, r) for page in result.revisions for i, r in page}
        expired = {i for page in result.expired for i in page}
    return revisions, expired


def items(ids: list[str], flags: list[bool]) -> list[FilterItem]:
    return [FilterItem(i, delta) for i, delta in zip(ids, flags, strict=False)]


PRODUCT_IDS = [tree.category_id(t) for t in tree.FAMILIES] + [
    tree.category_id(p) for ps in tree.FAMILIES.values() for p in ps
]


@settings(max_examples=60, deadline=None)
@given(
    products=st.lists(st.sampled_from(PRODUCT_IDS), min_size=1, max_size=6, unique=True),
    classifications=st.lists(st.sampled_from(list(wsus.CLASSIFICATIONS.values())), min_size=1, unique=True),
    languages=st.lists(st.sampled_from(tree.LANGUAGES), min_size=1, max_size=6, unique=True),
    flags=st.lists(st.booleans(), min_size=20, max_size=20),
    incremental=st.booleans(),
)
def test_revisions_follow_the_filter_rule(
    revised: RevisedCatalog,
    *,
    products: list[str],
    classifications: list[str],
    languages: list[str],
    flags: list[bool],
    incremental: bool,
) -> None:
    request = RevisionsRequest(
        anchor=revised.before_anchor if incremental else "",
        products=items(products, flags[:6]),
        classifications=items(classifications, flags[6:17]),
        languages=items(languages, flags[14:]),
    )
    expected = expected_answer(revised.updates, revised.categories, request, revised.changed if incremental else None)
    assert listing(revised.store, request) == (expected.revisions, expected.expired)


def test_a_parent_selected_before_its_child_existed_brings_the_childs_updates(revised: RevisedCatalog) -> None:
    windows_12 = tree.category_id("Windows 12")
    child = revised.store.category(windows_12)
    assert child is not None, "revise added a product under Windows"
    assert child.parent == wsus.WINDOWS_FAMILY
    in_child = {(u.id, u.revision) for u in revised.updates if windows_12 in u.products and not u.expired}
    assert in_child
    request = RevisionsRequest(
        anchor=revised.before_anchor,
        products=[FilterItem(wsus.WINDOWS_FAMILY, True)],
        classifications=[FilterItem(c, True) for c in wsus.CLASSIFICATIONS.values()],
        languages=[FilterItem(lang, True) for lang in tree.LANGUAGES],
    )
    revisions, _ = listing(revised.store, request)
    assert in_child <= revisions
    # The new product and its detectoid are the categories changed since the anchor.
    _, categories = revised.store.categories_since(revised.before_anchor)
    assert sorted((c.kind, c.title) for c in categories) == [
        ("detectoid", "Windows 12 is installed"),
        ("product", "Windows 12"),
    ]


def test_a_newly_selected_language_brings_every_selected_update_carrying_it(revised: RevisedCatalog) -> None:
    request = RevisionsRequest(
        anchor=revised.before_anchor,
        products=[FilterItem(wsus.WINDOWS_FAMILY, True)],
        classifications=[FilterItem(wsus.SECURITY_UPDATES, True)],
        languages=[FilterItem("en", True), FilterItem("fr", False)],
    )
    revisions, _ = listing(revised.store, request)
    windows = {tree.category_id(p) for p in [*tree.FAMILIES["Windows"], "Windows 12"]}
    carrying_fr = {
        (u.id, u.revision)
        for u in revised.updates
        if "fr" in u.languages
        and not u.expired
        and u.classification == wsus.SECURITY_UPDATES
        and windows.intersection(u.products)
    }
    assert carrying_fr
    assert carrying_fr <= revisions
    unchanged_english_only = {
        (u.id, u.revision) for u in revised.updates if u.languages == ["en"] and u.id not in revised.changed
    }
    assert not unchanged_english_only & revisions, "updates matching only through old items stay incremental"


def test_anchors_are_checked(revised: RevisedCatalog) -> None:
    store = revised.store
    for anchor in ("x", "-1", "1.5", " 1", "1" * 30, "٣"):
        with pytest.raises(InputError, match="malformed"):
            listing(store, RevisionsRequest(anchor=anchor))
    with pytest.raises(InputError, match="ahead of this server"):
        listing(store, RevisionsRequest(anchor=str(store.anchor() + 1)))
    with pytest.raises(InputError, match="ahead of this server"):
        store.approvals_since(str(store.anchor() + 1))
    revisions, expired = listing(store, RevisionsRequest(anchor=str(store.anchor())))
    assert revisions == set()
    assert expired == set()


def test_unknown_filter_items_are_refused_by_name(revised: RevisedCatalog) -> None:
    with pytest.raises(InputError, match="unknown product '00000000-0000-0000-0000-000000000000'"):
        listing(revised.store, RevisionsRequest(products=[FilterItem("00000000-0000-0000-0000-000000000000")]))
    with pytest.raises(InputError, match="unknown classification"):
        listing(revised.store, RevisionsRequest(classifications=[FilterItem(wsus.WINDOWS_FAMILY)]))
    with pytest.raises(InputError, match="language 'xx' is not offered"):
        listing(revised.store, RevisionsRequest(languages=[FilterItem("xx")]))


# ---- a small hand-made store for the exact cases ----

W10, W11 = tree.category_id("Windows 10"), tree.category_id("Windows 11")
HW = "PCI\\VEN_8086&DEV_1234"
COMPUTER = "11111111-2222-4333-8444-555555555555"


def record(number: int, revision: int = 1, **fields: object) -> Update:
    values: dict[str, object] = {
        "id": f"00000000-0000-4000-8000-{number:012d}",
        "revision": revision,
        "title": f"update {number}",
        "classification": wsus.SECURITY_UPDATES,
        "products": [W10],
        "release_date": datetime.date(2026, 1, 1),
    }
    return Update(**(values | fields))  # type: ignore[arg-type]


@pytest.fixture
def small(tmp_path: Path) -> Store:
    store = Store.open(tmp_path / "upmirror.db", create=True)
    store.add_categories(tree.categories())
    return store


def test_every_revision_is_kept_and_the_newest_describes_the_update(small: Store) -> None:
    assert small.add_updates([record(1), record(1, revision=3, products=[W11])]) == 2
    assert small.add_updates([record(1, revision=3, products=[W11])]) == 0, "adding is idempotent"
    assert small.add_updates([record(1, revision=2)]) == 1, "an older revision is kept too"
    assert small.revision_count() == 3
    latest = small.update(record(1).id)
    assert latest is not None
    assert (latest.revision, latest.products) == (3, [W11])
    old = small.update(record(1).id, 1)
    assert old is not None
    assert old.products == [W10]
    revisions, _ = listing(
        small, RevisionsRequest(products=[FilterItem(W10)], classifications=[FilterItem(wsus.SECURITY_UPDATES)])
    )
    assert revisions == set(), "filters see the newest revision only"


def test_every_change_moves_the_anchor(small: Store) -> None:
    start = small.anchor()
    small.add_updates([record(1), record(2)])
    assert small.anchor() == start + 2
    small.expire([record(1).id])
    small.approve(record(2).id)
    small.approve(record(2).id)  # no change: already approved
    small.add_categories([tree.product("Office", "Office 2030")])
    small.add_categories([tree.product("Office", "Office 2030")])  # unchanged: no change
    assert small.anchor() == start + 5
    expired = small.update(record(1).id)
    assert expired is not None
    assert expired.expired


def test_unknown_categories_and_updates_are_refused(small: Store) -> None:
    with pytest.raises(InputError, match="unknown classification"):
        small.add_updates([record(1, classification=W10)])
    with pytest.raises(InputError, match="unknown product"):
        small.add_updates([record(1, products=["00000000-0000-4000-8000-000000000009"])])
    assert small.update_count() == 0, "the failed batch left nothing behind"
    for action in (small.approve, small.decline, small.reinstate):
        with pytest.raises(InputError, match="unknown update"):
            action(record(7).id)
    with pytest.raises(InputError, match=r"names parent .*: not a family or company"):
        small.add_categories([Category(id=COMPUTER, kind="product", title="orphan", parent=W10)])


def test_approvals_and_declines_since_an_anchor(small: Store) -> None:
    small.add_updates([record(1), record(2), record(3)])
    small.approve(record(1).id)
    anchor = str(small.anchor())
    small.decline(record(2).id)
    small.reinstate(record(2).id)
    small.approve(record(3).id)
    _, everything = small.approvals_since("")
    assert {(a.update_id, a.action) for a in everything} == {
        (record(1).id, "approved"),
        (record(2).id, "not_approved"),
        (record(3).id, "approved"),
    }
    _, since = small.approvals_since(anchor)
    assert [(a.update_id, a.action) for a in since] == [(record(2).id, "not_approved"), (record(3).id, "approved")]
    assert small.approval(record(2).id) == "not_approved"


def test_tokens_are_stored_hashed_and_can_be_revoked(small: Store, tmp_path: Path) -> None:
    token = small.add_token("branch-1")
    assert small.token_role(token) == "downstream"
    assert small.token_role(token + "x") is None
    with pytest.raises(InputError, match="already exists"):
        small.add_token("branch-1")
    with pytest.raises(InputError, match="not allowed"):
        small.add_token("bad name")
    raw = (tmp_path / "upmirror.db").read_bytes() + (tmp_path / "upmirror.db-wal").read_bytes()
    assert token.encode() not in raw, "only the token's hash is stored"
    small.revoke_token("branch-1")
    assert small.token_role(token) is None
    with pytest.raises(InputError, match="no token named"):
        small.revoke_token("branch-1")


def test_drivers_match_reported_hardware_ids(small: Store) -> None:
    plain = record(1, classification=wsus.CLASSIFICATIONS["Drivers"], hardware_ids=[HW])
    targeted = record(
        2, classification=wsus.CLASSIFICATIONS["Drivers"], hardware_ids=[HW], computer_hardware_ids=[COMPUTER]
    )
    other = record(3, classification=wsus.CLASSIFICATIONS["Drivers"], hardware_ids=["USB\\VID_0001&PID_0002"])
    small.add_updates([plain, targeted, other])

    def drivers(request: DriversRequest) -> set[str]:
        with small.drivers_since(request) as result:
            return {i for page in result.revisions for i, _ in page}

    assert drivers(DriversRequest(hardware_ids=[FilterItem(HW)])) == {plain.id}
    both = DriversRequest(hardware_ids=[FilterItem(HW)], computer_hardware_ids=[FilterItem(COMPUTER)])
    assert drivers(both) == {plain.id, targeted.id}
    anchor = str(small.anchor())
    assert drivers(DriversRequest(anchor=anchor, hardware_ids=[FilterItem(HW)])) == set()
    fresh = DriversRequest(anchor=anchor, hardware_ids=[FilterItem(HW), FilterItem(other.hardware_ids[0], False)])
    assert drivers(fresh) == {other.id}, "a newly reported hardware ID brings its drivers in full"


def test_schema_is_versioned(small: Store, tmp_path: Path) -> None:
    path = tmp_path / "upmirror.db"
    small.close()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(InputError, match="newer than this upmirror"):
        Store.open(path)
    with pytest.raises(InputError, match="no metadata database"):
        Store.open(tmp_path / "missing.db")


MEMORY_PROBE = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    from upmirror import wsus
    from upmirror.catalog import tree
    from upmirror.model import FilterItem, RevisionsRequest
    from upmirror.server.app import listing_body
    from upmirror.store import Store

    store = Store.open(Path(sys.argv[1]))
    request = RevisionsRequest(
        products=[FilterItem(tree.category_id(t), False) for t in tree.FAMILIES],
        classifications=[FilterItem(c, False) for c in wsus.CLASSIFICATIONS.values()],
        languages=[FilterItem(lang, False) for lang in store.languages()],
    )
    with store.revisions_since(request) as listing:  # warm up imports and caches on the smallest answer
        pass
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with store.revisions_since(request) as listing:
        body = listing_body(listing)
    listed = body.length
    body.close()
    for update_id, revision, expired in store.latest_revisions():
        pass
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"growth_kib": after - before, "bytes": listed}))
    """
)


def synthetic_store(path: Path, count: int) -> None:
    """A store of ``count`` updates built directly (no files): the generator's records without content."""
    store = Store.open(path, create=True)
    store.add_categories(tree.categories())
    products = [tree.category_id(p) for ps in tree.FAMILIES.values() for p in ps]
    classes = list(wsus.CLASSIFICATIONS.values())
    batch = []
    for number in range(count):
        batch.append(
            record(
                number,
                products=[products[number % len(products)]],
                classification=classes[number % len(classes)],
                languages=[tree.LANGUAGES[number % 30]] if number % 3 else [],
            )
        )
        if len(batch) == 5000:
            store.add_updates(batch)
            batch.clear()
    store.add_updates(batch)
    store.close()


def probe_memory(path: Path) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(path)], capture_output=True, text=True, timeout=100, check=True
    )
    result: dict[str, int] = json.loads(done.stdout)
    return result


@pytest.mark.timeout(300)
def test_memory_does_not_grow_with_the_catalog(tmp_path: Path) -> None:
    synthetic_store(tmp_path / "small.db", 10_000)
    synthetic_store(tmp_path / "large.db", 100_000)
    small = probe_memory(tmp_path / "small.db")
    large = probe_memory(tmp_path / "large.db")
    assert large["bytes"] > 9 * small["bytes"], "the large listing really is ten times the size"
    # Holding the listing in Python would cost about 20 MB more for 90,000 more updates.
    assert large["growth_kib"] - small["growth_kib"] < 8 * 1024, (small, large)
