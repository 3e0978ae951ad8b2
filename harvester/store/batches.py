"""The store's reads for the Ray image half: claimed photos by output directory, and which
files of a directory the store has committed (for the sweep after a batch's commit)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harvester.store.rows import PENDING_COLUMNS, PendingPhoto, pending_photo
from harvester.store.sqlite import Store


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimedDir:
    """Claimed photos of one directory (seq // per_dir) of a keyword."""

    keyword: str
    index: int
    claimed: int
    oldest_s: float  # claimed_at of its earliest claim
    next_seq: int  # the keyword's next sequence number


def claimed_dirs(store: Store, keywords: Sequence[str], per_dir: int) -> list[ClaimedDir]:
    """Every directory of `keywords` holding claimed photos (one scan of the claimed index)."""
    marks = ",".join("?" * len(keywords))
    sql = (
        "SELECT p.keyword, p.seq / ?, COUNT(*), MIN(p.claimed_at), k.next_seq"
        " FROM photos p JOIN keywords k ON k.keyword = p.keyword"
        f" WHERE p.status = 'claimed' AND p.keyword IN ({marks})"
        " GROUP BY p.keyword, p.seq / ?"
    )
    with store.reading() as db:
        rows = db.execute(sql, [per_dir, *keywords, per_dir]).fetchall()
    return [
        ClaimedDir(keyword=k, index=i, claimed=n, oldest_s=t, next_seq=s) for k, i, n, t, s in rows
    ]


def dir_claimed(store: Store, keyword: str, index: int, per_dir: int) -> list[PendingPhoto]:
    """The claimed photos of one directory, in seq order."""
    sql = (
        f"SELECT {PENDING_COLUMNS} FROM photos WHERE status = 'claimed'"
        " AND keyword = ? AND seq >= ? AND seq < ? ORDER BY seq"
    )
    with store.reading() as db:
        rows = db.execute(sql, (keyword, index * per_dir, (index + 1) * per_dir)).fetchall()
    return [pending_photo(row) for row in rows]


def done_paths(store: Store, photo_ids: Sequence[int]) -> dict[int, str]:
    """Stored path by photo id, for those of `photo_ids` the store holds as done."""
    found: dict[int, str] = {}
    with store.reading() as db:
        for start in range(0, len(photo_ids), 500):  # under SQLite's bound-parameter limit
            chunk = photo_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(
                db.execute(
                    f"SELECT id, path FROM photos WHERE status = 'done' AND id IN ({marks})",
                    list(chunk),
                ).fetchall()
            )
    return found
