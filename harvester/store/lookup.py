"""Photos by id, for answers that name a few of them (`harvest similar`, the web page).

Plain rows out, as store/dupes.py gives them: the store room knows no other room's types.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from harvester.store.sqlite import Store

MAX_VARIABLES = 500  # ids per IN (...) list, well under SQLite's limit


class PhotoRow(NamedTuple):
    """What an answer shows of one stored photo."""

    id: int
    path: str
    title: str
    owner: str  # NSID
    owner_name: str
    license: int
    source: str
    keyword: str


def photo_rows(store: Store, ids: Iterable[int]) -> dict[int, PhotoRow]:
    """The stored photos among `ids` (any status; path "" where no file is kept)."""
    wanted = sorted({int(i) for i in ids})
    found: dict[int, PhotoRow] = {}
    with store.reading() as db:
        for start in range(0, len(wanted), MAX_VARIABLES):
            chunk = wanted[start : start + MAX_VARIABLES]
            marks = ",".join("?" * len(chunk))
            rows = db.execute(
                "SELECT id, COALESCE(path, ''), COALESCE(json_extract(record, '$.title'), ''),"
                " COALESCE(json_extract(record, '$.owner'), ''),"
                " COALESCE(json_extract(record, '$.owner_name'), ''),"
                " COALESCE(json_extract(record, '$.license'), 0), source, keyword"
                f" FROM photos WHERE id IN ({marks})",
                chunk,
            ).fetchall()
            for r in rows:
                found[int(r[0])] = PhotoRow(
                    int(r[0]),
                    str(r[1]),
                    str(r[2]),
                    str(r[3]),
                    str(r[4]),
                    int(r[5]),
                    str(r[6]),
                    str(r[7]),
                )
    return found
