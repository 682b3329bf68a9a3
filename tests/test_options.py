"""Options through the command line, as an administrator uses them: defaults from the specification, invalid values
refused with exit 2 naming the value and nothing changed, secrets stored 0600 and never printed."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path

import pytest

from tests.support.cli import RunUpmirror
from tests.support.tls import make_pki
from upmirror import wsus
from upmirror.catalog.tree import LANGUAGES as CATALOG_LANGUAGES

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
        ("schedule.per_day", "25", "schedule.per_day must be 1-24, not 25"),
        ("schedule.per_day", "0", "schedule.per_day must be 1-24, not 0"),
        ("schedule.per_day", "four", "whole number"),
        ("schedule.first_sync", "25:00", "schedule.first_sync must be HH:MM (UTC), e.g. 03:00, not '25:00'"),
        ("schedule.first_sync", "noon", "schedule.first_sync must be HH:MM (UTC), e.g. 03:00, not 'noon'"),
        ("proxy.port", "65536", "proxy.port must be 1-65535, not 65536"),
        ("source.protocol", "soap", "source.protocol must be one of auto, upmirror, wsus, not 'soap'"),
        ("source.upstream", "microsoft", "or microsoft-update"),
        ("transfer.read_timeout_seconds", "0", "transfer.read_timeout_seconds must be a number above 0 and at most"),
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


def refused(server: Path, run_upmirror: RunUpmirror, *words: str | Path) -> str:
    """Runs ``options set`` expecting exit 2, one line and an unchanged file; returns the line."""
    before = (server / "upmirror.toml").read_bytes()
    result = run_upmirror("options", "set", "--dir", server, *words)
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert (server / "upmirror.toml").read_bytes() == before
    return result.stderr


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (("languages", "klingon"), "unknown language 'klingon'; allowed: ar, bg,"),
        (("languages", "en,xx-INVALID"), "unknown language 'xx-INVALID'"),
        (("content.directory", ""), "content.directory must name a folder of its own"),
        (("content.directory", "./"), "content.directory must name a folder of its own"),
        (("server.host", "not a host!"), "server.host must be an IP address or a host name"),
        (("proxy.host", "proxy host"), "proxy.host must be an IP address or a host name"),
        (
            ("schedule.per_day", "24", "schedule.max_random_offset_minutes", "60"),
            "schedule.max_random_offset_minutes must be less than the 60 minutes between 24 syncs a day, not 60",
        ),
        (("schedule.per_day", "24"), "less than the 60 minutes between 24 syncs a day, not 90"),
    ],
)
def test_values_a_later_command_would_refuse_are_refused_when_set(
    server: Path, run_upmirror: RunUpmirror, words: tuple[str, ...], message: str
) -> None:
    if words == ("schedule.per_day", "24"):  # a spacing that no longer fits the offset already set
        assert (
            run_upmirror("options", "set", "--dir", server, "schedule.max_random_offset_minutes", "90").returncode == 0
        )
    assert message in refused(server, run_upmirror, *words)


def test_a_ca_file_must_exist_and_hold_a_certificate(server: Path, tmp_path: Path, run_upmirror: RunUpmirror) -> None:
    missing = tmp_path / "no-such-ca.pem"
    assert f"source.ca_file '{missing}' does not exist" in refused(server, run_upmirror, "source.ca_file", missing)
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("not a certificate\n")
    assert "holds no certificate" in refused(server, run_upmirror, "source.ca_file", not_pem)
    make_pki(tmp_path)
    result = run_upmirror("options", "set", "--dir", server, "source.ca_file", "test-ca.pem", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert read_options(server)["source"]["ca_file"] == str(tmp_path / "test-ca.pem")  # type: ignore[index]


def test_times_and_languages_are_stored_in_their_usual_spelling(server: Path, run_upmirror: RunUpmirror) -> None:
    result = run_upmirror("options", "set", "--dir", server, "schedule.first_sync", "3:00", "languages", "EN,zh-cn")
    assert result.returncode == 0, result.stderr
    options = read_options(server)
    assert options["schedule"]["first_sync"] == "03:00"  # type: ignore[index]
    assert options["languages"] == ["en", "zh-CN"]


def test_every_language_updates_come_in_is_a_known_language() -> None:
    assert set(CATALOG_LANGUAGES) <= set(wsus.LANGUAGES)
    assert len(wsus.LANGUAGES) >= 35


def test_values_that_no_longer_fit_together_can_be_repaired(server: Path, run_upmirror: RunUpmirror) -> None:
    path = server / "upmirror.toml"
    path.write_text(path.read_text().replace("per_day = 1\n", "per_day = 24\n").replace("= 30\n", "= 300\n"))
    shown = run_upmirror("options", "show", "--dir", server)
    assert shown.returncode == 2
    assert "schedule.max_random_offset_minutes must be less than the 60 minutes" in shown.stderr
    fixed = run_upmirror("options", "set", "--dir", server, "schedule.max_random_offset_minutes", "20")
    assert fixed.returncode == 0, fixed.stderr
    assert run_upmirror("options", "show", "--dir", server).returncode == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'[source]\nupstream = "\xff\xfe"\n', "is not UTF-8 text (byte 0xff at offset 21)"),
        (b"", "is empty, so it no longer says whether this is a root or a downstream server"),
        (b"[server]\nport = 8530\n", "has no [source] section"),
        (b"[source]\ntoken = 'x'\n", "has no source.upstream"),
    ],
)
def test_an_options_file_that_is_not_utf8_or_lost_its_role_is_refused_by_every_command(
    server: Path, run_upmirror: RunUpmirror, content: bytes, message: str
) -> None:
    (server / "upmirror.toml").write_bytes(content)
    for command in (("options", "show"), ("status",), ("updates", "list"), ("products", "list"), ("options", "set")):
        extra = ("languages", "en") if command == ("options", "set") else ()
        result = run_upmirror(*command, "--dir", server, *extra)
        assert result.returncode == 2, (command, result.stderr)
        assert message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert (server / "upmirror.toml").read_bytes() == content


def test_init_writes_the_role_of_a_root_server(tmp_path: Path, run_upmirror: RunUpmirror) -> None:
    assert run_upmirror("init", "--dir", tmp_path / "root").returncode == 0
    assert read_options(tmp_path / "root")["source"]["upstream"] == ""  # type: ignore[index]
    assert run_upmirror("status", "--dir", tmp_path / "root").returncode == 0
