"""The store's side of sources: resolved names, the sources file in force, and the back-fill.

Composed over a `Store` (its `transaction`/`reading` seams), as store.dupes is. The back-fill
walks photo ids in short IMMEDIATE transactions, each also saving how far it got, so a
running harvest's writers wait milliseconds at most and a killed back-fill resumes where its
last batch ended. Plain rows and callables cross here, not dataset types.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from harvester.records import PhotoRecord
from harvester.store.schema import record_from_json
from harvester.store.sqlite import Store

BATCH = 5000  # photos per transaction: Openverse's 5-10k windows, milliseconds in SQLite
PROGRESS_KEY = "sources_backfill"  # meta: {"map": digest, "after": last id done, "files": ...}

#: (id, owner, current source) rows of a batch → (new source, id) for those that change.
Decide = Callable[[list[tuple[int, str, str]]], list[tuple[str, int]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredFile:
    """A done photo's file and record, for re-stamping its metadata."""

    photo_id: int
    path: str
    sha256: str | None
    record: PhotoRecord


class SourcesStore:
    """Reads and writes the sources tables and columns of one store."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    # --- names and the file in force -----------------------------------------------------------

    def cached_names(self) -> dict[str, str]:
        """Name key → NSID of every name resolved before."""
        with self._store.reading() as db:
            return dict(db.execute("SELECT name, nsid FROM source_names").fetchall())

    def cache_names(self, resolved: Iterable[tuple[str, str, str]]) -> None:
        """Remember (name key, NSID, API method) look-ups."""
        now = self._clock()
        with self._store.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO source_names VALUES (?, ?, ?, ?)",
                [(name, nsid, via, now) for name, nsid, via in resolved],
            )

    def file_owners(self) -> dict[str, str]:
        """NSID → source of the sources file in force (empty when none was given)."""
        with self._store.reading() as db:
            return dict(db.execute("SELECT nsid, source FROM owner_sources").fetchall())

    def replace_file_owners(self, owners: Mapping[str, tuple[str, str]]) -> None:
        """Make NSID → (source, name as written) the sources file in force."""
        with self._store.transaction() as db:
            db.execute("DELETE FROM owner_sources")
            db.executemany(
                "INSERT INTO owner_sources VALUES (?, ?, ?)",
                [(nsid, source, name) for nsid, (source, name) in owners.items()],
            )

    # --- counts and the back-fill --------------------------------------------------------------

    def owner_counts(self, owners: Iterable[str]) -> list[tuple[str, str, int]]:
        """(owner, source, photos) for the photos of `owners`, and ("", source, photos) for
        everyone else's: one scan that groups on a handful of keys, the dry run's input."""
        with self._store.reading() as db:
            rows = db.execute(
                "SELECT CASE WHEN o IN (SELECT value FROM json_each(?)) THEN o ELSE '' END,"
                " source, COUNT(*) FROM"
                " (SELECT json_extract(record, '$.owner') AS o, source FROM photos) GROUP BY 1, 2",
                (orjson.dumps(sorted(set(owners))).decode(),),
            ).fetchall()
        return [(str(owner or ""), str(source), int(n)) for owner, source, n in rows]

    def source_counts(self) -> dict[str, int]:
        """Photos per source (from the index alone)."""
        with self._store.reading() as db:
            rows = db.execute("SELECT source, COUNT(*) FROM photos GROUP BY source").fetchall()
        return {str(source): int(n) for source, n in rows}

    def progress(self) -> dict[str, Any] | None:
        """How far the last back-fill got, if it did not finish."""
        with self._store.reading() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (PROGRESS_KEY,)).fetchone()
        return None if row is None else dict(orjson.loads(row[0]))

    def save_progress(self, progress: Mapping[str, Any] | None) -> None:
        """Record (or, with None, clear) the back-fill's progress."""
        with self._store.transaction() as db:
            _write_progress(db, progress)

    def backfill_batch(
        self, after: int, decide: Decide, progress: Mapping[str, Any], limit: int | None = None
    ) -> tuple[int, int, int] | None:
        """One batch of photos with ids above `after`: read, decide, write and save progress
        in one transaction. Returns (last id, photos read, photos changed), None past the end.

        The record JSON's `source` changes with the column, so both always agree.
        """
        with self._store.transaction() as db:
            rows = db.execute(
                "SELECT id, COALESCE(json_extract(record, '$.owner'), ''), source FROM photos"
                " WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit or BATCH),
            ).fetchall()
            if not rows:
                return None
            changes = decide([(int(i), str(o), str(s)) for i, o, s in rows])
            db.executemany(
                "UPDATE photos SET source = ?1, record = json_set(record, '$.source', ?1)"
                " WHERE id = ?2",
                changes,
            )
            last = int(rows[-1][0])
            _write_progress(db, {**progress, "after": last})
        return last, len(rows), len(changes)

    # --- files ---------------------------------------------------------------------------------

    def done_files(self, after: int, limit: int = 500) -> list[StoredFile]:
        """Done photos with ids above `after`, with their files and records."""
        with self._store.reading() as db:
            rows = db.execute(
                "SELECT id, path, sha256, record FROM photos"
                " WHERE status = 'done' AND path IS NOT NULL AND id > ? ORDER BY id LIMIT ?",
                (after, limit),
            ).fetchall()
        return [
            StoredFile(photo_id=int(i), path=str(p), sha256=sha, record=record_from_json(rec))
            for i, p, sha, rec in rows
        ]

    def set_sha256(self, updates: Sequence[tuple[str, int]], progress: Mapping[str, Any]) -> None:
        """New (sha256, id) of re-stamped files, with the progress of the file pass."""
        with self._store.transaction() as db:
            db.executemany("UPDATE photos SET sha256 = ? WHERE id = ?", updates)
            _write_progress(db, progress)


def _write_progress(db: Any, progress: Mapping[str, Any] | None) -> None:
    if progress is None:
        db.execute("DELETE FROM meta WHERE key = ?", (PROGRESS_KEY,))
        return
    db.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
        (PROGRESS_KEY, orjson.dumps(dict(progress)).decode()),
    )
