"""The store's side of the dataset outputs (credits, card): facts Store itself does not hand out.

Composed over a `Store` (its public `transaction`/`reading` seams), as store.dupes is, and
plain rows only. The API call count lives in the `meta` table (no schema change): every
worker adds its calls when it stops.
"""

from __future__ import annotations

from collections.abc import Iterator

from harvester.store.sqlite import Store

API_CALLS_KEY = "api_calls"
BATCH = 5000


def _has_signals(store: Store) -> bool:
    """A store opened read-only before it was migrated has no photo_signal table."""
    with store.reading() as db:
        row = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'photo_signal'"
        ).fetchone()
    return row is not None


def content_sizes(store: Store) -> Iterator[tuple[int, int, int]]:
    """(photo id, width, height) of every fingerprinted photo's content box (the frame
    stripped, in the downloaded image's pixels), in id order, streamed."""
    if not _has_signals(store):
        return
    with store.reading() as db:
        cur = db.execute(
            "SELECT photo_id, content_w, content_h FROM photo_signal ORDER BY photo_id"
        )
        while rows := cur.fetchmany(BATCH):
            yield from ((int(a), int(b), int(c)) for a, b, c in rows)


def dupes_ran(store: Store) -> bool:
    """Whether `harvest dupes` has compared any photo of this store."""
    if not _has_signals(store):
        return False
    with store.reading() as db:
        row = db.execute("SELECT EXISTS (SELECT 1 FROM photo_signal WHERE compared = 1)")
        return bool(row.fetchone()[0])


def stored_count(store: Store) -> int:
    """Photos whose file is stored (status done, with a path)."""
    with store.reading() as db:
        row = db.execute("SELECT COUNT(*) FROM photos WHERE status = 'done' AND path IS NOT NULL")
        return int(row.fetchone()[0])


def photo_count(store: Store) -> int:
    """Photos in the store, whatever their status."""
    with store.reading() as db:
        return int(db.execute("SELECT COUNT(*) FROM photos").fetchone()[0])


def add_api_calls(store: Store, calls: int) -> None:
    """Add a worker's API calls to the store's running total."""
    with store.transaction() as db:
        db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key)"
            " DO UPDATE SET value = CAST(CAST(value AS INTEGER) + ? AS TEXT)",
            (API_CALLS_KEY, str(calls), calls),
        )


def api_calls(store: Store) -> int | None:
    """API calls recorded so far; None for a store whose runs predate the count."""
    with store.reading() as db:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (API_CALLS_KEY,)).fetchone()
    return None if row is None else int(row[0])
