"""P1: the sync protocol on a large catalog. A root ``upmirror serve`` with a generated catalog (100,000 updates; 20,000
in quick mode) answers a full revision listing (every product, classification and language, all new), an incremental
listing with nothing changed, and the update data of every listed revision in batches of the announced limit, over
one kept-alive connection, raw and decoded into records as a downstream would. There is no peer: the targets are a
full listing of 100,000 updates under a second, and update data fast enough that the metadata phase of a sync is not
the bottleneck. ("files/s" in the table reads as updates per second.)
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import tempfile
from pathlib import Path

import msgspec
from tests.support.upmirror_server import UpmirrorServer, add_token

from benches.harness import Report, alternate, require, run_quietly
from upmirror import wsus
from upmirror.catalog import tree
from upmirror.model import FilterItem, RevisionsRequest, RevisionsResponse, UpdatesRequest, UpdatesResponse

FULL = {"updates": 100_000, "runs": 5}
QUICK = {"updates": 20_000, "runs": 3}
BATCH = 100


def everything(anchor: str = "", delta: bool = False) -> RevisionsRequest:
    return RevisionsRequest(
        anchor=anchor,
        products=[FilterItem(tree.category_id(family), delta) for family in tree.FAMILIES],
        classifications=[FilterItem(c, delta) for c in wsus.CLASSIFICATIONS.values()],
        languages=[FilterItem(lang, delta) for lang in tree.LANGUAGES],
    )


class Client:
    """One kept-alive connection, as a downstream's sync uses."""

    def __init__(self, port: int, token: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/msgpack"}

    def post(self, path: str, record: object) -> bytes:
        self.connection.request("POST", path, body=msgspec.msgpack.encode(record), headers=self.headers)
        response = self.connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {body[:200]!r}")
        return body

    def close(self) -> None:
        self.connection.close()


def run(quick: bool) -> Report:
    tools = require("curl")
    sizes = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="upmirror-p1-") as scratch_name:
        root = Path(scratch_name) / "root"
        subprocess.run(
            [
                *(sys.executable, "-m", "upmirror.cli", "catalog", "generate", str(root)),
                *("--updates", str(sizes["updates"]), "--content-size", "16M", "--seed", "1"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=900,
        )
        token = add_token(root)
        with UpmirrorServer(root, token=token) as server:
            client = Client(server.port, token)
            listing = msgspec.msgpack.decode(client.post("/api/v1/revisions", everything()), type=RevisionsResponse)
            revisions = listing.revisions
            full_body = Path(scratch_name) / "full.msgpack"
            full_body.write_bytes(msgspec.msgpack.encode(everything()))
            nothing_body = Path(scratch_name) / "nothing.msgpack"
            nothing_body.write_bytes(msgspec.msgpack.encode(everything(listing.anchor, delta=True)))

            def curl_post(body: Path) -> None:
                run_quietly(
                    [
                        *(tools["curl"], "--fail", "-s", "-o", "/dev/null", "-H", f"Authorization: Bearer {token}"),
                        *("--data-binary", f"@{body}", f"{server.url}/api/v1/revisions"),
                    ]
                )

            def update_data(decode: bool) -> None:
                for start in range(0, len(revisions), BATCH):
                    body = client.post("/api/v1/updates", UpdatesRequest(revisions=revisions[start : start + BATCH]))
                    if decode:
                        msgspec.msgpack.decode(body, type=UpdatesResponse)

            times = alternate(
                {
                    "full revision listing (curl)": lambda: curl_post(full_body),
                    "incremental listing, nothing changed (curl)": lambda: curl_post(nothing_body),
                    "update data, raw": lambda: update_data(decode=False),
                    "update data, decoded into records": lambda: update_data(decode=True),
                },
                sizes["runs"],
            )
            client.close()

    report = Report(
        "P1",
        f"sync protocol on a {sizes['updates']:,}-update catalog ({len(revisions):,} revisions listed, "
        f"update data in batches of {BATCH})",
        work_files=len(revisions),
    )
    report.add_all(times, upmirror_prefix="")
    report.notes.append(
        f"Full listing target: under 1 s for 100,000 updates. The listing answer is "
        f"{len(msgspec.msgpack.encode(listing)):,} bytes."
    )
    return report
