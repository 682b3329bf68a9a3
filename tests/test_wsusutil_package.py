"""wsusutil packages through the real command line: ``export --format wsus`` of a generated (and revised) catalog,
read by ``cabextract`` and by this test's own parsing of metadata.txt and package.xml; imported into a fresh server
with the same categories and the same (update id, revision) set, read from both databases with plain SQL; tampered
packages (a flipped byte, a wrong XML length, XML that is not XML, a cut, a category nobody holds) refused with one
line and nothing stored; a package whose cabinet folder is LZX (built here from the LZX format's uncompressed blocks,
independently of the project's writer) imports; a replica refuses."""

from __future__ import annotations

import re
import sqlite3
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from defusedxml.ElementTree import fromstring

from tests.support.cli import ok, refused, upmirror
from tests.support.wsus import DETECTOID, PACKAGE_FIXTURES, identity_of, write_wsus_shaped_package
from upmirror import _native

NS = {"upd": "http://schemas.microsoft.com/msus/2002/12/Update"}
LINE_HEAD = re.compile(r"([0-9a-f-]{36}),([0-9a-f]{8}),([0-9a-f]{8}),")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated catalog with a month of change: several revisions of some updates, expirations, a new product."""
    directory = tmp_path_factory.mktemp("wsusutil") / "root"
    ok("catalog", "generate", directory, "--updates", "150", "--content-size", "1M")
    ok("catalog", "revise", directory)
    return directory


@pytest.fixture(scope="module")
def package(root: Path) -> Path:
    target = root.parent / "export.cab"
    ok("export", "--format", "wsus", target, "--dir", root)
    return target


def revisions_of(directory: Path) -> dict[tuple[str, int], bool]:
    """(update id, revision) -> expired, for every stored revision, read with plain SQL."""
    with sqlite3.connect(directory / "upmirror.db") as db:
        rows = db.execute("SELECT u.id, r.revision, r.data FROM revisions r JOIN updates u ON u.uid = r.uid")
        return {(i, r): bool(msgspec.msgpack.decode(data).get("expired", False)) for i, r, data in rows}


def categories_of(directory: Path) -> dict[str, tuple[str, str, str | None]]:
    """Category id -> (kind, title, parent), read with plain SQL."""
    with sqlite3.connect(directory / "upmirror.db") as db:
        found = {}
        for category_id, data in db.execute("SELECT id, data FROM categories"):
            record = msgspec.msgpack.decode(data)
            found[category_id] = (record["kind"], record["title"], record.get("parent"))
        return found


def fresh(path: Path) -> Path:
    ok("init", "--dir", path)
    return path


def members_of(cabinet: Path, scratch: Path) -> dict[str, bytes]:
    """The cabinet's members as cabextract (an independent reader) unpacks them."""
    scratch.mkdir()
    subprocess.run(["cabextract", "-q", "-d", scratch, cabinet], check=True)
    return {path.name: path.read_bytes() for path in scratch.iterdir()}


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def metadata_lines(data: bytes) -> list[tuple[str, int, str]]:
    """metadata.txt read by its documented format: ``guid,revision (8 hex),length (8 hex),xml`` and CR LF."""
    text, position, lines = data.decode(), 0, []
    while position < len(text):
        head = LINE_HEAD.match(text, position)
        assert head is not None, text[position : position + 80]
        length, start = int(head[3], 16), head.end()
        xml = text[start : start + length]
        assert utf16_units(xml) == length
        assert text[start + length : start + length + 2] == "\r\n"
        lines.append((head[1], int(head[2], 16), xml))
        position = start + length + 2
    return lines


def replace_line(data: bytes, update_id: str, change: Callable[[int, str], tuple[int, str]]) -> bytes:
    """metadata.txt with the line of ``update_id`` rewritten by ``change(length, xml) -> (length, xml)``."""
    out = []
    for line_id, revision, xml in metadata_lines(data):
        length, written = utf16_units(xml), xml
        if line_id == update_id:
            length, written = change(length, xml)
        out.append(f"{line_id},{revision:08x},{length:08x},{written}\r\n")
    return "".join(out).encode()


def lzx_stored_cabinet(members: list[tuple[str, bytes]]) -> bytes:
    """A cabinet of one LZX folder (2 MiB window) of uncompressed blocks, from the cabinet and LZX format
    descriptions: each 32 KiB frame is one CFDATA holding one uncompressed block (the first frame starts with the
    one-bit "no E8 translation" flag), whose header (block type 3, 24-bit size) is packed most significant bit first
    into little-endian 16-bit words and padded by 1 to 16 bits, followed by the three repeated offsets (1, 1, 1 as
    32-bit little-endian), the raw bytes and a pad byte after an odd-sized block. No checksums (the format allows 0)."""
    folder = b"".join(data for _, data in members)
    frames = []
    for index, start in enumerate(range(0, len(folder), 32768)):
        chunk = folder[start : start + 32768]
        bits = ([0] if index == 0 else []) + [0, 1, 1] + [(len(chunk) >> s) & 1 for s in range(23, -1, -1)]
        bits += [0] * (16 - len(bits) % 16)
        words = [int("".join(map(str, bits[i : i + 16])), 2) for i in range(0, len(bits), 16)]
        block = struct.pack(f"<{len(words)}H", *words) + struct.pack("<III", 1, 1, 1) + chunk + b"\0" * (len(chunk) % 2)
        frames.append(struct.pack("<IHH", 0, len(block), len(chunk)) + block)
    files, offset = b"", 0
    for name, data in members:
        files += struct.pack("<IIHHHH", len(data), offset, 0, 0x21, 0, 0x20) + name.encode() + b"\0"
        offset += len(data)
    data_start = 36 + 8 + len(files)
    total = data_start + sum(map(len, frames))
    header = b"MSCF" + struct.pack("<IIIIIBBHHHHH", 0, total, 0, 44, 0, 3, 1, 1, len(members), 0, 0, 0)
    folder_entry = struct.pack("<IHH", data_start, len(frames), 3 | (21 << 8))
    return header + folder_entry + files + b"".join(frames)


def test_export_then_import_gives_the_same_categories_and_revisions(root: Path, package: Path, tmp_path: Path) -> None:
    expected = revisions_of(root)
    assert any(revision > 1 for _, revision in expected), "the revised catalog has later revisions"
    server = fresh(tmp_path / "imported")
    report = ok("import", package, "--dir", server)
    assert f"{len({i for i, _ in expected})} new updates, {len(expected)} new revisions" in report
    assert categories_of(server) == categories_of(root)
    assert revisions_of(server) == expected
    # The importer's own export carries the updates' XML unchanged (kept with each record): the same lines.
    again = tmp_path / "again.cab"
    ok("export", "--format", "wsus", again, "--dir", server)
    first = metadata_lines(members_of(package, tmp_path / "first")["metadata.txt"])
    assert sorted(metadata_lines(members_of(again, tmp_path / "second")["metadata.txt"])) == sorted(first)


def test_cabextract_reads_the_package_and_its_parts_have_the_format(root: Path, package: Path, tmp_path: Path) -> None:
    listing = subprocess.run(["cabextract", "-l", package], capture_output=True, text=True, check=True).stdout
    assert "package.xml" in listing
    assert "metadata.txt" in listing
    members = members_of(package, tmp_path / "out")
    assert set(members) == {"package.xml", "metadata.txt"}

    lines = metadata_lines(members["metadata.txt"])
    kinds = []
    for update_id, revision, xml in lines:
        update = fromstring(xml)
        identity = update.find("upd:UpdateIdentity", NS)
        assert identity is not None
        assert (identity.get("UpdateID"), int(identity.get("RevisionNumber", "0"))) == (update_id, revision)
        properties = update.find("upd:Properties", NS)
        assert properties is not None
        category = update.find(".//{*}CategoryInformation")
        kinds.append(properties.get("UpdateType") if category is None else category.get("CategoryType"))
    order = ["Detectoid", "UpdateClassification", "Company", "ProductFamily", "Product", "Software"]
    ranks = [
        order.index("Software" if kind == "Driver" else kind) if kind in [*order, "Driver"] else -1 for kind in kinds
    ]
    assert -1 not in ranks, set(kinds)
    assert ranks == sorted(ranks), "detectoids, classifications, products, then updates"

    stored = set(revisions_of(root)) | {(c, 1) for c in categories_of(root)}
    assert {(i, r) for i, r, _ in lines} == stored
    assert len(lines) == len(stored)

    document = fromstring(members["package.xml"])
    assert document.tag == "ExportPackage"
    assert (document.get("FormatVersion"), document.get("ProtocolVersion")) == ("1.0", "1.20")
    assert document.get("ServerID")
    assert document.get("CreationTime")
    assert [language.get("ShortName") for language in document.iterfind("Languages/Language")] == ["en"]
    named = {(u.get("UpdateId"), int(u.get("RevisionNumber", "0"))) for u in document.iterfind("Updates/Update")}
    assert named == stored
    with_classification = [
        u for u in document.iterfind("Updates/Update") if u.find("Classifications/Classification") is not None
    ]
    assert len(with_classification) == len(revisions_of(root))


def tampered_members(package: Path, scratch: Path, how: str) -> list[tuple[str, bytes]]:
    members = members_of(package, scratch)
    text = members["metadata.txt"]
    victim = metadata_lines(text)[-1][0]
    if how == "length":
        text = replace_line(text, victim, lambda length, xml: (length - 1, xml))
    elif how == "not xml":
        text = replace_line(text, victim, lambda length, xml: (length, "<upd:Update" + "x" * (len(xml) - 11)))
    elif how == "unknown category":
        classification = next(i for i, _, xml in metadata_lines(text) if 'CategoryType="UpdateClassification"' in xml)
        text = b"".join(
            f"{i},{r:08x},{utf16_units(x):08x},{x}\r\n".encode()
            for i, r, x in metadata_lines(members["metadata.txt"])
            if i != classification
        )
        members["package.xml"] = re.sub(
            rf'<Update UpdateId="{classification}" RevisionNumber="1">.*?</Update>'.encode(),
            b"",
            members["package.xml"],
        )
    return [("metadata.txt", text), ("package.xml", members["package.xml"])]


@pytest.mark.parametrize("how", ["flipped byte", "truncated", "length", "not xml", "unknown category"])
def test_tampered_packages_are_refused_and_nothing_changes(package: Path, tmp_path: Path, how: str) -> None:
    server = fresh(tmp_path / "server")
    data = package.read_bytes()
    bad = tmp_path / "bad.cab"
    if how == "flipped byte":
        bad.write_bytes(data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 0x10]) + data[len(data) // 2 + 1 :])
    elif how == "truncated":
        bad.write_bytes(data[: len(data) * 2 // 3])
    else:
        bad.write_bytes(_native.write_cabinet(tampered_members(package, tmp_path / "out", how)))
    message = refused(server, bad)
    assert str(bad) in message
    expected = {
        "flipped byte": "checksum error",
        "truncated": "truncated",
        "length": "does not hold the",
        "not xml": "does not parse",
        "unknown category": "neither the package nor this server holds",
    }[how]
    assert expected in message.lower(), message
    assert revisions_of(server) == {}
    assert categories_of(server) == {}


def test_a_package_whose_cabinet_is_lzx_imports(root: Path, package: Path, tmp_path: Path) -> None:
    members = members_of(package, tmp_path / "out")
    lzx = tmp_path / "export.xml.gz"
    lzx.write_bytes(
        lzx_stored_cabinet([("metadata.txt", members["metadata.txt"]), ("package.xml", members["package.xml"])])
    )
    assert lzx.read_bytes()[42:44] == (3 | 21 << 8).to_bytes(2, "little"), "typeCompress: LZX"
    assert members_of(lzx, tmp_path / "check") == members, "cabextract reads the test's LZX cabinet alike"
    server = fresh(tmp_path / "server")
    ok("import", lzx, "--dir", server)
    assert revisions_of(server) == revisions_of(root)
    assert categories_of(server) == categories_of(root)


def test_an_lzx_package_with_a_bad_line_is_refused(package: Path, tmp_path: Path) -> None:
    lzx = tmp_path / "bad.cab"
    lzx.write_bytes(lzx_stored_cabinet(tampered_members(package, tmp_path / "out", "length")))
    server = fresh(tmp_path / "server")
    assert "does not hold the" in refused(server, lzx)
    assert revisions_of(server) == {}


def test_a_replica_refuses_a_wsusutil_package(package: Path, tmp_path: Path) -> None:
    replica = tmp_path / "replica"
    ok("init", "--dir", replica, "--upstream", "http://127.0.0.1:9/", "--replica")
    assert "replica" in refused(replica, package)
    assert revisions_of(replica) == {}


def test_wsus_format_is_always_full(root: Path, tmp_path: Path) -> None:
    done = upmirror("export", "--format", "wsus", tmp_path / "x.cab", "--since", "3", "--dir", root)
    assert done.returncode == 2
    assert "full export" in done.stderr
    assert not (tmp_path / "x.cab").exists()


LEAF = "8f1b6c2a-4e5d-4a3b-9c7e-0d1f2a3b4c5d"
BUNDLE = "c0ffee00-1234-4abc-8def-0123456789ab"
SECURITY_UPDATES = "0fa1201d-4330-4fa8-8ae9-b877473b6441"


def test_updates_from_wsus_keep_their_xml_and_bundled_updates_come_first(tmp_path: Path) -> None:
    """A package as a WSUS server writes it (real-shaped update XML, a detectoid, category revisions above 1, a leaf
    update that names only a product and is listed after the bundle that carries it) imports; the detectoid is kept
    as one; the leaf takes the bundle's classification; exported again, every line (detectoid, categories, updates)
    holds its original XML at its original revision, the detectoid comes first and the leaf precedes the bundle."""
    written_package = write_wsus_shaped_package(tmp_path / "from-wsus.cab")
    package, xmls, lines = written_package.path, written_package.xmls, written_package.lines
    server = fresh(tmp_path / "server")
    ok("import", package, "--dir", server)

    categories = categories_of(server)
    assert set(categories) == {line.split(",")[0] for line in lines[:6]}
    assert categories[DETECTOID] == ("detectoid", "Windows 11 x64", None)
    company = next(i for i, (kind, _, _) in categories.items() if kind == "company")
    assert categories["6964aab4-c5b5-43bd-a17d-ffb4346a8e1d"][2] == company, "a family hangs under its company"
    assert categories["72e7624a-5b00-45d2-b92f-e561c0a6a160"][2] == "6964aab4-c5b5-43bd-a17d-ffb4346a8e1d"
    stored = revisions_of(server)
    assert set(stored) == {(BUNDLE, 100), (LEAF, 201), ("5a5a5a5a-0000-4000-8000-000000000002", 100)}
    with sqlite3.connect(server / "upmirror.db") as db:
        (data,) = db.execute(
            "SELECT r.data FROM revisions r JOIN updates u ON u.uid = r.uid WHERE u.id = ?", (LEAF,)
        ).fetchone()
    assert msgspec.msgpack.decode(data)["classification"] == SECURITY_UPDATES

    again = tmp_path / "again.cab"
    ok("export", "--format", "wsus", again, "--dir", server)
    exported = metadata_lines(members_of(again, tmp_path / "out")["metadata.txt"])
    order = [update_id for update_id, _, _ in exported]
    assert order.index(LEAF) < order.index(BUNDLE)
    written = {update_id: xml for update_id, _, xml in exported}
    assert written[LEAF] == xmls["leaf-update"]
    assert written[BUNDLE] == xmls["bundle"]
    assert order[0] == DETECTOID, "detectoids first, as wsusutil lists them"
    for name in PACKAGE_FIXTURES[:5]:
        update_id, revision, _ = next(line for line in exported if line[2] == xmls[name])
        assert (update_id, revision) == identity_of(xmls[name]), f"{name} keeps its identity and revision"
