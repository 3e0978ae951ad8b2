"""The writing side of `harvest merge`: imports windows and photos from another store.

Kept apart from sqlite.py, which serves the engine; harvester/merge.py is its only user. It
wraps a Store and writes through its public `transaction()`, one IMMEDIATE transaction per
call, so a merge interrupted at any point leaves a consistent store and can simply be run again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from harvester.records import PhotoStatus
from harvester.store.rows import ExportRow, WindowRow
from harvester.store.schema import license_key, record_to_json
from harvester.store.sqlite import Store, next_seq


class MergeStore:
    """The destination store of a merge: the writes only merging needs, on top of a Store."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    def import_windows(self, windows: Iterable[WindowRow]) -> int:
        """Copy finished windows from another store (already present ones are kept)."""
        rows = [_window_row(w) for w in windows]
        with self._store.transaction() as db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO windows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            return int(db.total_changes - before)

    def photo_states(self, ids: Sequence[str]) -> dict[str, tuple[str, str, int]]:
        """(status, keyword, seq) of those of `ids` this store holds."""
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        with self._store.reading() as db:
            rows = db.execute(
                f"SELECT id, status, keyword, seq FROM photos WHERE id IN ({marks})",
                [int(i) for i in ids],
            ).fetchall()
        return {str(row[0]): (row[1], row[2], row[3]) for row in rows}

    def add_keywords(self, photo_id: str, keywords: Iterable[str]) -> None:
        """Record more keywords that found a photo."""
        with self._store.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO photo_keywords (photo_id, keyword) VALUES (?, ?)",
                [(int(photo_id), k) for k in keywords],
            )

    def reserve_seq(self, keyword: str) -> int:
        """The next sequence number of a keyword, taken (merge places a file before its row)."""
        with self._store.transaction() as db:
            seq = next_seq(db, keyword)
            db.execute("UPDATE keywords SET next_seq = ? WHERE keyword = ?", (seq + 1, keyword))
        return seq

    def import_photo(self, row: ExportRow, seq: int, path: str | None) -> None:
        """Insert (or, if ours is unfinished and `row` is done, replace) a photo from another store.

        `path` is where the caller has already placed the file (for a done photo).
        """
        now = self._clock()
        status = row.status if row.status != PhotoStatus.DONE.value or path else "claimed"
        with self._store.transaction() as db:
            db.execute(
                "INSERT INTO photos (id, keyword, status, reason, attempts, path, sha256, width,"
                " height, size_label, record, seq, claimed_at, updated_at, source)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET status = excluded.status,"
                " reason = excluded.reason, path = excluded.path, sha256 = excluded.sha256,"
                " width = excluded.width, height = excluded.height,"
                " size_label = excluded.size_label, updated_at = excluded.updated_at,"
                " leased_by = NULL, leased_at = NULL",
                (
                    int(row.record.id),
                    row.keyword,
                    status,
                    row.reason,
                    row.attempts,
                    path,
                    row.sha256 if path else None,
                    row.width if path else None,
                    row.height if path else None,
                    row.size_label if path else None,
                    record_to_json(row.record),
                    seq,
                    now,
                    now,
                    row.record.source,
                ),
            )
            db.executemany(
                "INSERT OR IGNORE INTO photo_keywords (photo_id, keyword) VALUES (?, ?)",
                [(int(row.record.id), k) for k in row.keywords],
            )


def _window_row(w: WindowRow) -> tuple[Any, ...]:
    return (
        w.keyword,
        w.window.start,
        w.window.end,
        license_key(w.window.license),
        w.found,
        w.new,
        w.reported_total,
        int(w.capped),
        w.finished_at,
    )
