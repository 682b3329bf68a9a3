"""W10: serve the WSUS protocol (MS-WSUSSS). A root ``upmirror serve`` with a generated catalog (100,000 updates;
10,000 with --quick) answers, over kept-alive connections with a sync cookie:

- GetRevisionIdList of every product, classification and language (Delta false): every revision in one answer
  (its time and size);
- GetUpdateData in batches of 100 (the limit WSUS announces) from several downstream clients at once: updates/s and
  bytes/s of SOAP (XML blobs, cabinets above 5,120 bytes);
- W8 again, /Content served to curl (one large file, and small files over 16 connections), alone and while the
  GetUpdateData clients keep asking: serving the protocol must not slow /Content. Measured twice: with the clients
  at the machine's normal priority (they then take CPU from the front themselves), and at nice 19, which stands in
  for WSUS downstream servers on other machines, so what remains is the server's own metadata work.

There is no peer; the target is a revision list under 1 s at 100,000 updates, and W8 unchanged.
"""

from __future__ import annotations

import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from tests.support.upmirror_server import UpmirrorServer

from benches.harness import Report, alternate, require, run_quietly
from benches.w8_serve import make_content
from upmirror import wsus
from upmirror._native import HttpResponse
from upmirror.model import FilterItem
from upmirror.serversync import languages
from upmirror.serversync.client import ServerSyncSession, id_and_delta
from upmirror.serversync.server import SERVER_SYNC_PATH
from upmirror.serversync.soap import (
    CONTENT_TYPE,
    SERVER_SYNC,
    element,
    envelope,
    read_envelope,
    read_update_identities,
    update_identity,
)
from upmirror.store import Store

FULL = {"updates": 100_000, "data_updates": 20_000, "clients": 4, "big": 512 << 20, "small_files": 2000, "runs": 5}
QUICK = {"updates": 10_000, "data_updates": 5_000, "clients": 4, "big": 256 << 20, "small_files": 1000, "runs": 5}
BATCH = 100
SMALL_CONTENT = ("--content-size", "16M", "--seed", "1")


@dataclass
class Reply:
    status: int
    body: bytes


class Connection:
    """One kept-alive connection of a downstream server."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

    def send(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> Reply:
        path = url.split("://", 1)[1].partition("/")[2]
        self.connection.request(method, "/" + path, body=body, headers=headers)
        response = self.connection.getresponse()
        return Reply(response.status, response.read())


def soap_body(operation: str, cookie: tuple[str, str], parts: list[str]) -> bytes:
    cookie_part = f"<cookie>{element('Expiration', cookie[0])}{element('EncryptedData', cookie[1])}</cookie>"
    return b"".join(envelope(operation, SERVER_SYNC, [cookie_part, *parts]))


def post(connection: Connection, operation: str, body: bytes) -> bytes:
    headers = {"content-type": CONTENT_TYPE, "soapaction": f'"{SERVER_SYNC}/{operation}"'}
    reply = connection.send("POST", f"http://x{SERVER_SYNC_PATH}", body, headers)
    if reply.status != 200:
        raise SystemExit(f"{operation}: HTTP {reply.status} {reply.body[:300]!r}")
    return reply.body


def run(quick: bool) -> Report:
    tools = require("curl")
    sizes = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="upmirror-w10-") as scratch_name:
        scratch = Path(scratch_name)
        root = scratch / "root"
        upmirror = [sys.executable, "-m", "upmirror.cli"]
        subprocess.run(
            [*upmirror, "catalog", "generate", str(root), "--updates", str(sizes["updates"]), *SMALL_CONTENT],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=1800,
        )
        for key, value in (("server.anonymous_wsus_sync", "true"), ("server.anonymous_content", "true")):
            subprocess.run([*upmirror, "options", "set", "--dir", str(root), key, value], check=True)
        with Store.open(root / "upmirror.db") as store:
            products = [c.id for c in store.categories() if c.kind == "product"]
            offered = store.languages()
        big, small = make_content(root / "content", sizes["big"], sizes["small_files"])

        with UpmirrorServer(root) as server:
            # The client's session takes the cookie; its transport here is plain http.client.
            send = cast(
                "Callable[[str, str, bytes | None, dict[str, str]], HttpResponse]", Connection(server.port).send
            )
            session = ServerSyncSession(server.url, send, account="w10-bench")
            session.authenticate()
            assert session.cookie is not None
            cookie = session.cookie
            locales = [languages.locale_id(code) for code in offered]
            listing_body = soap_body(
                "GetRevisionIdList",
                cookie,
                [
                    "<filter>",
                    element("GetConfig", False),
                    element("Get63LanguageOnly", False),
                    id_and_delta("Categories", [FilterItem(p, False) for p in products]),
                    id_and_delta("Classifications", [FilterItem(c, False) for c in wsus.CLASSIFICATIONS.values()]),
                    "<Languages>"
                    + "".join(
                        f"<LanguageAndDelta>{element('Id', locale)}{element('Delta', False)}</LanguageAndDelta>"
                        for locale in locales
                        if locale is not None
                    )
                    + "</Languages>",
                    "</filter>",
                ],
            )
            lister = Connection(server.port)
            listing = post(lister, "GetRevisionIdList", listing_body)
            answer = read_envelope(listing).path("GetRevisionIdListResult", "NewRevisions")
            revisions = read_update_identities(answer)
            wanted = revisions[: sizes["data_updates"]]
            batches = [
                soap_body(
                    "GetUpdateData",
                    cookie,
                    ["<updateIds>", *(update_identity(u, r) for u, r in wanted[i : i + BATCH]), "</updateIds>"],
                )
                for i in range(0, len(wanted), BATCH)
            ]
            clients = [Connection(server.port) for _ in range(sizes["clients"])]
            data_bytes = [0]

            def update_data(elsewhere: bool = False) -> None:
                """Every batch once, shared among the clients (each takes the next batch not yet taken); clients
                ``elsewhere`` run at the lowest CPU priority."""
                taken = iter(range(len(batches)))
                lock = threading.Lock()
                received = [0] * len(clients)

                def client(number: int) -> None:
                    if elsewhere:
                        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
                    while True:
                        with lock:
                            index = next(taken, None)
                        if index is None:
                            return
                        received[number] += len(post(clients[number], "GetUpdateData", batches[index]))

                threads = [threading.Thread(target=client, args=(n,)) for n in range(len(clients))]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                data_bytes[0] = sum(received)

            busy = threading.Event()

            def background_load(elsewhere: bool) -> None:
                while busy.is_set():
                    update_data(elsewhere)

            base = server.url

            def big_file() -> None:
                run_quietly([tools["curl"], "--fail", "-s", "-o", "/dev/null", f"{base}/Content/{big}"])

            config = scratch / "small.cfg"
            config.write_text("".join(f'url = "{base}/Content/{p}"\noutput = "/dev/null"\n' for p in small))

            def small_files() -> None:
                run_quietly([tools["curl"], "--fail", "-s", "-Z", "--parallel-max", "16", "-K", str(config)])

            big_file()
            update_data()  # warm
            protocol_times = alternate(
                {
                    "GetRevisionIdList, every revision": lambda: post(lister, "GetRevisionIdList", listing_body),
                    f"GetUpdateData, batches of {BATCH}, {len(clients)} clients": update_data,
                },
                sizes["runs"],
            )
            content_times = alternate(
                {"W8 large file, alone": big_file, "W8 small files, alone": small_files},
                sizes["runs"],
            )
            loaded_times: dict[str, list[float]] = {}
            for elsewhere, label in ((False, "during GetUpdateData"), (True, "during GetUpdateData from elsewhere")):
                busy.set()
                loader = threading.Thread(target=background_load, args=(elsewhere,))
                loader.start()
                time.sleep(1.0)
                try:
                    loaded_times |= alternate(
                        {f"W8 large file, {label}": big_file, f"W8 small files, {label}": small_files},
                        sizes["runs"],
                    )
                finally:
                    busy.clear()
                    loader.join()

    report = Report(
        "W10",
        f"serve MS-WSUSSS from a {sizes['updates']:,}-update catalog: GetRevisionIdList of {len(revisions):,} "
        f"revisions, GetUpdateData of {len(wanted):,} updates, /Content alongside",
    )
    report.add_all(protocol_times, upmirror_prefix="")
    for times in (content_times, loaded_times):
        report.add_all(times, upmirror_prefix="")
    data_seconds = statistics.median(protocol_times[f"GetUpdateData, batches of {BATCH}, {len(clients)} clients"])
    listing_seconds = statistics.median(protocol_times["GetRevisionIdList, every revision"])

    def share(kind: str, label: str) -> float:
        """/Content's rate during GetUpdateData as a share of its rate alone."""
        alone = statistics.median(content_times[f"W8 {kind}, alone"])
        return alone / statistics.median(loaded_times[f"W8 {kind}, during GetUpdateData{label}"])

    big_ratio, small_ratio = share("large file", ""), share("small files", "")
    big_elsewhere, small_elsewhere = share("large file", " from elsewhere"), share("small files", " from elsewhere")
    report.notes.append(
        f"GetRevisionIdList: {len(revisions):,} revisions in {listing_seconds:.3f} s, {len(listing):,} bytes of SOAP "
        f"(target < 1 s at 100,000). GetUpdateData: {len(wanted) / data_seconds:,.0f} updates/s, "
        f"{data_bytes[0] / data_seconds / 1e6:.1f} MB/s ({data_bytes[0]:,} bytes per pass, {len(clients)} clients). "
        f"/Content during GetUpdateData, as a share of its rate alone: large file {big_ratio:.2f}x "
        f"({sizes['big'] >> 20} MiB), small files {small_ratio:.2f}x ({len(small):,} files of 1-64 KiB); with the "
        f"clients at nice 19, as if on other machines: large file {big_elsewhere:.2f}x, small files "
        f"{small_elsewhere:.2f}x. 2 cores shared by server, clients and curl, and with other work."
    )
    return report
