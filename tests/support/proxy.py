"""A real HTTP proxy with Basic authentication on loopback: tinyproxy (Debian) with its own configuration, on a free
port, stopped by its pid. ``with TinyProxy(user="u", password="p") as proxy_url:``."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from tests.support.nginx import free_port, wait_for_port


class TinyProxy:
    def __init__(self, user: str | None = None, password: str | None = None) -> None:
        self.port = free_port()
        self.user = user
        self.password = password
        self._scratch = Path(tempfile.mkdtemp(prefix="upmirror-proxy-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> str:
        tinyproxy = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
        auth = f"BasicAuth {self.user} {self.password}\n" if self.user else ""
        config = self._scratch / "tinyproxy.conf"
        config.write_text(
            f"Port {self.port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 64\nAllow 127.0.0.1\n"
            f'LogLevel Error\nLogFile "{self._scratch}/tinyproxy.log"\nDisableViaHeader Yes\n{auth}'
        )
        self._process = subprocess.Popen(
            [tinyproxy, "-d", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
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
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self._scratch, ignore_errors=True)
