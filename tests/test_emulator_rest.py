"""REST behaviour: formats, errors, the 4,000 cap, date floor, fuzzy edges, faults, rate limit."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from harvester.emulator import RunningEmulator
from tests.harness import EmulatorFactory

QUIET = {"rate_api_error": 0.0, "rate_5xx": 0.0, "rate_slow": 0.0, "short_page_rate": 0.0}


async def _request(em: RunningEmulator, params: dict[str, str], *, post: bool) -> tuple[int, bytes]:
    params.setdefault("api_key", em.api_key)
    async with aiohttp.ClientSession() as s:
        req = s.post(em.rest_url, data=params) if post else s.get(em.rest_url, params=params)
        async with req as r:
            return r.status, await r.read()


async def _call(em: RunningEmulator, **params: str) -> tuple[int, bytes]:
    """GET the REST endpoint: (status, body)."""
    return await _request(em, params, post=False)


async def _post(em: RunningEmulator, **params: str) -> tuple[int, bytes]:
    """POST a form to the REST endpoint: (status, body)."""
    return await _request(em, params, post=True)


async def _json(em: RunningEmulator, **params: str) -> dict[str, Any]:
    status, body = await _call(em, format="json", nojsoncallback="1", **params)
    assert status == 200
    return dict(json.loads(body))


async def test_formats_json_jsonp_xml(emulator: RunningEmulator) -> None:
    q = {"method": "flickr.test.echo", "foo": "bar"}
    _, plain = await _call(emulator, format="json", nojsoncallback="1", **q)
    _, jsonp = await _call(emulator, format="json", **q)
    _, named = await _call(emulator, format="json", jsoncallback="cb", **q)
    _, xml = await _post(emulator, **q)
    assert json.loads(plain)["foo"] == {"_content": "bar"}
    assert jsonp.startswith(b"jsonFlickrApi({")
    assert jsonp.endswith(b"})")
    assert named.startswith(b"cb({")
    assert xml.startswith(b'<?xml version="1.0" encoding="utf-8" ?>\n<rsp stat="ok">')


@pytest.mark.parametrize(
    ("params", "code", "message"),
    [
        ({"method": "flickr.nope"}, 112, 'Method "flickr.nope" not found'),
        ({"method": "flickr.photos.search"}, 3, "Parameterless searches have been disabled."),
        ({"method": "flickr.photos.getSizes", "photo_id": "1"}, 1, "Photo not found"),
        (
            {"method": "flickr.test.echo", "api_key": "doesnotexist"},
            100,
            "Invalid API Key (Key has invalid format)",
        ),
        (
            {"method": "flickr.people.findByUsername", "username": "nobody at all"},
            1,
            "User not found",
        ),
    ],
)
async def test_errors_are_http_200_with_numeric_codes(
    emulator: RunningEmulator, params: dict[str, str], code: int, message: str
) -> None:
    body = await _json(emulator, **params)
    assert body["stat"] == "fail"
    assert body["code"] == code
    assert body["message"].startswith(message)


async def test_cap_repeats_pages_but_total_reports_all(emulator_factory: EmulatorFactory) -> None:
    em = await emulator_factory(photos=12_000, profile="realistic", time_scale=1e6, **QUIET)
    truth = await em.truth(text="photo")
    assert len(truth) > 10_000
    seen: set[str] = set()
    first = await _json(em, method="flickr.photos.search", text="photo", per_page="500")
    for page in range(1, 25):
        got = await _json(
            em, method="flickr.photos.search", text="photo", per_page="500", page=str(page)
        )
        seen.update(p["id"] for p in got["photos"]["photo"])
        assert len(got["photos"]["photo"]) == 500
    assert len(seen) == 4000
    total = int(first["photos"]["total"])
    assert 0.8 * len(truth) <= total <= len(truth)
    assert int(first["photos"]["pages"]) == -(-total // 500)


async def test_ideal_profile_pages_reach_everything(emulator: RunningEmulator) -> None:
    truth = await emulator.truth(text="canon")
    ids: list[str] = []
    for page in range(1, 100):
        got = await _json(
            emulator,
            method="flickr.photos.search",
            text="canon",
            per_page="100",
            page=str(page),
            sort="date-posted-asc",
        )
        if not got["photos"]["photo"]:
            break
        ids += [p["id"] for p in got["photos"]["photo"]]
    assert ids == truth
    assert got["photos"]["total"] == len(truth)


async def test_date_floor_widens_narrow_windows(emulator_factory: EmulatorFactory) -> None:
    em = await emulator_factory(
        photos=3000,
        profile="realistic",
        time_scale=1e6,
        fuzzy_edge_s=0,
        total_underreport=0.0,
        **QUIET,
    )
    upload = int(em.corpus.cols["upload"][1500])
    bucket = upload // 300 * 300
    exact = await em.truth(min_upload_date=upload, max_upload_date=upload)
    got = await _json(
        em,
        method="flickr.photos.search",
        min_upload_date=str(upload),
        max_upload_date=str(upload),
        per_page="500",
    )
    whole = await em.truth(min_upload_date=bucket, max_upload_date=bucket + 299)
    assert set(exact) <= {p["id"] for p in got["photos"]["photo"]}
    assert int(got["photos"]["total"]) == len(whole)


async def test_fuzzy_edges_bleed_but_never_lose(emulator_factory: EmulatorFactory) -> None:
    em = await emulator_factory(
        photos=5000,
        profile="realistic",
        time_scale=1e6,
        date_floor_s=0,
        fuzzy_edge_s=3600,
        total_underreport=0.0,
        **QUIET,
    )
    up = em.corpus.cols["upload"]
    lo, hi = int(up[2000]), int(up[2300])
    exact = set(await em.truth(min_upload_date=lo, max_upload_date=hi))
    got = await _json(
        em,
        method="flickr.photos.search",
        min_upload_date=str(lo),
        max_upload_date=str(hi),
        per_page="500",
        extras="date_upload",
    )
    ids = {p["id"] for p in got["photos"]["photo"]}
    assert exact <= ids
    assert ids - exact  # some photos just outside the window came back too


async def test_rate_limit_429s_are_counted(emulator_factory: EmulatorFactory) -> None:
    em = await emulator_factory(
        photos=500, profile="realistic", time_scale=1.0, burst_calls=5, **QUIET
    )
    statuses = [(await _call(em, method="flickr.test.echo"))[0] for _ in range(12)]
    assert statuses[:5] == [200] * 5
    assert statuses.count(429) >= 6
    stats = await em.stats()
    assert stats["by_status"]["429"] == statuses.count(429)


async def test_hostile_faults_are_transient(emulator_factory: EmulatorFactory) -> None:
    em = await emulator_factory(photos=2000, profile="hostile", time_scale=1e6)
    outcomes: list[str] = []
    for _ in range(60):
        ok = False
        for _attempt in range(5):
            try:
                status, body = await _call(
                    em,
                    method="flickr.photos.search",
                    text="photo",
                    format="json",
                    nojsoncallback="1",
                )
            except aiohttp.ClientPayloadError:
                outcomes.append("truncated")
                continue
            if status == 200 and json.loads(body).get("stat") == "ok":
                ok = True
                break
            outcomes.append(str(status))
        assert ok
    assert outcomes  # hostile means something went wrong along the way
    stats = await em.stats()
    assert sum(stats["faults"].values()) >= len(outcomes)
