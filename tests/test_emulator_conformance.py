"""The emulator against real recorded Flickr traffic (fixtures/flickr/): shapes, types, errors.

The recordings live outside the repository (tests.harness.recording); a test whose recording is
absent skips.
"""

from __future__ import annotations

import json
import urllib.parse
import xml.etree.ElementTree as ET
from typing import Any

import aiohttp
import pytest
import yaml

from harvester.emulator import RunningEmulator
from harvester.emulator.faults import TOO_MANY_REQUESTS
from tests.harness import EmulatorFactory, recording, requires_recordings

SEARCH_PAGE = "search_page_2020.json"
FIXTURE_EXTRAS = (
    "description,license,date_upload,date_taken,owner_name,tags,o_dims,views,"
    "url_t,url_s,url_m,url_l"
)
#: Fields whose JSON type Flickr is documented to vary between number and string.
LOOSE = {"datetakengranularity", "latitude", "longitude", "accuracy"}
LOOSE_PREFIXES = ("width_", "height_")


def cassette(name: str) -> str:
    """The recording's name under fixtures/flickr/."""
    return f"cassettes/{name}"


def _interactions(name: str) -> list[dict[str, Any]]:
    data = yaml.safe_load(recording(cassette(name)).read_text())
    return list(data["interactions"])


def _body(interaction: dict[str, Any]) -> str:
    resp = interaction["response"]
    return str(resp["content"] if "content" in resp else resp["body"]["string"])


def _types(records: list[dict[str, Any]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for rec in records:
        for k, v in rec.items():
            out.setdefault(k, set()).add(type(v).__name__)
    return out


def _allowed(key: str, fixture_types: set[str]) -> set[str]:
    if key in LOOSE or key.startswith(LOOSE_PREFIXES):
        return fixture_types | {"int", "str", "float"}
    return fixture_types


async def _get(em: RunningEmulator, **params: str) -> bytes:
    async with aiohttp.ClientSession() as s, s.get(em.rest_url, params=params) as r:
        assert r.status == 200
        return await r.read()


@requires_recordings(SEARCH_PAGE)
async def test_json_search_page_matches_the_2020_fixture(emulator_factory: EmulatorFactory) -> None:
    em = await emulator_factory(
        photos=3000,
        profile="realistic",
        time_scale=1e6,
        rate_api_error=0.0,
        rate_5xx=0.0,
        rate_slow=0.0,
        short_page_rate=0.0,
    )
    fixture = json.loads(recording(SEARCH_PAGE).read_text())
    body = await _get(
        em,
        method="flickr.photos.search",
        api_key=em.api_key,
        format="json",
        nojsoncallback="1",
        text="photo",
        extras=FIXTURE_EXTRAS,
        per_page="500",
    )
    page = json.loads(body)
    assert page["stat"] == "ok"
    assert set(page["photos"]) == set(fixture["photos"])
    for key in ("page", "perpage"):
        assert type(page["photos"][key]) is type(fixture["photos"][key])
    assert isinstance(page["photos"]["total"], str)  # as in the fixture
    want, got = _types(fixture["photos"]["photo"]), _types(page["photos"]["photo"])
    assert set(got) == set(want)
    for key, types in got.items():
        assert types <= _allowed(key, want[key]), key
    assert isinstance(page["photos"]["photo"][0]["description"], dict)
    # Like the fixture, some records lack url_l and some lack o_dims.
    recs = page["photos"]["photo"]
    assert any("url_l" not in r for r in recs)
    assert any("o_width" not in r for r in recs)
    assert any(isinstance(r["datetakengranularity"], int) for r in recs)


@requires_recordings(cassette("test_get_photos_with_tag.yml"))
async def test_xml_search_has_the_cassette_attributes(emulator_factory: EmulatorFactory) -> None:
    em = await emulator_factory(photos=3000, profile="ideal")
    rec = _interactions("test_get_photos_with_tag.yml")[0]
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(rec["request"]["uri"]).query))
    real = ET.fromstring(_body(rec).encode())
    query.update(per_page="200", tags="photo", api_key=em.api_key)
    ours = ET.fromstring(await _get(em, **query))
    assert ours.attrib == {"stat": "ok"}
    real_photos, our_photos = real.find("photos"), ours.find("photos")
    assert real_photos is not None
    assert our_photos is not None
    assert set(our_photos.attrib) == set(real_photos.attrib)
    real_keys = set().union(*(p.attrib.keys() for p in real_photos))
    our_keys = set().union(*(p.attrib.keys() for p in our_photos))
    assert our_keys == real_keys
    assert all(p.find("description") is not None for p in our_photos)
    no_geo = [p for p in our_photos if p.get("latitude") == "0"]
    assert no_geo
    assert all(p.get("accuracy") == "0" for p in no_geo)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=requires_recordings(cassette(name)))
        for name in (
            "test_it_throws_if_bad_auth.yml",
            "TestGetSinglePhotoSizes.test_non_existent_photo_is_error[1].yml",
        )
    ],
)
async def test_error_bodies_are_byte_identical(emulator: RunningEmulator, name: str) -> None:
    rec = _interactions(name)[0]
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(rec["request"]["uri"]).query))
    query.setdefault("api_key", emulator.api_key)
    assert await _get(emulator, **query) == _body(rec).encode()


@requires_recordings(cassette("TestLicenseMethods.test_get_licenses.yml"))
async def test_licences_match_the_2025_recording(emulator: RunningEmulator) -> None:
    rec = _interactions("TestLicenseMethods.test_get_licenses.yml")[0]
    body = await _get(emulator, method="flickr.photos.licenses.getInfo", api_key=emulator.api_key)
    assert body == _body(rec).encode()
    js = json.loads(
        await _get(
            emulator,
            method="flickr.photos.licenses.getInfo",
            api_key=emulator.api_key,
            format="json",
            nojsoncallback="1",
        )
    )
    real = [
        (el.get("id"), el.get("name"), el.get("url")) for el in ET.fromstring(body).iter("license")
    ]
    assert [(str(x["id"]), x["name"], x["url"]) for x in js["licenses"]["license"]] == real


async def test_429_body_is_haproxys_117_bytes(emulator_factory: EmulatorFactory) -> None:
    em = await emulator_factory(photos=500, profile="ideal", calls_per_hour=3600, burst_calls=1)
    async with aiohttp.ClientSession() as s:
        for expected in (200, 429):
            params = {"method": "flickr.test.echo", "api_key": em.api_key}
            async with s.get(em.rest_url, params=params) as r:
                assert r.status == expected
                body = await r.read()
    assert body == TOO_MANY_REQUESTS
    assert len(body) == 117


@requires_recordings(cassette("test_not_found_is_error.yml"))
async def test_not_found_image_matches_the_cassette(emulator: RunningEmulator) -> None:
    rec = _interactions("test_not_found_is_error.yml")[0]
    path = urllib.parse.urlsplit(rec["request"]["uri"]).path
    async with aiohttp.ClientSession() as s, s.get(emulator.base_url + path) as r:
        assert r.status == rec["response"]["status"]["code"] == 404
        assert await r.read() == b""
        assert r.headers["Content-Type"].startswith("text/html")
