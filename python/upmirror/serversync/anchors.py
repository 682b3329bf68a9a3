"""Anchors as WSUS writes them: a change number and the time it was handed out (``9438,2026-10-04 16:09:27.167``).
upmirror's change counter is the number; the time is informative. An anchor that does not have this shape is a bad
parameter; one ahead of this server's counter was handed out by another server (or a store that was replaced)."""

from __future__ import annotations

import datetime
import re
from typing import Final

from upmirror.serversync.soap import INVALID_PARAMETERS, SERVER_CHANGED, SoapFault

ANCHOR: Final = re.compile(r"^(\d{1,18}),\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,7})?$")


def format_anchor(change: int, when: datetime.datetime | None = None) -> str:
    moment = when or datetime.datetime.now(datetime.UTC)
    return f"{change},{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond // 1000:03d}"


def parse_anchor(anchor: str | None, current: int) -> int:
    """The change number of an anchor a downstream passed back ("" or None: from the beginning)."""
    if not anchor:
        return 0
    matched = ANCHOR.fullmatch(anchor)
    if matched is None:
        raise SoapFault(
            INVALID_PARAMETERS, f"anchor {anchor[:60]!r} is malformed: pass back an anchor this server gave"
        )
    change = int(matched.group(1))
    if change > current:
        raise SoapFault(SERVER_CHANGED, "the anchor was handed out by another server: synchronize in full")
    return change
