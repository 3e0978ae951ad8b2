"""The store's schema migrates in place: a harvest made before fingerprints opens unharmed.

`V1_DDL` is the schema as it was at version 1 (harvest 0.1.0, before issue 11) and `V2_DDL`
at version 2 (before issue 12's sources), frozen here verbatim: a store made by those releases
must open with this one, lose nothing, and gain the new tables and columns, and a store from
a newer release must be refused rather than damaged.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from harvester.exceptions import StoreError
from harvester.store.schema import SCHEMA_VERSION
from harvester.store.sqlite import Store

V1_DDL = """
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

#: Version 2 added the duplicate tables to version 1 (issue 11).
V2_DDL = (
    V1_DDL
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
"""
)


def _v1_store(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(V1_DDL)
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.execute(
        "INSERT INTO photos (id, keyword, status, path, sha256, width, height, size_label,"
        " record, seq, claimed_at) VALUES (42, 'paris', 'done', 'paris/00001/42.jpg', 'ab',"
        ' 1024, 683, \'l\', \'{"id": "42", "owner": "1@N01"}\', 0, 1.0)'
    )
    db.execute("INSERT INTO keywords VALUES ('paris', 1)")
    db.commit()
    db.close()


def _tables(path: Path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        db.close()


def test_a_version_1_store_migrates_in_place_and_keeps_its_photos(tmp_path: Path) -> None:
    path = tmp_path / "harvest.sqlite"
    _v1_store(path)
    assert "photo_signal" not in _tables(path)
    with Store.open(path) as store:
        assert store.count("done") == 1
    assert {"photo_signal", "dup_pair", "dup_group"} <= _tables(path)
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
        str(SCHEMA_VERSION),
    )
    assert db.execute("SELECT id, path, sha256 FROM photos").fetchall() == [
        (42, "paris/00001/42.jpg", "ab")
    ]
    db.close()
    with Store.open(path) as store:  # opening again is a no-op
        assert store.count("done") == 1


def _v2_store(path: Path) -> list[tuple[object, ...]]:
    """A version-2 store with a done, a claimed and a failed photo and a fingerprint;
    returns its photo rows as they were."""
    db = sqlite3.connect(path)
    db.executescript(V2_DDL)
    db.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    rows = [
        (7, "paris", "done", None, 1, "paris/00001/7.jpg", "aa", 1024, 683, "l", "24662369@N07"),
        (8, "paris", "claimed", None, 0, None, None, None, None, None, "1@N01"),
        (9, "alps", "failed", "download: http 500", 3, None, None, None, None, None, "2@N02"),
    ]
    for i, (pid, kw, status, reason, attempts, path_, sha, w, h, size, owner) in enumerate(rows):
        record = f'{{"id": "{pid}", "owner": "{owner}", "secret": "ab", "server": "1"}}'
        db.execute(
            "INSERT INTO photos (id, keyword, status, reason, attempts, path, sha256, width,"
            " height, size_label, record, seq, claimed_at) VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1.0)",
            (pid, kw, status, reason, attempts, path_, sha, w, h, size, record, i),
        )
    db.execute("INSERT INTO keywords VALUES ('paris', 2), ('alps', 1)")
    db.execute("INSERT INTO dup_group VALUES (7, 7, NULL, '')")
    db.commit()
    before = db.execute("SELECT * FROM photos ORDER BY id").fetchall()
    db.close()
    return before


def test_a_version_2_store_gains_an_indexed_source_column_and_keeps_every_row(
    tmp_path: Path,
) -> None:
    path = tmp_path / "harvest.sqlite"
    before = _v2_store(path)
    with Store.open(path) as store:
        assert store.count("done") == 1
        assert [r.record.source for r in store.iter_export()] == ["flickr"] * 3
    assert {"source_names", "owner_sources"} <= _tables(path)
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("3",)
    after = db.execute("SELECT * FROM photos ORDER BY id").fetchall()
    assert [row[:-1] for row in after] == before  # every old column of every row, unchanged
    assert [row[-1] for row in after] == ["flickr"] * 3  # the new one, defaulted
    plan = db.execute("EXPLAIN QUERY PLAN SELECT source, COUNT(*) FROM photos GROUP BY source")
    assert "photos_source" in " ".join(str(r) for r in plan.fetchall())
    assert db.execute("SELECT COUNT(*) FROM dup_group").fetchone() == (1,)
    db.close()
    with Store.open(path) as store:  # opening again is a no-op
        assert store.count("failed") == 1


def test_a_store_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "harvest.sqlite"
    _v1_store(path)
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="99"):
        Store.open(path)


def test_the_signal_columns_are_the_fingerprint_row() -> None:
    """store.schema cannot import dataset (rooms), so the column list is written twice: pinned."""
    from harvester.dataset.fingerprint import ROW_COLUMNS
    from harvester.store.schema import SIGNAL_COLUMNS

    assert SIGNAL_COLUMNS[1 : 1 + len(ROW_COLUMNS)] == ROW_COLUMNS
