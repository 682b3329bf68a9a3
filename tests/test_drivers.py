"""Inventory-based driver synchronization over real servers: client devices report hardware IDs to a downstream
server, which sends only the de-duplicated roll-up upstream and receives exactly the matching drivers; clients then
get approved drivers only for devices actually attached to them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.catalog_rules import latest_records
from tests.support.cli import ok
from tests.support.inventory import matching_drivers, post, report, updates_for
from tests.support.relay import CountingRelay
from tests.support.servers import make_downstream, make_root, stored, sync
from tests.support.upmirror_server import UpmirrorServer, add_token
from upmirror import wsus
from upmirror.store import Store

DRIVERS = wsus.CLASSIFICATIONS["Drivers"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_root(tmp_path / "root", updates=800, content="8M", seed=9)


def test_drivers_arrive_for_reported_hardware_only_and_clients_get_their_own(root: Path, tmp_path: Path) -> None:
    with Store.open(root / "upmirror.db") as store:
        catalog = latest_records(store)
    plain_drivers = [u for u in catalog if u.hardware_ids and not u.expired and not u.computer_hardware_ids]
    assert len(plain_drivers) >= 3, "the catalog has drivers"
    first_id, second_id = plain_drivers[0].hardware_ids[0], plain_drivers[-1].hardware_ids[0]
    token = add_token(root)
    with UpmirrorServer(root, token=token) as upstream, CountingRelay(upstream.port) as relay:
        down = make_downstream(tmp_path / "down", relay.url, token)
        local_token = add_token(down, "clients")
        with UpmirrorServer(down, token=local_token) as server:
            report(server, "laptop-17", [first_id])
            report(server, "desk-42", [first_id, second_id])
            relay.reset()
            code, _, stderr = sync(down)
            assert code == 0, stderr
            sent = bytes(relay.sent_to_upstream)
            assert b"laptop-17" not in sent, "no device names go upstream"
            assert b"desk-42" not in sent
            assert sent.count(first_id.encode()) == 1, "the roll-up is de-duplicated"

            held = {i for i, u in stored(down).items() if u.hardware_ids}
            expected = matching_drivers(catalog, {first_id, second_id})
            assert held == expected
            assert held, "reported hardware brought drivers"
            assert DRIVERS not in json.loads(ok("options", "show", "--dir", down, "--json"))["classifications"], (
                "the Drivers classification is not selected: the inventory alone brought them"
            )

            ok("updates", "approve", "--dir", down, *sorted(held))
            laptop, desk = updates_for(server, "laptop-17"), updates_for(server, "desk-42")
            assert laptop == matching_drivers(catalog, {first_id})
            assert desk == expected
            assert updates_for(server, "unknown-device") == set()

            # A device reporting new hardware later brings only its drivers on the next sync.
            third_id = next(h for u in plain_drivers for h in u.hardware_ids if h not in {first_id, second_id})
            report(server, "tablet-3", [third_id])
            code, record, stderr = sync(down)
            assert code == 0, stderr
            new_expected = matching_drivers(catalog, {first_id, second_id, third_id})
            assert {i for i, u in stored(down).items() if u.hardware_ids} == new_expected
            assert record["new_updates"] == len(new_expected - expected)


def test_bad_inventory_reports_are_refused(root: Path) -> None:
    token = add_token(root)
    with UpmirrorServer(root, token=token) as server:
        for body in ({"device": ""}, {"device": "x", "hardware_ids": ["bad id with spaces"]}, {"nope": 1}):
            response = post(server, "/api/v1/client/inventory", body)
            assert response.status == 400
