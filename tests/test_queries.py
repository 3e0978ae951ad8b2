"""Tests of the queries-file parser and the negative-term filter."""

from __future__ import annotations

from pathlib import Path

import pytest

from harvester.exceptions import QueriesFileError
from harvester.records import DateField, PhotoRecord
from harvester.search.queries import KeywordQuery, load_queries, matches_negative, parse_queries

ROOT = Path(__file__).resolve().parent.parent

HAYS = "#metro areas\r\nnewyork\r\nla\r\n-birthday\r\n-party\r\n#trailing comment\r\n"


def test_hays_file_reads_unchanged() -> None:
    parsed = parse_queries(HAYS)
    assert [k.keyword for k in parsed.keywords] == ["newyork", "la"]
    assert parsed.keywords[1] == KeywordQuery("la", text="la", line=3)
    assert parsed.negatives == ("birthday", "party")


@pytest.mark.parametrize(
    "text",
    [
        "newyork\nla\n-birthday\n-party",  # LF, no trailing newline or comment
        "\ufeffnewyork\r\nla\r\n-birthday\r\n-party\r\n",  # BOM + CRLF
        "  newyork  \n\n\tla\n# note\n-birthday\n-party\n-birthday\n",  # blanks, repeats
    ],
)
def test_line_endings_bom_and_blanks(text: str) -> None:
    parsed = parse_queries(text)
    assert [k.keyword for k in parsed.keywords] == ["newyork", "la"]
    assert parsed.negatives == ("birthday", "party")


def test_file_with_bom_and_crlf_loads(tmp_path: Path) -> None:
    path = tmp_path / "q.txt"
    path.write_bytes(b"\xef\xbb\xbfs\xc3\xa3opaulo\r\n-bw\r\n")
    parsed = load_queries(path)
    assert parsed.keywords[0].keyword == "são" + "paulo"
    assert parsed.path == str(path)


def test_options_and_directives() -> None:
    text = (
        "#! since=2005-01-01 license=4,1,2\n"
        "argentina | tags=argentina,buenosaires tag_mode=all until=2010-12-31 has_geo=1\n"
        "#! date=taken bbox=-73.6,-55.1,-53.6,-21.8 accuracy=6\n"
        'ny | text="new york" user=12345678@N04 license=9\n'
    )
    first, second = parse_queries(text).keywords
    assert first == KeywordQuery(
        "argentina",
        text=None,
        tags=("argentina", "buenosaires"),
        tag_mode="all",
        since=1104537600,
        until=1293840000,  # the end of 2010-12-31
        licenses=(1, 2, 4),
        has_geo=True,
        line=2,
    )
    assert second.text == "new york"
    assert second.date_field is DateField.TAKEN
    assert second.licenses == (9,)
    assert second.since == 1104537600
    assert second.bbox == (-73.6, -55.1, -53.6, -21.8)
    assert (second.accuracy, second.user_id) == (6, "12345678@N04")


def test_run_default_date_field_and_datetimes() -> None:
    text = "a | since=2020-01-01T12:00:00 until=1600000000\nb | date=upload"
    a, b = parse_queries(text, date_field=DateField.TAKEN).keywords
    assert (a.date_field, a.since, a.until) == (DateField.TAKEN, 1577880000, 1600000000)
    assert b.date_field is DateField.UPLOAD


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("a | colour=red", 1, "unknown option 'colour=red'"),
        ("a\nb | since=2005-13-01", 2, "since='2005-13-01'"),
        ("a | until=yesterday", 1, "expected YYYY-MM-DD"),
        ("a | license=1,99", 1, "unknown licence id 99"),
        ("a | license=cc", 1, "not a whole number"),
        ("a | bbox=1,2,3", 1, "min_lon,min_lat,max_lon,max_lat"),
        ("a | bbox=10,0,5,1", 1, "min_lon < max_lon"),
        ("a | accuracy=17", 1, "1..16"),
        ("a | has_geo=yes", 1, "expected one of 1, 0"),
        ("a | user=bob", 1, "NSID"),
        ("a | tag_mode=some", 1, "any, all"),
        ("a | since=2010-01-01 until=2009-01-01", 1, "since must come before until"),
        ("a | since=2010-01-01 since=2011-01-01", 1, "given twice"),
        ('a | text="open', 1, "bad quoting"),
        ("#! text=x\na", 1, "belongs on a keyword line"),
        ("a\n-\n", 2, "needs a term"),
        ("| tags=x", 1, "missing keyword"),
        ("../etc", 1, "cannot name a directory"),
        ("paris\nlondon\nParis", 3, "duplicate keyword 'Paris' (first on line 1)"),
        ("# only comments\n-party\n\n", None, "no keywords"),
        ("", None, "no keywords"),
    ],
)
def test_errors_name_the_line(text: str, line: int | None, message: str) -> None:
    with pytest.raises(QueriesFileError) as caught:
        parse_queries(text, "q.txt")
    assert caught.value.line == line
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"q.txt:{line}" if line else "q.txt:")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(QueriesFileError, match="no such file"):
        load_queries(tmp_path / "missing.txt")
    with pytest.raises(QueriesFileError, match="is a directory"):
        load_queries(tmp_path)
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"paris\nz\xfcrich\n")
    with pytest.raises(QueriesFileError, match="not UTF-8") as caught:
        load_queries(bad)
    assert caught.value.line == 2


def test_two_letter_keywords_are_kept() -> None:
    assert [k.keyword for k in parse_queries("la\nny\nx\n").keywords] == ["la", "ny", "x"]


NEGATIVES = ("birthday", "child", "children", "still life", "bw")


def photo(title: str = "", tags: tuple[str, ...] = (), description: str = "") -> PhotoRecord:
    return PhotoRecord(
        id="1",
        owner="1@N01",
        secret="ab",
        server="1",
        title=title,
        tags=tags,
        description=description,
    )


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (photo(title="Sunset over the bay"), None),
        (photo(title="My BIRTHDAY cake"), "birthday"),
        (photo(title="birthdays"), None),  # whole words only
        (photo(title="Children playing"), "children"),
        (photo(title="grandchild"), None),
        (photo(tags=("beach", "bw")), "bw"),
        (photo(tags=("birthdayparty",)), None),
        (photo(tags=("stilllife",)), "still life"),
        (photo(description="A <b>Still  Life</b> of fruit"), "still life"),
        (photo(description='<a href="http://x/birthday-party.html">link</a>'), None),
        (photo(description="child&#39;s toy"), "child"),
    ],
)
def test_matches_negative(record: PhotoRecord, expected: str | None) -> None:
    assert matches_negative(record, NEGATIVES) == expected


def test_no_negatives_match_nothing() -> None:
    assert matches_negative(photo(title="birthday"), ()) is None


def test_shipped_places_file() -> None:
    parsed = load_queries(ROOT / "queries" / "places.txt")
    names = [k.keyword for k in parsed.keywords]
    assert 150 <= len(names) <= 250
    assert all(" " not in n for n in names)
    assert names.index("westvirginia") < names.index("virginia")
    assert names.index("newyork") < names.index("newyorkstate") < names.index("usa")
    assert len(parsed.negatives) == 38
    assert parsed.negatives[:3] == ("birthday", "party", "parties")
    assert parsed.negatives[-1] == "stilllife"
    assert "man" not in parsed.negatives


def test_shipped_demo_file() -> None:
    parsed = load_queries(ROOT / "queries" / "demo.txt")
    assert 3 <= len(parsed.keywords) <= 5
