"""A hierarchy over the WSUS protocol: an upmirror root -> an upmirror that synchronizes from it over MS-WSUSSS -> an
upmirror replica of that one, also over MS-WSUSSS. Each level ends with the same updates, decisions and content as the
one above it, first in full and then incrementally; language-specific updates keep their languages down the chain and
only the selected languages' files are taken; the keys of encrypted files reach the bottom and no log or command
output. Expected sets are read from the upper servers' own stores."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import sqlite3
from pathlib import Path

import msgspec
import zstandard
from defusedxml.ElementTree import fromstring

from tests.support.cli import ok, upmirror
from tests.support.servers import content_of, expected_files, make_downstream, make_root, stored, sync
from tests.support.soap_faults import SoapFaultProxy
from tests.support.upmirror_server import UpmirrorServer, add_token
from tests.support.waiting import wait_for
from tests.support.wsus import DETECTOID, PACKAGE_FIXTURES, WsusDownstream, identity_of, write_wsus_shaped_package
from upmirror import content_relative_path, wsus
from upmirror.catalog import tree
from upmirror.store import Store


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
        # Files of the selected language (English, the default) and language-neutral ones, no express files.
        assert content_of(middle) == expected_files(stored(middle), ["en"])

        held = sorted(i for i, u in stored(middle).items() if not u.expired)
        ok("updates", "approve", "--dir", middle, *held[:4])
        ok("updates", "decline", "--dir", middle, held[4])
        middle_token = add_token(middle, "replica")
        with UpmirrorServer(middle, token=middle_token) as middle_server:
            replica = make_downstream(
                tmp_path / "replica", middle_server.url, middle_token, ("source.protocol", "wsus"), replica=True
            )
            code, record, stderr = sync(replica)
            assert code == 0, (stderr, {k: v for k, v in record.items() if k in ("result", "error", "failed_files")})
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
        assert_records_carry_what_the_xml_says(server, package.xmls["bundle"])
        assert_records_carry_what_the_xml_says(server, package.xmls["leaf-update"])


UPD = "{http://schemas.microsoft.com/msus/2002/12/Update}"


def assert_records_carry_what_the_xml_says(server: Path, xml: str) -> None:
    """The stored record of an update has the severity, support page, license, titles per language and file times
    and patching types its XML states (read here with Python's XML parser)."""
    update = fromstring(xml)
    identity = update.find(f"{UPD}UpdateIdentity")
    assert identity is not None
    with sqlite3.connect(server / "upmirror.db") as db:
        (data,) = db.execute(
            "SELECT r.data FROM revisions r JOIN updates u ON u.uid = r.uid WHERE u.id = ? AND r.revision = ?",
            (identity.get("UpdateID", "").lower(), int(identity.get("RevisionNumber", "0"))),
        ).fetchone()
    record = msgspec.msgpack.decode(data)
    properties = update.find(f"{UPD}Properties")
    assert properties is not None
    assert record.get("msrc_severity", "") == (properties.findtext(f"{UPD}MsrcSeverity") or "")
    assert record.get("support_url", "") == (properties.findtext(f"{UPD}SupportUrl") or "")
    assert record.get("eula", "") == (properties.get("EulaID") or "")
    default = properties.get("DefaultPropertiesLanguage")
    titles = {
        p.findtext(f"{UPD}Language"): p.findtext(f"{UPD}Title")
        for p in update.iter(f"{UPD}LocalizedProperties")
        if p.findtext(f"{UPD}Language") != default
    }
    assert {t["language"]: t["title"] for t in record.get("localized", [])} == titles
    files = {
        base64.b64decode(f.get("Digest", "")).hex(): (f.get("Modified"), f.get("PatchingType") or "")
        for f in update.findall(f"{UPD}Files/{UPD}File")
    }
    assert {f["sha1"]: (f.get("modified"), f.get("patching", "")) for f in record["files"]} == files


def test_languages_travel_down_the_chain_and_only_the_selected_languages_files_are_taken(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root", updates=150, content="4M", seed=29)
    root_token = add_token(root, "middle")
    with UpmirrorServer(root, token=root_token) as root_server:
        middle = make_downstream(
            tmp_path / "middle", root_server.url, root_token, ("source.protocol", "wsus"), ("languages", "de")
        )
        code, _, stderr = sync(middle)
        assert code == 0, stderr
        at_root, at_middle = stored(root), stored(middle)
        specific = [u for u in at_middle.values() if u.languages]
        assert specific, "the catalog makes some updates language-specific"
        for update in at_middle.values():
            assert update.languages == at_root[update.id].languages
            assert [f.languages for f in update.files] == [f.languages for f in at_root[update.id].files]
        # A language-specific update is listed only for its languages.
        assert all("de" in u.languages for u in specific)
        # German and neutral files only: the other languages' files of the same updates stay upstream.
        held = content_of(middle)
        assert held == expected_files(at_middle, ["de"])
        others = {
            content_relative_path(f.sha1, f.extension)
            for u in specific
            for f in u.files
            if f.languages and "de" not in f.languages
        }
        assert others, "some language-specific update carries files of other languages"
        assert not others & set(held)

        # The middle serves the languages on (its update XML is written from its records).
        middle_token = add_token(middle, "bottom")
        with UpmirrorServer(middle, token=middle_token) as middle_server:
            bottom = make_downstream(
                tmp_path / "bottom", middle_server.url, middle_token, ("source.protocol", "wsus"), ("languages", "de")
            )
            code, _, stderr = sync(bottom)
            assert code == 0, stderr
            at_bottom = stored(bottom)
            assert {(i, tuple(u.languages)) for i, u in at_bottom.items()} == {
                (i, tuple(at_middle[i].languages)) for i in at_bottom
            }
            assert content_of(bottom) == expected_files(at_bottom, ["de"])


ENCRYPTED_UPDATE = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


def publish_encrypted_update(root: Path, folder: Path) -> tuple[str, bytes]:
    """Publishes an update of Office 2019 carrying an encrypted file and a plain one; returns (SHA-1, key)."""
    folder.mkdir()
    encrypted, plain = secrets.token_bytes(50_000), b"setup helper" * 200
    key = secrets.token_bytes(32)
    files = []
    for name, data, is_encrypted in (("feature-x64.esd", encrypted, True), ("setup-helper.cab", plain, False)):
        (folder / name).write_bytes(data)
        files.append(
            {"sha1": hashlib.sha1(data).hexdigest(), "size": len(data), "name": name, "encrypted": is_encrypted}
        )
    update = {
        "id": ENCRYPTED_UPDATE,
        "revision": 1,
        "title": "Feature update to Office 2019 (encrypted)",
        "classification": wsus.SECURITY_UPDATES,
        "products": [tree.category_id("Office 2019")],
        "release_date": "2026-11-10",
        "files": files,
    }
    sha1 = files[0]["sha1"]
    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps({"updates": [update], "decryption_keys": {sha1: base64.b64encode(key).decode()}}))
    assert "published 1 update revisions" in ok("publish", manifest, "--dir", root)
    return str(sha1), key


def assert_key_absent(key: bytes, texts: list[str], *directories: Path) -> None:
    """Neither the key (base64, hex) nor its bytes are in ``texts`` or any file under the directories' logs/."""
    forms = [base64.b64encode(key).decode(), key.hex(), key.hex().upper()]
    for text in texts:
        assert not any(form in text for form in forms)
    logs = [p for d in directories for p in (d / "logs").rglob("*") if p.is_file()]
    assert logs, "the servers wrote their logs"
    for path in logs:
        data = path.read_bytes()
        assert key not in data
        assert not any(form.encode() in data for form in forms), path


def test_keys_of_encrypted_files_reach_the_bottom_of_the_chain_and_no_log(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root", updates=60, content="2M", seed=31)
    sha1, key = publish_encrypted_update(root, tmp_path / "published")
    root_token = add_token(root, "middle")
    outputs: list[str] = []
    with UpmirrorServer(root, token=root_token) as root_server, SoapFaultProxy(root_server.url) as proxy:
        middle = make_downstream(
            tmp_path / "middle", proxy.url, root_token, ("source.protocol", "wsus"), ("products", "Office")
        )
        # An answer without the key: one line naming the file, and the update is not stored without it.
        proxy.plan("GetUpdateDecryptionData", "no-decryption-key")
        done = upmirror("sync", "--dir", middle)
        assert done.returncode == 1
        *progress, error = done.stderr.strip().splitlines()
        assert error.startswith(
            "upmirror: GetUpdateDecryptionData gave no key for the encrypted file 'feature-x64.esd'"
        )
        assert not any(line.startswith("upmirror:") for line in progress), "the error is one line"
        assert ENCRYPTED_UPDATE not in stored(middle)
        asked = [body for operation, body in proxy.bodies if operation == "GetUpdateDecryptionData"]
        assert len(asked) == 1
        assert ENCRYPTED_UPDATE.encode() in asked[0]
        assert asked[0].count(b"<UpdateIdentity>") == 1, "only the update with an encrypted file is asked about"

        code, record, stderr = sync(middle)
        assert code == 0, stderr
        outputs += [json.dumps(record), stderr]
        with Store.open(middle / "upmirror.db") as store:
            assert store.decryption_keys([(ENCRYPTED_UPDATE, 1)]) == [[(sha1, key)]]
        encrypted = next(f for f in stored(middle)[ENCRYPTED_UPDATE].files if f.encrypted)
        held = middle / "content" / content_relative_path(encrypted.sha1, encrypted.extension)
        assert hashlib.sha1(held.read_bytes()).hexdigest() == sha1

        middle_token = add_token(middle, "bottom")
        with UpmirrorServer(middle, token=middle_token) as middle_server:
            bottom = make_downstream(
                tmp_path / "bottom",
                middle_server.url,
                middle_token,
                ("source.protocol", "wsus"),
                ("products", "Office"),
            )
            code, record, stderr = sync(bottom)
            assert code == 0, stderr
            outputs += [json.dumps(record), stderr]
            with Store.open(bottom / "upmirror.db") as store:
                assert store.decryption_keys([(ENCRYPTED_UPDATE, 1)]) == [[(sha1, key)]]
            # An independent client reads the same key from the middle server.
            downstream = WsusDownstream(middle_server.url, middle_token)
            answer = downstream.sync.GetUpdateDecryptionData(
                cookie=downstream.authenticate(),
                updateIds={"UpdateIdentity": [{"UpdateID": ENCRYPTED_UPDATE, "RevisionNumber": 1}]},
            )
            (entry,) = answer.ServerSyncUpdateFileDecryption
            (file_key,) = entry.FileDecryptionData.ServerSyncFileDecryption
            assert (file_key.FileDigest.hex(), file_key.DecryptionKey) == (sha1, key)
    for directory in (root, middle, bottom):
        outputs += [
            ok("updates", "list", "--dir", directory, "--json"),
            ok("status", "--dir", directory, "--json"),
        ]
    assert_key_absent(key, outputs, root, middle)
