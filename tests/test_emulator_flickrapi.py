"""The real `flickrapi` (POST, OAuth header, no api_key param) works against the emulator."""

from __future__ import annotations

import asyncio

import flickrapi
import pytest
from flickrapi.exceptions import FlickrError

from harvester.emulator import RunningEmulator
from tests.harness import EmulatorFactory


def _client(em: RunningEmulator, key: str) -> flickrapi.FlickrAPI:
    api = flickrapi.FlickrAPI(key, "0123456789abcdef", format="parsed-json", store_token=False)
    api.REST_URL = em.rest_url  # the only change: where the calls go
    return api


async def test_search_with_parsed_json(emulator: RunningEmulator) -> None:
    api = _client(emulator, emulator.api_key)
    resp = await asyncio.to_thread(
        api.photos.search,
        text="photo",
        per_page=50,
        extras="url_l,date_upload",
        sort="date-posted-asc",
    )
    assert resp["stat"] == "ok"
    photos = resp["photos"]["photo"]
    assert len(photos) == 50
    truth = await emulator.truth(text="photo")
    assert resp["photos"]["total"] == len(truth)
    assert [p["id"] for p in photos] == truth[:50]
    assert all(p["url_l"].startswith(emulator.base_url) for p in photos if "url_l" in p)
    stats = await emulator.stats()
    assert stats["by_key"][emulator.api_key] >= 1  # the key came from the OAuth header


async def test_licences(emulator: RunningEmulator) -> None:
    api = _client(emulator, emulator.api_key)
    resp = await asyncio.to_thread(api.photos.licenses.getInfo)
    assert [lic["id"] for lic in resp["licenses"]["license"]][:4] == [0, 4, 6, 3]
    assert len(resp["licenses"]["license"]) == 17


@pytest.mark.parametrize("key", ["not-a-key", "f" * 32])
async def test_bad_key_raises_code_100(emulator_factory: EmulatorFactory, key: str) -> None:
    em = await emulator_factory(photos=500, invalid_keys=frozenset({"f" * 32}))
    api = _client(em, key)
    with pytest.raises(FlickrError) as err:
        await asyncio.to_thread(api.photos.search, text="photo")
    assert err.value.code == 100
    assert "Invalid API Key" in str(err.value)
