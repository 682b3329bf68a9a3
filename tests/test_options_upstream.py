"""Options that need the upstream's word, against a real ``upmirror serve`` root: products and classifications
chosen by name before the first sync (the README's "first sync: everything selected"), the upstream's tree shown
before it, and languages checked against what the upstream offers once it has been synchronized with."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import ok, upmirror
from tests.support.servers import make_downstream, make_root, stored, sync
from tests.support.upmirror_server import UpmirrorServer, add_token
from upmirror import wsus
from upmirror.catalog.tree import FAMILIES, category_id
from upmirror.store import Store


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[UpmirrorServer, str]]:
    directory = make_root(tmp_path_factory.mktemp("upstream") / "root", updates=300, content="4M")
    token = add_token(directory, "branch")
    with UpmirrorServer(directory, token=token) as server:
        yield server, token


def test_products_chosen_by_name_before_the_first_sync_are_what_it_takes(
    root: tuple[UpmirrorServer, str], tmp_path: Path
) -> None:
    server, token = root
    down = make_downstream(tmp_path / "down", server.url, token)
    ok("options", "set", "--dir", down, "products", "Office", "classifications", "Security Updates,Updates")
    options = json.loads(ok("options", "show", "--dir", down, "--json"))
    assert options["products"] == [category_id("Office")]
    assert options["classifications"] == [wsus.SECURITY_UPDATES, wsus.CLASSIFICATIONS["Updates"]]
    with Store.open(down / "upmirror.db") as store:
        assert store.categories() == []  # asked for, not stored: the first sync brings them

    code, _, stderr = sync(down)
    assert code == 0, stderr
    office = {category_id(title) for title in ["Office", *FAMILIES["Office"]]}
    got = stored(down)
    assert got, "the Office security updates of the catalog"
    assert all(office & set(update.products) for update in got.values())


def test_the_upstream_tree_is_listed_before_the_first_sync(root: tuple[UpmirrorServer, str], tmp_path: Path) -> None:
    server, token = root
    down = make_downstream(tmp_path / "down", server.url, token)
    products = ok("products", "list", "--dir", down)
    assert f"[ ] Microsoft  ({wsus.MICROSOFT_COMPANY})" in products
    assert f"[x]     Windows  ({wsus.WINDOWS_FAMILY})" in products
    assert "[+]         Windows 11  (" in products
    assert "[ ]     Office  (" in products
    lines = products.splitlines()
    assert lines.index(next(line for line in lines if "Windows 11  (" in line)) > lines.index(
        f"[x]     Windows  ({wsus.WINDOWS_FAMILY})"
    ), "a product comes after its family"
    classifications = ok("classifications", "list", "--dir", down)
    assert f"[x] Security Updates  ({wsus.SECURITY_UPDATES})" in classifications


def test_names_need_a_reachable_upstream_before_the_first_sync(tmp_path: Path) -> None:
    down = make_downstream(tmp_path / "down", "http://127.0.0.1:9", "token")  # the discard port: nobody listens
    before = (down / "upmirror.toml").read_bytes()
    refused = upmirror("options", "set", "--dir", down, "products", "Office")
    assert refused.returncode == 2
    assert "names need the upstream's list, and it could not be asked" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert (down / "upmirror.toml").read_bytes() == before
    ok("options", "set", "--dir", down, "products", category_id("Office"))  # ids are checked by the first sync


def test_after_a_first_sync_languages_are_checked_against_the_upstreams(
    root: tuple[UpmirrorServer, str], tmp_path: Path
) -> None:
    server, token = root
    down = make_downstream(tmp_path / "down", server.url, token)
    assert sync(down)[0] == 0
    before = (down / "upmirror.toml").read_bytes()
    refused = upmirror("options", "set", "--dir", down, "languages", "en,bg")  # known, but not in the catalog
    assert refused.returncode == 2
    assert "language 'bg' is not offered by the upstream server" in refused.stderr
    assert (down / "upmirror.toml").read_bytes() == before
    ok("options", "set", "--dir", down, "languages", "en,de")
