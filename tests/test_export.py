"""`harvest export`: JSONL and CSV rows carry the record, keywords, outcome and file."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import orjson
import pytest

from harvester.exceptions import ConfigError
from harvester.export import COLUMNS, export
from harvester.records import PhotoRecord, SizeVariant
from harvester.store.sqlite import Store
from tests.harness import FakeStoredImage


def photo(i: int) -> PhotoRecord:
    url = f"https://live.staticflickr.com/65535/{i}_abcdef0123_b.jpg"
    return PhotoRecord(
        id=str(i),
        owner="7478087@N06",
        secret="abcdef0123",
        server="65535",
        title=f'say "hi", {i}',
        description="line one\nline two",
        tags=("eiffel", "tower"),
        license=11,
        date_upload=1_600_000_000 + i,
        sizes=(SizeVariant("l", url, 1024, 683),),
    )


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "harvest.sqlite"
    with Store(path) as store:
        store.commit_window("eiffel tower", 0, 10, None, [photo(1), photo(2), photo(3)], 3, False)
        store.commit_window("paris", 0, 10, None, [photo(2), photo(4)], 2, False)
        store.mark_done(
            "1",
            "eiffel tower/00001/1_abcdef0123_65535_7478087@N06.jpg",
            FakeStoredImage(1024, 683, "f" * 64),
            "l",
        )
        store.mark_skipped("3", "too small: 400x300")
    return path


def test_jsonl_rows(store_path: Path) -> None:
    out = io.StringIO()
    assert export(store_path, "jsonl", out) == 4
    rows = {row["id"]: row for row in map(orjson.loads, out.getvalue().splitlines())}
    assert list(rows) == ["1", "2", "3", "4"]
    first = rows["1"]
    assert list(first) == list(COLUMNS)
    assert (first["owner"], first["license"], first["date_upload"]) == (
        "7478087@N06",
        11,
        1_600_000_001,
    )
    assert (first["license_name"], first["status"], first["sha256"]) == (
        "CC BY 4.0",
        "done",
        "f" * 64,
    )
    assert first["path"].startswith("eiffel tower/00001/")
    assert (first["stored_width"], first["stored_height"], first["size_label"]) == (1024, 683, "l")
    assert first["sizes"] == [
        {"label": "l", "url": photo(1).sizes[0].url, "width": 1024, "height": 683}
    ]
    assert rows["2"]["keywords"] == ["eiffel tower", "paris"]
    assert rows["2"]["keyword"] == "eiffel tower"
    assert (rows["3"]["status"], rows["3"]["reason"], rows["3"]["path"]) == (
        "skipped",
        "too small: 400x300",
        None,
    )
    assert rows["4"]["keywords"] == ["paris"]


def test_csv_rows(store_path: Path) -> None:
    out = io.StringIO()
    assert export(store_path, "csv", out) == 4
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["id"] for r in rows] == ["1", "2", "3", "4"]
    assert tuple(rows[0]) == COLUMNS
    assert rows[0]["title"] == 'say "hi", 1'
    assert rows[0]["description"] == "line one\nline two"
    assert rows[0]["tags"] == "eiffel tower"
    assert rows[1]["keywords"] == "eiffel tower|paris"
    assert (rows[0]["status"], rows[0]["license"], rows[0]["date_upload"]) == (
        "done",
        "11",
        "1600000001",
    )
    assert rows[2]["path"] == ""
    assert orjson.loads(rows[0]["sizes"])[0]["label"] == "l"


def test_unknown_format(store_path: Path) -> None:
    with pytest.raises(ConfigError, match="parquet"):
        export(store_path, "parquet", io.StringIO())


def test_export_does_not_modify_the_store(store_path: Path) -> None:
    before = store_path.read_bytes()
    export(store_path, "jsonl", io.StringIO())
    assert store_path.read_bytes() == before
