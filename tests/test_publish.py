"""The publish room's pure parts, as tables: licence flags, image changes, Markdown escaping,
credits lines, size categories, the card's edit marker, HF leading rows, Parquet typing."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from harvester.export import COLUMNS, row_dict
from harvester.publish import card, hf, tables
from harvester.publish.changes import ImageChanges, from_file_record, from_store
from harvester.publish.columns import NAMES, Kind, source_of
from harvester.publish.credits import credit_of, csv_row, markdown_row, md_escape
from harvester.publish.licensing import Flag, flags
from harvester.records import PhotoRecord, SizeVariant, Window
from harvester.store.sqlite import Store


@pytest.mark.parametrize(
    ("license_id", "expected"),
    [
        (0, (Flag.ALL_RIGHTS_RESERVED,)),
        (4, ()),
        (3, (Flag.NO_DERIVATIVES, Flag.NON_COMMERCIAL)),
        (6, (Flag.NO_DERIVATIVES,)),
        (13, (Flag.NO_DERIVATIVES,)),
        (16, (Flag.NO_DERIVATIVES, Flag.NON_COMMERCIAL)),
        (12, (Flag.SHARE_ALIKE,)),
        (9, (Flag.PUBLIC_DOMAIN,)),
        (99, (Flag.UNKNOWN,)),
    ],
)
def test_licence_flags(license_id: int, expected: tuple[Flag, ...]) -> None:
    assert flags(license_id) == expected


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        (ImageChanges(source=(1024, 683), content=(1024, 683), stored=(1024, 683)), ()),
        (  # turned by its EXIF orientation: the same pixels, not a frame
            ImageChanges(source=(683, 1024), content=(1024, 683), stored=(1024, 683)),
            (),
        ),
        (
            ImageChanges(source=(1024, 683), content=(980, 640), stored=(980, 640)),
            ("frame removed (kept 980x640 of 1024x683)",),
        ),
        (
            ImageChanges(source=(3000, 2000), content=(2900, 1900), stored=(1024, 671)),
            ("frame removed (kept 2900x1900 of 3000x2000)", "resized to 1024 px on the long side"),
        ),
        (
            ImageChanges(
                source=(900, 600), content=(900, 600), stored=(900, 600), converted_from="png"
            ),
            ("converted from PNG to JPEG",),
        ),
    ],
)
def test_changes_in_words(changes: ImageChanges, said: tuple[str, ...]) -> None:
    assert changes.describe() == said


def _row(**extra: Any) -> dict[str, Any]:
    sizes = [{"label": "l", "url": "u", "width": 1024, "height": 683}]
    base = {"size_label": "l", "sizes": sizes, "stored_width": 800, "stored_height": 533}
    return {**base, **extra}


def test_changes_from_the_store_and_from_the_file_agree() -> None:
    row = _row()
    stored = from_store(row, (1000, 666))
    in_file = {"downloaded": {"width": 1024, "height": 683}, "crop": [12, 8, 1012, 674]}
    filed = from_file_record(row, {**in_file, "stored": {"width": 800, "height": 533}})
    assert stored == filed
    older = {"source": in_file["downloaded"], "crop": in_file["crop"]}  # before sources
    assert from_file_record(row, {**older, "stored": {"width": 800, "height": 533}}) == filed
    assert stored is not None
    assert stored.frame_removed
    assert stored.resized
    assert from_store(row, None) is None, "no fingerprint: the store cannot tell"
    assert from_store(_row(size_label="o"), (1, 1)) is None, "no reported size for the original"
    assert from_file_record(row, {"downloaded": {}}) is None
    assert from_file_record(row, {"source": "nasa"}) is None, "a source name is not a size"


HOSTILE = [
    "a | b | c",
    "[click](http://evil.example) ![img](x.png)",
    "<script>alert(1)</script> &amp; <b>bold</b>",
    "line one\nline two\r\n| --- |\n# heading",
    "*bold* _it_ ~~gone~~ `code | pipe`",
    "back\\slash\\| \u202eevil\u202c \x00nul",
]


@pytest.mark.parametrize("title", HOSTILE)
def test_markdown_escapes_hostile_text(title: str) -> None:
    text = md_escape(title)
    assert "\n" not in text
    assert "\r" not in text
    assert "<" not in text
    assert ">" not in text
    assert not re.search(r"(?<!\\)[|\[\]`*_~]", text.replace("\\\\", "")), text
    assert "\u202e" not in text
    assert "\x00" not in text


def _credit_row(title: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": "123",
        "owner": "12345@N01",
        "owner_name": "Name | with [link](x)",
        "title": title,
        "license": 6,
        "path": "kw/00001/123_ab_1_12345@N01.jpg",
        **extra,
    }


@pytest.mark.parametrize("title", HOSTILE)
def test_a_credit_row_is_one_table_row_of_seven_cells(title: str) -> None:
    line = markdown_row(credit_of(_credit_row(title), None))
    assert line.count("\n") == 1
    assert line.endswith("|\n")
    cells = re.split(r"(?<!\\)\|", line.strip().replace("\\\\", ""))
    assert len(cells) == 7 + 2, cells  # the leading and trailing pipes make two empty ends
    assert "**no-derivatives**" in line


def test_a_credit_names_title_author_source_licence_and_changes() -> None:
    changes = ImageChanges(source=(1024, 683), content=(1000, 660), stored=(1000, 660))
    credit = credit_of(_credit_row('say "hi"', source="nasa"), changes)
    cells = dict(zip(("file", "photo_id", "title", "author"), csv_row(credit), strict=False))
    assert cells == {
        "file": "kw/00001/123_ab_1_12345@N01.jpg",
        "photo_id": "123",
        "title": 'say "hi"',
        "author": "Name | with [link](x)",
    }
    assert credit.page_url == "https://www.flickr.com/photos/12345@N01/123/"
    assert credit.author_url == "https://www.flickr.com/people/12345@N01/"
    assert credit.source == "nasa"
    assert credit.license_name == "CC BY-ND 2.0"
    assert Flag.NO_DERIVATIVES in credit.flags
    assert credit.modifications == "frame removed (kept 1000x660 of 1024x683)"
    assert credit.attribution == (
        '"say "hi"" by Name | with [link](x) is licensed under CC BY-ND 2.0. To view the terms,'
        " visit https://creativecommons.org/licenses/by-nd/2.0/. Source:"
        " https://www.flickr.com/photos/12345@N01/123/. Modifications: frame removed (kept"
        " 1000x660 of 1024x683)."
    )
    assert credit_of(_credit_row(""), None).modifications == "not recorded"


def test_source_of_reads_the_row_or_says_flickr() -> None:
    assert source_of({"source": "bio_diversity"}) == "bio_diversity"
    assert source_of({}) == "flickr"
    assert source_of({"source": None}) == "flickr"


@pytest.mark.parametrize(
    ("n", "category"),
    [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (99_999, "10K<n<100K"),
     (100_000, "100K<n<1M"), (5_000_000, "1M<n<10M"), (10**13, "n>1T")],
)  # fmt: skip
def test_size_categories(n: int, category: str) -> None:
    assert card.size_category(n) == category


def test_the_card_marker_tells_an_edited_card() -> None:
    stamped = card.stamp("---\nlicense: other\n---\n\n# name\n")
    assert card.may_replace(stamped)
    assert not card.may_replace(stamped.replace("# name", "# my name"))
    assert not card.may_replace(stamped.replace("---\n", "", 1))
    assert not card.may_replace("# my own README\n")
    assert not card.may_replace("")


def test_leading_rows_show_every_column_that_is_ever_set() -> None:
    rows: list[dict[str, Any]] = [
        {"id": "1", "lat": None, "tags": [], "dup": None, "never": None},
        {"id": "2", "lat": 1.5, "tags": [], "dup": None, "never": None},
        {"id": "3", "lat": None, "tags": [], "dup": None, "never": None},
        {"id": "4", "lat": 2.0, "tags": ["x"], "dup": "1", "never": None},
    ]
    chosen = hf.leading_rows(rows)
    assert [row["id"] for row in chosen] == ["1", "2", "4"]
    for key in ("id", "lat", "tags", "dup"):
        assert any(row[key] not in (None, []) for row in chosen), key


def test_hf_rows_name_the_file_and_keep_only_real_dates() -> None:
    row = hf.metadata_row(
        {"path": "a/00001/1.jpg", "status": "done", "reason": None, "attempts": 1, "id": "1",
         "date_taken": "0000-00-00 00:00:00"}
    )  # fmt: skip
    assert row == {"file_name": "a/00001/1.jpg", "id": "1", "date_taken": None}


@pytest.mark.parametrize(
    ("kind", "value", "typed"),
    [
        (Kind.UNIX_TIME, 1_600_000_000, 1_600_000_000),
        (Kind.UNIX_TIME, 0, None),
        (Kind.LOCAL_TIME, "2004-10-20 05:38:29", datetime(2004, 10, 20, 5, 38, 29)),
        (Kind.LOCAL_TIME, "0000-00-00 00:00:00", None),
        (Kind.LOCAL_TIME, None, None),
        (Kind.INT, "17", 17),
        (Kind.FLOAT, 48, 48.0),
        (Kind.BOOL, 1, True),
        (Kind.STRINGS, ["a"], ["a"]),
    ],
)
def test_parquet_cell_types(kind: Kind, value: Any, typed: Any) -> None:
    assert tables.typed_value(kind, value) == typed


def test_the_column_table_names_every_export_column(tmp_path: Path) -> None:
    url = "https://live.staticflickr.com/1/1_ab_b.jpg"
    record = PhotoRecord(
        id="1", owner="1@N01", secret="ab", server="1",
        sizes=(SizeVariant(label="l", url=url, width=1024, height=683),),
    )  # fmt: skip
    with Store(tmp_path / "harvest.sqlite") as store:
        store.commit_window("k", Window(start=0, end=1), [record], reported_total=1, capped=False)
        [row] = list(store.iter_export())
    assert tuple(row_dict(row)) == COLUMNS == NAMES


def test_a_column_without_a_type_is_refused() -> None:
    with pytest.raises(Exception, match="no type"):
        tables.record_batch([{"id": "1", "brand_new": 1}])
    batch = tables.record_batch([{"id": "1", "date_upload": 1_600_000_000, "tags": ["a"]}])
    assert batch.num_rows == 1
    assert batch.schema.names == list(NAMES)
    assert batch.column(NAMES.index("date_upload"))[0].as_py() == datetime(
        2020, 9, 13, 12, 26, 40, tzinfo=UTC
    )


def test_a_code_span_holds_any_path() -> None:
    assert card.md_code("my_queries `x`\n.txt") == "`my_queries 'x' .txt`"
