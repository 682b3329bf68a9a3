"""Client devices of a serving downstream as the driver tests drive them: ``report`` sends a device's hardware IDs
(inventory) with the client API, ``updates_for`` asks which updates a device gets, and ``matching_drivers`` is the
expected set: the unexpired drivers of a catalog for some hardware IDs (not targeted at particular computers)."""

from __future__ import annotations

import http.client

import msgspec

from tests.support.upmirror_server import UpmirrorServer
from upmirror.model import Update


def post(server: UpmirrorServer, path: str, record: object) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request(
        "POST",
        path,
        body=msgspec.msgpack.encode(record),
        headers={"Authorization": f"Bearer {server.token}", "Content-Type": "application/msgpack"},
    )
    response = connection.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    connection.close()
    return response


def report(server: UpmirrorServer, device: str, hardware_ids: list[str]) -> None:
    response = post(server, "/api/v1/client/inventory", {"device": device, "hardware_ids": hardware_ids})
    assert response.status == 204, response.body  # type: ignore[attr-defined]


def updates_for(server: UpmirrorServer, device: str) -> set[str]:
    response = post(server, "/api/v1/client/updates", {"device": device})
    assert response.status == 200
    return {u["id"] for u in msgspec.msgpack.decode(response.body)["updates"]}  # type: ignore[attr-defined]


def matching_drivers(updates: list[Update], hardware_ids: set[str]) -> set[str]:
    return {
        u.id
        for u in updates
        if u.hardware_ids and not u.expired and set(u.hardware_ids) & hardware_ids and not u.computer_hardware_ids
    }
