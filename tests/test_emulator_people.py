"""The emulator's people: findByUsername, urls.lookupUser, people.getInfo, and its institutions.

Shapes are held against the 2024 recording of lookupUser and getInfo (the cassette
test_get_public_photos_by_user.yml); unknown users get Flickr's code 1, "User not found".
"""

from __future__ import annotations

import urllib.parse
import xml.etree.ElementTree as ET
from typing import Any

import pytest
import yaml

from harvester.dataset.sources import BUILTIN_SOURCES
from harvester.emulator import RunningEmulator
from harvester.emulator.corpus import cached_corpus
from harvester.emulator.institutions import INSTITUTIONS, institution_owner
from tests.harness import emulator_call, recording, requires_recordings

CASSETTE = "cassettes/test_get_public_photos_by_user.yml"
NOT_FOUND = {"stat": "fail", "code": 1, "message": "User not found"}


def _recorded(method: str) -> tuple[dict[str, str], ET.Element]:
    """The query and the parsed XML body of the cassette's call of `method`."""
    for rec in yaml.safe_load(recording(CASSETTE).read_text())["interactions"]:
        uri = urllib.parse.urlsplit(rec["request"]["uri"])
        query = dict(urllib.parse.parse_qsl(uri.query))
        if query.get("method") == method:
            resp = rec["response"]
            body = resp["content"] if "content" in resp else resp["body"]["string"]
            return query, ET.fromstring(str(body).encode())
    raise AssertionError(f"{method} is not in {CASSETTE}")


def _shape(el: ET.Element) -> tuple[str, frozenset[str], tuple[Any, ...]]:
    """An element's tag, attribute names and children's shapes (values left out)."""
    return el.tag, frozenset(el.attrib), tuple(_shape(child) for child in el)


def test_every_institution_of_the_emulator_is_a_known_source() -> None:
    known = {nsid for nsids in BUILTIN_SOURCES.values() for nsid in nsids}
    assert {nsid for nsid, _name, _alias in INSTITUTIONS} == known  # all 15, no more


def test_institutions_own_photos_in_a_small_corpus() -> None:
    corpus = cached_corpus(0, 3000)
    owners = corpus.cols["owner"]
    held = {
        nsid: int((owners == institution_owner(j)).sum())
        for j, (nsid, _name, _alias) in enumerate(INSTITUTIONS)
    }
    assert all(corpus.owner_nsid[institution_owner(j)] == n for j, n in enumerate(held))
    assert sum(1 for count in held.values() if count) >= 10
    assert len(set(corpus.owner_nsid)) == len(corpus.owner_nsid)  # no NSID twice


async def test_find_by_username_is_case_blind_and_says_user_not_found(
    emulator: RunningEmulator,
) -> None:
    got = await emulator_call(emulator, "flickr.people.findByUsername", username="biodivlibrary")
    user = {"id": "61021753@N02", "nsid": "61021753@N02", "username": {"_content": "BioDivLibrary"}}
    assert got == {"user": user, "stat": "ok"}
    missing = await emulator_call(emulator, "flickr.people.findByUsername", username="nobody-here")
    assert missing == NOT_FOUND


@pytest.mark.parametrize(
    "url",
    [
        "https://www.flickr.com/photos/katmainps/",
        "https://www.flickr.com/photos/KatmaiNPS/53574198477/",
        "https://www.flickr.com/people/99350217@N03/",
        "http://flickr.com/photos/99350217@N03",
    ],
)
async def test_lookup_user_takes_an_alias_or_an_nsid_url(
    emulator: RunningEmulator, url: str
) -> None:
    got = await emulator_call(emulator, "flickr.urls.lookupUser", url=url)
    user = {"id": "99350217@N03", "username": {"_content": "Katmai National Park Service"}}
    assert got == {"user": user, "stat": "ok"}


@pytest.mark.parametrize(
    "url", ["https://www.flickr.com/photos/no-such-alias/", "https://example.org/photos/gsfc/", ""]
)
async def test_lookup_user_of_no_one_is_code_1(emulator: RunningEmulator, url: str) -> None:
    assert await emulator_call(emulator, "flickr.urls.lookupUser", url=url) == NOT_FOUND


async def test_people_get_info_of_no_one_is_code_1(emulator: RunningEmulator) -> None:
    got = await emulator_call(emulator, "flickr.people.getInfo", user_id="1@N01")
    assert got == NOT_FOUND


@requires_recordings(CASSETTE)
async def test_lookup_user_has_the_recorded_shape(emulator: RunningEmulator) -> None:
    _query, real = _recorded("flickr.urls.lookupUser")
    ours = await emulator_call(
        emulator, "flickr.urls.lookupUser", fmt="rest", url="https://www.flickr.com/photos/gsfc"
    )
    assert _shape(ours) == _shape(real)
    user = ours.find("user")
    assert user is not None
    assert user.get("id") == "24662369@N07"
    assert user.findtext("username") == "NASA Goddard Photo and Video"


@requires_recordings(CASSETTE)
async def test_people_get_info_has_the_recorded_shape(emulator: RunningEmulator) -> None:
    _query, real = _recorded("flickr.people.getInfo")
    ours = await emulator_call(
        emulator, "flickr.people.getInfo", fmt="rest", user_id="24662369@N07"
    )
    assert _shape(ours) == _shape(real)
    person = ours.find("person")
    assert person is not None
    assert (person.get("nsid"), person.get("path_alias")) == ("24662369@N07", "gsfc")
    assert int(person.findtext("photos/count") or 0) > 0
    js = await emulator_call(emulator, "flickr.people.getInfo", user_id="24662369@N07")
    assert js["person"]["username"] == {"_content": "NASA Goddard Photo and Video"}
