"""The store's schema migrates in place: a harvest made before fingerprints opens unharmed.

`V1_DDL` is the schema as it was at version 1 (harvest 0.1.0, before issue 11), frozen here
verbatim: a store made by that release must open with this one, lose nothing, and gain the
new tables, and a store from a newer release must be refused rather than damaged.
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
