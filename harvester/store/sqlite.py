"""The harvest store: search checkpoints, photo claims and outcomes in one SQLite file.

One `Store` per process; several processes may share the file (WAL, busy timeout, every
write an IMMEDIATE transaction). The search checkpoint is `commit_window`: the window row,
the photo claims (first keyword wins, across processes too) and the keyword associations go
in one transaction, so after a kill a committed window is never searched again and none of
its photos is lost. Download outcomes are buffered and written in batches. A later server
store (PostgreSQL) would implement the same public methods.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import orjson

from harvester.exceptions import ConfigError, StoreError
from harvester.records import PhotoRecord, PhotoStatus, Window
from harvester.store.rows import (
    PENDING_COLUMNS,
    WINDOW_COLUMNS,
    ClaimResult,
    ExportRow,
    PendingPhoto,
    StoreSummary,
    WindowRow,
    build_summary,
    export_row,
    pending_photo,
    window_row,
)
from harvester.store.schema import (
    INSERT_SIGNAL,
    add_search_tally,
    connect,
    license_key,
    record_to_json,
)

log = logging.getLogger(__name__)

Clock = Callable[[], float]
#: Called with a batch's done paths before the batch is committed (Store.set_done_barrier).
DoneBarrier = Callable[[Sequence[str]], None]
STORE_FILENAME = "harvest.sqlite"
#: In an output directory whose store is elsewhere: one line, the store's absolute path.
STORE_POINTER = "harvest.store"


def existing_store(out: Path) -> Path:
    """The store of the harvest in `out`; ConfigError (exit 2) when `out` holds none.

    `out` is the store's directory, or an output directory whose store lives elsewhere
    (`harvest run --store DIR`): then `out/harvest.store` names it.
    """
    path = out / STORE_FILENAME
    if path.exists():
        return path
    pointed = store_pointer(out)
    if pointed is None:
        raise ConfigError(f"{out} holds no harvest (no {STORE_FILENAME})")
    if not pointed.exists():
        raise ConfigError(f"{out}/{STORE_POINTER} names {pointed}, which does not exist")
    return pointed


def store_pointer(out: Path) -> Path | None:
    """The store `out/harvest.store` names (written by `run --out OUT --store DIR`), if any."""
    try:
        text = (out / STORE_POINTER).read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {out / STORE_POINTER}: {exc.strerror}") from exc
    return Path(text) if text else None


def default_worker_id() -> str:
    """host:pid, unique among live workers sharing a store."""
    return f"{socket.gethostname()}:{os.getpid()}"


_UPDATE_OUTCOME = """
UPDATE photos SET status = ?, reason = ?, path = ?, sha256 = ?, width = ?, height = ?,
    size_label = ?, attempts = attempts + 1, updated_at = ?, leased_by = NULL, leased_at = NULL
WHERE id = ?
"""
_DONE = PhotoStatus.DONE.value
_EXPORT_QUERY = (
    "SELECT p.record, p.keyword, (SELECT group_concat(keyword, char(31))"
    " FROM photo_keywords k WHERE k.photo_id = p.id), p.status, p.reason,"
    " p.attempts, p.path, p.sha256, p.width, p.height, p.size_label, {duplicates}"
    " FROM photos p {join} ORDER BY p.id"
)
#: The duplicate columns of the export; a store not yet migrated (read-only) has no groups.
_EXPORT_DUPLICATES = {
    True: {
        "duplicates": "g.group_id, g.kind",
        "join": "LEFT JOIN dup_group g ON g.photo_id = p.id AND g.kind IS NOT NULL",
    },
    False: {"duplicates": "NULL, NULL", "join": ""},
}


class Store:
    """The SQLite store of one output directory; thread-safe, one connection per instance."""

    def __init__(
        self,
        path: Path,
        *,
        worker_id: str | None = None,
        read_only: bool = False,
        batch_size: int = 200,
        flush_interval_s: float = 0.1,
        lease_ttl_s: float = 1800.0,
        clock: Clock = time.time,
    ) -> None:
        self.path = path
        self.worker_id = worker_id or default_worker_id()
        self._db = connect(path, read_only=read_only)
        self._lock = threading.RLock()
        self._clock = clock
        self._batch_size, self._flush_interval_s = batch_size, flush_interval_s
        self._lease_ttl_s = lease_ttl_s
        self._outcomes: list[tuple[Any, ...]] = []
        self._signals: list[tuple[object, ...]] = []
        self._last_flush = clock()
        self._done_barrier: DoneBarrier | None = None

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False, **kwargs: Any) -> Self:
        """Open (creating unless `readonly`) the store file at `path`."""
        return cls(path, read_only=readonly, **kwargs)

    @classmethod
    def in_dir(cls, out_dir: Path, **kwargs: Any) -> Self:
        """The store of an output directory (`OUT/harvest.sqlite`)."""
        return cls(out_dir / STORE_FILENAME, **kwargs)

    # --- transactions: also the seam for store/merge.py, which keeps its own SQL --------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE write transaction: committed at the end, rolled back on any error."""
        with self._lock, _translated():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:  # SQLite may already have rolled back (disk full)
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection for reads, under the store's lock, with errors translated."""
        with self._lock, _translated():
            yield self._db

    # --- runs --------------------------------------------------------------------------------

    def start_run(self, config: Mapping[str, Any]) -> int:
        """Record a run's start with its configuration (which never holds the API key)."""
        blob = orjson.dumps(config, default=str).decode()
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO runs (worker, started_at, config) VALUES (?, ?, ?)",
                (self.worker_id, self._clock(), blob),
            )
        return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, outcome: str, counts: Mapping[str, Any]) -> None:
        """Record how a run ended."""
        blob = orjson.dumps(counts, default=str).decode()
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET finished_at = ?, outcome = ?, counts = ? WHERE id = ?",
                (self._clock(), outcome, blob, run_id),
            )

    def runs(self) -> list[dict[str, Any]]:
        """Run history, oldest first."""
        with self.reading() as db:
            rows = db.execute(
                "SELECT id, worker, started_at, finished_at, outcome, config, counts FROM runs"
            ).fetchall()
        names = ("id", "worker", "started_at", "finished_at", "outcome", "config", "counts")
        return [dict(zip(names, row, strict=True)) for row in rows]

    # --- search checkpoints ------------------------------------------------------------------

    def commit_window(
        self,
        keyword: str,
        window: Window,
        photos: Sequence[PhotoRecord],
        *,
        reported_total: int | None,
        capped: bool,
        lease_new: bool = True,
        calls: int = 0,
        negatives: int = 0,
    ) -> ClaimResult:
        """Checkpoint a searched window and claim its photos, in one transaction.

        New photos are leased to this worker (`lease_new`) because the caller downloads them;
        another worker sharing the file will not take them until the lease goes stale.
        `calls` (search calls spent since the keyword's previous window) and `negatives`
        (photos dropped for a negative term) add to the keyword's tally in `meta`, in the
        same transaction, so the tally survives a kill exactly as the checkpoint does.
        """
        unique = list({photo.id: photo for photo in photos}.values())
        now = self._clock()
        with self.transaction() as db:
            new = self._claim(db, keyword, unique, now, lease_new)
            db.executemany(
                "INSERT OR IGNORE INTO photo_keywords (photo_id, keyword) VALUES (?, ?)",
                [(int(photo.id), keyword) for photo in unique],
            )
            row = (keyword, window.start, window.end, license_key(window.license), len(photos))
            db.execute(
                "INSERT OR REPLACE INTO windows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*row, len(new), reported_total, int(capped), now),
            )
            if calls or negatives:
                add_search_tally(db, keyword, calls=calls, negatives=negatives)
        return ClaimResult(new=tuple(new), duplicates=len(photos) - len(new))

    def _claim(
        self,
        db: sqlite3.Connection,
        keyword: str,
        photos: Iterable[PhotoRecord],
        now: float,
        lease: bool,
    ) -> list[PhotoRecord]:
        worker, leased_at = (self.worker_id, now) if lease else (None, None)
        seq = next_seq(db, keyword)
        new: list[PhotoRecord] = []
        for photo in photos:
            rest = (now, worker, leased_at, photo.source)
            cur = db.execute(
                "INSERT OR IGNORE INTO photos (id, keyword, status, seq, record, claimed_at,"
                " leased_by, leased_at, source) VALUES (?, ?, 'claimed', ?, ?, ?, ?, ?, ?)",
                (int(photo.id), keyword, seq, record_to_json(photo), *rest),
            )
            if cur.rowcount == 1:  # 0 when another keyword (or process) claimed it first
                new.append(photo)
                seq += 1
        db.execute("UPDATE keywords SET next_seq = ? WHERE keyword = ?", (seq, keyword))
        return new

    def done_windows(self, keyword: str) -> list[WindowRow]:
        """The windows already searched for a keyword, in date order."""
        with self.reading() as db:
            rows = db.execute(
                f"SELECT {WINDOW_COLUMNS} FROM windows WHERE keyword = ?"
                " ORDER BY start_s, end_s, license",
                (keyword,),
            ).fetchall()
        return [window_row(row) for row in rows]

    # --- the download queue ------------------------------------------------------------------

    def pending(
        self, limit: int, keywords: Sequence[str] | None = None, *, after: int = 0
    ) -> list[PendingPhoto]:
        """Claimed photos not yet harvested, by id after `after`, that this worker may take.

        Read only: photos leased by another live worker are left out, this worker's own
        leases (its fresh claims) and stale leases are included.
        """
        sql, args = self._pending_query(keywords, after)
        with self.reading() as db:
            rows = db.execute(sql, [*args, limit]).fetchall()
        return [pending_photo(row) for row in rows]

    def _pending_query(self, keywords: Sequence[str] | None, after: int) -> tuple[str, list[Any]]:
        sql = (
            f"SELECT {PENDING_COLUMNS} FROM photos WHERE status = 'claimed' AND id > ?"
            " AND (leased_by IS NULL OR leased_by = ? OR leased_at < ?)"
        )
        args: list[Any] = [after, self.worker_id, self._clock() - self._lease_ttl_s]
        if keywords is not None:
            sql += f" AND keyword IN ({','.join('?' * len(keywords))})"
            args.extend(keywords)
        return sql + " ORDER BY id LIMIT ?", args

    def release_leases(self, worker_id: str | None = None) -> int:
        """Free the leases of one worker, or of all (at start-up, before workers spawn)."""
        sql = "UPDATE photos SET leased_by = NULL, leased_at = NULL WHERE leased_by IS NOT NULL"
        args: tuple[str, ...] = ()
        if worker_id is not None:
            sql, args = sql + " AND leased_by = ?", (worker_id,)
        with self.transaction() as db:
            return int(db.execute(sql, args).rowcount)

    def requeue_failed(self, keywords: Sequence[str] | None = None) -> int:
        """Put failed photos back in the queue (`--retry-failed`); attempts are kept."""
        sql = "UPDATE photos SET status = 'claimed', leased_by = NULL WHERE status = 'failed'"
        args: list[str] = []
        if keywords is not None:
            sql += f" AND keyword IN ({','.join('?' * len(keywords))})"
            args.extend(keywords)
        with self.transaction() as db:
            return int(db.execute(sql, args).rowcount)

    # --- outcomes (batched) ------------------------------------------------------------------

    def mark_done(
        self,
        photo_id: str,
        *,
        path: str,
        sha256: str,
        width: int,
        height: int,
        size_label: str,
        signal: Sequence[object] | None = None,
    ) -> None:
        """Record a photo whose file (`path` under the output directory) is durably written,
        or will be by the done barrier before this row is committed (set_done_barrier).

        Buffered; see `flush`. `width`/`height` are the stored file's, `size_label` the size
        downloaded; `signal` its fingerprint row (SIGNAL_COLUMNS, photo_id first).
        """
        if signal is not None:
            with self._lock:
                self._signals.append(tuple(signal))
        facts = (path, sha256, width, height, size_label)
        self._queue(photo_id, PhotoStatus.DONE, None, facts)

    def mark_skipped(self, photo_id: str, reason: str) -> None:
        """Record a deliberate drop (too small, no usable size...); never retried."""
        self._queue(photo_id, PhotoStatus.SKIPPED, reason)

    def mark_failed(self, photo_id: str, reason: str) -> None:
        """Record an error; `--retry-failed` tries the photo again."""
        self._queue(photo_id, PhotoStatus.FAILED, reason)

    def _queue(
        self,
        photo_id: str,
        status: PhotoStatus,
        reason: str | None,
        facts: tuple[Any, ...] = (None, None, None, None, None),
    ) -> None:
        with self._lock:
            now = self._clock()
            self._outcomes.append((status.value, reason, *facts, now, int(photo_id)))
            overdue = now - self._last_flush >= self._flush_interval_s
            if overdue or len(self._outcomes) >= self._batch_size:
                self.flush()

    def set_done_barrier(self, barrier: DoneBarrier | None) -> None:
        """Call `barrier(paths)` with the paths of a batch's done photos before each commit.

        The batch is committed only if it returns: the engine's one syncfs per batch
        (images/durable.py) in place of one fsync per file. An OSError from it keeps the
        batch buffered and raises StoreError, as a failed commit does.
        """
        with self._lock:
            self._done_barrier = barrier

    def flush(self) -> int:
        """Write buffered outcomes in one transaction; returns how many."""
        with self._lock:
            batch, self._outcomes = self._outcomes, []
            signals, self._signals = self._signals, []
            self._last_flush = self._clock()
            if not batch:
                return 0
            try:
                self._before_commit(batch)
                with self.transaction() as db:
                    db.executemany(_UPDATE_OUTCOME, batch)
                    db.executemany(INSERT_SIGNAL, signals)  # with its photo's row, or not at all
            except StoreError:
                self._outcomes[:0] = batch  # keep them for the next try
                self._signals[:0] = signals
                raise
        return len(batch)

    def _before_commit(self, batch: Sequence[tuple[Any, ...]]) -> None:
        if self._done_barrier is None:
            return
        done = [row[2] for row in batch if row[0] == _DONE]  # row: _UPDATE_OUTCOME's values
        if not done:
            return
        try:
            self._done_barrier(done)
        except OSError as exc:
            raise StoreError(f"store: the batch's files are not durable: {exc}") from exc

    # --- reading a whole store (`harvest merge`; the writing side is store.merge.MergeStore) ---

    def all_windows(self) -> list[WindowRow]:
        """Every finished window of every keyword."""
        with self.reading() as db:
            rows = db.execute(
                f"SELECT {WINDOW_COLUMNS} FROM windows ORDER BY keyword, start_s, end_s, license"
            ).fetchall()
        return [window_row(row) for row in rows]

    # --- reporting ---------------------------------------------------------------------------

    def count(self, status: str) -> int:
        """Photos in one status; cheap for "claimed" and "failed" (partial indexes), unlike
        summary(), which reads every row (seconds at a million photos)."""
        with self.reading() as db:
            return int(
                db.execute("SELECT COUNT(*) FROM photos WHERE status = ?", (status,)).fetchone()[0]
            )

    def summary(self) -> StoreSummary:
        """Counts by status, by keyword, and the tally of skip/failure reasons."""
        with self.reading() as db:
            windows = db.execute(
                "SELECT keyword, COUNT(*), SUM(found), SUM(new) FROM windows GROUP BY keyword"
            ).fetchall()
            by_status = db.execute(
                "SELECT keyword, status, COUNT(*) FROM photos GROUP BY keyword, status"
            ).fetchall()
            reasons = db.execute(
                "SELECT status, reason, COUNT(*) FROM photos"
                " WHERE status IN ('skipped', 'failed') GROUP BY status, reason"
            ).fetchall()
            # Sources that vanished mid-run (store/lookups.py): "source gone: <keyword>" too.
            gone = db.execute(
                "SELECT 'source gone', substr(key, 13), 1 FROM meta"
                " WHERE key >= 'source_gone:' AND key < 'source_gone;'"
            ).fetchall()
        return build_summary(windows, by_status, [*reasons, *gone])

    def iter_export(self, batch: int = 1000) -> Iterator[ExportRow]:
        """Every photo with its keywords and outcome, streamed in id order.

        Uses the connection without the lock while iterating: open a separate (read-only)
        Store for exports rather than sharing the engine's.
        """
        with _translated():
            grouped = self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'dup_group'"
            ).fetchone()
            cur = self._db.execute(_EXPORT_QUERY.format(**_EXPORT_DUPLICATES[bool(grouped)]))
            while rows := cur.fetchmany(batch):
                yield from (export_row(row) for row in rows)

    def journal_mode(self) -> str:
        """The SQLite journal mode in force ("wal")."""
        with self.reading() as db:
            return str(db.execute("PRAGMA journal_mode").fetchone()[0])

    def close(self) -> None:
        """Flush buffered outcomes and close the connection."""
        with self._lock:
            try:
                if self._outcomes:
                    self.flush()
            finally:
                self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.path}, worker={self.worker_id}, buffered={len(self._outcomes)})"


def next_seq(db: sqlite3.Connection, keyword: str) -> int:
    """The keyword's next sequence number (0 for a new keyword); the caller stores the next one."""
    db.execute("INSERT OR IGNORE INTO keywords (keyword, next_seq) VALUES (?, 0)", (keyword,))
    row = db.execute("SELECT next_seq FROM keywords WHERE keyword = ?", (keyword,)).fetchone()
    return int(row[0])


@contextmanager
def _translated() -> Iterator[None]:
    """sqlite3 errors become StoreError here, the one boundary (a full disk included)."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"store: {exc}") from exc
