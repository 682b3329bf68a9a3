"""A real nginx on loopback serving a directory: the plain web server peer of tests and benchmarks.

Each instance has its own configuration, pid file and logs under a temporary folder, listens on a free loopback
port, and is stopped by its pid on exit.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

STARTUP_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = STARTUP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class LoopbackDaemon:
    """A peer program on a free loopback port with its own scratch folder: ``start(command)`` runs it and waits for
    the port; leaving the ``with`` block stops it with ``stop_signal`` (SIGKILL after 10 s) and removes the folder."""

    stop_signal = signal.SIGTERM

    def __init__(self, prefix: str) -> None:
        self.port = free_port()
        self._scratch = Path(tempfile.mkdtemp(prefix=prefix))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, command: list[str]) -> str:
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(self.port)
        except OSError:
            self.__exit__(None, None, None)
            raise
        return self.url

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._process is not None:
            self._process.send_signal(self.stop_signal)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self._scratch, ignore_errors=True)


class NginxServer(LoopbackDaemon):
    """``with NginxServer(root) as url:`` serves ``root`` at ``url`` (``http://127.0.0.1:PORT``).

    ``limit_rate`` (e.g. ``"25m"``) caps each connection, modelling a WAN link; ``autoindex`` lists directories.
    """

    def __init__(self, root: Path, limit_rate: str | None = None, autoindex: bool = False) -> None:
        self.root = root.resolve()
        self.limit_rate = limit_rate
        self.autoindex = autoindex
        super().__init__("upmirror-nginx-")

    def _config(self) -> str:
        limit = f"limit_rate {self.limit_rate};" if self.limit_rate else ""
        # Directory listings, for peers that discover files by listing (rclone's http backend).
        limit += " autoindex on;" if self.autoindex else ""
        # Started as root, nginx would drop its workers to `nobody`, who cannot read a test's private folder.
        user = "user root;" if os.geteuid() == 0 else ""
        return f"""
{user}
daemon off;
worker_processes 2;
pid {self._scratch}/nginx.pid;
error_log {self._scratch}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    sendfile on;
    tcp_nopush on;
    access_log off;
    keepalive_requests 100000;
    client_body_temp_path {self._scratch}/body;
    proxy_temp_path {self._scratch}/proxy;
    fastcgi_temp_path {self._scratch}/fastcgi;
    uwsgi_temp_path {self._scratch}/uwsgi;
    scgi_temp_path {self._scratch}/scgi;
    types {{ }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{self.port};
        root {self.root};
        {limit}
    }}
}}
"""

    stop_signal = signal.SIGQUIT  # nginx's graceful stop

    def __enter__(self) -> str:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        config = self._scratch / "nginx.conf"
        config.write_text(self._config())
        return self.start([nginx, "-c", str(config), "-p", str(self._scratch)])
