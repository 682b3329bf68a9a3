"""The test support servers themselves work (they are the peers other tests rely on)."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

from tests.support.nginx import NginxServer


def test_nginx_serves_the_directory_and_stops(tmp_path: Path) -> None:
    data = os.urandom(100_000)
    (tmp_path / "f.bin").write_bytes(data)
    server = NginxServer(tmp_path)
    with server as url, urllib.request.urlopen(f"{url}/f.bin", timeout=10) as response:
        assert response.read() == data
    assert server._process is not None
    assert server._process.returncode is not None, "nginx was stopped"
    assert not server._scratch.exists(), "its scratch folder was removed"
