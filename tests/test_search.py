"""Tests of the search loop: an in-process fake Flickr, then the emulator with the real client."""

from __future__ import annotations

import contextlib
import itertools
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aiohttp
import pytest

from harvester.config import PlannerConfig
from harvester.emulator import RunningEmulator
from harvester.flickr.budget import LocalBudget
from harvester.flickr.client import FlickrClient
from harvester.records import DateField, PhotoRecord, SearchPage, SearchQuery, Window
from harvester.retry import RetryPolicy
from harvester.search.loop import WindowResult, build_query, search_keyword
from harvester.search.planner import DEFAULT_SINCE, plan_range
from harvester.search.queries import KeywordQuery
from harvester.search.windows import Checkpoint, PageRequest

EmulatorFactory = Callable[..., Awaitable[RunningEmulator]]  # the conftest fixture's type
YEAR = 365 * 86_400
NOW = DEFAULT_SINCE + 12 * YEAR + 7
CFG = PlannerConfig()


@dataclass
class FakeFlickr:
    """photos.search over a photo list: text in title/tags, -terms, licences, the quirks."""

    photos: list[PhotoRecord]
    floor_s: int = 300
    bleed_s: int = 60
    under_report: float = 0.2
    cap: int = 4000
    queries: list[SearchQuery] = field(default_factory=list)

    def matching(self, q: SearchQuery) -> list[PhotoRecord]:
        lo, hi = q.min_date - q.min_date % self.floor_s, q.max_date + 1
        hi += (-hi) % self.floor_s
        words = (q.text or "").split()
        wanted = [w for w in words if not w.startswith("-")]
        unwanted = {w[1:] for w in words if w.startswith("-")}
        return [
            p
            for p in self.photos
            if lo - self.bleed_s <= p.date_upload < hi + self.bleed_s
            and (not q.licenses or p.license in q.licenses)
            and all(w in p.tags for w in wanted)
            and not unwanted & set(p.tags)
        ]

    async def search(self, query: SearchQuery) -> SearchPage:
        self.queries.append(query)
        found = sorted(self.matching(query), key=lambda p: (p.date_upload, p.id))
        per = query.per_page
        offset = min((query.page - 1) * per, self.cap - per)
        total = int(len(found) * (1 - self.under_report))
        return SearchPage(
            page=query.page,
            pages=math.ceil(total / per),
            per_page=per,
            total=total,
            photos=tuple(found[offset:][:per]),
        )


def corpus(n: int, seed: int = 0, hot: int = 0) -> list[PhotoRecord]:
    """`n` photos over ten years, a third tagged 'paris', some 'party'; `hot` in one bucket."""
    rng = random.Random(seed)
    photos = []
    for i in range(n + hot):
        when = (
            DEFAULT_SINCE + 3600 * 7 + (rng.randrange(300) if i >= n else rng.randrange(10 * YEAR))
        )
        tags = tuple(t for t, share in (("paris", 0.33), ("party", 0.05)) if rng.random() < share)
        tags = ("paris", *tags) if i >= n else tags
        photos.append(
            PhotoRecord(
                id=str(1000 + i),
                owner="1@N01",
                secret="ab",
                server="1",
                tags=tags,
                license=rng.randrange(17),
                date_upload=when,
            )
        )
    return photos


def truth(fake: FakeFlickr, kq: KeywordQuery) -> set[str]:
    return {
        p.id
        for p in fake.photos
        if kq.text in p.tags and DEFAULT_SINCE <= p.date_upload < NOW - NOW % 300
    }


async def collect(
    kq: KeywordQuery,
    fake: FakeFlickr,
    done: Sequence[Checkpoint] = (),
    negatives: tuple[str, ...] = (),
    *,
    send_negatives: bool = False,
) -> list[WindowResult]:
    stream = search_keyword(
        kq,
        fake,
        plan_config=CFG,
        now=NOW,
        done_windows=done,
        negatives=negatives,
        send_negatives=send_negatives,
    )
    return [r async for r in stream]


def assert_disjoint(windows: list[Window]) -> None:
    spans = sorted(windows)
    for a, b in itertools.pairwise(spans):
        if (a.start, a.end) != (b.start, b.end) or a.license is None or b.license is None:
            assert a.end <= b.start, (a, b)


async def test_every_photo_found_once_with_quirks() -> None:
    fake = FakeFlickr(corpus(30_000))
    kq = KeywordQuery("paris", text="paris")
    results = await collect(kq, fake)
    ids = [p.id for r in results for p in r.photos]
    assert len(ids) == len(set(ids))
    assert set(ids) == truth(fake, kq)
    assert all(r.window.contains(p.date_upload) for r in results for p in r.photos)
    assert_disjoint([r.window for r in results])
    assert sum(r.calls for r in results) == len(fake.queries)
    assert len(fake.queries) <= 1.1 * math.ceil(len(ids) / 500)
    assert results[-1].coverage == 1.0
    assert all(q.sort == "date-posted-asc" and q.per_page == 500 for q in fake.queries)


async def test_negatives_are_filtered_and_counted() -> None:
    fake = FakeFlickr(corpus(5_000))
    kq = KeywordQuery("paris", text="paris")
    results = await collect(kq, fake, negatives=("party",))
    kept = {p.id for r in results for p in r.photos}
    partying = {p.id for p in fake.photos if "party" in p.tags} & truth(fake, kq)
    assert kept == truth(fake, kq) - partying
    assert sum(r.filtered_negative for r in results) == len(partying) > 0
    assert all(q.text == "paris" for q in fake.queries)


async def test_send_negatives_puts_terms_in_text() -> None:
    fake = FakeFlickr(corpus(2_000))
    kq = KeywordQuery("paris", text="paris")
    results = await collect(kq, fake, negatives=("party", "still life"), send_negatives=True)
    assert {q.text for q in fake.queries} == {"paris -party"}
    assert sum(r.filtered_negative for r in results) == 0


async def test_resume_searches_only_what_is_left() -> None:
    fake = FakeFlickr(corpus(30_000))
    kq = KeywordQuery("paris", text="paris")
    first: list[WindowResult] = []
    stream = search_keyword(kq, fake, plan_config=CFG, now=NOW)
    async with contextlib.aclosing(stream) as results:
        async for result in results:
            first.append(result)
            if len(first) == 2:
                break
    done = [Checkpoint(window=r.window, found=len(r.photos)) for r in first]
    fake.queries.clear()
    second = await collect(kq, fake, done=done)
    assert all(q.min_date >= first[-1].window.end for q in fake.queries)
    ids = [p.id for r in first + second for p in r.photos]
    assert sorted(ids) == sorted(truth(fake, kq))


async def test_hot_bucket_splits_by_licence() -> None:
    fake = FakeFlickr(corpus(2_000, hot=6_000), under_report=0.0)
    kq = KeywordQuery("paris", text="paris")
    results = await collect(kq, fake)
    ids = [p.id for r in results for p in r.photos]
    assert sorted(ids) == sorted(truth(fake, kq))
    licence_windows = [r.window for r in results if r.window.license is not None]
    assert {w.license for w in licence_windows} == set(range(17))
    assert not any(r.capped for r in results)


async def test_since_until_bound_the_photos() -> None:
    fake = FakeFlickr(corpus(5_000))
    since, until = DEFAULT_SINCE + YEAR + 123, DEFAULT_SINCE + 2 * YEAR + 456
    kq = KeywordQuery("paris", text="paris", since=since, until=until)
    results = await collect(kq, fake)
    ids = {p.id for r in results for p in r.photos}
    assert ids == {
        p.id for p in fake.photos if "paris" in p.tags and since <= p.date_upload < until
    }
    assert min(q.min_date for q in fake.queries) >= since - 300


def test_build_query_maps_every_option() -> None:
    kq = KeywordQuery(
        "ba",
        text=None,
        tags=("a", "b"),
        tag_mode="all",
        date_field=DateField.TAKEN,
        licenses=(1, 2),
        bbox=(-1.0, -2.0, 3.0, 4.0),
        has_geo=True,
        user_id="1@N02",
        accuracy=6,
    )
    q = build_query(
        kq,
        PageRequest(window=Window(start=600, end=1200, license=2), page=3, per_page=250),
        ("party",),
    )
    assert (q.min_date, q.max_date, q.page, q.per_page) == (600, 1199, 3, 250)
    assert (q.text, q.tags, q.tag_mode, q.licenses) == (None, ("a", "b"), "all", (2,))
    assert (q.bbox, q.has_geo, q.user_id, q.accuracy) == ((-1.0, -2.0, 3.0, 4.0), True, "1@N02", 6)
    assert (q.date_field, q.sort) == (DateField.TAKEN, "date-taken-asc")
    assert build_query(
        kq, PageRequest(window=Window(start=0, end=300), page=1, per_page=500)
    ).licenses == (1, 2)


async def test_geo_keywords_page_by_250() -> None:
    fake = FakeFlickr(corpus(3_000))
    kq = KeywordQuery("paris", text="paris", has_geo=True)
    results = await collect(kq, fake)
    assert {q.per_page for q in fake.queries} == {250}
    assert {p.id for r in results for p in r.photos} == truth(fake, kq)


# -- the real client against the emulator ---------------------------------------------------


async def harvest_from_emulator(
    running: RunningEmulator, kq: KeywordQuery
) -> tuple[list[WindowResult], set[str]]:
    """Search `kq` with FlickrClient on `running`; also return the emulator's ground truth."""
    now = running.config.end_ts
    start, end = plan_range(kq.since, kq.until, now, CFG.floor_s, kq.date_field)
    async with aiohttp.ClientSession() as session:
        client = FlickrClient(
            session,
            running.api_key,
            LocalBudget(1e9, burst=10_000),
            rest_url=running.rest_url,
            policy=RetryPolicy(attempts=8, base_s=0.0),
        )
        results = [r async for r in search_keyword(kq, client, plan_config=CFG, now=now)]
    dates = {"min_upload_date": start, "max_upload_date": end - 1}
    if kq.date_field is DateField.TAKEN:
        dates = {"min_taken_date": start, "max_taken_date": end - 1}
    extra = {"has_geo": 1} if kq.has_geo else {}
    truth = await running.truth(text=kq.text, **dates, **extra)
    return results, set(truth)


@pytest.mark.parametrize(
    "kq",
    [
        KeywordQuery("canon", text="canon"),
        KeywordQuery("photo", text="photo"),
        KeywordQuery("canon-taken", text="canon", date_field=DateField.TAKEN),
        KeywordQuery("canon-geo", text="canon", has_geo=True),
    ],
    ids=["few-thousand", "big", "taken-dates", "geo-250-per-page"],
)
async def test_full_recall_on_the_realistic_emulator(
    emulator_factory: EmulatorFactory, kq: KeywordQuery
) -> None:
    running = await emulator_factory(photos=20_000, seed=3, profile="realistic", time_scale=1000)
    results, truth = await harvest_from_emulator(running, kq)
    found = [p.id for r in results for p in r.photos]
    assert len(found) == len(set(found))
    assert set(found) == truth
    assert len(truth) > 1_000
    per_page = 250 if kq.has_geo else 500
    lower = math.ceil(len(truth) / per_page)
    assert sum(r.calls for r in results) <= 1.25 * lower + 1


@pytest.mark.parametrize(
    ("span_s", "factor"),
    [(3600, 20_000.0), (86400, 1_000.0)],
    ids=["hour", "day"],
)
async def test_a_burst_over_the_cap_costs_at_most_1_1_x_the_bound_on_the_emulator(
    emulator_factory: EmulatorFactory, span_s: int, factor: float
) -> None:
    """One word's bulk upload (more photos in the span than one query returns) against the
    emulator's truth: every photo once, none foreign, at most 1.10x ceil(N/500) planner calls."""
    running = await emulator_factory(
        photos=40_000,
        seed=5,
        profile="ideal",
        burst_s=span_s,
        burst_factor=factor,
        burst_word="photo",
    )
    kq = KeywordQuery("photo", text="photo")
    results, truth = await harvest_from_emulator(running, kq)
    burst_start = running.config.burst_at
    in_burst = await running.truth(
        text="photo", min_upload_date=burst_start, max_upload_date=burst_start + span_s - 1
    )
    assert len(in_burst) > 4_000, "the burst holds more than one query can return"
    found = [p.id for r in results for p in r.photos]
    assert len(found) == len(set(found))
    assert set(found) == truth
    calls = sum(r.calls for r in results)
    assert calls <= 1.10 * math.ceil(len(truth) / 500), (calls, len(truth))
