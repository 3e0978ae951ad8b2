"""End to end: `harvest run` in a child process against the in-process emulator.

Kill -9 at random points and resume; SIGTERM and resume; workers sharing one store and one API
budget; a resumed --metadata-only run that makes no search call; --retry-failed. Every check
compares the files, the store and the emulator's ground truth. A run is stopped on an event that
its store shows (k more photos stored, k more windows searched), never after a wall-clock delay.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from PIL import Image

from harvester.emulator import RunningEmulator
from harvester.emulator import methods as emulator_methods
from harvester.emulator.static import StaticHost
from tests.harness import (
    STORE,
    EmulatorFactory,
    Exited,
    assert_consistent,
    harvest_args,
    run_harvest,
    store_count,
    store_rows,
    write_queries,
)

KEYWORDS = ("travel", "nature", "sky")  # 283, 142 and 84 matches in the 3,000-photo corpus
DONE = "SELECT COUNT(*) FROM photos WHERE status = 'done'"
FINISHED = "SELECT COUNT(*) FROM photos WHERE status != 'claimed'"  # done, skipped or failed
WINDOWS = "SELECT COUNT(*) FROM windows"


@dataclass
class Traffic:
    """What the emulator was asked: every flickr.photos.search (text, min, max, license, page)
    and when, and the photo id of every image request, in order of arrival."""

    calls: list[tuple[str, int, int, str, int]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    images: list[str] = field(default_factory=list)


@pytest.fixture
def traffic(monkeypatch: pytest.MonkeyPatch) -> Traffic:
    """Record the windows and images asked of emulators started after it, to prove that no
    finished window is searched again and no finished photo downloaded again."""
    log = Traffic()
    original = emulator_methods.METHODS["flickr.photos.search"]
    serve_image = StaticHost.handle

    def recording(ctx: Any, params: dict[str, str]) -> Any:
        log.times.append(time.monotonic())
        log.calls.append(
            (
                params.get("text", params.get("tags", "")),
                int(params.get("min_upload_date", "0")),
                int(params.get("max_upload_date", "0")),
                params.get("license", ""),
                int(params.get("page", "1")),
            )
        )
        return original(ctx, params)

    async def image(self: StaticHost, request: web.Request) -> web.Response:
        # On arrival: a request still being answered when its run is killed belongs to that run.
        log.images.append(request.path.rsplit("/", 1)[-1].split("_", 1)[0])
        return await serve_image(self, request)

    monkeypatch.setitem(emulator_methods.METHODS, "flickr.photos.search", recording)
    monkeypatch.setattr(StaticHost, "handle", image)
    return log


def done_windows(out: Path) -> list[tuple[str, int, int, int]]:
    """(keyword, start, end, licence) of every window the store records as searched."""
    if not (out / STORE).exists():
        return []
    sql = "SELECT keyword, start_s, end_s, license FROM windows"
    return [(kw, start, end, lic) for kw, start, end, lic in store_rows(out, sql)]


def reached(out: Path, sql: str, target: int) -> Callable[[], bool]:
    """An event for `run_harvest(stop_when=…)`: the store's count `sql` is at least `target`."""
    return lambda: store_count(out, sql) >= target


def jpeg_comment(path: Path) -> dict[str, Any]:
    with Image.open(path) as im:
        im.load()  # the whole image decodes: not truncated
        comment = im.info.get("comment", b"")
    data: dict[str, Any] = orjson.loads(comment)
    return data


def files_on_disk(out: Path) -> Iterator[Path]:
    for directory, _dirs, names in os.walk(out):
        for name in names:
            if name.endswith(".jpg") or ".tmp" in name:
                yield Path(directory, name)


async def truth_ids(emu: RunningEmulator, keywords: tuple[str, ...]) -> set[str]:
    ids: set[str] = set()
    for kw in keywords:
        ids.update(await emu.truth(text=kw))
    return ids


async def vocabulary_words(emu: RunningEmulator) -> list[str]:
    """Keywords of the corpus with a few to a few hundred matches, most frequent first."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(emu.base_url + "/_emulator/vocabulary") as resp,
    ):
        data = await resp.json()
    words = [(k["text_count"], k["word"]) for k in data["keywords"] if 5 <= k["text_count"] <= 300]
    return [word for _count, word in sorted(words, reverse=True)]


def check_output(out: Path, truth: set[str]) -> dict[str, str]:
    """Files, store and truth agree; every photo once, with its record; returns {id: status}."""
    status = assert_consistent(out)
    assert set(status) == truth, "the store holds exactly the truly matching photos"
    assert "claimed" not in status.values(), "nothing left pending"
    assert "failed" not in status.values()
    for f in files_on_disk(out):
        meta = jpeg_comment(f)
        assert meta["id"] == f.name.split("_", 1)[0]
        assert meta["license"]["id"] in range(17)
    return status


def overlapping(
    calls: list[tuple[str, int, int, str, int]], windows: list[tuple[str, int, int, int]]
) -> list[tuple[str, int, int, str, int]]:
    """Search calls that asked again for a stretch already finished for that keyword."""
    bad = []
    for text, lo, hi, lic, page in calls:
        for kw, start, end, wlic in windows:
            same_licence = wlic == -1 or lic == "" or lic == str(wlic)
            if kw == text and same_licence and lo < end and start < hi:
                bad.append((text, lo, hi, lic, page))
    return bad


def finished_ids(out: Path) -> set[str]:
    """Photos the store records as finished: done, skipped or failed."""
    if not (out / STORE).exists():
        return set()
    rows = store_rows(out, "SELECT id FROM photos WHERE status != 'claimed'")
    return {str(pid) for (pid,) in rows}


async def resumed_run(
    emu: RunningEmulator,
    args: list[str],
    out: Path,
    log: Traffic,
    stop_when: Callable[[], bool] | None = None,
    stop_with: signal.Signals = signal.SIGKILL,
) -> Exited:
    """One run over what earlier runs left, checked for what resuming must never do: search a
    finished window again, or download a photo the store already records as finished."""
    windows, finished = done_windows(out), finished_ids(out)
    first_call, first_image = len(log.calls), len(log.images)
    exited = await run_harvest(emu, args, stop_when=stop_when, stop_with=stop_with)
    again = overlapping(log.calls[first_call:], windows)
    assert not again, f"finished windows searched again: {again[:3]}"
    refetched = finished & set(log.images[first_image:])
    assert not refetched, f"photos finished before were downloaded again: {sorted(refetched)[:3]}"
    return exited


@pytest.mark.slow
async def test_kill_minus_9_at_random_points_then_resume_exactly_once(
    emulator_factory: EmulatorFactory, traffic: Traffic, tmp_path: Path
) -> None:
    emu = await emulator_factory(photos=3000, seed=0, profile="realistic", time_scale=1e6)
    truth = await truth_ids(emu, KEYWORDS)
    out = tmp_path / "out"
    # Small windows so kills land mid-search as well as mid-download.
    queries = write_queries(tmp_path / "q.txt", KEYWORDS)
    args = harvest_args(emu, queries, out, "--window-target", "60", "--concurrency", "8")
    rng = random.Random(20261130)
    # Random kill points as events in the store: a few windows into the search, then twice a
    # few dozen more photos stored (each run resumes what the one before was killed in).
    kill_points = [(WINDOWS, rng.randint(1, 4)), (DONE, rng.randint(20, 100))]
    kill_points.append((DONE, rng.randint(20, 100)))
    for sql, more in kill_points:
        event = reached(out, sql, store_count(out, sql) + more)
        exited = await resumed_run(emu, args, out, traffic, stop_when=event)
        assert exited.signalled, "the run was still going at its kill point"
        assert exited.code == -signal.SIGKILL
        assert store_count(out, FINISHED) < len(truth), "killed before the harvest was complete"
    exited = await resumed_run(emu, args, out, traffic)
    assert exited.code == 0
    status = check_output(out, truth)
    assert list(status.values()).count("done") > 0.8 * len(status)


@pytest.mark.slow
async def test_sigterm_stops_gracefully_and_the_same_command_resumes(
    emulator_factory: EmulatorFactory, traffic: Traffic, tmp_path: Path
) -> None:
    emu = await emulator_factory(photos=3000, seed=0, profile="ideal")
    truth = await truth_ids(emu, KEYWORDS)
    out = tmp_path / "out"
    args = harvest_args(emu, write_queries(tmp_path / "q.txt", KEYWORDS), out, "--concurrency", "4")
    stop = reached(out, DONE, 20)  # downloads under way
    exited = await resumed_run(emu, args, out, traffic, stop_when=stop, stop_with=signal.SIGTERM)
    assert exited.signalled
    assert exited.code == 130, exited.err[-2000:]
    assert exited.exit_after_signal_s is not None
    assert exited.exit_after_signal_s < 10, "stops within a few seconds"
    partial = store_count(out, DONE)
    assert 20 <= partial < len(truth), "what was stored is kept, and there is more to do"
    assert (await resumed_run(emu, args, out, traffic)).code == 0
    status = check_output(out, truth)
    assert list(status.values()).count("done") >= partial


def worst_burst(times: list[float], rate_per_s: float) -> float:
    """max over i<j of calls in [t_i, t_j] minus what a bucket at `rate_per_s` allows then."""
    times = sorted(times)
    return max(
        (j - i + 1) - rate_per_s * (times[j] - times[i])
        for i in range(len(times))
        for j in range(i, len(times))
    )


@dataclass
class LeaseWatch:
    """Who holds claims while a run goes on: (worker id, keyword) of every leased photo seen."""

    out: Path
    seen: set[tuple[str, str]] = field(default_factory=set)

    def look(self) -> bool:
        """Poll once (for `run_harvest(stop_when=…)`); never asks to stop the run."""
        leased = "FROM photos WHERE leased_by IS NOT NULL"
        if store_count(self.out, f"SELECT COUNT(*) {leased}"):
            rows = store_rows(self.out, f"SELECT DISTINCT leased_by, keyword {leased}")
            self.seen |= {(str(worker), str(keyword)) for worker, keyword in rows}
        return False

    def keywords_by_worker(self) -> dict[str, set[str]]:
        """The keywords each lease holder claimed photos for."""
        by_worker: dict[str, set[str]] = {}
        for worker, keyword in self.seen:
            by_worker.setdefault(worker, set()).add(keyword)
        return by_worker


@pytest.mark.slow
async def test_two_workers_share_store_and_budget(
    emulator_factory: EmulatorFactory, traffic: Traffic, tmp_path: Path
) -> None:
    emu = await emulator_factory(photos=3000, seed=0, profile="ideal")
    # Many keywords (a search call or more each), which overlap: photos carry several.
    keywords = tuple(await vocabulary_words(emu))  # forty
    queries = write_queries(tmp_path / "q.txt", keywords)
    out = tmp_path / "out"
    rate_per_s = 5.0  # shared by both workers; a bucket of 10 (DEFAULT_BURST)
    args = harvest_args(emu, queries, out, "--workers", "2", "--concurrency", "8")
    args[args.index("--calls-per-hour") + 1] = str(rate_per_s * 3600)
    # A worker leases what it claims until it ends (--metadata-only downloads nothing), so the
    # store shows which worker searched which keyword.
    leases = LeaseWatch(out)
    assert (await run_harvest(emu, [*args, "--metadata-only"], stop_when=leases.look)).code == 0
    by_worker = leases.keywords_by_worker()
    assert len(by_worker) == 2, f"two workers claimed photos: {sorted(by_worker)}"
    first, second = by_worker.values()
    assert not first & second, "each keyword is searched by one worker"
    assert len(traffic.times) >= 35, "enough calls to see the rate"
    excess = worst_burst(traffic.times, rate_per_s)
    assert excess <= 10 + 1, f"{excess:.1f} calls over the shared budget"
    # Then the images, by the same two workers: every photo once, found by its keywords.
    assert (await run_harvest(emu, args)).code == 0
    check_output(out, await truth_ids(emu, keywords))
    keywords_of = store_rows(out, "SELECT photo_id, COUNT(*) FROM photo_keywords GROUP BY 1")
    assert any(n > 1 for _pid, n in keywords_of), "some photo was found under two keywords"


@pytest.mark.slow
async def test_hostile_api_and_image_host_every_photo_found_once(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    """429s with the HTML body, codes 105/201, 5xx, slow and truncated bodies, image 429s."""
    emu = await emulator_factory(photos=3000, seed=1, profile="hostile", time_scale=1e6)
    keywords = ("nature", "sky")
    out = tmp_path / "out"
    args = harvest_args(emu, write_queries(tmp_path / "q.txt", keywords), out)
    assert (await run_harvest(emu, args)).code == 0
    stats = await emu.stats()
    assert sum(stats["faults"].values()) > 0, "the profile did inject faults"
    check_output(out, await truth_ids(emu, keywords))


async def test_metadata_only_resume_makes_no_search_call(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emulator_factory(photos=3000, seed=0, profile="realistic", time_scale=1e6)
    out = tmp_path / "out"
    # A fixed end after the corpus's last upload: with the default end, `now` rounded down to the
    # 5-minute grid, a second run that starts in the next 5 minutes has a new slice to search.
    queries = write_queries(tmp_path / "q.txt", ("#! until=2026-10-01", *KEYWORDS))
    args = harvest_args(emu, queries, out, "--metadata-only")
    assert (await run_harvest(emu, args)).code == 0
    assert not list(files_on_disk(out)), "metadata only: no image written"
    ids = {str(r[0]) for r in store_rows(out, "SELECT id FROM photos")}
    assert ids == await truth_ids(emu, KEYWORDS)
    searches = (await emu.stats())["by_method"]["flickr.photos.search"]
    images = (await emu.stats())["images"]
    assert (await run_harvest(emu, args)).code == 0
    stats = await emu.stats()
    assert stats["by_method"]["flickr.photos.search"] == searches, "finished windows not redone"
    assert stats["images"] == images == 0


async def test_retry_failed_retries_failures_only(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emulator_factory(photos=3000, seed=0, profile="ideal")
    out = tmp_path / "out"
    args = harvest_args(emu, write_queries(tmp_path / "q.txt", ("sky",)), out)
    assert (await run_harvest(emu, args)).code == 0
    rows = store_rows(out, "SELECT id, status FROM photos")
    done = [pid for pid, st in rows if st == "done"]
    skipped = {pid for pid, st in rows if st == "skipped"}
    assert len(done) > 10
    failed = done[:5]  # pretend these failed (as a network outage would leave them)
    with sqlite3.connect(out / STORE) as db:
        db.executemany(
            "UPDATE photos SET status = 'failed', reason = 'download: HTTP 503', path = NULL"
            " WHERE id = ?",
            [(pid,) for pid in failed],
        )
    images = (await emu.stats())["images"]
    assert (await run_harvest(emu, args)).code == 0  # without the flag nothing is retried
    assert (await emu.stats())["images"] == images
    assert (await run_harvest(emu, [*args, "--retry-failed"])).code == 0
    assert (await emu.stats())["images"] == images + len(failed), "only the failed are fetched"
    after = dict(store_rows(out, "SELECT id, status FROM photos"))
    assert all(after[pid] == "done" for pid in failed)
    assert {pid for pid, st in after.items() if st == "skipped"} == skipped
