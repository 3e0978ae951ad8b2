"""End to end: `harvest run` in a child process against the in-process emulator.

Kill -9 at random moments and resume; workers sharing one store and one API budget; a resumed
--metadata-only run that makes no search call; --retry-failed. Every check compares the files,
the store and the emulator's ground truth.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from PIL import Image

from harvester.emulator import RunningEmulator
from harvester.emulator import methods as emulator_methods
from tests.harness import STORE, EmulatorFactory, store_rows, write_queries

KEYWORDS = ("travel", "nature", "sky")  # 283, 142 and 84 matches in the 3,000-photo corpus
HARVEST = [sys.executable, "-m", "harvester.cli"]


@dataclass
class SearchLog:
    """Every flickr.photos.search the emulator answered: (text, min, max, license, page)."""

    calls: list[tuple[str, int, int, str, int]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    def since(self, start: int) -> list[tuple[str, int, int, str, int]]:
        return self.calls[start:]


@pytest.fixture
def search_log(monkeypatch: pytest.MonkeyPatch) -> SearchLog:
    """Record the windows asked of the emulator (to prove no finished window is redone)."""
    log = SearchLog()
    original = emulator_methods.METHODS["flickr.photos.search"]

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

    monkeypatch.setitem(emulator_methods.METHODS, "flickr.photos.search", recording)
    return log


def harvest_args(emu: RunningEmulator, queries: Path, out: Path, *extra: str) -> list[str]:
    return [
        *HARVEST,
        "run",
        str(queries),
        "--out",
        str(out),
        "--flickr-url",
        emu.rest_url,
        "--calls-per-hour",
        "1000000",
        "--plain",
        *extra,
    ]


async def run_harvest(
    emu: RunningEmulator, args: list[str], *, kill_after_s: float | None = None
) -> int:
    """Run the CLI in a child process; SIGKILL it after `kill_after_s` if given."""
    env = {**os.environ, "FLICKR_API_KEY": emu.api_key}
    proc = await asyncio.create_subprocess_exec(
        *args, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        if kill_after_s is None:
            _, err = await asyncio.wait_for(proc.communicate(), timeout=150)
            if proc.returncode:
                print(err.decode(errors="replace")[-3000:])
            return int(proc.returncode or 0)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(proc.wait(), timeout=kill_after_s)
        proc.kill()
        await proc.wait()
        return -9
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def done_windows(out: Path) -> list[tuple[str, int, int, int]]:
    if not (out / STORE).exists():
        return []
    return [
        (kw, start, end, lic)
        for kw, start, end, lic in store_rows(
            out, "SELECT keyword, start_s, end_s, license FROM windows"
        )
    ]


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
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.get(emu.base_url + "/_emulator/vocabulary") as resp,
    ):
        data = await resp.json()
    words = [(k["text_count"], k["word"]) for k in data["keywords"] if 5 <= k["text_count"] <= 300]
    return [word for _count, word in sorted(words, reverse=True)]


def check_output(out: Path, truth: set[str]) -> dict[str, str]:
    """Files, store and truth agree; every photo once; returns {id: status}."""
    rows = store_rows(out, "SELECT id, status, path, keyword FROM photos")
    status = {str(pid): st for pid, st, _path, _kw in rows}
    assert set(status) == truth, "the store holds exactly the truly matching photos"
    assert "claimed" not in status.values(), "nothing left pending"
    assert "failed" not in status.values()
    recorded = {path for _pid, st, path, _kw in rows if st == "done"}
    files = list(files_on_disk(out))
    assert not [f for f in files if ".tmp" in f.name], "no temporary files remain"
    relative = {f.relative_to(out).as_posix() for f in files}
    assert relative == recorded, "every file is recorded as done and every done photo has a file"
    ids_in_files = [f.name.split("_", 1)[0] for f in files]
    assert len(ids_in_files) == len(set(ids_in_files)), "each photo harvested once"
    for f in files:
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


@pytest.mark.slow
async def test_kill_minus_9_at_random_moments_then_resume_exactly_once(
    emulator_factory: EmulatorFactory, search_log: SearchLog, tmp_path: Path
) -> None:
    emu = await emulator_factory(photos=3000, seed=0, profile="realistic", time_scale=1e6)
    queries = write_queries(tmp_path / "q.txt", KEYWORDS)
    out = tmp_path / "out"
    # Small windows so kills land mid-search as well as mid-download.
    args = harvest_args(emu, queries, out, "--window-target", "60", "--concurrency", "8")
    rng = random.Random(20261130)
    kills = 0
    for delay in (rng.uniform(0.8, 2.0), rng.uniform(1.5, 3.0), rng.uniform(2.0, 4.0)):
        before = done_windows(out)
        first_call = len(search_log.calls)
        code = await run_harvest(emu, args, kill_after_s=delay)
        again = overlapping(search_log.since(first_call), before)
        assert not again, f"finished windows searched again after a kill: {again[:3]}"
        kills += code == -9
    assert kills >= 2, "the runs were meant to be killed part-way"
    before = done_windows(out)
    first_call = len(search_log.calls)
    assert await run_harvest(emu, args) == 0
    assert not overlapping(search_log.since(first_call), before)
    status = check_output(out, await truth_ids(emu, KEYWORDS))
    assert list(status.values()).count("done") > 0.8 * len(status)


@pytest.mark.slow
async def test_sigterm_stops_gracefully_and_the_same_command_resumes(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emulator_factory(photos=3000, seed=0, profile="ideal")
    out = tmp_path / "out"
    args = harvest_args(emu, write_queries(tmp_path / "q.txt", KEYWORDS), out, "--concurrency", "4")
    env = {**os.environ, "FLICKR_API_KEY": emu.api_key}
    proc = await asyncio.create_subprocess_exec(
        *args, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    await asyncio.sleep(2.5)
    proc.send_signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert time.monotonic() - stopped_at < 10, "stops within a few seconds"
    assert proc.returncode == 130, err.decode()[-2000:]
    partial = store_rows(out, "SELECT COUNT(*) FROM photos WHERE status = 'done'")[0][0]
    assert await run_harvest(emu, args) == 0
    status = check_output(out, await truth_ids(emu, KEYWORDS))
    assert list(status.values()).count("done") >= partial


def worst_burst(times: list[float], rate_per_s: float) -> float:
    """max over i<j of calls in [t_i, t_j] minus what a bucket at `rate_per_s` allows then."""
    times = sorted(times)
    return max(
        (j - i + 1) - rate_per_s * (times[j] - times[i])
        for i in range(len(times))
        for j in range(i, len(times))
    )


@pytest.mark.slow
async def test_two_workers_share_store_and_budget(
    emulator_factory: EmulatorFactory, search_log: SearchLog, tmp_path: Path
) -> None:
    emu = await emulator_factory(photos=3000, seed=0, profile="ideal")
    # Many keywords (a search call or more each), which overlap: photos carry several.
    keywords = tuple(await vocabulary_words(emu))  # forty
    queries = write_queries(tmp_path / "q.txt", keywords)
    out = tmp_path / "out"
    rate_per_s = 5.0  # shared by both workers; a bucket of 10 (DEFAULT_BURST)
    args = harvest_args(emu, queries, out, "--workers", "2", "--concurrency", "8")
    args[args.index("--calls-per-hour") + 1] = str(rate_per_s * 3600)
    assert await run_harvest(emu, [*args, "--metadata-only"]) == 0
    assert len(search_log.times) >= 35, "enough calls to see the rate"
    excess = worst_burst(search_log.times, rate_per_s)
    assert excess <= 10 + 1, f"{excess:.1f} calls over the shared budget"
    # Then the images, by the same two workers: every photo once, found by its keywords.
    assert await run_harvest(emu, args) == 0
    check_output(out, await truth_ids(emu, keywords))
    keywords_of = store_rows(out, "SELECT photo_id, COUNT(*) FROM photo_keywords GROUP BY 1")
    assert any(n > 1 for _pid, n in keywords_of), "some photo was found under two keywords"
    workers = store_rows(out, "SELECT COUNT(DISTINCT worker) FROM runs")
    assert workers[0][0] >= 1


@pytest.mark.slow
async def test_hostile_api_and_image_host_every_photo_found_once(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    """429s with the HTML body, codes 105/201, 5xx, slow and truncated bodies, image 429s."""
    emu = await emulator_factory(photos=3000, seed=1, profile="hostile", time_scale=1e6)
    keywords = ("nature", "sky")
    out = tmp_path / "out"
    args = harvest_args(emu, write_queries(tmp_path / "q.txt", keywords), out)
    assert await run_harvest(emu, args) == 0
    stats = await emu.stats()
    assert sum(stats["faults"].values()) > 0, "the profile did inject faults"
    check_output(out, await truth_ids(emu, keywords))


async def test_metadata_only_resume_makes_no_search_call(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emulator_factory(photos=3000, seed=0, profile="realistic", time_scale=1e6)
    out = tmp_path / "out"
    args = harvest_args(emu, write_queries(tmp_path / "q.txt", KEYWORDS), out, "--metadata-only")
    assert await run_harvest(emu, args) == 0
    assert not list(files_on_disk(out)), "metadata only: no image written"
    ids = {str(r[0]) for r in store_rows(out, "SELECT id FROM photos")}
    assert ids == await truth_ids(emu, KEYWORDS)
    searches = (await emu.stats())["by_method"]["flickr.photos.search"]
    images = (await emu.stats())["images"]
    assert await run_harvest(emu, args) == 0
    stats = await emu.stats()
    assert stats["by_method"]["flickr.photos.search"] == searches, "finished windows not redone"
    assert stats["images"] == images == 0


async def test_retry_failed_retries_failures_only(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emulator_factory(photos=3000, seed=0, profile="ideal")
    out = tmp_path / "out"
    args = harvest_args(emu, write_queries(tmp_path / "q.txt", ("sky",)), out)
    assert await run_harvest(emu, args) == 0
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
    assert await run_harvest(emu, args) == 0  # without the flag nothing is retried
    assert (await emu.stats())["images"] == images
    assert await run_harvest(emu, [*args, "--retry-failed"]) == 0
    assert (await emu.stats())["images"] == images + len(failed), "only the failed are fetched"
    after = dict(store_rows(out, "SELECT id, status FROM photos"))
    assert all(after[pid] == "done" for pid in failed)
    assert {pid for pid, st in after.items() if st == "skipped"} == skipped
