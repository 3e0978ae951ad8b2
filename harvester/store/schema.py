"""The SQLite store's schema, connection settings and record codec (used by harvester.store.sqlite).

Photo ids are INTEGER PRIMARY KEYs (the table's rowid), so the biggest table needs no second
index for its key. The full PhotoRecord is kept as JSON text, so `json_extract` works on it
from the sqlite3 shell. Partial indexes cover only the rows the downloader looks for
(claimed, failed), so they shrink as the harvest progresses instead of growing with it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import orjson

from harvester.exceptions import StoreError
from harvester.records import PhotoRecord, PhotoStatus, SizeVariant, Window

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 60_000  # several workers share the file; writers wait rather than fail
NO_LICENSE = -1  # a window searched over every licence (NULL cannot sit in a primary key)
KEYWORD_SEP = "\x1f"  # joins a photo's keywords in SQL; cannot occur in a queries-file line

DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    worker TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    outcome TEXT,
    config TEXT NOT NULL,
    counts TEXT
);
CREATE TABLE IF NOT EXISTS windows (
    keyword TEXT NOT NULL,
    start_s INTEGER NOT NULL,
    end_s INTEGER NOT NULL,
    license INTEGER NOT NULL,
    found INTEGER NOT NULL,
    new INTEGER NOT NULL,
    reported_total INTEGER,
    capped INTEGER NOT NULL,
    finished_at REAL NOT NULL,
    PRIMARY KEY (keyword, start_s, end_s, license)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS photos (
    id INTEGER PRIMARY KEY,
    keyword TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    path TEXT,
    sha256 TEXT,
    width INTEGER,
    height INTEGER,
    size_label TEXT,
    record TEXT NOT NULL,
    seq INTEGER NOT NULL,
    claimed_at REAL NOT NULL,
    updated_at REAL,
    leased_by TEXT,
    leased_at REAL
);
CREATE INDEX IF NOT EXISTS photos_claimed ON photos (id) WHERE status = 'claimed';
CREATE INDEX IF NOT EXISTS photos_failed ON photos (id) WHERE status = 'failed';
CREATE TABLE IF NOT EXISTS keywords (keyword TEXT PRIMARY KEY, next_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS photo_keywords (
    photo_id INTEGER NOT NULL,
    keyword TEXT NOT NULL,
    PRIMARY KEY (photo_id, keyword)
) WITHOUT ROWID;
"""


def connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, schema in place."""
    try:
        if read_only:
            if not path.is_file():
                raise StoreError(f"no harvest store at {path}")
            db = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            return db
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        _configure(db)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the store {path}: {exc}") from exc
    return db


def _configure(db: sqlite3.Connection) -> None:
    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    db.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a commit survives a process crash; only an OS crash can lose the
    # last transactions, never corrupt the file.
    db.execute("PRAGMA synchronous=NORMAL")
    _create(db)


def _create(db: sqlite3.Connection) -> None:
    # executescript commits first and runs each statement; IF NOT EXISTS makes this idempotent
    # when several workers open a fresh file at once.
    db.executescript(DDL)
    db.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
        (str(SCHEMA_VERSION),),
    )
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None or int(row[0]) != SCHEMA_VERSION:
        raise StoreError(f"store schema version {row and row[0]} is not {SCHEMA_VERSION}")


# --- record codec ----------------------------------------------------------------------------

_RECORD_FIELDS = frozenset(f.name for f in fields(PhotoRecord))


def record_to_json(record: PhotoRecord) -> str:
    """The record as compact JSON text (orjson serialises the slotted dataclass directly)."""
    return orjson.dumps(record).decode()


def record_from_json(text: str | bytes) -> PhotoRecord:
    """The record back from its JSON; unknown keys (a newer writer) are ignored."""
    data: dict[str, Any] = orjson.loads(text)
    values = {key: value for key, value in data.items() if key in _RECORD_FIELDS}
    values["tags"] = tuple(values.get("tags", ()))
    values["sizes"] = tuple(SizeVariant(**size) for size in values.get("sizes", ()))
    return PhotoRecord(**values)


# --- what the store hands out ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """What a committed window yielded: photos this keyword claimed first, and the rest."""

    new: tuple[PhotoRecord, ...]
    duplicates: int

    @property
    def new_ids(self) -> tuple[str, ...]:
        """Ids of the newly claimed photos."""
        return tuple(photo.id for photo in self.new)


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowRow:
    """A row of the windows table: a searched window of one keyword, as checkpointed.

    `window.license` None means every licence at once (NO_LICENSE in the table).
    """

    keyword: str
    window: Window
    found: int
    new: int
    reported_total: int | None
    capped: bool
    finished_at: float


@dataclass(frozen=True, slots=True)
class PendingPhoto:
    """A claimed photo to download, with where it goes: its keyword and that keyword's seq.

    `seq` numbers a keyword's photos from 0 in claim order, fixed at claim time, so the
    writer's `<keyword>/<NNNNN>/` directory (1,000 per directory) is the same on every resume.
    """

    rowid: int
    keyword: str
    seq: int
    record: PhotoRecord
    keywords: tuple[str, ...]
    attempts: int


@dataclass(frozen=True, slots=True)
class KeywordSummary:
    """Per-keyword totals: windows searched, photos found/new/duplicate, outcomes."""

    keyword: str
    windows: int = 0
    found: int = 0
    new: int = 0
    duplicates: int = 0
    claimed: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class StoreSummary:
    """Counts for progress, `harvest status` and the end-of-run summary."""

    statuses: Mapping[str, int]
    keywords: tuple[KeywordSummary, ...]
    reasons: Mapping[str, int]  # "skipped: too small" -> count

    @property
    def photos(self) -> int:
        """Photos claimed in total, whatever their status."""
        return sum(self.statuses.values())

    def render(self) -> str:
        """A plain-text table: one line per keyword, a total, then the reasons tally."""
        head = f"{'keyword':<24} {'windows':>8} {'found':>9} {'new':>9} {'dup':>8} "
        head += f"{'pending':>8} {'done':>9} {'skipped':>8} {'failed':>7}"
        lines = [head]
        for k in (*self.keywords, _total(self.keywords)):
            lines.append(
                f"{k.keyword[:24]:<24} {k.windows:>8} {k.found:>9} {k.new:>9} {k.duplicates:>8} "
                f"{k.claimed:>8} {k.done:>9} {k.skipped:>8} {k.failed:>7}"
            )
        lines += [f"  {reason}: {count}" for reason, count in sorted(self.reasons.items())]
        return "\n".join(lines)


def _total(keywords: Sequence[KeywordSummary]) -> KeywordSummary:
    names = ("windows", "found", "new", "duplicates", "claimed", "done", "skipped", "failed")
    sums = {name: sum(getattr(k, name) for k in keywords) for name in names}
    return KeywordSummary("TOTAL", **sums)


@dataclass(frozen=True, slots=True)
class ExportRow:
    """One photo with everything the store knows about it, for export."""

    record: PhotoRecord
    keyword: str
    keywords: tuple[str, ...]
    status: str
    reason: str | None
    attempts: int
    path: str | None
    sha256: str | None
    width: int | None
    height: int | None
    size_label: str | None


# --- rows to records -------------------------------------------------------------------------

WINDOW_COLUMNS = "keyword, start_s, end_s, license, found, new, reported_total, capped, finished_at"
PENDING_COLUMNS = (
    f"id, keyword, seq, record, (SELECT group_concat(keyword, char({ord(KEYWORD_SEP)}))"
    " FROM photo_keywords k WHERE k.photo_id = photos.id), attempts"
)


def license_key(license: int | None) -> int:
    """The windows-table key for a licence filter (NO_LICENSE for none)."""
    return NO_LICENSE if license is None else license


def split_keywords(joined: str | None, claimer: str) -> tuple[str, ...]:
    """A photo's keywords from group_concat, sorted; at least the claiming keyword."""
    return tuple(sorted(joined.split(KEYWORD_SEP))) if joined else (claimer,)


def window_row(row: Sequence[Any]) -> WindowRow:
    """A row selected with WINDOW_COLUMNS as a WindowRow."""
    keyword, start, end, lic, found, new, total, capped, finished = row
    return WindowRow(
        keyword=keyword,
        window=Window(start, end, None if lic == NO_LICENSE else lic),
        found=found,
        new=new,
        reported_total=total,
        capped=bool(capped),
        finished_at=finished,
    )


def pending_photo(row: Sequence[Any]) -> PendingPhoto:
    """A row selected with PENDING_COLUMNS as a PendingPhoto."""
    rowid, keyword, seq, record, joined, attempts = row
    return PendingPhoto(
        rowid=rowid,
        keyword=keyword,
        seq=seq,
        record=record_from_json(record),
        keywords=split_keywords(joined, keyword),
        attempts=attempts,
    )


def export_row(row: Sequence[Any]) -> ExportRow:
    """A row of the export query as an ExportRow."""
    record, keyword, joined, status, reason, attempts, path, sha, width, height, size = row
    return ExportRow(
        record=record_from_json(record),
        keyword=keyword,
        keywords=split_keywords(joined, keyword),
        status=status,
        reason=reason,
        attempts=attempts,
        path=path,
        sha256=sha,
        width=width,
        height=height,
        size_label=size,
    )


def build_summary(
    windows: Iterable[Sequence[Any]],
    by_status: Iterable[Sequence[Any]],
    reasons: Iterable[Sequence[Any]],
) -> StoreSummary:
    """The summary from the three grouped queries of Store.summary."""
    per: dict[str, dict[str, int]] = {}
    for keyword, count, found, new in windows:
        per[keyword] = {"windows": count, "found": found, "new": new, "duplicates": found - new}
    statuses: dict[str, int] = {}
    for keyword, status, count in by_status:
        if status in PhotoStatus.__members__.values():
            per.setdefault(keyword, {})[status] = count
        statuses[status] = statuses.get(status, 0) + count
    keywords = tuple(KeywordSummary(keyword, **counts) for keyword, counts in sorted(per.items()))
    tally: dict[str, int] = {}
    for status, reason, count in reasons:  # "too small: 400x300 < 500" -> "too small"
        key = f"{status}: {(reason or 'unknown').split(':', 1)[0].strip()}"
        tally[key] = tally.get(key, 0) + count
    return StoreSummary(statuses=statuses, keywords=keywords, reasons=tally)
