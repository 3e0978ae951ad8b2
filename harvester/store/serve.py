"""The store's side of `harvest serve`: pages of photos by keyset, one photo, its copies, the
groups, the photos that need a person. Plain rows out, as store.dupes and store.report do.

Every read is one short transaction over a `Store` opened read-only (its `reading` seam), so a
running harvest's writers are never held up. Pages are keyset pages (`id > after ORDER BY id
LIMIT n`) whose filters the browse indexes (schema.BROWSE_INDEXES) turn into seeks; on an older
store opened read-only they are missing, the same SQL scans instead (`Capabilities` says so),
and on a store from before sources the source comes from the record.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson

from harvester.store.report import AttentionRow, attention_row, like_prefix
from harvester.store.schema import BROWSE_INDEXES, GEO_EXPR, KEYWORD_SEP, LICENSE_EXPR
from harvester.store.sqlite import Store

_SOURCE_FALLBACK = "COALESCE(json_extract(record, '$.source'), 'flickr')"
_ROW = (
    "id, keyword, status, COALESCE(reason, ''), attempts, path, width, height,"
    " COALESCE(json_extract(record, '$.title'), ''), COALESCE(json_extract(record, '$.owner'), ''),"
    f" COALESCE({LICENSE_EXPR}, 0), {GEO_EXPR}, {{source}}, updated_at"
)
_ROW_COLUMNS = 14


@dataclass(frozen=True, slots=True, kw_only=True)
class Capabilities:
    """What this store can answer quickly: an older store opened read-only lacks some."""

    source_column: bool  # photos.source exists (schema 3); else the record's is read
    missing_indexes: tuple[str, ...]  # browse indexes absent: those filters scan
    dupes: bool  # the duplicate tables exist (schema 2)
    signals: bool  # photo_signal exists (schema 2): the content box of a stored photo


@dataclass(frozen=True, slots=True, kw_only=True)
class PhotoQuery:
    """A browse page's filters; None is "any". `status` always applies (the indexes end in it)."""

    status: str
    keyword: str | None = None
    license: int | None = None
    source: str | None = None
    geotagged: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PhotoRow:
    """One photo as a grid tile or a list line shows it."""

    id: int
    keyword: str
    status: str
    reason: str
    attempts: int
    path: str | None
    width: int | None
    height: int | None
    title: str
    owner: str
    license: int
    geotagged: bool
    source: str
    updated_at: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PhotoDetail:
    """Everything the store holds about one photo."""

    row: PhotoRow
    record: dict[str, Any]  # the full search record, as JSON
    keywords: tuple[str, ...]  # every keyword whose search found it
    sha256: str | None
    size_label: str | None
    claimed_at: float
    content: tuple[int, int] | None  # the fingerprint's content box, when it has one


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupMember:
    """A photo of a duplicate group: the representative (`kind` None) or a copy of it."""

    photo_id: int
    group_id: int  # the representative's photo id
    kind: str | None
    param: str
    path: str | None
    title: str


class ServeStore:
    """The reads `harvest serve` makes of one store (opened read-only by the caller)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.capabilities = self._capabilities()
        source = "source" if self.capabilities.source_column else _SOURCE_FALLBACK
        self._source = source
        self._row = _ROW.format(source=source)

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """One short read transaction: its statements see one state of the store."""
        with self._store.reading() as db:
            db.execute("BEGIN")
            try:
                yield db
            finally:
                db.execute("COMMIT")

    def _rows(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._snapshot() as db:
            return db.execute(sql, args).fetchall()

    def _capabilities(self) -> Capabilities:
        names = {str(r[0]) for r in self._rows("SELECT name FROM sqlite_master")}
        columns = {str(r[1]) for r in self._rows("PRAGMA table_info(photos)")}
        return Capabilities(
            source_column="source" in columns,
            missing_indexes=tuple(n for n in BROWSE_INDEXES if n not in names),
            dupes="dup_group" in names,
            signals="photo_signal" in names,
        )

    def plan(self, query: PhotoQuery, after: int, limit: int) -> list[str]:
        """SQLite's plan for `page` (EXPLAIN QUERY PLAN details), to check it seeks."""
        sql, args = self._page_sql(query, after, limit)
        return [str(r[3]) for r in self._rows(f"EXPLAIN QUERY PLAN {sql}", args)]

    def page(self, query: PhotoQuery, after: int, limit: int) -> list[PhotoRow]:
        """Up to `limit` photos matching `query` with ids above `after`, by id."""
        sql, args = self._page_sql(query, after, limit)
        return [_photo_row(r) for r in self._rows(sql, args)]

    def _page_sql(self, query: PhotoQuery, after: int, limit: int) -> tuple[str, list[object]]:
        """The page's SQL. The first filter given, in the order below, leads: its index (with
        the status) is the one SQLite seeks, the others only filter (`+` keeps an index off a
        term). Without statistics SQLite may pick any of them, and a poor pick walks the rows
        of every other keyword first (a keyword's claims are one id range): 0.4 s at 1M."""
        optional = (
            ("keyword", query.keyword),
            (LICENSE_EXPR, query.license),
            (self._source, query.source),
            (GEO_EXPR, None if query.geotagged is None else int(query.geotagged)),
        )
        terms: list[str] = ["status = ?"]
        args: list[object] = [query.status]
        for column, value in optional:
            if value is not None:
                terms.append(f"{'+' if len(terms) > 1 else ''}{column} = ?")
                args.append(value)
        where = " AND ".join([*terms, "id > ?"])
        sql = f"SELECT {self._row} FROM photos WHERE {where} ORDER BY id LIMIT ?"
        return sql, [*args, after, limit]

    def keywords(self) -> list[str]:
        """Every keyword of the harvest, in order."""
        return [str(r[0]) for r in self._rows("SELECT keyword FROM keywords ORDER BY keyword")]

    def sources(self) -> list[str]:
        """Every source a photo has (an index scan with the browse indexes)."""
        rows = self._rows(f"SELECT DISTINCT {self._source} FROM photos ORDER BY 1")
        return [str(r[0]) for r in rows]

    def photo(self, photo_id: int) -> PhotoDetail | None:
        """One photo with its record, keywords and content box; None if the store has none."""
        with self._snapshot() as db:
            found = db.execute(
                f"SELECT {self._row}, record, sha256, size_label, claimed_at"
                " FROM photos WHERE id = ?",
                (photo_id,),
            ).fetchone()
            if found is None:
                return None
            keywords = db.execute(
                "SELECT group_concat(keyword, ?) FROM photo_keywords WHERE photo_id = ?",
                (KEYWORD_SEP, photo_id),
            ).fetchone()[0]
            content = None
            if self.capabilities.signals:
                content = db.execute(
                    "SELECT content_w, content_h FROM photo_signal WHERE photo_id = ?",
                    (photo_id,),
                ).fetchone()
        row = _photo_row(found[:_ROW_COLUMNS])  # the row's columns come first
        record, sha, label, claimed = found[_ROW_COLUMNS:]
        return PhotoDetail(
            row=row,
            record=orjson.loads(record),
            keywords=tuple(keywords.split(KEYWORD_SEP)) if keywords else (row.keyword,),
            sha256=sha,
            size_label=label,
            claimed_at=float(claimed),
            content=None if content is None else (int(content[0]), int(content[1])),
        )

    def stored_path(self, photo_id: int) -> str | None:
        """The stored file of a done photo, relative to OUT, as the store records it."""
        rows = self._rows(
            "SELECT path FROM photos WHERE id = ? AND status = 'done' AND path IS NOT NULL",
            (photo_id,),
        )
        return str(rows[0][0]) if rows else None

    def group_of(self, photo_id: int) -> list[GroupMember]:
        """The duplicate group the photo belongs to, representative first; [] if none."""
        if not self.capabilities.dupes:
            return []
        rows = self._rows(
            f"{_MEMBERS} WHERE g.group_id = (SELECT group_id FROM dup_group WHERE photo_id = ?)"
            " ORDER BY g.kind IS NOT NULL, g.photo_id",
            (photo_id,),
        )
        members = [_member(r) for r in rows]
        return members if len(members) > 1 else []

    def groups(self, after: int, limit: int) -> list[list[GroupMember]]:
        """Up to `limit` groups with copies whose representative's id is above `after`."""
        if not self.capabilities.dupes:
            return []
        with self._snapshot() as db:
            ids = [
                int(r[0])
                for r in db.execute(
                    "SELECT DISTINCT group_id FROM dup_group WHERE group_id > ?"
                    " AND kind IS NOT NULL ORDER BY group_id LIMIT ?",
                    (after, limit),
                )
            ]
            marks = ",".join("?" * len(ids))
            rows = db.execute(
                f"{_MEMBERS} WHERE g.group_id IN ({marks})"
                " ORDER BY g.group_id, g.kind IS NOT NULL, g.photo_id",
                ids,
            ).fetchall()
        grouped: dict[int, list[GroupMember]] = {i: [] for i in ids}
        for r in rows:
            member = _member(r)
            grouped[member.group_id].append(member)
        return list(grouped.values())

    def attention(self, policy_skips: Sequence[str], after: int, limit: int) -> list[AttentionRow]:
        """Failed photos and error skips (a reason none of `policy_skips` starts), by id:
        one keyset seek per status, merged."""
        policy = " AND ".join("COALESCE(reason, '') NOT LIKE ? ESCAPE '\\'" for _ in policy_skips)
        sql = (
            "SELECT id, COALESCE(json_extract(record, '$.owner'), ''),"
            " COALESCE(json_extract(record, '$.title'), ''), keyword, status,"
            " COALESCE(reason, ''), attempts, updated_at FROM photos"
            " WHERE status = ? AND {skip} AND id > ? ORDER BY id LIMIT ?"
        )
        with self._snapshot() as db:
            failed = db.execute(sql.format(skip="1"), ("failed", after, limit)).fetchall()
            skipped = db.execute(
                sql.format(skip=policy or "1"),
                ("skipped", *[like_prefix(p) for p in policy_skips], after, limit),
            ).fetchall()
        merged = heapq.merge(failed, skipped, key=lambda r: int(r[0]))
        return [attention_row(r) for _, r in zip(range(limit), merged, strict=False)]


_MEMBERS = (
    "SELECT g.photo_id, g.group_id, g.kind, g.param, p.path,"
    " COALESCE(json_extract(p.record, '$.title'), '')"
    " FROM dup_group g LEFT JOIN photos p ON p.id = g.photo_id"
)


def _member(r: tuple[Any, ...]) -> GroupMember:
    return GroupMember(
        photo_id=int(r[0]),
        group_id=int(r[1]),
        kind=None if r[2] is None else str(r[2]),
        param=str(r[3] or ""),
        path=None if r[4] is None else str(r[4]),
        title=str(r[5]),
    )


def _photo_row(r: Sequence[Any]) -> PhotoRow:
    pid, keyword, status, reason, attempts, path, width, height = r[:8]
    title, owner, lic, geo, source, updated = r[8:14]
    return PhotoRow(
        id=int(pid),
        keyword=str(keyword),
        status=str(status),
        reason=str(reason),
        attempts=int(attempts),
        path=None if path is None else str(path),
        width=None if width is None else int(width),
        height=None if height is None else int(height),
        title=str(title),
        owner=str(owner),
        license=int(lic),
        geotagged=bool(geo),
        source=str(source or "flickr"),
        updated_at=None if updated is None else float(updated),
    )
