"""A server's synchronization status as one document: its role, schedule and next synchronization, the updates it
holds by classification, and the history. The ``status`` command and the admin interface show the same thing."""

from __future__ import annotations

import datetime
from typing import Any

import msgspec

from upmirror.options import ServerDirectory
from upmirror.schedule import Schedule
from upmirror.store import Store


def status_document(directory: ServerDirectory, history_limit: int = 10) -> dict[str, Any]:
    options = directory.load()
    with Store.open(directory.database_path) as store:
        history = store.sync_history(limit=max(history_limit, 1))
        next_sync = Schedule(options.schedule, seed=store.server_id).next_sync(datetime.datetime.now(datetime.UTC))
        counts = store.update_counts_by_classification()
    return {
        "role": "root" if options.is_root else ("replica" if options.source.replica else "autonomous"),
        "upstream": options.source.upstream,
        "schedule": "automatic" if options.schedule.automatic else "manual",
        "next_sync": next_sync.isoformat() if next_sync else None,
        "updates_by_classification": counts,
        "history": msgspec.to_builtins(history),
    }
