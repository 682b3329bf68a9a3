"""Each kind of core error reaches Python as its exception, through real calls: bad input is an InputError (also a
ValueError), an origin nobody listens on an UnreachableError, an untrusted certificate a TlsError, a missing file the
matching OSError subclass."""

from __future__ import annotations

import _thread
import socket
import threading
from pathlib import Path

import pytest

from tests.support.downloads import payload, quick_client
from tests.support.faulty_server import FaultyServer
from tests.support.nginx import free_port
from tests.support.proxy import TinyProxy
from tests.support.tls import make_pki
from tests.support.waiting import wait_for
from upmirror import HttpError, ProxyAuthenticationError, TlsError, UpmirrorError, content_relative_path, hash_file
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
    assert raised.value.kind == "unreachable"


def test_an_untrusted_certificate_is_a_tls_error(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    with (
        FaultyServer({"/t.cab": payload(10, 1)}, ssl_context=pki.server_context) as server,
        pytest.raises(TlsError, match="TLS") as raised,
    ):
        quick_client().request("GET", server.url + "/t.cab")
    assert isinstance(raised.value, HttpError)
    assert raised.value.kind == "tls"


def test_a_missing_file_is_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "absent.bin"
    with pytest.raises(FileNotFoundError) as raised:
        hash_file(missing)
    assert raised.value.filename == str(missing)


def test_a_connection_reset_mid_answer_is_an_http_error_of_kind_reset() -> None:
    with FaultyServer({"/r.cab": payload(200_000, 2)}) as server:
        server.plan("/r.cab", "reset")
        with pytest.raises(HttpError) as raised:
            quick_client().request("GET", server.url + "/r.cab")
    assert raised.value.kind == "reset"
    assert type(raised.value) is HttpError
    assert "/r.cab" in str(raised.value)


def test_a_server_silent_past_the_read_timeout_is_an_http_error_of_kind_timed_out() -> None:
    with FaultyServer({"/s.cab": payload(200_000, 3)}) as server:
        server.plan("/s.cab", "stall")
        with pytest.raises(HttpError, match="timed out") as raised:
            quick_client().request("GET", server.url + "/s.cab")
    assert raised.value.kind == "timed_out"


def test_a_503_is_retried_until_the_answer_comes_and_the_server_counts_each_try() -> None:
    data = payload(5000, 4)
    with FaultyServer({"/m.bin": data}) as server:
        server.plan("/m.bin", "status:503", "status:503")
        response = quick_client().request("GET", server.url + "/m.bin", retries=2, backoff=0.01)
        assert (response.status, response.body) == (200, data)
        assert server.requests("/m.bin") == 3
        # Without retries the 503 is the answer, returned as is; a transport failure is retried the same way.
        server.plan("/m.bin", "status:503", "reset")
        assert quick_client().request("GET", server.url + "/m.bin").status == 503
        assert quick_client().request("GET", server.url + "/m.bin", retries=1, backoff=0.01).body == data
        assert server.requests("/m.bin") == 6


def test_retries_end_with_the_last_answer_and_retry_after_is_honoured() -> None:
    with FaultyServer({"/b.bin": b"x"}) as server:
        server.plan("/b.bin", "status:429:0", "status:503", "status:503")
        response = quick_client().request("GET", server.url + "/b.bin", retries=2, backoff=0.01)
        assert response.status == 503
        assert server.requests("/b.bin") == 3


def test_a_proxy_refusing_a_tunnel_is_a_proxy_authentication_error(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    with (
        FaultyServer({"/t.cab": payload(10, 5)}, ssl_context=pki.server_context) as server,
        TinyProxy(user="mirror", password="pa55-w0rd") as proxy,
    ):
        # https through a proxy is a CONNECT tunnel; tinyproxy answers it 407 unless given its credentials.
        anonymous = quick_client(proxy_url=proxy, ca_file=pki.ca_file)
        with pytest.raises(ProxyAuthenticationError, match="no proxy user and password are set") as raised:
            anonymous.request("GET", server.url + "/t.cab", retries=3, backoff=0.01)
        assert raised.value.kind == "proxy_refused"
        basic_refused = quick_client(
            proxy_url=proxy, ca_file=pki.ca_file, proxy_user="mirror", proxy_password="pa55-w0rd"
        )
        with pytest.raises(ProxyAuthenticationError, match="allow basic authentication") as raised:
            basic_refused.request("GET", server.url + "/t.cab")
        assert "pa55-w0rd" not in str(raised.value)


def test_an_answer_that_is_not_http_is_an_http_error_of_kind_body() -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def answer_garbage() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"NOT HTTP AT ALL\r\n\r\n")

    thread = threading.Thread(target=answer_garbage, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    with listener, pytest.raises(HttpError) as raised:
        quick_client().request("GET", f"http://127.0.0.1:{port}/g")
    thread.join(timeout=10)
    assert raised.value.kind == "body"


def test_ctrl_c_ends_a_request_waiting_for_its_retry() -> None:
    with FaultyServer({"/w.bin": b"x"}) as server:
        server.plan("/w.bin", "status:503:3600")  # Retry-After: an hour (held to the policy's cap)

        def interrupt_once_answered() -> None:
            wait_for(lambda: server.requests("/w.bin") == 1, 10, "the first attempt")
            _thread.interrupt_main()  # what Ctrl-C does

        thread = threading.Thread(target=interrupt_once_answered, daemon=True)
        thread.start()
        with pytest.raises(KeyboardInterrupt):
            quick_client().request("GET", server.url + "/w.bin", retries=1)
        thread.join(timeout=10)
        assert server.requests("/w.bin") == 1
