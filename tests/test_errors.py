"""Each kind of core error reaches Python as its exception, through real calls: bad input is an InputError (also a
ValueError), an origin nobody listens on an UnreachableError, an untrusted certificate a TlsError, a missing file the
matching OSError subclass."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.downloads import payload, quick_client
from tests.support.faulty_server import FaultyServer
from tests.support.nginx import free_port
from tests.support.tls import make_pki
from upmirror import HttpError, TlsError, UpmirrorError, content_relative_path, hash_file
from upmirror._native import UnreachableError
from upmirror.errors import InputError


def test_a_bad_content_name_is_an_input_error_and_a_value_error() -> None:
    with pytest.raises(InputError) as raised:
        content_relative_path("not-a-sha1", ".cab")
    assert isinstance(raised.value, UpmirrorError)
    assert isinstance(raised.value, ValueError)


def test_an_origin_nobody_listens_on_is_unreachable() -> None:
    port = free_port()
    with pytest.raises(UnreachableError, match=f"http://127.0.0.1:{port} is unreachable") as raised:
        quick_client().request("GET", f"http://127.0.0.1:{port}/x")
    assert isinstance(raised.value, HttpError)


def test_an_untrusted_certificate_is_a_tls_error(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    with (
        FaultyServer({"/t.cab": payload(10, 1)}, ssl_context=pki.server_context) as server,
        pytest.raises(TlsError, match="TLS") as raised,
    ):
        quick_client().request("GET", server.url + "/t.cab")
    assert isinstance(raised.value, HttpError)


def test_a_missing_file_is_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "absent.bin"
    with pytest.raises(FileNotFoundError) as raised:
        hash_file(missing)
    assert raised.value.filename == str(missing)
