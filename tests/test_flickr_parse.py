"""Pure parsing of Flickr's loosely typed JSON: tables, the real 2020 page, error envelopes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from harvester.exceptions import FlickrError, InvalidApiKeyError, TransientApiError
from harvester.flickr.parse import (
    EXTRAS,
    as_float,
    as_int,
    decode_response,
    parse_geo,
    parse_photo,
    parse_search_page,
    search_params,
)
from harvester.records import DateField, SearchQuery
from tests.harness import recording, requires_recordings

SEARCH_PAGE = "search_page_2020.json"  # a recording: fixtures/flickr/README.md
_BASE = {"id": "49514337848", "owner": "7478087@N06", "secret": "bbdbb5f761", "server": "65535"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (30, 30),
        ("30", 30),
        (" 30 ", 30),
        ("", None),
        (None, None),
        ("abc", None),
        (4.0, 4),
        ("4.0", 4),
        (4.5, None),
        ("-3", -3),
        ([], None),
    ],
)
def test_as_int_tolerates_flickrs_loose_types(value: Any, expected: int | None) -> None:
    assert as_int(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("61.468730", 61.46873), (61.5, 61.5), (0, 0.0), ("", None), ("nan", None), (True, None)],
)
def test_as_float(value: Any, expected: float | None) -> None:
    assert as_float(value) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"latitude": 0, "longitude": 0, "accuracy": 0}, (None, None, None)),
        ({"latitude": "0", "longitude": "0", "accuracy": "0"}, (None, None, None)),
        ({}, (None, None, None)),
        (
            {"latitude": "25.314511", "longitude": "51.496547", "accuracy": "16"},
            (25.314511, 51.496547, 16),
        ),
        ({"latitude": 48.85, "longitude": 2.35, "accuracy": 11}, (48.85, 2.35, 11)),
        ({"latitude": 0, "longitude": 2.35, "accuracy": 3}, (0.0, 2.35, 3)),  # on the equator
    ],
)
def test_parse_geo_maps_flickrs_zero_placeholder_to_none(
    raw: dict[str, Any], expected: tuple[Any, ...]
) -> None:
    assert parse_geo(raw) == expected


def test_parse_photo_mixed_types_and_sizes() -> None:
    raw = {
        **_BASE,
        "farm": 66,
        "title": 7433,
        "description": {"_content": "<b>Warsy</b>"},
        "tags": "church  somme france",
        "license": "4",
        "dateupload": "1581319011",
        "datetaken": "2011-11-05 15:54:37",
        "datetakengranularity": "4",
        "views": 9,
        "o_width": "3178",
        "o_height": 4932,
        "url_l": "https://live.staticflickr.com/65535/1_b.jpg",
        "width_l": "660",
        "height_l": 1024,
        "url_o": "https://live.staticflickr.com/65535/1_o.jpg",
        "width_o": 3178,
        "height_o": "4932",
        "url_m": "",  # present but empty: no such size
    }
    record = parse_photo(raw)
    assert (record.farm, record.title, record.description) == (66, "7433", "<b>Warsy</b>")
    assert record.tags == ("church", "somme", "france")
    assert (record.license, record.date_upload, record.date_taken_granularity) == (4, 1581319011, 4)
    assert (record.views, record.o_width, record.o_height) == (9, 3178, 4932)
    assert [s.label for s in record.sizes] == ["l", "o"]
    large = record.size("l")
    assert large is not None
    assert (large.width, large.height) == (660, 1024)
    assert record.latitude is None
    assert record.media == "photo"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not a dict", "not_an_object"),
        ({k: v for k, v in _BASE.items() if k != "id"}, "missing_id"),
        ({**_BASE, "secret": ""}, "missing_secret"),
        ({**_BASE, "server": None}, "missing_server"),
        ({k: v for k, v in _BASE.items() if k != "owner"}, "missing_owner"),
        ({**_BASE, "id": "../../etc"}, "bad_id"),
    ],
)
def test_malformed_records_are_counted_not_raised(raw: Any, reason: str) -> None:
    body = {"photos": {"page": 1, "pages": 1, "perpage": 2, "total": 2, "photo": [raw, _BASE]}}
    parsed = parse_search_page(body)
    assert [p.id for p in parsed.page.photos] == [_BASE["id"]]
    assert parsed.rejected == {reason: 1}


@pytest.mark.parametrize(
    ("total", "pages", "expected"),
    [
        ("30", 1, (30, 1)),
        (24688, "50", (24688, 50)),
        ("", "", (None, None)),
        (None, None, (None, None)),
        ("0", 0, (0, 0)),
    ],
)
def test_page_counts_int_string_or_empty(total: Any, pages: Any, expected: tuple[Any, Any]) -> None:
    photos: dict[str, Any] = {"page": 1, "perpage": 250, "photo": []}
    if total is not None:
        photos["total"] = total
    if pages is not None:
        photos["pages"] = pages
    page = parse_search_page({"photos": photos, "stat": "ok"}).page
    assert (page.total, page.pages) == expected
    assert page.per_page == 250


def test_missing_photos_object_is_transient() -> None:
    with pytest.raises(TransientApiError):
        parse_search_page({"stat": "ok"})


@requires_recordings(SEARCH_PAGE)
def test_real_2020_fixture_page() -> None:
    body = decode_response(200, recording(SEARCH_PAGE).read_bytes())
    parsed = parse_search_page(body)
    page = parsed.page
    assert (page.page, page.pages, page.per_page, page.total) == (1, 1, 500, 30)
    assert len(page.photos) == 30
    assert not parsed.rejected
    by_id = {p.id: p for p in page.photos}
    first = by_id["49514337848"]
    assert first.title == "Warsy (église) • 7433"
    assert first.description.startswith("Warsy (Somme, France)")
    assert (first.o_width, first.o_height, first.date_upload) == (3178, 4932, 1581319011)
    assert first.date_taken == "2011-11-05 15:54:37"
    assert [s.label for s in first.sizes] == ["s", "m", "l"]  # url_t is not requested
    assert all(p.license == 1 for p in page.photos)
    assert all(p.latitude is None for p in page.photos)
    # Documented quirks of this recording (fixtures/flickr/README.md).
    assert {p.id for p in page.photos if p.size("l") is None} == {"49515058172", "49514301123"}
    assert {p.id for p in page.photos if p.o_width is None} == {"49514301123"}


@requires_recordings(SEARCH_PAGE)
def test_fixture_granularity_mixed_int_and_string() -> None:
    raw = orjson.loads(recording(SEARCH_PAGE).read_bytes())["photos"]["photo"]
    kinds = {type(p["datetakengranularity"]) for p in raw}
    assert kinds == {int, str}  # the fixture really mixes them...
    records = parse_search_page({"photos": {"photo": raw}}).page.photos
    assert {r.date_taken_granularity for r in records} == {0}  # ...and we read both as 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), (1, True), ("0", False), (0, False), ("", False), (None, False), ("2", False)],
)
def test_date_taken_unknown_is_read_from_datetakenunknown(value: Any, expected: bool) -> None:
    raw = {**_BASE, "datetaken": "2020-02-10 01:09:34"}
    if value is not None:
        raw["datetakenunknown"] = value
    record = parse_photo(raw)
    assert record.date_taken_unknown is expected
    assert record.date_taken == "2020-02-10 01:09:34"  # kept as Flickr sent it, flagged


@requires_recordings(SEARCH_PAGE)
def test_fixture_unknown_dates_are_flagged() -> None:
    raw = orjson.loads(recording(SEARCH_PAGE).read_bytes())["photos"]["photo"]
    unknown = {p["id"] for p in raw if p["datetakenunknown"] == "1"}
    records = parse_search_page({"photos": {"photo": raw}}).page.photos
    assert {r.id for r in records if r.date_taken_unknown} == unknown
    assert len(unknown) == 25  # fixtures/flickr/README.md: 25 of the 30


def test_search_asks_for_the_date_taken_extra() -> None:
    # date_taken is the extra that returns datetaken, its granularity and datetakenunknown
    assert "date_taken" in search_params(SearchQuery(min_date=0, max_date=1))["extras"].split(",")


# --- envelope ---------------------------------------------------------------------------------

_HTML_429 = (
    b"<html><body><h1>429 Too Many Requests</h1>\nYou have sent too many requests "
    b"in a given amount of time.\n</body></html>\n"
)


def _fail(code: int | str, message: str) -> bytes:
    return orjson.dumps({"stat": "fail", "code": code, "message": message})


def test_the_real_429_page_is_117_bytes() -> None:
    assert len(_HTML_429) == 117


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (429, _HTML_429),
        (500, b"<error>BOOM!</error>"),
        (502, b""),
        (503, b'{"stat":"ok"}'),
        (400, b"Sorry, the Flickr API service is Not Currently Available."),
        (200, b'{"photos": {"page": 1, "photo": [{"id": "1"'),  # truncated
        (200, b"<html>maintenance</html>"),
        (200, b"[1, 2]"),
        (200, b'{"stat": "weird"}'),
        (200, _fail(0, "Sorry, the Flickr API service is not currently available.")),
        (200, _fail(10, "Sorry, the Flickr search API is not currently available.")),
        (200, b'{"stat":"fail","code":105,"message":"Service currently unavailable"}'),
        (200, _fail("201", "Sorry, the Flickr API service is not currently available.")),
        (200, b'{"stat":"fail","code":77,"message":"the API is not currently available"}'),
    ],
)
def test_transient_responses(status: int, body: bytes) -> None:
    with pytest.raises(TransientApiError):
        decode_response(status, body)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (1, "Too many tags in ALL query"),
        (3, "Parameterless searches have been disabled."),
        (18, "Illogical arguments"),
        (112, 'Method "flickr.fakeMethod" not found'),
    ],
)
def test_permanent_codes_raise_flickr_error(code: int, message: str) -> None:
    body = orjson.dumps({"stat": "fail", "code": code, "message": message})
    with pytest.raises(FlickrError) as info:
        decode_response(200, body)
    assert type(info.value) is FlickrError
    assert (info.value.code, info.value.message) == (code, message)


def test_code_100_is_invalid_key_with_one_clear_line() -> None:
    body = b'{"stat":"fail","code":100,"message":"Invalid API Key (Key has invalid format)"}'
    with pytest.raises(InvalidApiKeyError) as info:
        decode_response(200, body)
    assert str(info.value) == (
        "Flickr rejected the API key (code 100: Invalid API Key (Key has invalid format))"
    )


def test_jsonp_wrapper_is_tolerated() -> None:
    assert decode_response(200, b'jsonFlickrApi({"stat":"ok","x":1})') == {"stat": "ok", "x": 1}


def test_http_404_is_permanent() -> None:
    with pytest.raises(FlickrError):
        decode_response(404, b"not found")


# --- request side -----------------------------------------------------------------------------


def test_search_params_upload_window_and_extras() -> None:
    query = SearchQuery(
        min_date=1581319000,
        max_date=1581320000,
        text="church",
        licenses=(1, 4, 11),
        has_geo=True,
        bbox=(-10.0, 40.0, 10.5, 55.0),
        page=3,
        per_page=250,
    )
    params = search_params(query)
    assert params["min_upload_date"] == "1581319000"
    assert params["max_upload_date"] == "1581320000"
    assert (params["text"], params["license"], params["has_geo"]) == ("church", "1,4,11", "1")
    assert params["bbox"] == "-10.0,40.0,10.5,55.0"
    assert (params["page"], params["per_page"], params["media"]) == ("3", "250", "photos")
    assert params["sort"] == "date-posted-asc"
    extras = params["extras"].split(",")
    for needed in (
        "description",
        "license",
        "date_upload",
        "date_taken",
        "owner_name",
        "tags",
        "geo",
        "o_dims",
        "views",
        "media",
        "original_format",
        "url_l",
        "url_o",
    ):
        assert needed in extras
    assert tuple(extras) == EXTRAS
    assert "tags" not in params
    assert "min_taken_date" not in params


def test_search_params_taken_dates_and_tags() -> None:
    query = SearchQuery(
        min_date=0, max_date=86399, tags=("a", "b"), tag_mode="all", date_field=DateField.TAKEN
    )
    params = search_params(query)
    assert params["min_taken_date"] == "1970-01-01 00:00:00"
    assert params["max_taken_date"] == "1970-01-01 23:59:59"
    assert (params["tags"], params["tag_mode"]) == ("a,b", "all")
    assert "min_upload_date" not in params
    assert "text" not in params
