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

#: 2: photo_signal, dup_pair, dup_group (issue 11); 3: photos.source, source_names,
#: owner_sources (issue 12). Older versions migrate in place.
SCHEMA_VERSION = 3
BUSY_TIMEOUT_MS = 60_000  # several workers share the file; writers wait rather than fail
NO_LICENSE = -1  # a window searched over every licence (NULL cannot sit in a primary key)
KEYWORD_SEP = "\x1f"  # joins a photo's keywords in SQL; cannot occur in a queries-file line

DDL = (
    """
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
    leased_at REAL,
    source TEXT NOT NULL DEFAULT 'flickr'
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
    + """
CREATE TABLE IF NOT EXISTS photo_signal (
    photo_id INTEGER PRIMARY KEY,
    sig_version INTEGER NOT NULL,
    ph256 BLOB NOT NULL,
    ph256_c80 BLOB NOT NULL,
    dh64 INTEGER NOT NULL,
    quality INTEGER NOT NULL,
    src_sha256 BLOB,  -- NULL when backfilled from the stored file (the download is gone)
    scan_sha256 BLOB,
    gray_w INTEGER NOT NULL,
    gray_h INTEGER NOT NULL,
    content_w INTEGER NOT NULL,  -- in the pixels of the file downloaded
    content_h INTEGER NOT NULL,
    original_scale REAL,  -- the original's long side / the download's; NULL when unknown
    compared INTEGER NOT NULL DEFAULT 0  -- 1 once `harvest dupes` has compared it
);
CREATE INDEX IF NOT EXISTS photo_signal_src ON photo_signal (src_sha256);
CREATE INDEX IF NOT EXISTS photo_signal_scan ON photo_signal (scan_sha256)
    WHERE scan_sha256 IS NOT NULL;
CREATE TABLE IF NOT EXISTS dup_pair (
    a INTEGER NOT NULL,
    b INTEGER NOT NULL,
    kind TEXT NOT NULL,
    param TEXT NOT NULL,
    distance INTEGER NOT NULL,
    variant INTEGER NOT NULL,
    score REAL,
    method TEXT NOT NULL,
    PRIMARY KEY (a, b)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dup_pair_b ON dup_pair (b);
CREATE TABLE IF NOT EXISTS dup_group (
    photo_id INTEGER PRIMARY KEY,
    group_id INTEGER NOT NULL,
    kind TEXT,
    param TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS dup_group_group ON dup_group (group_id);
CREATE TABLE IF NOT EXISTS photo_keypoints (  -- the crop channel's signatures (dataset/keypoints)
    photo_id INTEGER PRIMARY KEY,
    kp_version INTEGER NOT NULL,
    descriptors BLOB NOT NULL  -- k x 32 bytes of ORB descriptors; empty for a flat picture
);
"""
    + """
CREATE TABLE IF NOT EXISTS source_names (
    name TEXT PRIMARY KEY,  -- a sources file's username, URL alias or NSID, lower-cased
    nsid TEXT NOT NULL,
    via TEXT NOT NULL,  -- the API method that resolved it
    resolved_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS owner_sources (
    nsid TEXT PRIMARY KEY,  -- the sources file in force: owner -> source, beside the built-in map
    source TEXT NOT NULL,
    name TEXT NOT NULL  -- as the file wrote it
) WITHOUT ROWID;
"""
)
#: After the migration: a v2 photos table has no source column until then.
SOURCE_INDEX = "CREATE INDEX IF NOT EXISTS photos_source ON photos (source)"

#: The record fields `harvest serve` filters on, as the expressions its indexes are built on (a
#: query must spell an expression exactly so for SQLite to use the index).
LICENSE_EXPR = "json_extract(record, '$.license')"
GEO_EXPR = "(json_extract(record, '$.latitude') IS NOT NULL)"
#: `harvest serve`'s browse indexes: each filter with the status, rowid last (SQLite appends it),
#: so `filter = ? AND status = ? AND id > ? ORDER BY id` is a seek, not a scan, at any size; the
#: first also makes the per-keyword counts of `harvest status` a covering-index scan. Additive:
#: no schema version, so an older harvest still opens the store, and a read-only opener of a
#: store without them (serve degrades to scans) still works. A writer adds them on open.
BROWSE_INDEXES = {
    "photos_keyword_status": "photos (keyword, status)",
    # a numbered directory's photos (`--output-format webdataset` builds a tar per directory)
    "photos_keyword_seq": "photos (keyword, seq)",
    "photos_status": "photos (status)",
    "photos_source_status": "photos (source, status)",
    "photos_license_status": f"photos ({LICENSE_EXPR}, status)",
    "photos_geo_status": f"photos ({GEO_EXPR}, status)",
    # the reasons tally of `harvest status` and the overview: covering, over the few rows that
    # have a reason (a seek into the table per skipped photo was 0.5 s of a 1M-photo summary)
    "photos_outcome_reason": "photos (status, reason) WHERE status IN ('skipped', 'failed')",
}


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


#: photo_signal's columns in order: the fingerprint (dataset.fingerprint.ROW_COLUMNS), then the
#: content box it describes in source pixels (frame stripped, orientation applied).
SIGNAL_COLUMNS = (
    "photo_id",
    "sig_version",
    "ph256",
    "ph256_c80",
    "dh64",
    "quality",
    "src_sha256",
    "scan_sha256",
    "gray_w",
    "gray_h",
    "content_w",
    "content_h",
    "original_scale",
)
INSERT_SIGNAL = (
    f"INSERT OR REPLACE INTO photo_signal ({', '.join(SIGNAL_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(SIGNAL_COLUMNS))})"
)

#: Schema versions this one migrates in place when a store is opened for writing.
_MIGRATABLE = frozenset({1, 2})


def _create(db: sqlite3.Connection) -> None:
    # executescript commits first and runs each statement; IF NOT EXISTS makes this idempotent
    # when several workers open a fresh file at once.
    db.executescript(DDL)
    db.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
        (str(SCHEMA_VERSION),),
    )
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    found = int(row[0]) if row is not None else None
    if found in _MIGRATABLE:
        _migrate(db, found)
    elif found != SCHEMA_VERSION:
        raise StoreError(f"store schema version {found} is not {SCHEMA_VERSION} (newer harvest?)")
    db.execute(SOURCE_INDEX)
    for name, target in BROWSE_INDEXES.items():
        db.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {target}")


def _migrate(db: sqlite3.Connection, found: int) -> None:
    """Bring a version-1 or -2 store to this version in one transaction, nothing lost.

    The new tables the DDL has just created. photos gains `source`: ADD COLUMN with a
    constant default rewrites no row, so it is instant at any size; every photo starts as
    'flickr' and `harvest sources --apply` names the institutions'. Photos harvested before
    fingerprints get them from their files (`harvest dupes`).
    """
    db.execute("BEGIN IMMEDIATE")  # several workers may open an old store at once
    try:
        columns = {r[1] for r in db.execute("PRAGMA table_info(photos)")}
        if "source" not in columns:
            db.execute("ALTER TABLE photos ADD COLUMN source TEXT NOT NULL DEFAULT 'flickr'")
        db.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version' AND value = ?",
            (str(SCHEMA_VERSION), str(found)),
        )
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


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


#: `meta` keys of the per-keyword search tally: "search_tally:<keyword>" → {"calls", "negatives"}.
#: Kept in `meta` rather than a column so that the schema (version 2) stays as it is.
SEARCH_TALLY_PREFIX = "search_tally:"


def add_search_tally(db: sqlite3.Connection, keyword: str, *, calls: int, negatives: int) -> None:
    """Add to a keyword's search calls and negative-term drops (inside the caller's transaction)."""
    db.execute(
        "INSERT INTO meta (key, value) VALUES (?, json_object('calls', ?, 'negatives', ?))"
        " ON CONFLICT (key) DO UPDATE SET value = json_object("
        "'calls', json_extract(value, '$.calls') + json_extract(excluded.value, '$.calls'),"
        " 'negatives', json_extract(value, '$.negatives')"
        " + json_extract(excluded.value, '$.negatives'))",
        (SEARCH_TALLY_PREFIX + keyword, calls, negatives),
    )


def license_key(license: int | None) -> int:
    """The windows-table key for a licence filter (NO_LICENSE for none)."""
    return NO_LICENSE if license is None else license
