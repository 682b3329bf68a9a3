"""The WSUS metadata bindings: update blobs (plain and in cabinets) read into dicts, update XML written back from them,
and cabinets, with ``cabextract`` as the independent reader of the cabinets ``write_cabinet`` makes."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import msgspec
import pytest

from upmirror._native import (
    decode_update_blob,
    decode_update_blobs,
    encode_update_xml,
    read_cabinet,
    write_cabinet,
)
from upmirror.model import UpdateMetadata
from upmirror.serversync.languages import metadata_languages
from upmirror.serversync.records import update_record

FIXTURES = Path(__file__).resolve().parent.parent / "rust" / "core" / "tests" / "fixtures" / "wsus"
FIXTURE_NAMES = sorted(path.stem for path in FIXTURES.glob("*.xml"))
WINDOWS_11 = "72e7624a-5b00-45d2-b92f-e561c0a6a160"
SECURITY_UPDATES = "0fa1201d-4330-4fa8-8ae9-b877473b6441"


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.xml").read_bytes()


def compressed_blob(xml: bytes) -> bytes:
    """XmlUpdateBlobCompressed: the XML in UTF-16LE without a byte-order mark, the one member of a cabinet."""
    return write_cabinet([("blob", xml.decode("utf-8").encode("utf-16-le"))])


def cabextract(tmp_path: Path, cabinet: bytes) -> dict[str, bytes]:
    path = tmp_path / "test.cab"
    path.write_bytes(cabinet)
    out = tmp_path / "out"
    subprocess.run(["cabextract", "-q", "-d", str(out), str(path)], check=True)
    return {file.name: file.read_bytes() for file in out.iterdir()}


def test_a_leaf_update_reads_into_plain_values() -> None:
    meta = decode_update_blob(fixture("leaf-update"), compressed=False)
    assert meta["update_id"] == "8f1b6c2a-4e5d-4a3b-9c7e-0d1f2a3b4c5d"
    assert meta["revision_number"] == 201
    assert meta["update_type"] == "Software"
    assert meta["publication_state"] == "Published"
    assert meta["explicitly_deployable"] is False
    assert meta["localized_properties"][0]["title"].startswith("Cumulative Update for Windows 11 (KB5099999) & ")
    assert meta["category_groups"] == [[WINDOWS_11]]
    assert meta["handler_data_type"] == "Cbs"
    first = meta["files"][0]
    assert first["digest"] == hashlib.sha1(b"upmirror leaf x64").hexdigest()
    assert first["sha256"] == hashlib.sha256(b"upmirror leaf x64").hexdigest()
    assert first["size"] == 123456789
    assert meta["files"][1]["patching_type"] == "Express"


def test_bundles_categories_drivers_expiry_and_supersedence() -> None:
    bundle = decode_update_blob(fixture("bundle"), compressed=False)
    assert bundle["bundled_updates"] == [
        ("8f1b6c2a-4e5d-4a3b-9c7e-0d1f2a3b4c5d", 201),
        ("8f1b6c2a-4e5d-4a3b-9c7e-0d1f2a3b4c5e", 1),
    ]
    assert bundle["category_groups"][1] == [SECURITY_UPDATES]
    assert (bundle["kb_article_id"], bundle["msrc_severity"], bundle["security_bulletin_id"]) == (
        "5099999",
        "Critical",
        "MS26-031",
    )
    assert bundle["eula_id"] == "0a1b2c3d-0000-4000-8000-00000000e01a"
    assert bundle["eula_files"][0]["file_name"] == "eula-en.txt"

    product = decode_update_blob(fixture("category-product"), compressed=False)
    assert (product["update_type"], product["category_type"]) == ("Category", "Product")
    assert product["parent_category"] == "6964aab4-c5b5-43bd-a17d-ffb4346a8e1d"
    assert decode_update_blob(fixture("category-company"), compressed=False)["parent_category"] is None

    driver = decode_update_blob(fixture("driver"), compressed=False)
    assert [d["hardware_id"] for d in driver["drivers"]] == [
        "PCI\\VEN_1234&DEV_5678&SUBSYS_00011234",
        "PCI\\VEN_1234&DEV_5678",
    ]
    assert driver["drivers"][0]["class"] == "Net"
    assert driver["drivers"][0]["target_computer_hardware_ids"] == ["1a1b2c3d-4e5f-4061-8273-94a5b6c7d8e9"]

    assert decode_update_blob(fixture("expired"), compressed=False)["publication_state"] == "Expired"
    superseding = decode_update_blob(fixture("superseding"), compressed=False)
    assert superseding["superseded_updates"] == [
        "c0ffee00-1234-4abc-8def-0123456789ab",
        "e0000000-0000-4000-8000-00000000dead",
    ]
    assert decode_update_blob(fixture("detectoid"), compressed=False)["update_type"] == "Detectoid"


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_compressed_and_plain_blobs_read_alike(name: str) -> None:
    plain = decode_update_blob(fixture(name), compressed=False)
    assert decode_update_blob(compressed_blob(fixture(name)), compressed=True) == plain


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_written_xml_reads_back_to_the_same_dict(name: str) -> None:
    meta = decode_update_blob(fixture(name), compressed=False)
    xml = encode_update_xml(meta)
    assert xml.startswith("<upd:Update ")
    assert decode_update_blob(xml.encode("utf-8"), compressed=False) == meta


def test_a_hand_built_dict_is_written() -> None:
    xml = encode_update_xml(
        {
            "update_id": "11111111-2222-4333-8444-555555555555",
            "revision_number": 7,
            "update_type": "Software",
            "localized_properties": [{"language": "en", "title": "Tools & <more>"}],
            "category_groups": [[WINDOWS_11], [SECURITY_UPDATES]],
            "files": [{"file_name": "tool.exe", "digest": "00" * 20, "size": 3, "sha256": "ab" * 32}],
        }
    )
    assert '<upd:AtLeastOne IsCategory="true">' in xml
    assert "<upd:Title>Tools &amp; &lt;more&gt;</upd:Title>" in xml
    assert 'Digest="AAAAAAAAAAAAAAAAAAAAAAAAAAA=" DigestAlgorithm="SHA1"' in xml
    meta = decode_update_blob(xml.encode(), compressed=False)
    assert meta["files"][0]["sha256"] == "ab" * 32
    assert meta["category_groups"] == [[WINDOWS_11], [SECURITY_UPDATES]]


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"update_id": "x", "revision_number": 1}, "update_type is missing"),
        ({"update_id": "x", "revision_number": 1, "update_type": "Bundle"}, "is not one of"),
        ({"update_id": "x", "revision_number": 1, "update_type": "Software", "title": "t"}, 'unknown key "title"'),
        ({"update_id": "x", "revision_number": "one", "update_type": "Software"}, "revision_number"),
    ],
)
def test_bad_dicts_are_bad_input(metadata: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_update_xml(metadata)


def test_many_blobs_at_once_and_a_bad_one_named() -> None:
    blobs = [(fixture(name), False) for name in FIXTURE_NAMES] * 50
    blobs += [(compressed_blob(fixture("bundle")), True)]
    results = decode_update_blobs(blobs)
    assert len(results) == len(blobs)
    assert [r["update_id"] for r in results[: len(FIXTURE_NAMES)]] == [
        decode_update_blob(fixture(name), compressed=False)["update_id"] for name in FIXTURE_NAMES
    ]
    assert results[-1]["kb_article_id"] == "5099999"
    with pytest.raises(ValueError, match=r"blob 2: .*DTD is not allowed"):
        decode_update_blobs([(fixture("bundle"), False), (fixture("driver"), False), (b"<!DOCTYPE x><x/>", False)])


@pytest.mark.parametrize(
    ("blob", "compressed", "message"),
    [
        (b"MSCF\0\0\0\0", True, "truncated"),
        (b"<upd:Update", False, "update XML"),
        (b"\xff\xfe<\0", True, "no MSCF signature"),
        (b"<a>\xff</a>", False, "not valid UTF-8"),
    ],
)
def test_bad_blobs_are_bad_input(blob: bytes, compressed: bool, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_update_blob(blob, compressed)


def test_cabinets_round_trip_and_cabextract_reads_them(tmp_path: Path) -> None:
    members = [
        ("package.xml", b'<ExportPackage FormatVersion="1.0" />'),
        ("metadata.txt", b"{guid},00000064,0000000a,<x/>\r\n" * 5000),
        ("random.bin", os.urandom(100_000)),
        ("empty", b""),
    ]
    cabinet = write_cabinet(members)
    assert cabinet.startswith(b"MSCF")
    assert read_cabinet(cabinet, max_size=1 << 20) == members
    assert cabextract(tmp_path, cabinet) == dict(members)


def test_a_cabinet_above_the_size_limit_or_truncated_is_refused() -> None:
    cabinet = write_cabinet([("zeros", bytes(4 << 20))])
    assert len(cabinet) < 100_000
    with pytest.raises(ValueError, match="above the limit of 1048576"):
        read_cabinet(cabinet, max_size=1 << 20)
    with pytest.raises(ValueError, match="truncated"):
        read_cabinet(cabinet[: len(cabinet) // 2], max_size=8 << 20)
    with pytest.raises(ValueError, match="not allowed"):
        write_cabinet([("", b"x")])


def test_languages_of_update_xml_become_upmirror_language_codes() -> None:
    """The language-specific fixture's update and file languages as records.update_record maps them: upmirror's
    spelling of known codes, "all"/NeutralLanguage for no language, a code of another shape left out."""
    metadata = msgspec.convert(decode_update_blob(fixture("language-specific"), compressed=False), UpdateMetadata)
    record = update_record(metadata, b"<xml/>", lambda _id: None)
    assert record.languages == ["de", "fr"]
    assert [(f.name, f.languages, f.encrypted) for f in record.files] == [
        ("langpack-de.esd", ["de"], True),
        ("langpack-fr.esd", ["fr"], False),
        ("langpack-common.cab", [], False),
    ]
    assert metadata_languages(["zh-cn", "PT-br", "all", "NeutralLanguage", "en", "en", "x-y_z", "sr-Latn-RS"]) == [
        "zh-CN",
        "pt-BR",
        "en",
        "sr-Latn-RS",
    ]
    neutral = msgspec.structs.replace(metadata, languages=["all"], files=[])
    assert update_record(neutral, b"<xml/>", lambda _id: None).languages == []
