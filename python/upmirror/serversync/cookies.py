"""The two cookies of the WSUS protocol, sealed so a downstream cannot forge or stretch them: the authorization
cookie the DSS authorization service hands out, and the sync cookie GetCookie makes from it, which every later call
carries and which expires (WSUS: after 240 minutes; the downstream then authenticates again).

A cookie's data is a small JSON document followed by its HMAC-SHA256 under the server's cookie key. The key is a
random file in the server directory (mode 0600), created on first use, shared by every worker process and kept across
restarts; deleting it invalidates every cookie, which downstream servers answer by authenticating again.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from upmirror.serversync.soap import (
    INCOMPATIBLE_PROTOCOL_VERSION,
    INVALID_AUTHORIZATION_COOKIE,
    INVALID_COOKIE,
    INVALID_PARAMETERS,
    SoapFault,
)

KEY_FILE: Final = "serversync.key"
PLUG_IN_ID: Final = "DssTargeting"
# The protocol version upmirror speaks (current WSUS accepts 1.20 from its downstreams).
PROTOCOL_VERSION: Final = "1.20"
_TAG_BYTES: Final = 32


def cookie_key(directory: Path) -> bytes:
    """The server's cookie key, made on first use (atomically: two workers starting at once agree on one key)."""
    path = directory / KEY_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    temporary = directory / f".{KEY_FILE}.{os.getpid()}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_hex(32))
        file.flush()
        os.fsync(file.fileno())
    try:
        os.link(temporary, path)  # fails if another process made the key first: theirs is kept
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return bytes.fromhex(path.read_text().strip())


def seal(key: bytes, document: dict[str, object]) -> bytes:
    payload = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
    return payload + hmac.new(key, payload, hashlib.sha256).digest()


def unseal(key: bytes, data: bytes) -> dict[str, object] | None:
    """The document of sealed data, or None when the data was not sealed with ``key`` (forged, altered, foreign)."""
    payload, tag = data[:-_TAG_BYTES], data[-_TAG_BYTES:]
    if len(data) <= _TAG_BYTES or not hmac.compare_digest(tag, hmac.new(key, payload, hashlib.sha256).digest()):
        return None
    try:
        document = json.loads(payload)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


@dataclass(frozen=True)
class SyncCookie:
    """What a valid sync cookie says: who the downstream is and which protocol version it speaks."""

    account: str
    protocol_version: str
    expires: datetime.datetime


def authorization_cookie(key: bytes, account: str, token_name: str | None) -> bytes:
    """The CookieData of GetAuthorizationCookie: the account that asked and the upmirror token it showed, if any."""
    return seal(key, {"kind": "authorization", "account": account[:256], "token": token_name or ""})


def read_authorization_cookie(key: bytes, plug_in_id: str, data: bytes) -> dict[str, object]:
    document = unseal(key, data)
    if plug_in_id != PLUG_IN_ID or document is None or document.get("kind") != "authorization":
        raise SoapFault(INVALID_AUTHORIZATION_COOKIE, "the authorization cookie was not issued by this server")
    return document


def sync_cookie(
    key: bytes, authorization: dict[str, object], protocol_version: str, lifetime: datetime.timedelta
) -> tuple[datetime.datetime, bytes]:
    """GetCookie: the expiration and EncryptedData of a new sync cookie for an authorized downstream."""
    check_protocol_version(protocol_version)
    expires = datetime.datetime.now(datetime.UTC) + lifetime
    data = seal(
        key,
        {
            "kind": "sync",
            "account": authorization.get("account", ""),
            "version": protocol_version,
            "expires": expires.timestamp(),
        },
    )
    return expires, data


def read_sync_cookie(key: bytes, data: bytes | None) -> SyncCookie:
    """The sync cookie a call carries; InvalidCookie when it is missing, forged or expired."""
    document = unseal(key, data) if data else None
    if document is None or document.get("kind") != "sync":
        raise SoapFault(INVALID_COOKIE, "the cookie is missing or was not issued by this server: authenticate again")
    expires = datetime.datetime.fromtimestamp(float(str(document.get("expires", 0))), datetime.UTC)
    if expires <= datetime.datetime.now(datetime.UTC):
        raise SoapFault(INVALID_COOKIE, "the cookie has expired: authenticate again")
    return SyncCookie(str(document.get("account", "")), str(document.get("version", "")), expires)


def check_protocol_version(version: str) -> None:
    """``x.y`` with major version 1 (MS-WSUSSS 3.1.4.3)."""
    major, dot, minor = version.partition(".")
    if not (dot and major.isdigit() and minor.isdigit()):
        raise SoapFault(INVALID_PARAMETERS, f"protocolVersion {version[:20]!r} is not of the form x.y")
    if major != "1":
        raise SoapFault(
            INCOMPATIBLE_PROTOCOL_VERSION, f"protocol version {version} is not supported; this server speaks 1.x"
        )


def encode_cookie_data(data: bytes) -> str:
    return base64.b64encode(data).decode()
