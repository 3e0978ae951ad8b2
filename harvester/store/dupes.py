"""The store's side of `harvest dupes`: fingerprints in, pairs and groups out, in short batches.

Composed over a `Store` (its public `transaction`/`reading` seams), as store.merge is. Plain
rows and numpy arrays cross here, not dataset types: the store room knows no other room.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from harvester.store.schema import INSERT_SIGNAL
from harvester.store.sqlite import Store

#: A dup_pair row: a, b, kind, param, distance, variant, score, method.
PairRow = tuple[int, int, str, str, int, int, float | None, str]

BATCH = 2000  # rows per transaction: short, so a running harvest's writers are not held up


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalTable:
    """Every fingerprinted stored photo, as parallel arrays (row i is one photo)."""

    ids: npt.NDArray[np.int64]
    ph256: npt.NDArray[np.uint8]  # (N, 32)
    c80: npt.NDArray[np.uint8]  # (N, 32)
    quality: npt.NDArray[np.int64]
    width: npt.NDArray[np.int64]  # content box in source pixels
    height: npt.NDArray[np.int64]
    scale: npt.NDArray[np.float64]  # the original's scale; NaN when unknown
    uploaded: npt.NDArray[np.int64]
    compared: npt.NDArray[np.bool_]
    src_sha256: list[bytes | None]
    scan_sha256: list[bytes | None]
    paths: list[str]
    titles: list[str]
    taken: list[str]  # date taken as Flickr gives it ("" when unknown)

    def __len__(self) -> int:
        return len(self.ids)


class DupesStore:
    """Reads and writes the duplicate tables of one store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def unsigned(self) -> Iterator[tuple[int, str]]:
        """(photo id, path) of stored photos without a fingerprint (harvested before them)."""
        with self._store.reading() as db:
            rows = db.execute(
                "SELECT p.id, p.path FROM photos p LEFT JOIN photo_signal s ON s.photo_id = p.id"
                " WHERE p.status = 'done' AND p.path IS NOT NULL AND s.photo_id IS NULL"
                " ORDER BY p.id"
            ).fetchall()
        yield from ((int(r[0]), str(r[1])) for r in rows)

    def write_signals(self, rows: Iterable[Sequence[object]]) -> int:
        """Insert fingerprint rows (store.schema.SIGNAL_COLUMNS) in batches; returns the count."""
        return self._batched(INSERT_SIGNAL, (tuple(r) for r in rows))

    def signals(self) -> SignalTable:
        """Every fingerprint of a stored photo, with its content size, upload time and path."""
        with self._store.reading() as db:
            rows = db.execute(
                "SELECT s.photo_id, s.ph256, s.ph256_c80, s.quality, s.content_w, s.content_h,"
                " COALESCE(json_extract(p.record, '$.date_upload'), 0), s.compared,"
                " s.src_sha256, s.scan_sha256, p.path,"
                " COALESCE(json_extract(p.record, '$.title'), ''),"
                " COALESCE(json_extract(p.record, '$.date_taken'), ''), s.original_scale"
                " FROM photo_signal s JOIN photos p ON p.id = s.photo_id"
                " WHERE p.status = 'done' ORDER BY s.photo_id"
            ).fetchall()
        return _table(rows)

    def unkeyed(self, version: int) -> list[tuple[int, str]]:
        """(photo id, path) of fingerprinted stored photos without keypoints of `version`."""
        with self._store.reading() as db:
            rows = db.execute(
                "SELECT p.id, p.path FROM photo_signal s JOIN photos p ON p.id = s.photo_id"
                " LEFT JOIN photo_keypoints k ON k.photo_id = s.photo_id AND k.kp_version = ?"
                " WHERE p.status = 'done' AND p.path IS NOT NULL AND k.photo_id IS NULL"
                " ORDER BY p.id",
                (version,),
            ).fetchall()
        return [(int(r[0]), str(r[1])) for r in rows]

    def write_keypoints(self, rows: Iterable[tuple[int, int, bytes]]) -> int:
        """Insert or replace (photo id, version, descriptors) rows in batches."""
        sql = "INSERT OR REPLACE INTO photo_keypoints VALUES (?, ?, ?)"
        return self._batched(sql, rows)

    def keypoints(self, version: int) -> dict[int, bytes]:
        """Photo id → descriptors blob, for the stored photos that have keypoints of `version`."""
        with self._store.reading() as db:
            rows = db.execute(
                "SELECT k.photo_id, k.descriptors FROM photo_keypoints k"
                " JOIN photos p ON p.id = k.photo_id"
                " WHERE p.status = 'done' AND k.kp_version = ?",
                (version,),
            ).fetchall()
        return {int(i): bytes(blob) for i, blob in rows}

    def keypoint_count(self, version: int) -> int:
        """Stored photos with keypoints of `version`."""
        with self._store.reading() as db:
            row = db.execute(
                "SELECT count(*) FROM photo_keypoints k JOIN photos p ON p.id = k.photo_id"
                " WHERE p.status = 'done' AND k.kp_version = ? AND length(k.descriptors) > 0",
                (version,),
            ).fetchone()
        return int(row[0])

    def keypoint_batches(
        self, version: int, size: int = BATCH
    ) -> Iterator[list[tuple[int, bytes]]]:
        """The same rows as `keypoints`, `size` at a time, for readers that must not hold every
        blob at once (2 KB a photo: 2 GB at a million)."""
        with self._store.reading() as db:
            cursor = db.execute(
                "SELECT k.photo_id, k.descriptors FROM photo_keypoints k"
                " JOIN photos p ON p.id = k.photo_id"
                " WHERE p.status = 'done' AND k.kp_version = ? ORDER BY k.photo_id",
                (version,),
            )
            while rows := cursor.fetchmany(size):
                yield [(int(i), bytes(blob)) for i, blob in rows]

    def save_pairs(self, rows: Iterable[Sequence[object]]) -> int:
        """Insert or replace (a, b, kind, param, distance, variant, score, method) rows."""
        sql = "INSERT OR REPLACE INTO dup_pair VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        return self._batched(sql, (tuple(r) for r in rows))

    def mark_compared(self, ids: Iterable[int]) -> int:
        """Remember that these photos were compared with every photo fingerprinted so far."""
        sql = "UPDATE photo_signal SET compared = 1 WHERE photo_id = ?"
        return self._batched(sql, ((int(i),) for i in ids))

    def pairs(self) -> list[PairRow]:
        """Every pair found so far, by (a, b)."""
        with self._store.reading() as db:
            rows = db.execute("SELECT * FROM dup_pair ORDER BY a, b").fetchall()
        return [
            (int(a), int(b), str(k), str(p), int(d), int(v), s, str(m))
            for a, b, k, p, d, v, s, m in rows
        ]

    def replace_groups(self, rows: Iterable[tuple[int, int, str | None, str]]) -> int:
        """The groups anew: (photo id, representative id, kind to it or None, parameter)."""
        with self._store.transaction() as db:
            db.execute("DELETE FROM dup_group")
        return self._batched("INSERT INTO dup_group VALUES (?, ?, ?, ?)", rows)

    def _batched(self, sql: str, rows: Iterable[tuple[object, ...]]) -> int:
        count, batch = 0, []
        for row in rows:
            batch.append(row)
            if len(batch) >= BATCH:
                count += self._write(sql, batch)
                batch = []
        return count + (self._write(sql, batch) if batch else 0)

    def _write(self, sql: str, batch: list[tuple[object, ...]]) -> int:
        with self._store.transaction() as db:
            db.executemany(sql, batch)
        return len(batch)


def _table(rows: list[tuple[Any, ...]]) -> SignalTable:
    n = len(rows)

    def blobs(col: int) -> npt.NDArray[np.uint8]:
        joined = b"".join(bytes(r[col]) for r in rows)
        return np.frombuffer(joined, dtype=np.uint8).reshape(n, 32)

    def ints(col: int) -> npt.NDArray[np.int64]:
        return np.array([int(r[col]) for r in rows], dtype=np.int64)

    return SignalTable(
        ids=ints(0),
        ph256=blobs(1),
        c80=blobs(2),
        quality=ints(3),
        width=ints(4),
        height=ints(5),
        uploaded=ints(6),
        compared=ints(7).astype(bool),
        src_sha256=[None if r[8] is None else bytes(r[8]) for r in rows],
        scan_sha256=[None if r[9] is None else bytes(r[9]) for r in rows],
        paths=[str(r[10]) for r in rows],
        titles=[str(r[11]) for r in rows],
        taken=[str(r[12]) for r in rows],
        scale=np.array([np.nan if r[13] is None else float(r[13]) for r in rows]),
    )
