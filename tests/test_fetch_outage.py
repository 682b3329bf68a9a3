"""The download engine when connections to the origin cannot be made at all: an origin gone for good ends every file at
once as unreachable after the outage budget (not five retries per file), a short outage is waited out without failing
a file, and a proxy that is down is named as the one unreachable. Refused connection attempts are counted by the
kernel, in a private network namespace (tests/support/netns.py), since no server sees them."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.support.downloads import CHUNK, content_job, payload, placed_path, quick_client
from tests.support.faulty_server import FaultyServer
from tests.support.netns import in_private_network, tcp_counter
from tests.support.nginx import free_port
from tests.support.waiting import wait_for
from upmirror._native import UnreachableError

CIRCUIT_THRESHOLD = 3  # refused connections in a row before the engine takes the origin for down (fetch.rs)


def origin_gone_for_good(files: int) -> dict[str, Any]:
    """Runs in a private network namespace: nothing ever listens on the origin's port."""
    url = f"http://127.0.0.1:{free_port()}"
    jobs = [content_job(f"{url}/g{i}.cab", payload(2000 + i, i)) for i in range(files)]
    jobs.append(content_job(f"{url}/big.cab", payload(5 * CHUNK, 99)))
    with tempfile.TemporaryDirectory() as directory:
        before = tcp_counter("AttemptFails")
        report = quick_client().download(
            jobs, directory, chunk_size=CHUNK, connections=4, retries=5, backoff=0.01, outage_budget=0.3
        )
        refused = tcp_counter("AttemptFails") - before
    return {
        "url": url,
        "refused": refused,
        "statuses": [o.status for o in report.outcomes],
        "reasons": [o.reason for o in report.outcomes],
        "unreachable": report.unreachable,
    }


def test_an_origin_gone_for_good_ends_every_file_at_once_as_unreachable() -> None:
    files = 200
    result = in_private_network(origin_gone_for_good, files)
    assert result["statuses"] == ["failed"] * (files + 1)
    assert f"{result['url']} is unreachable" in result["unreachable"]
    assert all(f"{result['url']} is unreachable" in reason for reason in result["reasons"])
    # Files waited for the origin instead of retrying on their own (which took six attempts per file): a burst of
    # the files under way (4 connections x 4 file tasks) and a few probes, far fewer attempts than files.
    assert result["refused"] < files / 4, result["refused"]


def origin_back_after_an_outage(files: int) -> dict[str, Any]:
    """Runs in a private network namespace: the origin starts listening only once the engine has been refused as
    often as it takes to consider the origin down."""
    contents = {f"/o{i}.cab": payload(3000 + i, 200 + i) for i in range(files)}
    contents["/big.cab"] = payload(6 * CHUNK + 5, 300)
    server = FaultyServer(contents)  # its port is chosen; it is not listening yet
    jobs = [content_job(server.url + path, data) for path, data in contents.items()]
    outcome: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as directory:
        before = tcp_counter("AttemptFails")

        def download() -> None:
            report = quick_client().download(jobs, directory, chunk_size=CHUNK, connections=4, retries=0, backoff=0.01)
            outcome["statuses"] = [o.status for o in report.outcomes]
            outcome["reasons"] = [o.reason for o in report.outcomes if o.reason]
            outcome["unreachable"] = report.unreachable
            present = [(placed_path(Path(directory), data), data) for data in contents.values()]
            outcome["intact"] = all(path.read_bytes() == data for path, data in present if path.exists())

        thread = threading.Thread(target=download)
        thread.start()
        wait_for(
            lambda: tcp_counter("AttemptFails") - before >= CIRCUIT_THRESHOLD or not thread.is_alive(),
            60,
            "the refused connection attempts",
            interval=0.005,
        )
        outcome["refused_while_down"] = tcp_counter("AttemptFails") - before
        with server:
            thread.join(timeout=120)
        outcome["requests"] = sum(server.requests(path) for path in contents)
    return outcome


def test_a_short_outage_is_waited_out_without_failing_a_file() -> None:
    files = 30
    result = in_private_network(origin_back_after_an_outage, files)
    assert result["refused_while_down"] >= CIRCUIT_THRESHOLD
    # No retries were allowed per file: before, every refused connection failed its file.
    assert result["statuses"] == ["placed"] * (files + 1), result["reasons"]
    assert result["unreachable"] is None
    assert result["intact"]


def test_a_proxy_that_is_down_is_named_not_the_upstream(tmp_path: Path) -> None:
    proxy = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    data = payload(4000, 41)
    with FaultyServer({"/p.cab": data}) as server:
        client = quick_client(proxy_url=proxy)
        with pytest.raises(UnreachableError, match=f"proxy {proxy} is unreachable"):
            client.request("GET", server.url + "/p.cab")
        report = client.download([content_job(server.url + "/p.cab", data)], tmp_path, outage_budget=0, backoff=0.01)
        assert server.requests("/p.cab") == 0
    assert report.failed == 1
    assert f"proxy {proxy} is unreachable" in (report.unreachable or "")
    assert f"proxy {proxy} is unreachable" in (report.outcomes[0].reason or "")
