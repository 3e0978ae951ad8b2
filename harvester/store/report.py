"""The store's side of `harvest report`: every figure aggregated in SQL, never row by row.

Composed over a `Store` (its public `reading` seam), as store.dupes is. Each query is one
GROUP BY over the photos or windows table, so a million-photo store is read in a few scans and
only the groups reach Python; the one exception, `attention`, streams its rows from a cursor.
Plain dataclasses cross here, not report types: the store room knows no other room.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from harvester.store.schema import NO_LICENSE, SEARCH_TALLY_PREFIX
from harvester.store.sqlite import Store

HOUR_S = 3600


def photo_source(source: object) -> str:
    """A record's `source` (the institution behind its owner), "flickr" when it has none.

    Records written before sources existed have no `source` key, so this is the one place the
    default is decided; every query that groups by source folds its groups through it.
    """
    return source if isinstance(source, str) and source else "flickr"


@dataclass(frozen=True, slots=True, kw_only=True)
class HourCount:
    """Photos that reached `status` (done, skipped, failed) in the UTC hour starting `hour_s`."""

    hour_s: int
    status: str
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRow:
    """One `harvest run` of this output: when, by whom, how it ended (None while running)."""

    id: int
    worker: str
    started_at: float
    finished_at: float | None
    outcome: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowTally:
    """A keyword's windows by what the 4,000-result cap did to them.

    `at_cap`: windows over every licence that returned the cap (paged to it, truncated at the
    date floor and continued). `split_buckets`: floor buckets split by licence, searched as
    `licence_windows` windows. `capped`: licence windows still over the cap (photos lost), with
    `reported` (Flickr's totals) against `found` there.
    """

    keyword: str
    windows: int
    at_cap: int
    split_buckets: int
    licence_windows: int
    capped: int
    capped_found: int
    capped_reported: int
    first_s: int
    last_s: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CappedWindow:
    """One window still over the cap after the licence split: Flickr would not return it all."""

    keyword: str
    start_s: int
    end_s: int
    license: int | None
    found: int
    reported_total: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchTally:
    """A keyword's search calls and negative-term drops, summed over every run (`meta`)."""

    calls: int
    negatives: int


@dataclass(frozen=True, slots=True, kw_only=True)
class GeoCells:
    """Geotagged stored photos counted per `cell_deg` cell (lower-left corner of each)."""

    cell_deg: float
    lon: tuple[float, ...]
    lat: tuple[float, ...]
    count: tuple[int, ...]

    @property
    def photos(self) -> int:
        """Geotagged photos in all cells."""
        return sum(self.count)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredMix:
    """The stored photos by licence id, by source, and where the geotagged ones are."""

    licences: dict[int, int]
    sources: dict[str, int]
    geo: GeoCells


@dataclass(frozen=True, slots=True, kw_only=True)
class AttentionRow:
    """A photo a person should look at: failed, or skipped for a reason the caller chose."""

    photo_id: int
    owner: str
    title: str
    keyword: str
    status: str
    reason: str
    attempts: int
    updated_at: float | None


_ATTENTION = (
    "SELECT id, COALESCE(json_extract(record, '$.owner'), ''),"
    " COALESCE(json_extract(record, '$.title'), ''), keyword, status, COALESCE(reason, ''),"
    " attempts, updated_at FROM photos WHERE status = 'failed' OR (status = 'skipped' AND {skip})"
    " ORDER BY status, keyword, id"
)


class ReportStore:
    """The grouped reads `harvest report` makes of one store (opened read-only by the caller)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def _rows(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        with self._store.reading() as db:
            return db.execute(sql, args).fetchall()

    def has_table(self, name: str) -> bool:
        """True when the store has this table (an older store opened read-only may lack it)."""
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return bool(self._rows(sql, name))

    def runs(self) -> list[RunRow]:
        """Every run, oldest first."""
        rows = self._rows(
            "SELECT id, worker, started_at, finished_at, outcome FROM runs ORDER BY started_at, id"
        )
        return [
            RunRow(id=int(i), worker=str(w), started_at=float(s), finished_at=f, outcome=o)
            for i, w, s, f, o in rows
        ]

    def per_hour(self) -> list[HourCount]:
        """Outcomes per UTC hour, from each photo's last update."""
        rows = self._rows(
            f"SELECT CAST(updated_at / {HOUR_S} AS INTEGER) * {HOUR_S}, status, COUNT(*)"
            " FROM photos WHERE updated_at IS NOT NULL AND status != 'claimed'"
            " GROUP BY 1, 2 ORDER BY 1"
        )
        return [HourCount(hour_s=int(h), status=str(s), count=int(c)) for h, s, c in rows]

    def window_tallies(self, max_results: int) -> list[WindowTally]:
        """Per keyword: windows, and those the cap truncated, split or left capped."""
        rows = self._rows(
            "SELECT keyword, COUNT(*), SUM(license = ? AND found >= ?),"
            " COUNT(DISTINCT CASE WHEN license != ? THEN start_s || ':' || end_s END),"
            " SUM(license != ?), SUM(capped), SUM(CASE WHEN capped THEN found ELSE 0 END),"
            " SUM(CASE WHEN capped THEN COALESCE(reported_total, found) ELSE 0 END),"
            " MIN(start_s), MAX(end_s) FROM windows GROUP BY keyword ORDER BY keyword",
            NO_LICENSE,
            max_results,
            NO_LICENSE,
            NO_LICENSE,
        )
        names = (
            "windows",
            "at_cap",
            "split_buckets",
            "licence_windows",
            "capped",
            "capped_found",
            "capped_reported",
            "first_s",
            "last_s",
        )
        return [
            WindowTally(
                keyword=str(row[0]), **{n: int(v or 0) for n, v in zip(names, row[1:], strict=True)}
            )
            for row in rows
        ]

    def capped_windows(self, limit: int) -> list[CappedWindow]:
        """The windows still over the cap, largest loss first (at most `limit`)."""
        rows = self._rows(
            "SELECT keyword, start_s, end_s, license, found, reported_total FROM windows"
            " WHERE capped ORDER BY COALESCE(reported_total, found) - found DESC, keyword, start_s"
            " LIMIT ?",
            limit,
        )
        return [
            CappedWindow(
                keyword=str(k),
                start_s=int(s),
                end_s=int(e),
                license=None if lic == NO_LICENSE else int(lic),
                found=int(f),
                reported_total=None if t is None else int(t),
            )
            for k, s, e, lic, f, t in rows
        ]

    def search_tallies(self) -> dict[str, SearchTally]:
        """Search calls and negative drops per keyword; empty for harvests made before them."""
        rows = self._rows(
            "SELECT substr(key, ?), value FROM meta WHERE key >= ? AND key < ?",
            len(SEARCH_TALLY_PREFIX) + 1,
            SEARCH_TALLY_PREFIX,
            SEARCH_TALLY_PREFIX[:-1] + chr(ord(SEARCH_TALLY_PREFIX[-1]) + 1),
        )
        tallies = {}
        for keyword, value in rows:
            data = orjson.loads(str(value))
            tallies[str(keyword)] = SearchTally(
                calls=int(data.get("calls", 0)), negatives=int(data.get("negatives", 0))
            )
        return tallies

    def unique_found(self) -> dict[str, int]:
        """Distinct photos each keyword's searches returned (after negative terms)."""
        rows = self._rows("SELECT keyword, COUNT(*) FROM photo_keywords GROUP BY keyword")
        return {str(k): int(n) for k, n in rows}

    def stored_mix(self, cell_deg: float) -> StoredMix:
        """Stored photos by licence, by source and per geo cell, from one scan of the records.

        One json_extract with four paths parses each record once (a call per field would
        parse it four times); the small array it returns is materialised, then grouped.
        """
        rows = self._rows(
            "WITH m AS MATERIALIZED (SELECT json_extract(record, '$.license', '$.source',"
            " '$.longitude', '$.latitude') AS a FROM photos WHERE status = 'done')"
            " SELECT json_extract(a, '$[0]'), json_extract(a, '$[1]'),"
            " CAST(floor((json_extract(a, '$[2]') + 180.0) / ?) AS INTEGER),"
            " CAST(floor((json_extract(a, '$[3]') + 90.0) / ?) AS INTEGER), COUNT(*)"
            " FROM m GROUP BY 1, 2, 3, 4",
            cell_deg,
            cell_deg,
        )
        licences: Counter[int] = Counter()
        sources: Counter[str] = Counter()
        cells: Counter[tuple[int, int]] = Counter()
        for lic, src, x, y, n in rows:
            licences[int(lic or 0)] += n
            sources[photo_source(src)] += n
            if x is not None and y is not None:
                cells[int(x), int(y)] += n
        geo = GeoCells(
            cell_deg=cell_deg,
            lon=tuple(x * cell_deg - 180.0 for x, _ in cells),
            lat=tuple(y * cell_deg - 90.0 for _, y in cells),
            count=tuple(cells.values()),
        )
        return StoredMix(licences=dict(licences), sources=dict(sources), geo=geo)

    def duplicate_kinds(self) -> dict[str, int] | None:
        """Pairs by kind from `harvest dupes`; None when it has not run on this store."""
        if not self.has_table("dup_pair"):
            return None
        rows = self._rows("SELECT kind, COUNT(*) FROM dup_pair GROUP BY kind")
        if not rows and not self._rows("SELECT 1 FROM photo_signal WHERE compared LIMIT 1"):
            return None
        return {str(k): int(n) for k, n in rows}

    def duplicate_copies(self) -> int:
        """Photos that are a copy of their group's representative (0 before `harvest dupes`)."""
        if not self.has_table("dup_group"):
            return 0
        rows = self._rows("SELECT COUNT(*) FROM dup_group WHERE kind IS NOT NULL")
        return int(rows[0][0])

    def attention(self, skip_reasons: tuple[str, ...]) -> Iterator[AttentionRow]:
        """Failed photos, and skipped ones whose reason starts with none of `skip_reasons`
        (the policy skips), streamed in (status, keyword, id) order."""
        policy = " AND ".join("COALESCE(reason, '') NOT LIKE ? ESCAPE '\\'" for _ in skip_reasons)
        args = [like_prefix(p) for p in skip_reasons]
        sql = _ATTENTION.format(skip=policy or "1")
        with self._store.reading() as db:
            cur = db.execute(sql, args)
            while rows := cur.fetchmany(1000):
                yield from (attention_row(row) for row in rows)


def like_prefix(prefix: str) -> str:
    """A LIKE pattern (ESCAPE '\\') matching what starts with `prefix`, taken literally."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def attention_row(row: tuple[Any, ...]) -> AttentionRow:
    """An AttentionRow from (id, owner, title, keyword, status, reason, attempts, updated)."""
    pid, owner, title, keyword, status, reason, attempts, updated = row
    return AttentionRow(
        photo_id=int(pid),
        owner=str(owner),
        title=str(title),
        keyword=str(keyword),
        status=str(status),
        reason=str(reason),
        attempts=int(attempts),
        updated_at=None if updated is None else float(updated),
    )
