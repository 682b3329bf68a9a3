"""``upmirror tune`` and ``upmirror bench`` over real servers: a root ``upmirror serve`` with a generated catalog and a
downstream synchronized from it with the real command line. Speed is never asserted, only behaviour: a table and a
choice within the grid, ``--apply`` changing exactly the two transfer options, JSON output, scratch files removed,
and the one-line refusals (exit 2) and failures (exit 1)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import UPMIRROR, ok, upmirror
from tests.support.nginx import free_port
from tests.support.upmirror_server import UpmirrorServer, add_token

CONNECTIONS = (2, 3)  # neither is the default (16), so --apply must change the file
CHUNKS_MIB = (1, 2)  # nor is either the default chunk size (4 MiB)
GRID = ("--connections", ",".join(map(str, CONNECTIONS)), "--chunk-sizes", ",".join(map(str, CHUNKS_MIB)))
DIGESTS = ("blake3", "sha256", "sha1", "xxh3", "all in one pass")


def toml_of(directory: Path) -> dict[str, Any]:
    return tomllib.loads((directory / "upmirror.toml").read_text())


def content_listing(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in (directory / "content").rglob("*"))


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, str]]:
    """(root directory, downstream directory synchronized once from it, the root's URL)."""
    base = tmp_path_factory.mktemp("tune")
    root = base / "root"
    ok("catalog", "generate", root, "--updates", "200", "--content-size", "32M", "--seed", "5")
    token = add_token(root, "branch")
    with UpmirrorServer(root, token=token) as server:
        downstream = base / "downstream"
        ok("init", "--dir", downstream, "--upstream", server.url)
        ok("options", "set", "--dir", downstream, "source.token", token)
        ok("sync", "--dir", downstream)
        assert content_listing(downstream), "the downstream must hold files for these tests to mean anything"
        yield root, downstream, server.url


@pytest.fixture
def downstream_copy(servers: tuple[Path, Path, str], tmp_path: Path) -> Path:
    """A copy of the synchronized downstream that a test may change."""
    return Path(shutil.copytree(servers[1], tmp_path / "copy"))


def test_tune_prints_a_table_and_a_choice_within_the_grid_and_leaves_nothing_behind(
    servers: tuple[Path, Path, str], tmp_path: Path
) -> None:
    _, downstream, _ = servers
    options_before, content_before = toml_of(downstream), content_listing(downstream)
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    done = upmirror("tune", "--dir", downstream, "--seconds", "3", *GRID, scratch=scratch)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["connections", "chunk"])
    rows = [line.split() for line in lines[header + 1 :] if line.strip() and line.split()[0].isdigit()]
    measured = {(int(row[0]), int(row[1])) for row in rows}
    # The coarse pass tries every number of connections; every row is a setting of the grid.
    assert {c for c, _ in measured} == set(CONNECTIONS)
    assert measured <= {(c, k) for c in CONNECTIONS for k in CHUNKS_MIB}
    choice = next(line for line in lines if line.startswith("choice: "))
    chosen = (int(choice.split()[1]), int(choice.split()[3]))
    assert chosen in measured
    assert sum("<- choice" in line for line in lines) == 1
    assert "upmirror tune --apply" in done.stdout  # the choice differs from the current options: say how to apply
    # Nothing changed in the server directory, and the scratch downloads are gone.
    assert toml_of(downstream) == options_before
    assert content_listing(downstream) == content_before
    assert list(scratch.iterdir()) == []


def test_tune_json_is_machine_readable(servers: tuple[Path, Path, str]) -> None:
    _, downstream, _ = servers
    record = json.loads(ok("tune", "--dir", downstream, "--seconds", "2", "--json", *GRID))

    grid = {(c, k) for c in CONNECTIONS for k in CHUNKS_MIB}
    measured = {(m["connections"], m["chunk_size_mib"]): m for m in record["measurements"]}
    assert set(measured) <= grid
    assert (record["choice"]["connections"], record["choice"]["chunk_size_mib"]) in measured
    assert record["current"] == {"connections": 16, "chunk_size_mib": 4}
    assert record["applied"] is False
    assert record["files"] >= 1
    assert record["sample_bytes"] > 0
    for m in measured.values():
        assert m["runs"] >= 1
        assert m["min_bytes_per_second"] <= m["median_bytes_per_second"] <= m["max_bytes_per_second"]
        assert m["spread"] >= 0


def test_tune_apply_changes_exactly_the_two_transfer_options(downstream_copy: Path) -> None:
    before = toml_of(downstream_copy)

    record = json.loads(ok("tune", "--dir", downstream_copy, "--seconds", "2", "--apply", "--json", *GRID))

    assert record["applied"] is True
    expected = json.loads(json.dumps(before))
    expected["transfer"]["connections"] = record["choice"]["connections"]
    expected["transfer"]["chunk_size_mib"] = record["choice"]["chunk_size_mib"]
    after = toml_of(downstream_copy)
    assert after == expected
    assert after["transfer"]["connections"] in CONNECTIONS
    assert after["transfer"]["chunk_size_mib"] in CHUNKS_MIB
    assert (downstream_copy / "upmirror.toml").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("--seconds", "0"), "--seconds"),
        (("--seconds", "soon"), "--seconds"),
        (("--seconds", "nan"), "--seconds"),
        (("--seconds", "-5"), "--seconds"),
        (("--connections", "0,8"), "--connections"),
        (("--chunk-sizes", "4,big"), "--chunk-sizes"),
    ],
)
def test_tune_refuses_bad_arguments_and_changes_nothing(
    servers: tuple[Path, Path, str], arguments: tuple[str, ...], message: str
) -> None:
    _, downstream, _ = servers
    before = toml_of(downstream)
    done = upmirror("tune", "--dir", downstream, "--apply", *arguments)
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1
    assert message in done.stderr
    assert toml_of(downstream) == before


def test_tune_refuses_a_root_server_and_a_directory_that_is_no_server(
    servers: tuple[Path, Path, str], tmp_path: Path
) -> None:
    root, _, _ = servers
    done = upmirror("tune", "--dir", root, "--seconds", "1")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"upmirror: {root} is a root server: it has no upstream link to tune"]

    done = upmirror("tune", "--dir", tmp_path, "--seconds", "1")
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1
    assert "is not an upmirror server directory" in done.stderr


def test_tune_before_the_first_sync_says_to_synchronize_once(servers: tuple[Path, Path, str], tmp_path: Path) -> None:
    _, _, url = servers
    fresh = tmp_path / "fresh"
    ok("init", "--dir", fresh, "--upstream", url)
    done = upmirror("tune", "--dir", fresh, "--seconds", "1")
    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 1
    assert "synchronize once first" in done.stderr


def test_tune_with_the_upstream_unreachable_fails_with_one_line(downstream_copy: Path) -> None:
    before_token = toml_of(downstream_copy)["source"]["token"]
    ok(
        "options", "set", "--dir", downstream_copy,
        "source.upstream", f"http://127.0.0.1:{free_port()}", "transfer.retries", "0",
    )  # fmt: skip
    before = toml_of(downstream_copy)
    done = upmirror("tune", "--dir", downstream_copy, "--seconds", "2", "--apply", *GRID)
    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 1
    assert "download from the upstream failed" in done.stderr
    assert before_token not in done.stderr + done.stdout  # the token is never shown
    assert toml_of(downstream_copy) == before


def test_bench_prints_every_digest_and_the_download_of_a_downstream(
    servers: tuple[Path, Path, str], tmp_path: Path
) -> None:
    _, downstream, _ = servers
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    done = upmirror("bench", "--size", "4M", "--seconds", "2", "--dir", downstream, scratch=scratch)

    assert done.returncode == 0, done.stderr
    rows = {line[:28].strip(): line for line in done.stdout.splitlines()}
    for digest in DIGESTS:
        assert f"hash {digest}" in rows, done.stdout
    assert any(label.startswith("download 16 x 4 MiB") for label in rows), done.stdout  # the current options
    assert list(scratch.iterdir()) == []


def test_bench_json_without_a_server_measures_hashing_only(tmp_path: Path) -> None:
    done = subprocess.run(
        [*UPMIRROR, "bench", "--size", "2M", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={key: value for key, value in os.environ.items() if key != "UPMIRROR_DIR"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert set(record["hashing"]) == set(DIGESTS)
    for runs in record["hashing"].values():
        assert runs["runs"] == 3
        assert runs["median_bytes_per_second"] > 0
    assert record["download"] is None
    assert "no server directory" in record["download_note"]


def test_bench_refuses_a_directory_that_is_no_server(tmp_path: Path) -> None:
    done = upmirror("bench", "--size", "1M", "--dir", tmp_path)
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1
    assert "is not an upmirror server directory" in done.stderr
