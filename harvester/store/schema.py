"""The SQLite store's schema, connection settings and record codec (rows.py reads rows back).

Photo ids are INTEGER PRIMARY KEYs (the table's rowid), so the biggest table needs no second
index for its key. The full PhotoRecord is kept as JSON text, so `json_extract` works on it
from the sqlite3 shell. Partial indexes cover only the rows the downloader looks for
(claimed, failed), so they shrink as the harvest progresses instead of growing with it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import fields
from pathlib import Path
from typing import Any

import orjson

from harvester.exceptions import StoreError
from harvester.records import PhotoRecord, SizeVariant

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


def license_key(license: int | None) -> int:
    """The windows-table key for a licence filter (NO_LICENSE for none)."""
    return NO_LICENSE if license is None else license
