"""A replica server holds what its upstream holds: it takes the upstream's products, classifications and languages
as its own (and follows them as they change), so every update of the upstream and every decision on them reaches it.
Real servers on loopback; the expected sets are the upstream's own stored records, not the replica's code."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import ok, upmirror
from tests.support.relay import CountingRelay
from tests.support.servers import make_downstream, options_of, root, stored, sync
from tests.support.upmirror_server import UpmirrorServer, add_token

__all__ = ["root"]  # the fixture, used by name


def decisions(directory: Path) -> dict[str, str]:
    rows = [json.loads(line) for line in ok("updates", "list", "--dir", directory, "--json").splitlines()]
    return {row["id"]: row["approval"] for row in rows}


def revisions(directory: Path) -> set[tuple[str, int]]:
    return {(u.id, u.revision) for u in stored(directory).values()}


def test_a_replica_takes_and_follows_the_selection_of_its_upstream(
    root: tuple[Path, UpmirrorServer, CountingRelay, str], tmp_path: Path
) -> None:
    _, _, relay, token = root
    middle = make_downstream(tmp_path / "middle", relay.url, token)
    assert sync(middle)[0] == 0
    ok("options", "set", "--dir", middle, "products", "Windows,Office", "languages", "en,de")
    ok("options", "set", "--dir", middle, "classifications", "Critical Updates,Security Updates,Updates")
    assert sync(middle)[0] == 0
    held = sorted(stored(middle))
    office = sorted(i for i, u in stored(middle).items() if "Office" in u.title)
    assert office, "the catalog has Office updates outside the default selection"
    ok("updates", "approve", "--dir", middle, *office[:3])
    ok("updates", "decline", "--dir", middle, held[0])
    middle_token = add_token(middle, "replica")
    with UpmirrorServer(middle, token=middle_token) as middle_server:
        replica = make_downstream(tmp_path / "replica", middle_server.url, middle_token, replica=True)
        code, _, stderr = sync(replica)
        assert code == 0, stderr
        assert revisions(replica) == revisions(middle)
        assert decisions(replica) == decisions(middle)
        shown, upstream_options = options_of(replica), options_of(middle)
        for key in ("products", "classifications", "languages"):
            assert shown[key] == upstream_options[key], key
        refused = upmirror("options", "set", "--dir", replica, "languages", "en,fr")
        assert refused.returncode == 2
        assert "replica" in refused.stderr
        assert options_of(replica)["languages"] == upstream_options["languages"]

        # The upstream widens its selection and synchronizes; the replica follows at its next sync, and the
        # decisions the upstream made on the updates it now brings reach the replica too.
        ok("options", "set", "--dir", middle, "products", "Windows,Office,SQL Server")
        assert sync(middle)[0] == 0
        sql = sorted(i for i, u in stored(middle).items() if "SQL Server" in u.title)
        assert sql
        ok("updates", "approve", "--dir", middle, sql[0])
        code, _, stderr = sync(replica)
        assert code == 0, stderr
        assert revisions(replica) == revisions(middle)
        assert decisions(replica) == decisions(middle)
        assert options_of(replica)["products"] == options_of(middle)["products"]


def test_a_replica_of_a_root_server_holds_everything_the_root_offers(
    root: tuple[Path, UpmirrorServer, CountingRelay, str], tmp_path: Path
) -> None:
    directory, _, relay, token = root
    replica = make_downstream(tmp_path / "replica", relay.url, token, replica=True)
    code, _, stderr = sync(replica)
    assert code == 0, stderr
    # Everything the root holds, but the updates that expired before this first sync (WSUS sends no expired update
    # to a server that never held it).
    assert revisions(replica) == {(u.id, u.revision) for u in stored(directory).values() if not u.expired}
    assert options_of(replica)["languages"] == sorted(
        {lang for u in stored(directory).values() for lang in u.languages}
    )
