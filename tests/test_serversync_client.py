"""upmirror as the downstream of a WSUS-protocol upstream (MS-WSUSSS): a real ``upmirror serve`` answers as a WSUS
server would, and tests/support/soap_faults.py stands between the two, forwarding every request and answering chosen
operations with faults or malformed answers, and counting what the downstream asked. Every sync is the real
``upmirror sync --json``; expected sets come from the upstream's own store through tests/catalog_rules.py."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple
from xml.sax.saxutils import escape

import pytest

from tests.catalog_rules import Expected, latest_records
from tests.support.cli import ok
from tests.support.inventory import matching_drivers, post, report
from tests.support.proxy import TinyProxy
from tests.support.servers import (
    content_of,
    expected_selection,
    history,
    make_downstream,
    make_root,
    stored,
    sync,
)
from tests.support.soap_faults import MALFORMED, SoapFaultProxy
from tests.support.tls import make_pki
from tests.support.upmirror_server import UpmirrorServer, add_token
from upmirror import content_relative_path, wsus
from upmirror.model import DriverSet, FileRef
from upmirror.store import Store

WSUS = ("source.protocol", "wsus")
PROXY_PASSWORD = "wsus-Pr0xy"


def held(down: Path) -> Expected:
    updates = stored(down)
    return Expected(
        {(u.id, u.revision) for u in updates.values() if not u.expired}, {u.id for u in updates.values() if u.expired}
    )


def assert_holds_what_it_selects(root: Path, down: Path, *, first_sync: bool = True) -> None:
    """The downstream holds the selected updates, and their files, verified; after a first sync nothing else (later,
    files of updates that expired since stay until a cleanup)."""
    expected = expected_selection(root, down)
    assert expected.revisions, "the filter selects updates of the catalog"
    assert held(down) == expected
    needed = {
        content_relative_path(f.sha1, f.extension)
        for u in stored(down).values()
        if not u.expired
        for f in u.files
        if not f.express and (not f.languages or "en" in f.languages)
    }
    assert needed <= set(content_of(down))
    if first_sync:
        assert needed == set(content_of(down))
    for relative in content_of(down):
        data = (down / "content" / relative).read_bytes()
        assert hashlib.sha1(data).hexdigest().upper() == Path(relative).stem


def update_count(down: Path) -> int:
    with Store.open(down / "upmirror.db") as store:
        return sum(1 for _ in store.latest_revisions())


def needed_file(root: Path, down: Path) -> FileRef:
    """A file the downstream's filter needs from the upstream's catalog (of an unexpired, selected update)."""
    expected = expected_selection(root, down)
    with Store.open(root / "upmirror.db") as store:
        updates = {u.id: u for u in latest_records(store)}
    return next(
        f
        for update_id, _ in sorted(expected.revisions)
        for f in updates[update_id].files
        if not f.express and not f.languages
    )


class Served(NamedTuple):
    root: Path
    token: str
    proxy: SoapFaultProxy


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A root catalog served by ``upmirror serve`` behind the fault-injecting proxy."""
    root = make_root(tmp_path_factory.mktemp("wsus-upstream") / "root", updates=300, content="8M", seed=31)
    token = add_token(root, "wsus-downstream")
    with UpmirrorServer(root, token=token) as server, SoapFaultProxy(server.url) as proxy:
        yield Served(root, token, proxy)


@pytest.fixture
def upstream(served: Served) -> Served:
    """The module's upstream with the proxy's plans and counters cleared."""
    served.proxy.reset()
    return served


def downstream(upstream: Served, path: Path) -> Path:
    return make_downstream(path, upstream.proxy.url, upstream.token, WSUS)


@contextmanager
def own_upstream(tmp_path: Path, seed: int, *options: str, updates: int = 300) -> Iterator[Served]:
    """A root of its own (server options ``options`` as key, value, ...) served behind a fault-injecting proxy."""
    root = make_root(tmp_path / "root", updates=updates, content="8M", seed=seed)
    token = add_token(root)
    if options:
        ok("options", "set", "--dir", root, *options)
    with UpmirrorServer(root, token=token) as server, SoapFaultProxy(server.url) as proxy:
        yield Served(root, token, proxy)


# ---- full and incremental ----


def test_a_full_then_an_incremental_sync_hold_what_the_filter_selects(tmp_path: Path) -> None:
    with own_upstream(tmp_path, 32) as (root, token, proxy):
        # The company (every family, through the tree) and every classification: the month of change below then
        # revises, expires and adds to the selection whatever the seed draws.
        down = make_downstream(
            tmp_path / "down",
            proxy.url,
            token,
            WSUS,
            ("products", wsus.MICROSOFT_COMPANY),
            ("classifications", ",".join(wsus.CLASSIFICATIONS)),
        )
        code, record, stderr = sync(down)
        assert code == 0, stderr
        assert record["result"] == "succeeded"
        assert_holds_what_it_selects(root, down)
        assert proxy.calls["GetCookie"] == 1
        assert proxy.content, "content came through the upstream's /Content"

        with Store.open(root / "upmirror.db") as store:
            before = {u.id: (u.revision, u.expired) for u in latest_records(store)}
        ok("catalog", "revise", root, "--seed", "33")
        with Store.open(root / "upmirror.db") as store:
            changed = {u.id for u in latest_records(store) if before.get(u.id) != (u.revision, u.expired)}
        proxy.reset()
        code, record, stderr = sync(down)
        assert code == 0, stderr
        assert_holds_what_it_selects(root, down, first_sync=False)
        assert record["new_updates"] > 0
        assert record["revised_updates"] > 0
        assert record["expired_updates"] > 0
        # Delta: the listing passed the anchor back, and only changed updates (and categories) were asked for.
        listings = [body for operation, body in proxy.bodies if operation == "GetRevisionIdList"]
        assert listings
        assert all(b"<Anchor>" in body for body in listings)
        with Store.open(root / "upmirror.db") as store:
            categories = {c.id for c in store.categories()}
        asked = {update_id for batch in proxy.update_ids for update_id in batch}
        assert asked - categories <= changed
        assert asked - categories, "the revision brought changes the filter selects"


# ---- fault reactions ----


def test_invalid_cookie_authenticates_again_and_the_sync_succeeds(upstream: Served, tmp_path: Path) -> None:
    proxy = upstream.proxy
    down = downstream(upstream, tmp_path / "down")
    proxy.plan("GetRevisionIdList", "InvalidCookie", after=1)
    code, _, stderr = sync(down)
    assert code == 0, stderr
    assert proxy.planned["GetRevisionIdList"] == 1
    assert proxy.calls["GetCookie"] == 2
    assert proxy.calls["GetAuthorizationCookie"] == 2
    assert_holds_what_it_selects(upstream.root, down)


def test_server_busy_backs_off_and_the_sync_succeeds(upstream: Served, tmp_path: Path) -> None:
    proxy = upstream.proxy
    down = downstream(upstream, tmp_path / "down")
    proxy.plan("GetUpdateData", "ServerBusy", times=2, after=1)
    code, _, stderr = sync(down)
    assert code == 0, stderr
    assert proxy.planned["GetUpdateData"] == 2
    assert proxy.calls["GetUpdateData"] == len(proxy.update_ids) + 2
    assert proxy.calls["GetCookie"] == 1
    assert_holds_what_it_selects(upstream.root, down)


def test_server_changed_resets_the_anchors_and_the_sync_is_made_in_full(upstream: Served, tmp_path: Path) -> None:
    proxy = upstream.proxy
    down = downstream(upstream, tmp_path / "down")
    assert sync(down)[0] == 0
    proxy.reset()
    proxy.plan("GetRevisionIdList", "ServerChanged")
    code, record, stderr = sync(down)
    assert code == 0, stderr
    assert record["result"] == "succeeded"
    listings = [body for operation, body in proxy.bodies if operation == "GetRevisionIdList"]
    assert b"<Anchor>" in listings[0], "the incremental sync passed its anchor"
    assert len(listings) == 3, "the refused listing, then categories and updates again"
    assert all(b"<Anchor>" not in body for body in listings[1:]), "after ServerChanged: from the beginning"
    assert all(b"<Delta>true</Delta>" not in body for body in listings[1:]), "every filter item in full"
    assert_holds_what_it_selects(upstream.root, down)


# ---- limits and cookies ----


def test_every_get_update_data_stays_within_the_upstreams_batch_limit(tmp_path: Path) -> None:
    with own_upstream(tmp_path, 34, "server.max_updates_per_request", "7") as (root, token, proxy):
        down = make_downstream(tmp_path / "down", proxy.url, token, WSUS, ("products", "Windows,Office"))
        code, _, stderr = sync(down)
        assert code == 0, stderr
        assert_holds_what_it_selects(root, down)
        sizes = [len(batch) for batch in proxy.update_ids]
        assert max(sizes) == 7
        assert len(sizes) > 3


def test_several_get_update_data_batches_are_under_way_at_once(tmp_path: Path) -> None:
    """The proxy holds the first two GetUpdateData calls of the update listing until both are under way: a client that
    sent one batch after another would leave the first one waiting in vain."""
    with own_upstream(tmp_path, 36, "server.max_updates_per_request", "7") as (root, token, proxy):
        with Store.open(root / "upmirror.db") as store:
            category_batches = -(-len(store.categories()) // 7)  # the categories are read one batch after another
        proxy.gather("GetUpdateData", 2, after=category_batches)
        down = make_downstream(tmp_path / "down", proxy.url, token, WSUS)
        code, _, stderr = sync(down)
        assert code == 0, stderr
        assert proxy.gathered == {"GetUpdateData": True}
        assert_holds_what_it_selects(root, down)


def test_a_cookie_that_expires_during_the_sync_is_renewed(tmp_path: Path) -> None:
    lifetime = ("server.cookie_lifetime_seconds", "1", "server.max_updates_per_request", "7")
    with own_upstream(tmp_path, 35, *lifetime) as (root, token, proxy):
        down = make_downstream(tmp_path / "down", proxy.url, token, WSUS)
        code, _, stderr = sync(down)
        assert code == 0, stderr
        assert_holds_what_it_selects(root, down)
        assert proxy.calls["GetCookie"] > 1
        assert proxy.calls["GetAuthorizationCookie"] > 1


# ---- content ----


def test_a_file_the_upstream_lacks_is_asked_for_with_download_files_and_fetched_next_time(tmp_path: Path) -> None:
    with own_upstream(tmp_path, 36) as (root, token, proxy):
        down = make_downstream(tmp_path / "down", proxy.url, token, WSUS)
        missing = needed_file(root, down)
        relative = content_relative_path(missing.sha1, missing.extension)
        kept = tmp_path / "kept"
        shutil.move(root / "content" / relative, kept)
        code, record, stderr = sync(down)
        assert code == 1, stderr
        assert record["result"] == "partial"
        assert record["files_failed"] == 1
        assert any(missing.sha1 in line and missing.name in line for line in record["failed_files"])
        assert proxy.downloads_asked == [missing.sha1]
        assert relative not in content_of(down)

        shutil.move(kept, root / "content" / relative)
        proxy.reset()
        code, record, stderr = sync(down)
        assert code == 0, stderr
        assert list(proxy.content) == [f"/Content/{relative}"]
        assert record["files_downloaded"] == 1
        assert_holds_what_it_selects(root, down)


def test_a_file_whose_bytes_do_not_match_its_digest_is_never_placed(tmp_path: Path) -> None:
    with own_upstream(tmp_path, 37) as (root, token, proxy):
        down = make_downstream(tmp_path / "down", proxy.url, token, WSUS)
        corrupt = needed_file(root, down)
        relative = content_relative_path(corrupt.sha1, corrupt.extension)
        path = root / "content" / relative
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        code, record, stderr = sync(down)
        assert code == 1, stderr
        assert record["result"] == "partial"
        assert [line for line in record["failed_files"] if corrupt.sha1 in line and corrupt.name in line]
        assert record["files_failed"] == 1
        assert relative not in content_of(down)
        assert not list((down / "content").rglob(f"{corrupt.sha1.upper()}*"))
        assert proxy.content[f"/Content/{relative}"] >= 1


# ---- drivers ----


def test_drivers_for_the_reported_hardware_come_over_get_driver_id_list(tmp_path: Path) -> None:
    with own_upstream(tmp_path, 9, updates=800) as (root, token, proxy):
        with Store.open(root / "upmirror.db") as store:
            catalog = latest_records(store)
        plain = [u for u in catalog if u.hardware_ids and not u.expired and not u.computer_hardware_ids]
        first, second = plain[0].hardware_ids[0], plain[-1].hardware_ids[0]
        down = make_downstream(tmp_path / "down", proxy.url, token, WSUS)
        with UpmirrorServer(down, token=add_token(down, "clients")) as server:
            report(server, "laptop-17", [first])
            report(server, "desk-42", [first, second])
            code, _, stderr = sync(down)
            assert code == 0, stderr
        assert proxy.calls["GetDriverIdList"] == 1
        (listing,) = [body for operation, body in proxy.bodies if operation == "GetDriverIdList"]
        assert listing.count(escape(first).encode()) == 1, "the roll-up is de-duplicated"
        assert b"laptop-17" not in listing
        drivers = {i for i, u in stored(down).items() if u.hardware_ids}
        assert drivers == matching_drivers(catalog, {first, second})
        assert drivers


def driver_set(number: int) -> DriverSet:
    """A driver set as Microsoft Update would send one; upmirror keeps the XML as it is, so any text will do."""
    return DriverSet(
        id=f"d5e7a0c1-0000-4000-8000-{number:012d}",
        xml=f'<DriverSet Computer="model {number}"><Driver UpdateID="{number}" Note="&amp; more"/></DriverSet>',
    )


def test_driver_sets_for_reported_computers_come_over_get_driver_set_data_and_go_when_removed(tmp_path: Path) -> None:
    with own_upstream(tmp_path, 10, updates=200) as (root, token, proxy):
        with Store.open(root / "upmirror.db") as store:
            # What a server that synchronizes from Microsoft Update holds (taken the way this test's downstream takes
            # them): three driver sets.
            store.take_driver_sets([driver_set(1), driver_set(2), driver_set(3)], [])
            hardware = next(u for u in latest_records(store) if u.hardware_ids).hardware_ids[0]
        down = make_downstream(tmp_path / "down", proxy.url, token, WSUS)
        with UpmirrorServer(down, token=add_token(down, "clients")) as server:
            computer = "8c2f5b1e-3a4d-4e6f-9a0b-1c2d3e4f5a6b"
            inventory = {"device": "desk-42", "hardware_ids": [hardware], "computer_hardware_ids": [computer]}
            assert post(server, "/api/v1/client/inventory", inventory).status == 204
            # A fault while the sets are fetched fails the sync in one line, and none is kept.
            proxy.plan("GetDriverSetData", "InternalServerError")
            code, _, stderr = sync(down)
            assert code == 1
            assert stderr.strip().splitlines()[-1].startswith("upmirror: GetDriverSetData failed")
            with Store.open(down / "upmirror.db") as store:
                assert store.driver_sets([driver_set(n).id for n in (1, 2, 3)]) == []

            code, _, stderr = sync(down)
            assert code == 0, stderr
            (listing,) = [b for o, b in proxy.bodies if o == "GetDriverIdList"][-1:]
            assert computer.encode() in listing
            with Store.open(down / "upmirror.db") as store:
                assert store.driver_sets([driver_set(n).id for n in (1, 2, 3)]) == [driver_set(n) for n in (1, 2, 3)]

            # Upstream, one set goes and another comes: the next sync follows.
            with Store.open(root / "upmirror.db") as store:
                store.take_driver_sets([driver_set(4)], [driver_set(2).id])
            proxy.reset()
            code, _, stderr = sync(down)
            assert code == 0, stderr
            (asked,) = [b for o, b in proxy.bodies if o == "GetDriverSetData"]
            assert driver_set(4).id.encode() in asked
            assert driver_set(1).id.encode() not in asked, "only what changed since the anchor is asked for"
            with Store.open(down / "upmirror.db") as store:
                held = store.driver_sets([driver_set(n).id for n in (1, 2, 3, 4)])
            assert held == [driver_set(n) for n in (1, 3, 4)]


# ---- transports ----


def test_a_wsus_sync_through_a_proxy_with_basic_authentication(upstream: Served, tmp_path: Path) -> None:
    with TinyProxy(user="syncer", password=PROXY_PASSWORD) as proxy_url:
        down = downstream(upstream, tmp_path / "down")
        port = proxy_url.rsplit(":", 1)[1]
        ok("options", "set", "--dir", down, "proxy.enabled", "true", "proxy.host", "127.0.0.1", "proxy.port", port)
        ok("options", "set", "--dir", down, "proxy.user", "syncer", "proxy.password", PROXY_PASSWORD)
        ok("options", "set", "--dir", down, "proxy.allow_basic_auth", "true")
        code, _, stderr = sync(down)
        assert code == 0, stderr
        assert PROXY_PASSWORD not in json.dumps(history(down))
        assert_holds_what_it_selects(upstream.root, down)
        assert upstream.proxy.calls["GetUpdateData"] > 0


def test_a_wsus_sync_from_an_upstream_served_with_tls(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root", updates=200, content="4M", seed=38)
    token = add_token(root)
    pki = make_pki(tmp_path)
    ok("options", "set", "--dir", root, "server.tls_certificate", pki.certificate_file, "server.tls_key", pki.key_file)
    with UpmirrorServer(root, token=token) as server:
        assert server.url.startswith("https://")
        untrusting = make_downstream(tmp_path / "untrusting", server.url, token, WSUS)
        code, _, stderr = sync(untrusting)
        assert code == 1
        assert "certificate" in stderr or "TLS" in stderr
        assert update_count(untrusting) == 0
        down = make_downstream(tmp_path / "down", server.url, token, WSUS, ("source.ca_file", str(pki.ca_file)))
        code, _, stderr = sync(down)
        assert code == 0, stderr
        assert_holds_what_it_selects(root, down)


# ---- malformed answers ----


@pytest.mark.parametrize(
    "planned",
    [
        ("GetUpdateData", "InternalServerError", 1),
        ("GetRevisionIdList", "SomethingNoServerSaidBefore", 1),
        ("GetConfigData", "InvalidParameters", 0),
        ("GetUpdateData", "not-xml", 1),
        ("GetConfigData", "not-xml", 0),
        ("GetUpdateData", "bad-cabinet", 1),
        ("GetUpdateData", "not-update-xml", 1),
        ("GetRevisionIdList", "oversized", 1),
    ],
)
def test_any_other_fault_or_a_malformed_answer_fails_the_sync_in_one_line_and_stores_nothing(
    upstream: Served, tmp_path: Path, planned: tuple[str, str, int]
) -> None:
    """(operation, fault code or malformed answer, calls of it forwarded first)"""
    operation, answer, after = planned
    down = downstream(upstream, tmp_path / "down")
    upstream.proxy.plan(operation, answer, times=100, after=after)
    code, record, stderr = sync(down)
    assert code == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert operation in lines[0]
    assert record["result"] == "failed"
    assert history(down)[0]["result"] == "failed"
    assert operation in str(history(down)[0]["error"])
    assert update_count(down) == 0
    if answer not in MALFORMED:
        assert answer in lines[0]
        assert upstream.proxy.planned[operation] == 1, "a fault answers the call: it is not retried"
