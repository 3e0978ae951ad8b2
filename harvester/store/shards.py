"""What the output side asks of the store: a numbered directory's photos, the output recorded.

A directory is `<keyword>/<NNNNN>`: the photos claimed for `keyword` with a sequence number in
[lo, hi). The store also remembers where its files go (`--out`, `--output-format`), so a run
resumed with another target or format is stopped before it splits a harvest in two.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from harvester.store.rows import split_keywords
from harvester.store.schema import KEYWORD_SEP
from harvester.store.sqlite import Store

OUTPUT_KEY = "output"

_DIR_QUERY = (
    "SELECT id, seq, status, reason, path, sha256, width, height, size_label, record,"
    f" (SELECT group_concat(keyword, char({ord(KEYWORD_SEP)})) FROM photo_keywords k"
    " WHERE k.photo_id = photos.id)"
    " FROM photos WHERE keyword = ? AND seq >= ? AND seq < ? ORDER BY seq"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DirPhoto:
    """One photo of a numbered directory, as the store has it (the record as stored JSON)."""

    id: int
    seq: int
    keyword: str
    keywords: tuple[str, ...]
    status: str
    reason: str | None
    path: str | None
    sha256: str | None
    width: int | None
    height: int | None
    size_label: str | None
    record: str


def dir_photos(store: Store, keyword: str, lo: int, hi: int) -> list[DirPhoto]:
    """The photos of `keyword` with lo <= seq < hi, by seq."""
    with store.reading() as db:
        rows = db.execute(_DIR_QUERY, (keyword, lo, hi)).fetchall()
    return [
        DirPhoto(
            id=int(r[0]),
            seq=int(r[1]),
            keyword=keyword,
            status=r[2],
            reason=r[3],
            path=r[4],
            sha256=r[5],
            width=r[6],
            height=r[7],
            size_label=r[8],
            record=r[9],
            keywords=split_keywords(r[10], keyword),
        )
        for r in rows
    ]


def stored_keywords(store: Store) -> list[str]:
    """Every keyword that has claimed a photo."""
    with store.reading() as db:
        return [row[0] for row in db.execute("SELECT keyword FROM keywords ORDER BY keyword")]


def recorded_output(store: Store) -> dict[str, str] | None:
    """The target and format the store's files were written to, if a run recorded them."""
    with store.reading() as db:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (OUTPUT_KEY,)).fetchone()
    if row is None:
        return None
    value = orjson.loads(row[0])
    return {str(k): str(v) for k, v in value.items()}


def record_output(store: Store, target: str, fmt: str, *, staging: str | None = None) -> None:
    """Remember where the files go, how they are laid out, and (webdataset) where photos wait
    for their tar."""
    fields = {"target": target, "format": fmt}
    if staging is not None:
        fields["staging"] = staging
    value = orjson.dumps(fields).decode()
    with store.transaction() as db:
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (OUTPUT_KEY, value))


def requeue(store: Store, ids: list[int]) -> int:
    """Put photos recorded done back in the queue (their file was lost): they are redone."""
    if not ids:
        return 0
    marks = ",".join("?" * len(ids))
    sql = (
        f"UPDATE photos SET status = 'claimed', path = NULL, leased_by = NULL WHERE id IN ({marks})"
    )
    with store.transaction() as db:
        return int(db.execute(sql, ids).rowcount)
