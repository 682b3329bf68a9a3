"""A hierarchy over the WSUS protocol: an upmirror root -> an upmirror that synchronizes from it over MS-WSUSSS -> an
upmirror replica of that one, also over MS-WSUSSS. Each level ends with the same updates, decisions and content as the
one above it, first in full and then incrementally. Expected sets are read from the upper servers' own stores."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import msgspec
import zstandard

from tests.support.cli import ok
from tests.support.servers import content_of, make_downstream, make_root, stored, sync
from tests.support.upmirror_server import UpmirrorServer, add_token
from tests.support.waiting import wait_for
from tests.support.wsus import DETECTOID, PACKAGE_FIXTURES, WsusDownstream, identity_of, write_wsus_shaped_package
from upmirror import content_relative_path


def revisions(directory: Path) -> set[tuple[str, int]]:
    return {(u.id, u.revision) for u in stored(directory).values()}


def decisions(directory: Path) -> dict[str, str]:
    rows = [json.loads(line) for line in ok("updates", "list", "--dir", directory, "--json").splitlines()]
    return {row["id"]: row["approval"] for row in rows}


def test_root_to_wsus_downstream_to_wsus_replica(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root", updates=300, content="8M", seed=17)
    root_token = add_token(root, "middle")
    with UpmirrorServer(root, token=root_token) as root_server:
        middle = make_downstream(
            tmp_path / "middle",
            root_server.url,
            root_token,
            ("source.protocol", "wsus"),
            ("products", "Windows,Office"),
        )
        code, record, stderr = sync(middle)
        assert code == 0, stderr
        assert record["new_updates"] > 10

        # The middle server holds exactly what the root lists for its filter (read from the root's store through
        # upmirror's own protocol by a second downstream: the WSUS listing and the native one must agree).
        native = make_downstream(tmp_path / "native", root_server.url, root_token, ("products", "Windows,Office"))
        assert sync(native)[0] == 0
        assert {ref for ref in revisions(middle) if not stored(middle)[ref[0]].expired} == revisions(native)
        # Every file the middle server holds is the file its name says.
        for relative in content_of(middle):
            data = (middle / "content" / relative).read_bytes()
            assert hashlib.sha1(data).hexdigest().upper() == Path(relative).stem
        needed = {
            content_relative_path(f.sha1, f.extension)
            for u in stored(middle).values()
            if not u.expired
            for f in u.files
            if not f.express
        }
        assert set(content_of(middle)) == needed

        held = sorted(i for i, u in stored(middle).items() if not u.expired)
        ok("updates", "approve", "--dir", middle, *held[:4])
        ok("updates", "decline", "--dir", middle, held[4])
        middle_token = add_token(middle, "replica")
        with UpmirrorServer(middle, token=middle_token) as middle_server:
            replica = make_downstream(
                tmp_path / "replica", middle_server.url, middle_token, ("source.protocol", "wsus"), replica=True
            )
            code, record, stderr = sync(replica)
            assert code == 0, stderr
            assert revisions(replica) == revisions(middle)
            replica_decisions = decisions(replica)
            assert {i for i, d in replica_decisions.items() if d == "approved"} == set(held[:4])
            assert {i for i, d in replica_decisions.items() if d == "declined"} == {held[4]}
            assert set(content_of(replica)) <= set(content_of(middle))

            # Incrementally: the root changes, the middle follows, the replica follows the middle.
            ok("catalog", "revise", root, "--seed", "18")
            assert sync(middle)[0] == 0
            ok("updates", "approve", "--dir", middle, held[5])
            code, record, stderr = sync(replica)
            assert code == 0, stderr
            assert revisions(replica) == revisions(middle)
            assert {u.id for u in stored(replica).values() if u.expired} == {
                u.id for u in stored(middle).values() if u.expired
            }
            assert decisions(replica)[held[5]] == "approved"


def test_download_files_makes_a_downstream_server_fetch_what_it_lacks(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root", updates=120, content="4M", seed=23)
    root_token = add_token(root, "middle")
    with UpmirrorServer(root, token=root_token) as root_server:
        middle = make_downstream(tmp_path / "middle", root_server.url, root_token, ("source.protocol", "wsus"))
        assert sync(middle)[0] == 0
        lost = next(f for u in stored(middle).values() if not u.expired for f in u.files if not f.express)
        path = middle / "content" / content_relative_path(lost.sha1, lost.extension)
        path.unlink()
        middle_token = add_token(middle, "below")
        with UpmirrorServer(middle, token=middle_token) as middle_server:
            below = WsusDownstream(middle_server.url, middle_token)
            below.sync.DownloadFiles(
                cookie=below.authenticate(), fileDigestList={"base64Binary": [bytes.fromhex(lost.sha1)]}
            )
            wait_for(path.is_file, 60, "the middle server to fetch the file it was asked for")
    assert hashlib.sha1(path.read_bytes()).hexdigest() == lost.sha1


def original_xmls(directory: Path) -> dict[tuple[str, int], tuple[str, str]]:
    """(id, revision) -> (kind, original XML) of every category, detectoid and update revision that keeps its XML,
    read from the database with plain SQL, MessagePack and zstd."""
    found = {}
    with sqlite3.connect(directory / "upmirror.db") as db:
        rows = [*db.execute("SELECT data FROM categories"), *db.execute("SELECT data FROM revisions")]
    for (data,) in rows:
        record = msgspec.msgpack.decode(data)
        if record.get("xml") is not None:
            xml = zstandard.ZstdDecompressor().decompress(record["xml"]).decode()
            found[record["id"], record.get("revision", 1)] = (record.get("kind", "update"), xml)
    return found


def test_metadata_from_a_wsus_server_travels_down_with_its_original_xml(tmp_path: Path) -> None:
    """A server that imported a package written by a WSUS server serves it over MS-WSUSSS; the upmirror below it and
    a replica below that end with the detectoid as a detectoid, every category at its own revision, and every
    category, detectoid and update with the very XML the WSUS server wrote."""
    top = tmp_path / "top"
    ok("init", "--dir", top)
    package = write_wsus_shaped_package(tmp_path / "from-wsus.cab")
    ok("import", package.path, "--dir", top)
    expected = {identity_of(package.xmls[name]) for name in PACKAGE_FIXTURES}
    top_token = add_token(top, "middle")
    with UpmirrorServer(top, token=top_token) as top_server:
        middle = make_downstream(
            tmp_path / "middle",
            top_server.url,
            top_token,
            ("source.protocol", "wsus"),
            ("content.store_locally", "false"),
            ("classifications", "Security Updates"),
        )
        code, _, stderr = sync(middle)
        assert code == 0, stderr
    middle_token = add_token(middle, "replica")
    with UpmirrorServer(middle, token=middle_token) as middle_server:
        replica = make_downstream(
            tmp_path / "replica",
            middle_server.url,
            middle_token,
            ("source.protocol", "wsus"),
            ("content.store_locally", "false"),
            replica=True,
        )
        code, record, stderr = sync(replica)
        assert code == 0, (stderr, record)
    for server in (middle, replica):
        held = original_xmls(server)
        by_id = {identity_of(xml): xml for _, xml in held.values()}
        for name in PACKAGE_FIXTURES:
            update_id, revision = identity_of(package.xmls[name])
            assert by_id.get((update_id, revision)) == package.xmls[name], f"{server.name}: {name}"
        assert {ref for ref in by_id if ref in expected} == expected
        assert {(i.lower(), r) for i, r in expected} <= set(held), "each record is at the revision its XML names"
        assert [kind for (update_id, _), (kind, _) in held.items() if update_id == DETECTOID] == ["detectoid"]
