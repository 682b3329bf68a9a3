"""Bearer tokens of downstream servers, clients and administrators: issued once, stored as SHA-256 only, listed,
revoked, and checked on every request."""

from __future__ import annotations

import datetime
import re
import sqlite3

from upmirror.errors import InputError
from upmirror.model import TokenInfo, TokenRole
from upmirror.store.schema import StoreBase

TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


def hash_token(token: str) -> str:
    # hashlib and secrets load on use (OpenSSL takes milliseconds): `upmirror status` opens the store without them.
    import hashlib  # noqa: PLC0415

    return hashlib.sha256(token.encode()).hexdigest()


class Tokens(StoreBase):
    """The tokens this server accepts."""

    def add_token(self, name: str, role: TokenRole = "downstream") -> str:
        """Issues a new bearer token named ``name`` and returns it; only its SHA-256 is kept. A ``downstream`` token
        lets a server synchronize from this one; an ``admin`` token also opens the admin interface."""
        if not TOKEN_NAME.match(name):
            raise InputError(f"token name {name!r} is not allowed; use letters, digits, '.', '_', '-', '@' (max 64)")
        # A fixed prefix: recognisable in a secret scan, and never taken for a command-line option (no leading "-").
        import secrets  # noqa: PLC0415

        token = "upm_" + secrets.token_urlsafe(32)
        created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        with self.transaction():
            try:
                self.connection.execute(
                    "INSERT INTO tokens VALUES (?, ?, ?, ?)", (name, hash_token(token), created, role)
                )
            except sqlite3.IntegrityError:
                raise InputError(f"a token named {name!r} already exists (revoke it first)") from None
        return token

    def tokens(self) -> list[TokenInfo]:
        rows = self.connection.execute("SELECT name, created, role FROM tokens ORDER BY name")
        return [TokenInfo(name=name, created=created, role=role) for name, created, role in rows]

    def revoke_token(self, name: str) -> None:
        with self.transaction():
            if self.connection.execute("DELETE FROM tokens WHERE name = ?", (name,)).rowcount == 0:
                raise InputError(f"no token named {name!r}")

    def token_role(self, token: str) -> TokenRole | None:
        """The role of the token, or None when it is not a valid (unrevoked) token of this server."""
        row = self.connection.execute("SELECT role FROM tokens WHERE sha256 = ?", (hash_token(token),)).fetchone()
        role: TokenRole | None = None if row is None else row[0]
        return role
