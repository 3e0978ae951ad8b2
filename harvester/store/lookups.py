"""The store's side of source lines: resolved names and URLs, and sources that vanished.

Both live in `meta` (no schema change): `lookup:<kind>:<ref>` holds a resolution as JSON (so a
resumed run asks the API nothing), `source_gone:<keyword>` the reason a source stopped
answering mid-run (a recorded outcome, shown by `harvest status`, not a crash).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from harvester.store.sqlite import Store

LOOKUP_PREFIX = "lookup:"
GONE_PREFIX = "source_gone:"


def cached_lookups(store: Store) -> dict[str, dict[str, Any]]:
    """Every cached resolution, by its cache key (`user:george`, `album:7215…`)."""
    with store.reading() as db:
        rows = db.execute(
            "SELECT key, value FROM meta WHERE key >= ? AND key < ?",
            (LOOKUP_PREFIX, LOOKUP_PREFIX[:-1] + ";"),
        ).fetchall()
    return {key[len(LOOKUP_PREFIX) :]: orjson.loads(value) for key, value in rows}


def cache_lookups(store: Store, found: Mapping[str, Mapping[str, Any]]) -> None:
    """Remember resolutions (cache key → JSON-able identity), in one transaction."""
    if not found:
        return
    with store.transaction() as db:
        db.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [
                (LOOKUP_PREFIX + key, orjson.dumps(dict(value)).decode())
                for key, value in found.items()
            ],
        )


def record_gone(store: Store, keyword: str, reason: str) -> None:
    """Record that a source stopped answering (a later run tries it again)."""
    with store.transaction() as db:
        db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            (GONE_PREFIX + keyword, reason),
        )


def clear_gone(store: Store, keyword: str) -> None:
    """Forget that a source had vanished: it answered to the end this time."""
    with store.transaction() as db:
        db.execute("DELETE FROM meta WHERE key = ?", (GONE_PREFIX + keyword,))


def gone_sources(store: Store) -> dict[str, str]:
    """Keyword → the reason its source vanished, for every source recorded so."""
    with store.reading() as db:
        rows = db.execute(
            "SELECT key, value FROM meta WHERE key >= ? AND key < ?",
            (GONE_PREFIX, GONE_PREFIX[:-1] + ";"),
        ).fetchall()
    return {key[len(GONE_PREFIX) :]: value for key, value in rows}
