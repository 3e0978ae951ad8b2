"""The async client against the local emulator: paging, hostile faults, errors, key hygiene."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from harvester.emulator import RunningEmulator
from harvester.emulator.control import vocabulary
from harvester.exceptions import ConfigError, FlickrError, InvalidApiKeyError, TransientApiError
from harvester.flickr.budget import Bucket, LocalBudget, SharedBudget, budget_name, take_token
from harvester.flickr.client import FlickrClient
from harvester.flickr.keys import load_api_key
from harvester.flickr.people import FlickrUser
from harvester.licenses import LICENSES
from harvester.records import PhotoRecord, SearchPage, SearchQuery
from harvester.retry import RetryPolicy, no_sleep
from tests.harness import EmulatorFactory, FakeClock

FAST = RetryPolicy(attempts=10, base_s=0.0, jitter=False)
FAULTS_OFF = {"rate_429": 0.0, "rate_api_error": 0.0, "rate_5xx": 0.0, "rate_truncate": 0.0}
CORPUS_START, CORPUS_END = 1_072_915_200, 1_790_000_000


class CountingBudget(LocalBudget):
    """The in-process budget, counting what it hands out."""

    def __init__(self) -> None:
        super().__init__(calls_per_hour=3_600_000, burst=1000)
        self.taken = 0

    async def acquire(self) -> None:
        await super().acquire()
        self.taken += 1


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def client_for(
    session: aiohttp.ClientSession,
    emu: RunningEmulator,
    key: str | None = None,
    budget: CountingBudget | None = None,
) -> FlickrClient:
    return FlickrClient(
        session,
        key or emu.api_key,
        budget or CountingBudget(),
        rest_url=emu.rest_url,
        policy=FAST,
        sleep=no_sleep,
        timeout_s=10.0,
    )


def popular_word(emu: RunningEmulator, lo: int = 100, hi: int = 1500) -> str:
    """A keyword matching a few hundred photos by text."""
    words = [w for w in vocabulary(emu.corpus) if lo <= w["text_count"] <= hi]
    return str(words[0]["word"])


async def all_pages(client: FlickrClient, query: SearchQuery) -> list[SearchPage]:
    pages = [await client.search(query)]
    while pages[-1].photos and pages[-1].page < (pages[-1].pages or 0):
        pages.append(await client.search(replace(query, page=pages[-1].page + 1)))
    return pages


def portable(record: PhotoRecord, base_url: str) -> PhotoRecord:
    """The record with the emulator's own host taken out of its URLs."""
    sizes = tuple(replace(s, url=s.url.replace(base_url, "")) for s in record.sizes)
    return replace(record, sizes=sizes)


async def test_search_pages_match_ground_truth(
    emulator: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    client = client_for(session, emulator)
    word = popular_word(emulator)
    query = SearchQuery(min_date=CORPUS_START, max_date=CORPUS_END, text=word, per_page=100)
    pages = await all_pages(client, query)
    found = [p.id for page in pages for p in page.photos]
    truth = await emulator.truth(
        text=word, min_upload_date=CORPUS_START, max_upload_date=CORPUS_END
    )
    assert sorted(found) == sorted(truth)
    assert len(found) == len(set(found))
    assert pages[0].total == len(truth)
    assert all(p.date_upload > 0 and p.sizes for p in pages[0].photos)
    assert client.stats.calls == len(pages)
    assert client.stats.retries_total == 0


async def test_hostile_sequence_gives_the_same_pages_with_retries_counted(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    common: dict[str, Any] = {
        "photos": 3000,
        "seed": 3,
        "time_scale": 1000.0,
        "short_page_rate": 0.0,
    }
    hostile = await emulator_factory(profile="hostile", rate_truncate=0.08, **common)
    calm = await emulator_factory(profile="hostile", **common, **FAULTS_OFF, rate_slow=0.0)
    word = popular_word(hostile)
    queries = [
        SearchQuery(min_date=lo, max_date=lo + 3 * 365 * 86400, text=word, per_page=20)
        for lo in range(CORPUS_START, CORPUS_END, 3 * 365 * 86400)
    ]
    budget = CountingBudget()
    rough, smooth = client_for(session, hostile, budget=budget), client_for(session, calm)
    for query in queries:
        got, want = await all_pages(rough, query), await all_pages(smooth, query)
        assert [[portable(p, hostile.base_url) for p in page.photos] for page in got] == [
            [portable(p, calm.base_url) for p in page.photos] for page in want
        ]
    stats = await hostile.stats()
    faults = {k: v for k, v in stats["faults"].items() if k != "slow"}
    assert set(faults) >= {"429", "5xx", "201", "truncate"}, faults  # it really did misbehave
    assert rough.stats.retries["truncated"] == faults["truncate"]
    assert rough.stats.retries_total == sum(faults.values())
    assert rough.stats.calls == stats["calls"]
    assert budget.taken == rough.stats.calls
    assert rough.stats.gave_up == 0
    assert "retries=" in repr(rough)
    assert smooth.stats.retries_total == 0


async def test_permanent_error_is_not_retried(
    emulator: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    client = client_for(session, emulator)
    too_many = tuple(f"t{i}" for i in range(21))
    query = SearchQuery(min_date=CORPUS_START, max_date=CORPUS_END, tags=too_many, tag_mode="all")
    with pytest.raises(FlickrError) as info:
        await client.search(query)
    assert info.value.code == 1
    assert client.stats.calls == 1


@pytest.mark.parametrize("key", ["0123456789abcdef0123456789abcdee", "not-hex-at-all!"])
async def test_rejected_key_stops_with_a_clear_line_without_the_key(
    emulator_factory: EmulatorFactory,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    key: str,
) -> None:
    emu = await emulator_factory(photos=500, invalid_keys=frozenset({key}))
    client = client_for(session, emu, key=key)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(InvalidApiKeyError) as info:
        await client.echo()
    text = str(info.value)
    assert text.startswith("Flickr rejected the API key (code 100: Invalid API Key")
    assert key not in text
    assert key not in repr(info.value)
    assert key not in caplog.text
    assert key not in repr(client)
    assert client.stats.calls == 1


async def test_connection_errors_are_transient_and_never_quote_the_key(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    key = "feedfacefeedfacefeedfacefeedface"
    client = FlickrClient(
        session,
        key,
        CountingBudget(),
        rest_url=f"http://127.0.0.1:{port}/services/rest/?api_key={key}",
        policy=RetryPolicy(attempts=3, base_s=0.0),
        sleep=no_sleep,
    )
    caplog.set_level(logging.DEBUG)
    with pytest.raises(TransientApiError) as info:
        await client.search(SearchQuery(min_date=0, max_date=10, text="x"))
    assert key not in str(info.value)
    assert key not in caplog.text
    assert client.stats.retries == {"connection": 2}
    assert client.stats.gave_up == 1


async def test_licenses_echo_and_sizes(
    emulator: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    client = client_for(session, emulator)
    await client.echo()
    assert await client.licenses() == LICENSES
    page = await client.search(
        SearchQuery(
            min_date=CORPUS_START, max_date=CORPUS_END, text=popular_word(emulator), per_page=5
        )
    )
    sizes = await client.get_sizes(page.photos[0].id)
    assert {s.label for s in sizes} >= {s.label for s in page.photos[0].sizes}


async def test_user_lookups_resolve_names_and_answer_none_for_no_one(
    emulator: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    budget = CountingBudget()
    client = client_for(session, emulator, budget=budget)
    katmai = FlickrUser(nsid="99350217@N03", username="Katmai National Park Service")
    assert await client.find_by_username("katmai national park service") == katmai
    assert await client.lookup_user("https://www.flickr.com/photos/katmainps/") == katmai
    assert await client.person("99350217@N03") == replace(katmai, path_alias="katmainps")
    assert await client.find_by_username("katmainps") is None  # an alias is no screen name
    assert await client.lookup_user("https://www.flickr.com/photos/nobody-at-all/") is None
    assert await client.person("1@N01") is None
    assert budget.taken == client.stats.calls == 6  # every look-up is a call of the budget
    with pytest.raises(InvalidApiKeyError):  # other failures are not "no one"
        await client_for(session, emulator, key="doesnotexist").person("99350217@N03")


# --- the key ----------------------------------------------------------------------------------


def test_key_from_environment_first(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('api_key = "fromfile"\n')
    assert load_api_key({"FLICKR_API_KEY": " fromenv "}, cfg) == "fromenv"
    assert load_api_key({}, cfg) == "fromfile"


def test_key_from_xdg_config(tmp_path: Path) -> None:
    (tmp_path / "harvest").mkdir()
    (tmp_path / "harvest" / "config.toml").write_text('api_key = "xdgkey"\n')
    assert load_api_key({"XDG_CONFIG_HOME": str(tmp_path)}) == "xdgkey"


def test_missing_key_is_a_config_error_naming_both_sources(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"FLICKR_API_KEY.*config\.toml"):
        load_api_key({}, tmp_path / "config.toml")


def test_broken_config_file_does_not_echo_its_contents(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('api_key = "secretvalue\n')
    with pytest.raises(ConfigError) as info:
        load_api_key({}, cfg)
    assert "secretvalue" not in str(info.value)


# --- the call budget --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tokens", "elapsed", "expected_tokens", "expected_wait"),
    [
        (5.0, 0.0, 4.0, 0.0),  # a token in hand
        (0.0, 0.0, 0.0, 1.0),  # empty: one second at 1 call/s
        (0.5, 0.0, 0.5, 0.5),
        (0.0, 3.0, 2.0, 0.0),  # refilled by elapsed time
        (9.0, 100.0, 9.0, 0.0),  # never above capacity (10), then one taken
        (2.0, -50.0, 1.0, 0.0),  # a clock stepping back mints nothing
    ],
)
def test_take_token_table(
    tokens: float, elapsed: float, expected_tokens: float, expected_wait: float
) -> None:
    now = 1000.0
    take = take_token(
        Bucket(tokens=tokens, updated_s=now - elapsed), now, rate_per_s=1.0, capacity=10.0
    )
    assert take.bucket.tokens == pytest.approx(expected_tokens)
    assert take.wait_s == pytest.approx(expected_wait)


async def test_shared_budget_is_one_bucket_for_every_holder(tmp_path: Path) -> None:
    fake = FakeClock()
    path = tmp_path / "budget.sqlite"
    common: dict[str, Any] = {"burst": 2, "clock": fake, "sleep": fake.sleep}
    a = SharedBudget(path, budget_name("key"), 3600, **common)
    b = SharedBudget(path, budget_name("key"), 3600, **common)
    other = SharedBudget(path, budget_name("another key"), 3600, **common)
    try:
        for budget in (a, b, a, b, a, b):  # 6 calls at 1/s with 2 in the bucket: 4 s of waiting
            await budget.acquire()
        assert fake.slept_s == pytest.approx(4.0)
        await other.acquire()  # a different key has its own bucket
        assert fake.slept_s == pytest.approx(4.0)
        assert (a.used_last_hour(), b.used_last_hour(), other.used_last_hour()) == (6, 6, 1)
        fake.now += 3700
        assert a.used_last_hour() == 0
        assert "used_last_hour=0" in repr(a)
    finally:
        for budget in (a, b, other):
            budget.close()


def test_budget_name_hides_the_key() -> None:
    key = "0123456789abcdef0123456789abcdef"
    assert key not in budget_name(key)
    assert budget_name(key) == budget_name(key) != budget_name(key[::-1])


async def test_local_budget_counts_the_trailing_hour() -> None:
    fake = FakeClock()
    budget = LocalBudget(3_600_000, clock=fake)
    for _ in range(3):
        await budget.acquire()
    assert budget.used_last_hour() == 3
    fake.now += 3661
    assert budget.used_last_hour() == 0
