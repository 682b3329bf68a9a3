"""A real ``upmirror serve`` as a child process on a free loopback port, and a small client of its protocol.

``with UpmirrorServer(directory) as server:`` starts it (``--port 0``), reads the port from its first line of output
(``listening on http://127.0.0.1:PORT``), waits until it answers, and on exit stops it with SIGTERM (SIGKILL if it
does not stop within the grace time). ``server.url`` is its base URL; ``add_token(directory)`` issues a downstream
token with the real command line; ``server.call(...)`` makes one HTTP request with http.client (independent of the
server's own code) and returns ``Reply(status, headers, body)``.
"""

from __future__ import annotations

import http.client
import os
import selectors
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar
from urllib.parse import urlsplit

import msgspec

from tests.support.cli import UPMIRROR

STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

T = TypeVar("T")


def add_token(directory: Path, name: str = "downstream") -> str:
    """Issues a downstream token on the server in ``directory`` with ``upmirror tokens add`` and returns it."""
    done = subprocess.run(
        [*UPMIRROR, "tokens", "add", name, "--dir", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def decode(self, kind: type[T]) -> T:
        assert self.status == 200, f"{self.status}: {self.body[:300]!r}"
        return msgspec.msgpack.decode(self.body, type=kind)


class UpmirrorServer:
    """``upmirror serve --dir DIRECTORY --port 0`` as a child process; see the module's description."""

    def __init__(self, directory: Path, *, token: str | None = None, extra_args: tuple[str, ...] = ()) -> None:
        self.directory = directory
        self.token = token
        self.extra_args = extra_args
        self.url = ""
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (kept for the server's lifetime)
        self._connection: http.client.HTTPConnection | None = None

    def __enter__(self) -> UpmirrorServer:
        self.process = subprocess.Popen(
            [*UPMIRROR, "serve", "--dir", str(self.directory), "--host", "127.0.0.1", "--port", "0", *self.extra_args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        try:
            first_line = self._first_line()
            if not first_line.startswith("listening on "):
                raise RuntimeError(f"unexpected first line from upmirror serve: {first_line!r}")
            self.url = first_line.removeprefix("listening on ").strip()
            self.port = urlsplit(self.url).port or 0
        except BaseException:
            self.stop()
            raise
        return self

    def _first_line(self) -> str:
        assert self.process is not None
        assert self.process.stdout is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        line = b""
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    raise TimeoutError(f"upmirror serve did not start: {self.stderr()}")
                byte = os.read(self.process.stdout.fileno(), 1)
                if not byte:
                    raise RuntimeError(f"upmirror serve exited at start: {self.stderr()}")
                line += byte
        return line.decode()

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def stop(self) -> int | None:
        """Stops the server with SIGTERM (then SIGKILL) and returns its exit status."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
        self._stderr.close()

    def call(
        self,
        method: str,
        path: str,
        body: bytes | object | None = None,
        *,
        headers: dict[str, str] | None = None,
        token: str | None = None,
    ) -> Reply:
        """One request on a kept-alive connection; a record body is sent as MessagePack. The server's token is
        used unless ``token`` is given ("" sends none)."""
        if self._connection is None:
            self._connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        sent_headers = dict(headers or {})
        bearer = self.token if token is None else token
        if bearer:
            sent_headers["Authorization"] = f"Bearer {bearer}"
        if body is not None and not isinstance(body, bytes):
            body = msgspec.msgpack.encode(body)
            sent_headers["Content-Type"] = "application/msgpack"
        try:
            self._connection.request(method, path, body=body, headers=sent_headers)
            response = self._connection.getresponse()
            data = response.read()
        except (http.client.HTTPException, OSError):
            self._connection.close()
            self._connection = None
            raise
        if response.getheader("Connection", "").lower() == "close":
            self._connection.close()
            self._connection = None
        return Reply(response.status, response.headers, data)
