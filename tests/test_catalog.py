"""The catalog generator, ``catalog revise`` and ``publish``: deterministic by seed, shaped like Microsoft Update,
files in the WSUS layout with correct digests (checked with hashlib and b3sum), and bad input refused with nothing
changed."""

from __future__ import annotations

import hashlib
import json
import statistics
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.catalog_rules import latest_records
from tests.support.cli import RunUpmirror
from upmirror import content_relative_path, wsus
from upmirror.catalog import tree
from upmirror.model import Update
from upmirror.store import Store


def records(directory: Path) -> list[Update]:
    with Store.open(directory / "upmirror.db") as store:
        return latest_records(store)


def content_files(directory: Path) -> dict[str, Path]:
    """The files of the layout (upmirror's own dot-entries, the content index and ``.partial/``, left out)."""
    return {p.relative_to(directory / "content").as_posix(): p for p in (directory / "content").glob("??/*")}


def partial_is_empty(directory: Path) -> bool:
    partial = directory / "content" / ".partial"
    return not partial.exists() or not any(partial.iterdir())


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("catalog") / "root"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "upmirror.cli",
            "catalog",
            "generate",
            str(directory),
            "--updates",
            "1500",
            "--content-size",
            "24M",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return directory


def test_same_seed_same_catalog_other_seed_other_catalog(run_upmirror: RunUpmirror, tmp_path: Path) -> None:
    for name, seed in (("a", "4"), ("b", "4"), ("c", "5")):
        done = run_upmirror(
            "catalog", "generate", tmp_path / name, "--updates", "120", "--content-size", "3M", "--seed", seed
        )
        assert done.returncode == 0, done.stderr
    a, b, c = (records(tmp_path / name) for name in "abc")
    assert a == b
    assert {p: f.read_bytes() for p, f in content_files(tmp_path / "a").items()} == {
        p: f.read_bytes() for p, f in content_files(tmp_path / "b").items()
    }
    assert {u.id for u in a}.isdisjoint({u.id for u in c})


# The b3sum listing of a seeded catalog: `catalog generate DIR --updates 60 --content-size 8M --seed 7`, then in
# DIR/content `find . -type f -not -path './.partial/*' -not -name '.upmirror-index*' | sort | xargs b3sum`, and the
# same after `catalog revise DIR --seed 3`. These are b3sum's own outputs, not upmirror's. The generated catalog's
# files are those the code of commit 4c875e9 made (and 345fd88 before it, when the generator placed files itself);
# the revised month changed on purpose when the catalog took Microsoft Update's shape (a company, detectoids and
# bundles: more records, so the anchor and update count that seed `catalog revise` moved).
GENERATED_CATALOG_LISTING_B3SUM = "e8272ab36a824f34c77d572c12bf81ca6e34c5f8373f114b85d0895a01d45824"
SEEDED_CATALOG_FILES = 182
SEEDED_CATALOG_LISTING_B3SUM = "d46d17127bd796ba760a20b613bbd2cd1b085467e6e5e5bf100813435d1b3f73"


def b3sum_listing(content: Path, relative_paths: Iterable[str]) -> tuple[int, str]:
    """(lines, b3sum of the listing) of ``b3sum`` run over the content files."""
    paths = sorted(f"./{relative}" for relative in relative_paths)
    listing = subprocess.run(["b3sum", *paths], cwd=content, capture_output=True, timeout=60, check=True).stdout
    of_listing = subprocess.run(["b3sum", "--no-names"], input=listing, capture_output=True, timeout=60, check=True)
    return len(listing.splitlines()), of_listing.stdout.decode().strip()


def test_a_seeded_catalog_has_the_bytes_it_always_had(run_upmirror: RunUpmirror, tmp_path: Path) -> None:
    root = tmp_path / "root"
    generate = ("catalog", "generate", root, "--updates", "60", "--content-size", "8M", "--seed", "7")
    assert run_upmirror(*generate).returncode == 0
    assert b3sum_listing(root / "content", content_files(root))[1] == GENERATED_CATALOG_LISTING_B3SUM
    assert run_upmirror("catalog", "revise", root, "--seed", "3").returncode == 0
    listed = b3sum_listing(root / "content", content_files(root))
    assert listed == (SEEDED_CATALOG_FILES, SEEDED_CATALOG_LISTING_B3SUM)


def test_generated_and_published_files_are_trusted_from_the_index(
    run_upmirror: RunUpmirror, publishing_root: Path, tmp_path: Path
) -> None:
    assert run_upmirror("catalog", "revise", publishing_root).returncode == 0
    manifest = manifest_for(tmp_path, {"office-kb5099999-x64.msp": b"patch" * 1000})
    assert run_upmirror("publish", manifest, "--dir", publishing_root).returncode == 0
    assert partial_is_empty(publishing_root)
    done = run_upmirror("content", "verify", "--dir", publishing_root, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    files = len(content_files(publishing_root))
    assert (report["files"], report["trusted"], report["hashed_ok"]) == (files, files, 0), "no file is read again"
    assert report["corrupt"] == report["missing"] == report["outside_layout"] == []


def test_files_are_in_the_wsus_layout_with_correct_digests(catalog: Path) -> None:
    files = content_files(catalog)
    refs = {f.sha1: f for u in records(catalog) for f in u.files}
    assert len(files) == len(refs)
    for sha1, ref in refs.items():
        path = catalog / "content" / content_relative_path(sha1, ref.extension)
        assert path.parent.name == sha1[-2:].upper()
        data = path.read_bytes()
        assert len(data) == ref.size
        assert hashlib.sha1(data).hexdigest() == sha1
        assert hashlib.sha256(data).hexdigest() == ref.sha256
    sample = sorted(refs.values(), key=lambda f: f.size)[-20:]
    paths = [str(catalog / "content" / content_relative_path(f.sha1, f.extension)) for f in sample]
    b3sum = subprocess.run(["b3sum", "--no-names", *paths], capture_output=True, text=True, timeout=60, check=True)
    assert b3sum.stdout.split() == [f.blake3 for f in sample]


def test_the_catalog_is_shaped_like_microsoft_update(catalog: Path) -> None:
    updates = records(catalog)
    by_id = {u.id: u for u in updates}
    carried = {ref.update_id for u in updates for ref in u.bundled}
    assert len(updates) - len(carried) == 1500, "--updates counts what is approved, not what bundles carry"
    bundles = [u for u in updates if u.bundled]
    assert len(bundles) > 20
    assert all(not u.files for u in bundles), "a bundle holds no file"
    assert all(by_id[i].files for i in carried), "the update a bundle carries holds the files"
    assert all(by_id[r.update_id].products == u.products for u in bundles for r in u.bundled)
    with Store.open(catalog / "upmirror.db") as store:
        categories = {c.id: c for c in store.categories()}
    company = categories[wsus.MICROSOFT_COMPANY]
    assert company.kind == "company"
    assert all(c.parent == company.id for c in categories.values() if c.kind == "family")
    detectoids = {c.id for c in categories.values() if c.kind == "detectoid"}
    software = [u for u in updates if not u.hardware_ids]
    assert all(u.prerequisites and set(u.prerequisites) <= detectoids for u in software)
    assert {u.classification for u in updates} == set(wsus.CLASSIFICATIONS.values())
    languages = {lang for u in updates for lang in u.languages}
    assert len(languages) >= 25
    assert any(not u.languages for u in updates), "language-neutral updates"
    ids = {u.id for u in updates}
    superseding = [u for u in updates if u.supersedes]
    assert len(superseding) > 300
    assert all(set(u.supersedes) <= ids for u in superseding)
    assert 10 < sum(u.expired for u in updates) < 150
    drivers = [u for u in updates if u.classification == wsus.CLASSIFICATIONS["Drivers"]]
    assert drivers
    assert all(u.hardware_ids and u.hardware_ids[0].startswith(("PCI\\VEN_", "USB\\VID_")) for u in drivers)
    assert any(u.computer_hardware_ids for u in drivers)
    driver_products = {tree.category_id(t) for t in tree.DRIVER_PRODUCTS}
    assert all(set(u.products) <= driver_products for u in drivers)
    assert any(f.express for u in updates for f in u.files)
    sizes = [f.size for u in updates for f in u.files]
    assert abs(sum(sizes) - (24 << 20)) < (24 << 20) * 0.02, "the total is what --content-size asked"
    assert max(sizes) > 50 * statistics.median(sizes), "many small files, a few large ones"


def test_revise_applies_a_month_of_change(run_upmirror: RunUpmirror, tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert run_upmirror("catalog", "generate", root, "--updates", "400", "--content-size", "4M").returncode == 0
    before = {u.id: u for u in records(root)}
    with Store.open(root / "upmirror.db") as store:
        anchor = store.anchor()
    done = run_upmirror("catalog", "revise", root)
    assert done.returncode == 0, done.stderr
    assert "Windows 12" in done.stdout
    after = {u.id: u for u in records(root)}
    new = [u for i, u in after.items() if i not in before]
    revised = [u for i, u in after.items() if i in before and u.revision == before[i].revision + 1]
    expired = [u for i, u in after.items() if i in before and u.expired and not before[i].expired]
    assert len(new) >= 5
    assert any(tree.category_id("Windows 12") in u.products for u in new)
    assert len(revised) >= 3
    assert len(expired) >= 2
    with Store.open(root / "upmirror.db") as store:
        assert store.anchor() >= anchor + 1 + len(new) + len(revised) + len(expired)
        assert store.update(revised[0].id, revised[0].revision - 1) == before[revised[0].id], "old revision kept"
    files = content_files(root)
    for update in new + revised:
        for ref in update.files:
            assert content_relative_path(ref.sha1, ref.extension) in files
    second = run_upmirror("catalog", "revise", root)
    assert second.returncode == 0
    assert "Office LTSC 2027" in second.stdout


def test_bad_catalog_commands_are_refused(run_upmirror: RunUpmirror, tmp_path: Path) -> None:
    done = run_upmirror("catalog", "generate", tmp_path / "x", "--content-size", "lots")
    assert done.returncode == 2
    assert done.stderr.strip() == "upmirror: --content-size 'lots' is not a size; use e.g. 4G, 512M, 64K"
    assert not (tmp_path / "x").exists(), "nothing was created"
    assert (
        run_upmirror("catalog", "generate", tmp_path / "y", "--updates", "5", "--content-size", "64K").returncode == 0
    )
    again = run_upmirror("catalog", "generate", tmp_path / "y", "--updates", "5")
    assert again.returncode == 2
    assert "already holds 5 updates" in again.stderr
    assert run_upmirror("catalog", "revise", tmp_path / "nothing").returncode == 2
    assert run_upmirror("init", "--dir", tmp_path / "down", "--upstream", "http://127.0.0.1:8530").returncode == 0
    downstream = run_upmirror("catalog", "generate", tmp_path / "down", "--updates", "5")
    assert downstream.returncode == 2
    assert "only a root server" in downstream.stderr


# ---- publish ----

OFFICE_2019 = tree.category_id("Office 2019")


def manifest_for(folder: Path, files: dict[str, bytes], **changes: object) -> Path:
    """A manifest of one update carrying ``files`` (written beside it), with ``changes`` applied to the update."""
    refs = []
    for name, data in files.items():
        (folder / name).write_bytes(data)
        refs.append({"sha1": hashlib.sha1(data).hexdigest(), "size": len(data), "name": name, "languages": ["en"]})
    update = {
        "id": "12345678-1234-4234-8234-123456789abc",
        "revision": 1,
        "title": "2026-11 Security Update for Office 2019 (KB5099999)",
        "classification": wsus.SECURITY_UPDATES,
        "products": [OFFICE_2019],
        "release_date": "2026-11-10",
        "kb_article": "5099999",
        "languages": ["en"],
        "files": refs,
    } | changes
    path = folder / "manifest.json"
    path.write_text(json.dumps({"updates": [update]}))
    return path


@pytest.fixture
def publishing_root(run_upmirror: RunUpmirror, tmp_path: Path) -> Path:
    root = tmp_path / "root"
    assert run_upmirror("catalog", "generate", root, "--updates", "10", "--content-size", "64K").returncode == 0
    return root


def state(root: Path) -> tuple[int, int, set[str]]:
    with Store.open(root / "upmirror.db") as store:
        return store.anchor(), store.update_count(), set(content_files(root))


def test_publish_verifies_and_places_files(run_upmirror: RunUpmirror, publishing_root: Path, tmp_path: Path) -> None:
    files = {"office-kb5099999-x64.msp": b"patch" * 1000, "office-kb5099999-en.cab": b"lang" * 300}
    manifest = manifest_for(tmp_path, files)
    done = run_upmirror("publish", manifest, "--dir", publishing_root)
    assert done.returncode == 0, done.stderr
    with Store.open(publishing_root / "upmirror.db") as store:
        update = store.update("12345678-1234-4234-8234-123456789abc")
    assert update is not None
    for ref, data in zip(update.files, files.values(), strict=True):
        path = publishing_root / "content" / content_relative_path(ref.sha1, ref.extension)
        assert path.read_bytes() == data
        assert ref.sha256 == hashlib.sha256(data).hexdigest(), "missing digests are filled in"
        assert ref.blake3 is not None
    assert partial_is_empty(publishing_root)


def test_publish_places_a_file_shared_by_two_updates_once(
    run_upmirror: RunUpmirror, publishing_root: Path, tmp_path: Path
) -> None:
    shared = b"a runtime both updates carry" * 500
    manifest = manifest_for(tmp_path, {"runtime-x64.cab": shared, "first-only.cab": b"first" * 100})
    document = json.loads(manifest.read_text())
    second = dict(
        document["updates"][0],
        id="12345678-1234-4234-8234-123456789abd",
        files=[dict(document["updates"][0]["files"][0], name="runtime-x64-copy.cab")],
    )
    (tmp_path / "runtime-x64-copy.cab").write_bytes(shared)
    document["updates"].append(second)
    manifest.write_text(json.dumps(document))
    done = run_upmirror("publish", manifest, "--dir", publishing_root)
    assert done.returncode == 0, done.stderr
    assert "published 2 update revisions (2 files" in done.stdout
    with Store.open(publishing_root / "upmirror.db") as store:
        first, other = store.update(document["updates"][0]["id"]), store.update(second["id"])
    assert first is not None
    assert other is not None
    ref = other.files[0]
    assert ref.name == "runtime-x64-copy.cab"
    assert ref.sha256 == hashlib.sha256(shared).hexdigest()
    assert (publishing_root / "content" / content_relative_path(ref.sha1, ref.extension)).read_bytes() == shared
    assert partial_is_empty(publishing_root)


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("wrong digest", "does not match its sha1"),
        ("wrong size", "the manifest says"),
        ("missing file", "is not in"),
        ("unknown product", "unknown product"),
        ("path in a name", "Expected `str` matching regex"),
        ("space in an extension", 'file extension ".c ab" is not allowed'),
        ("long extension", 'file extension ".cabinetfileextens" is not allowed'),
        ("not json", "malformed PublishManifest"),
        ("wrong type", "Expected `int`"),
        ("encrypted without a key", "is encrypted, but decryption_keys gives no key"),
        ("key of a plain file", "names no file the manifest marks encrypted"),
        ("key not base64", "Invalid base64 encoded string"),
    ],
)
def test_bad_manifests_are_refused_and_change_nothing(
    run_upmirror: RunUpmirror, publishing_root: Path, tmp_path: Path, problem: str, message: str
) -> None:
    data = b"content of the update" * 100
    manifest = manifest_for(tmp_path, {"good.cab": data, "second.cab": b"second" * 10})
    document = json.loads(manifest.read_text())
    update = document["updates"][0]
    if problem == "wrong digest":
        update["files"][1]["sha1"] = hashlib.sha1(b"other").hexdigest()
    elif problem == "wrong size":
        update["files"][0]["size"] += 1
    elif problem == "missing file":
        (tmp_path / "second.cab").unlink()
    elif problem == "unknown product":
        update["products"] = ["00000000-0000-4000-8000-000000000001"]
    elif problem == "path in a name":
        update["files"][0]["name"] = "../../etc/passwd"
    elif problem == "space in an extension":
        update["files"][0]["name"] = "good.c ab"
    elif problem == "long extension":
        update["files"][0]["name"] = "good.cabinetfileextens"
    elif problem == "wrong type":
        update["revision"] = "one"
    elif problem == "encrypted without a key":
        update["files"][0]["encrypted"] = True
    elif problem == "key of a plain file":
        document["decryption_keys"] = {update["files"][0]["sha1"]: "a2V5IG9mIGEgcGxhaW4gZmlsZQ=="}
    elif problem == "key not base64":
        update["files"][0]["encrypted"] = True
        document["decryption_keys"] = {update["files"][0]["sha1"]: "not base64!"}
    manifest.write_text("{not json" if problem == "not json" else json.dumps(document))
    before = state(publishing_root)
    done = run_upmirror("publish", manifest, "--dir", publishing_root)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert state(publishing_root) == before
    assert partial_is_empty(publishing_root)
