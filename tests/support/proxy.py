"""A real HTTP proxy with Basic authentication on loopback: tinyproxy (Debian) with its own configuration, on a free
port, stopped by its pid. ``with TinyProxy(user="u", password="p") as proxy_url:``."""

from __future__ import annotations

import shutil

from tests.support.nginx import LoopbackDaemon


class TinyProxy(LoopbackDaemon):
    def __init__(self, user: str | None = None, password: str | None = None) -> None:
        super().__init__("upmirror-proxy-")
        self.user = user
        self.password = password

    def __enter__(self) -> str:
        tinyproxy = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
        auth = f"BasicAuth {self.user} {self.password}\n" if self.user else ""
        config = self._scratch / "tinyproxy.conf"
        config.write_text(
            f"Port {self.port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 64\nAllow 127.0.0.1\n"
            f'LogLevel Error\nLogFile "{self._scratch}/tinyproxy.log"\nDisableViaHeader Yes\n{auth}'
        )
        return self.start([tinyproxy, "-d", "-c", str(config)])
