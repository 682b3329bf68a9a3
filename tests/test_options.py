"""Options through the command line, as an administrator uses them: defaults from the specification, invalid values
refused with exit 2 naming the value and nothing changed, secrets stored 0600 and never printed."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path

import pytest

from tests.conftest import RunUpmirror
from upmirror import wsus

SECRET = "s3cr3t-Pa55"


@pytest.fixture
def server(tmp_path: Path, run_upmirror: RunUpmirror) -> Path:
    directory = tmp_path / "server"
    result = run_upmirror("init", "--dir", directory, "--upstream", "https://upstream.example:8531")
    assert result.returncode == 0, result.stderr
    return directory


def read_options(directory: Path) -> dict[str, object]:
    return tomllib.loads((directory / "upmirror.toml").read_text())


def test_init_creates_the_server_directory_with_the_specification_defaults(server: Path) -> None:
    assert (server / "content").is_dir()
    assert (server / "logs").is_dir()
    assert stat.S_IMODE((server / "upmirror.toml").stat().st_mode) == 0o600
    options = read_options(server)
    assert options["products"] == [wsus.WINDOWS_FAMILY]
    assert options["classifications"] == [
        "e6cf1350-c01b-414d-a61f-263d14d133b4",  # Critical Updates
        "0fa1201d-4330-4fa8-8ae9-b877473b6441",  # Security Updates
    ]
    assert options["languages"] == ["en"]
    assert options["schedule"] == {
        "automatic": False,
        "first_sync": "03:00",
        "per_day": 1,
        "max_random_offset_minutes": 30,
        "retries": 2,
        "retry_interval_minutes": 15.0,
    }


def test_init_with_content_elsewhere(tmp_path: Path, run_upmirror: RunUpmirror) -> None:
    content = tmp_path / "elsewhere"
    result = run_upmirror("init", "--dir", tmp_path / "s", "--content-dir", content)
    assert result.returncode == 0, result.stderr
    assert content.is_dir()
    assert not (tmp_path / "s" / "content").exists()


@pytest.mark.parametrize(
    "url",
    ["ftp://host", "host:8530", "http://", "http://host:0", "http://host:70000", "http://u:p@host", "http://h/x"],
)
def test_malformed_upstream_urls_are_refused(tmp_path: Path, run_upmirror: RunUpmirror, url: str) -> None:
    result = run_upmirror("init", "--dir", tmp_path / "s", "--upstream", url)
    assert result.returncode == 2
    assert url in result.stderr
    assert "expected http://HOST[:PORT]" in result.stderr
    assert not (tmp_path / "s").exists()


def test_init_refuses_an_existing_server_and_a_replica_without_upstream(
    server: Path, tmp_path: Path, run_upmirror: RunUpmirror
) -> None:
    before = (server / "upmirror.toml").read_bytes()
    again = run_upmirror("init", "--dir", server)
    assert again.returncode == 2
    assert "already a server directory" in again.stderr
    assert (server / "upmirror.toml").read_bytes() == before
    replica = run_upmirror("init", "--dir", tmp_path / "r", "--replica")
    assert replica.returncode == 2
    assert "--replica needs --upstream" in replica.stderr


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("schedule.per_day", "25", "schedule.per_day"),
        ("schedule.per_day", "0", "schedule.per_day"),
        ("schedule.per_day", "four", "whole number"),
        ("schedule.first_sync", "25:00", "schedule.first_sync"),
        ("proxy.port", "65536", "proxy.port"),
        ("proxy.allow_basic_auth", "maybe", "true or false"),
        ("source.upstream", "gopher://x", "gopher://x"),
        ("no.such", "1", "unknown option 'no.such'"),
        ("languages", "en,en", "twice"),
    ],
)
def test_invalid_values_exit_2_and_change_nothing(
    server: Path, run_upmirror: RunUpmirror, key: str, value: str, message: str
) -> None:
    before = (server / "upmirror.toml").read_bytes()
    result = run_upmirror("options", "set", "--dir", server, key, value)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert (server / "upmirror.toml").read_bytes() == before


def test_valid_values_are_stored(server: Path, run_upmirror: RunUpmirror) -> None:
    for key, value in [
        ("schedule.automatic", "true"),
        ("schedule.per_day", "4"),
        ("schedule.first_sync", "03:00"),
        ("languages", "en, de ,fr"),
        ("proxy.port", "3128"),
    ]:
        result = run_upmirror("options", "set", "--dir", server, key, value)
        assert result.returncode == 0, result.stderr
    options = read_options(server)
    assert options["languages"] == ["en", "de", "fr"]
    assert options["schedule"]["per_day"] == 4  # type: ignore[index]
    assert options["proxy"]["port"] == 3128  # type: ignore[index]


def test_secrets_are_stored_0600_and_never_printed(server: Path, run_upmirror: RunUpmirror) -> None:
    for key in ("proxy.password", "source.token"):
        result = run_upmirror("options", "set", "--dir", server, key, SECRET)
        assert result.returncode == 0, result.stderr
        assert SECRET not in result.stdout + result.stderr
    assert stat.S_IMODE((server / "upmirror.toml").stat().st_mode) == 0o600
    assert read_options(server)["proxy"]["password"] == SECRET  # type: ignore[index]
    for output in ("--json", None):
        shown = run_upmirror("options", "show", "--dir", server, *([output] if output else []))
        assert shown.returncode == 0, shown.stderr
        assert SECRET not in shown.stdout + shown.stderr
    shown_json = json.loads(run_upmirror("options", "show", "--dir", server, "--json").stdout)
    assert shown_json["proxy"]["password"] == "********"


def test_a_directory_that_is_not_a_server_is_a_clear_error(tmp_path: Path, run_upmirror: RunUpmirror) -> None:
    result = run_upmirror("options", "show", "--dir", tmp_path)
    assert result.returncode == 2
    assert "not an upmirror server directory" in result.stderr
