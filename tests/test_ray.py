"""`harvest run --ray` on one node: one Ray for the whole session (num_cpus=2), shared by
these tests; the multi-node cases run in a child process (tests/test_ray_cluster.py), since a
process holds one Ray. Each case ends with files = store = emulator truth."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harvester import targets
from harvester.cluster_task import CHAOS_ENV, CHAOS_MARKS_ENV, HostLimiterActor, LeasedHosts
from harvester.config import OutputFormat
from harvester.exceptions import WriteError
from harvester.runner import run_command
from tests.harness import (
    ThreadedEmulator,
    harvest_args,
    run_harvest,
    store_rows,
    threaded_emulator,
)
from tests.ray_support import KEYWORDS, assert_exactly_once, ray_config
from tests.s3_support import (
    BUCKET,
    assert_objects_are_the_store,
    jpeg_objects,
    objects,
    with_out,
)
from tests.shard_support import check_shards, local_shards, photos

ray = pytest.importorskip("ray", reason="needs Ray: pip install 'harvest[ray]'")
pytestmark = [pytest.mark.ray, pytest.mark.timeout(120)]


@pytest.fixture(scope="session")
def session_ray() -> Iterator[None]:
    """The one Ray of the test session (single-node tests)."""
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=128 * 2**20,
        log_to_driver=False,
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def emu() -> Iterator[ThreadedEmulator]:
    with threaded_emulator(photos=2000, seed=0, profile="ideal") as running:
        yield running


@pytest.fixture
def api_key(emu: ThreadedEmulator, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FLICKR_API_KEY", emu.api_key)
    return emu.api_key


def _run(emu: ThreadedEmulator, base: Path, **given: Any) -> int:
    return run_command(ray_config(emu, base, KEYWORDS, **given)).code


@pytest.mark.usefixtures("session_ray", "api_key")
def test_a_run_on_ray_harvests_every_photo_once(emu: ThreadedEmulator, tmp_path: Path) -> None:
    assert _run(emu, tmp_path) == 0
    assert_exactly_once(tmp_path / "out", emu, KEYWORDS)
    done = store_rows(tmp_path / "out", "SELECT COUNT(*) FROM photos WHERE status = 'done'")
    assert done[0][0] > 50


@pytest.mark.usefixtures("session_ray", "api_key")
def test_a_worker_killed_mid_batch_is_redone(
    emu: ThreadedEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CHAOS_ENV, "exit-after:5")  # each batch's first attempt dies (os._exit)
    assert _run(emu, tmp_path) == 0
    assert_exactly_once(tmp_path / "out", emu, KEYWORDS)
    attempts = store_rows(tmp_path / "out", "SELECT MAX(attempts) FROM photos")
    assert attempts == [(1,)], "a photo counts once: only the committed attempt is recorded"


@pytest.mark.parametrize("chaos", ["", "exit-after:4"])
@pytest.mark.usefixtures("session_ray", "api_key")
def test_one_directory_spreads_over_batches_in_flight_beside_each_other(
    emu: ThreadedEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    chaos: str,
) -> None:
    """Small batches of each keyword's one directory go out side by side (a late keyword is
    not one node's work), with workers dying mid-batch among them: each sweep after a commit
    spares the files its siblings are writing, and every photo is stored once."""
    if chaos:
        monkeypatch.setenv(CHAOS_ENV, chaos)  # each batch's first attempt dies after 4 photos
    caplog.set_level(logging.INFO, logger="harvester.cluster_engine")
    assert _run(emu, tmp_path, **{"cluster.batch_photos": 10}) == 0
    assert_exactly_once(tmp_path / "out", emu, KEYWORDS)
    (summary,) = [r.getMessage() for r in caplog.records if "<Dispatcher" in r.getMessage()]
    most = int(summary.split("most_per_dir=")[1].split()[0])
    assert most >= 2, f"batches of one directory ran beside each other: {summary}"
    if chaos:
        assert "resubmitted=0 " not in summary


@pytest.mark.usefixtures("session_ray", "api_key")
def test_a_straggler_is_cancelled_and_resubmitted(
    emu: ThreadedEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CHAOS_ENV, "hang-after:3")  # each batch's first attempt hangs
    code = _run(emu, tmp_path, **{"cluster.first_deadline_s": 3.0, "cluster.min_deadline_s": 1.0})
    assert code == 0
    assert_exactly_once(tmp_path / "out", emu, KEYWORDS)


@pytest.mark.usefixtures("session_ray", "api_key")
def test_a_batch_given_up_fails_its_photos_with_the_reason_and_keeps_no_file(
    emu: ThreadedEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CHAOS_ENV, "exit-after:3")
    assert _run(emu, tmp_path, **{"cluster.max_attempts": 1}) == 0
    out = tmp_path / "out"
    reasons = store_rows(out, "SELECT DISTINCT status, reason FROM photos")
    assert [status for status, _ in reasons] == ["failed"]
    assert all("gave up after 1 attempts: WorkerCrashedError" in r for _, r in reasons)
    assert not list(out.rglob("*.jpg")), "the files its attempt wrote are swept"
    monkeypatch.delenv(CHAOS_ENV)
    assert _run(emu, tmp_path, retry_failed=True) == 0  # --retry-failed gets them all
    assert_exactly_once(out, emu, KEYWORDS)


@pytest.mark.usefixtures("session_ray", "api_key")
def test_a_run_on_ray_to_s3_sweeps_what_a_given_up_batch_wrote_then_harvests_it_all(
    emu: ThreadedEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3: Any
) -> None:
    """`--ray` with an s3:// --out, the session's Ray started before the AWS_* variables were
    set (as a joined cluster's nodes never had them): the tasks get them from the driver."""
    prefix = "ray-run/"
    target = {"output.target": f"s3://{BUCKET}/{prefix.rstrip('/')}"}
    monkeypatch.setenv(CHAOS_ENV, "exit-after:3")  # each batch's one attempt dies, 3 written
    assert _run(emu, tmp_path, **target, **{"cluster.max_attempts": 1}) == 0
    out = tmp_path / "out"  # the store's directory: the photos are objects
    assert {s for (s,) in store_rows(out, "SELECT DISTINCT status FROM photos")} == {"failed"}
    assert_objects_are_the_store(s3, prefix, out)  # what the attempts wrote is swept
    monkeypatch.delenv(CHAOS_ENV)
    assert _run(emu, tmp_path, **target, retry_failed=True) == 0
    status = assert_objects_are_the_store(s3, prefix, out)
    assert set(status) == set().union(*(emu.truth(kw) for kw in KEYWORDS))
    assert not list(out.rglob("*.jpg")), "no photo on the driver's disk"


WEBDATASET = {"output.format": OutputFormat.WEBDATASET, "cluster.batch_photos": 10}


def no_packing_on_the_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the driver fail if it packs a shard itself: under --ray, Ray tasks write them."""

    def refused(*_args: object) -> object:
        raise AssertionError("the driver packed a shard itself")

    monkeypatch.setattr(targets, "local_packer", refused)


def check_packed(emu: ThreadedEmulator, out: Path) -> None:
    """Every photo of the truth in a whole shard, no temp file, nothing staged left."""
    check_shards(out, local_shards(out), KEYWORDS)
    assert set(photos(out)) == set().union(*(emu.truth(kw) for kw in KEYWORDS))
    assert not list(out.rglob("*.jpg")), "no staged photo left"


def pack_chaos(monkeypatch: pytest.MonkeyPatch, base: Path, spec: str) -> Path:
    """Set a pack chaos hook; returns where each directory's first attempt leaves its marker."""
    monkeypatch.setenv(CHAOS_ENV, spec)
    marks = base / "marks"
    marks.mkdir()
    monkeypatch.setenv(CHAOS_MARKS_ENV, str(marks))
    return marks


@pytest.mark.parametrize("chaos", ["", "exit-after:4"])
@pytest.mark.usefixtures("session_ray", "api_key")
def test_webdataset_on_ray_packs_each_directory_in_a_task_from_what_its_batches_staged(
    emu: ThreadedEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chaos: str
) -> None:
    """`--ray --output-format webdataset`: batches stage their photos on the output target
    (files layout), each complete directory's tar, Parquet and stats are written by a Ray
    task, and the staged photos are gone at the end; workers dying mid-batch among them."""
    if chaos:
        monkeypatch.setenv(CHAOS_ENV, chaos)
    no_packing_on_the_driver(monkeypatch)
    assert _run(emu, tmp_path, **WEBDATASET) == 0
    check_packed(emu, tmp_path / "out")


@pytest.mark.usefixtures("session_ray", "api_key")
def test_a_pack_task_killed_mid_tar_is_run_again_and_leaves_nothing_behind(
    emu: ThreadedEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each directory's first pack task dies (os._exit) after reading 2 staged photos into
    its tar: Ray runs it again, and the shards are whole, with no temp file and nothing staged."""
    marks = pack_chaos(monkeypatch, tmp_path, "pack-exit-after:2")
    assert _run(emu, tmp_path, **WEBDATASET) == 0
    assert len(list(marks.iterdir())) >= len(KEYWORDS), "every directory's first task died"
    check_packed(emu, tmp_path / "out")


@pytest.mark.usefixtures("session_ray", "api_key")
def test_a_pack_task_past_its_deadline_is_cancelled_the_run_fails_and_a_rerun_packs_it(
    emu: ThreadedEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pack task that hangs is cancelled at the deadline: the run ends with the error (no
    hang at the end), its staged photos kept; the next run writes the shards."""
    marks = pack_chaos(monkeypatch, tmp_path, "pack-hang-after:2")
    quick = {"output.finalise_every_s": 3600.0, "cluster.pack_deadline_s": 5.0}
    started = time.monotonic()
    with pytest.raises(WriteError, match=r"the shard \S+ took over 5 s"):  # the CLI: exit 1
        _run(emu, tmp_path, **WEBDATASET, **quick)
    assert time.monotonic() - started < 100, "ended at the deadline, not after the hang"
    out = tmp_path / "out"
    assert list(out.rglob("*.jpg")), "the staged photos are kept for the next run"
    assert list(marks.iterdir()), "a first attempt hung and was cancelled"
    assert _run(emu, tmp_path, **WEBDATASET) == 0  # the marker says: not a first attempt
    check_shards(out, local_shards(out), KEYWORDS)
    assert set(photos(out)) == set().union(*(emu.truth(kw) for kw in KEYWORDS))
    assert not list(out.rglob("*.jpg")), "no staged photo left"


@pytest.mark.usefixtures("session_ray", "api_key")
def test_webdataset_on_ray_to_s3_writes_only_shards(
    emu: ThreadedEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3: Any
) -> None:
    """The same to an s3:// --out: the tasks stage and pack through S3, none on the driver."""
    no_packing_on_the_driver(monkeypatch)
    prefix = "ray-wds/"
    target = {"output.target": f"s3://{BUCKET}/{prefix.rstrip('/')}"}
    assert _run(emu, tmp_path, **target, **WEBDATASET) == 0
    out = tmp_path / "out"
    shards = objects(s3, prefix)
    check_shards(out, shards, KEYWORDS)
    assert set(photos(out)) == set().union(*(emu.truth(kw) for kw in KEYWORDS))
    assert not [n for n in shards if n.endswith(".jpg")], "no staged photo left"


@pytest.mark.parametrize("output_format", ["files", "webdataset"])
async def test_the_driver_killed_then_rerun_ends_exactly_once(
    tmp_path: Path, output_format: str
) -> None:
    """SIGKILL a `harvest run --ray local` child while its tasks write (files) or stage
    (webdataset) photos, then run it again: every photo once, in a file or in one tar."""
    with threaded_emulator(photos=2000, seed=0, profile="ideal", image_delay_s=0.05) as emu:
        queries = tmp_path / "q.txt"
        queries.write_text("\n".join(KEYWORDS) + "\n")
        out = tmp_path / "out"
        flags = ["--ray", "local", "--ray-cpus", "2", "--no-fsync", "--concurrency", "4"]
        flags += ["--output-format", output_format, "--ray-batch", "10"]
        args = harvest_args(emu, queries, out, *flags)

        def files_written() -> bool:
            return sum(1 for _ in out.rglob("*.jpg")) >= 10 if out.exists() else False

        killed = await run_harvest(emu, args, stop_when=files_written, stop_with=signal.SIGKILL)
        assert killed.signalled
        assert killed.code == -signal.SIGKILL
        again = await run_harvest(emu, args)
        assert again.code == 0, again.err[-2000:]
        if output_format == "files":
            assert_exactly_once(out, emu, KEYWORDS)
            return
        check_shards(out, local_shards(out), KEYWORDS)
        assert set(photos(out)) == set().union(*(emu.truth(kw) for kw in KEYWORDS))
        assert not list(out.rglob("*.jpg")), "no staged photo left"


async def test_ray_local_to_s3_killed_then_rerun_ends_exactly_once(tmp_path: Path, s3: Any) -> None:
    """SIGKILL `harvest run --ray local --out s3://…` while its tasks write, then run it again:
    objects = store = truth, no orphan, no duplicate."""
    with threaded_emulator(photos=2000, seed=0, profile="ideal", image_delay_s=0.05) as emu:
        queries = tmp_path / "q.txt"
        queries.write_text("\n".join(KEYWORDS) + "\n")
        store, prefix = tmp_path / "state", "ray-killed/"
        flags = ["--store", str(store), "--ray", "local", "--ray-cpus", "2", "--no-fsync"]
        args = harvest_args(emu, queries, store, *flags, "--concurrency", "4")
        args = with_out(args, f"s3://{BUCKET}/{prefix.rstrip('/')}")

        def written() -> bool:
            return jpeg_objects(s3, prefix) >= 10

        killed = await run_harvest(emu, args, stop_when=written, stop_with=signal.SIGKILL)
        assert killed.signalled
        assert killed.code == -signal.SIGKILL
        again = await run_harvest(emu, args)
        assert again.code == 0, again.err[-2000:]
        status = assert_objects_are_the_store(s3, prefix, store)
        assert set(status) == set().union(*(emu.truth(kw) for kw in KEYWORDS))


@pytest.mark.usefixtures("session_ray")
def test_the_limiter_actor_halves_on_a_429_and_leases_at_its_rate() -> None:
    actor = ray.remote(num_cpus=0)(HostLimiterActor).remote(20.0, 4, 0.0)
    ray.get(actor.rate.remote("live.staticflickr.com"))  # the actor is up, its bucket full
    started = time.monotonic()
    ray.get([actor.lease.remote("live.staticflickr.com", 4) for _ in range(6)])
    took = time.monotonic() - started
    assert took >= 0.95, "24 tokens at 20/s, the first 4 at once: never faster than 1 s"
    assert ray.get(actor.throttled.remote("live.staticflickr.com")) == pytest.approx(10.0)
    assert ray.get(actor.rate.remote("other.host")) == pytest.approx(20.0), "per host"
    ray.kill(actor)


@pytest.mark.usefixtures("session_ray")
async def test_a_task_falls_back_to_rate_over_n_when_the_actor_is_gone() -> None:
    actor = ray.remote(num_cpus=0)(HostLimiterActor).remote(20.0, 4, 0.0)
    hosts = LeasedHosts(actor, block=4, fallback_per_s=50.0)
    await hosts.acquire("h")  # leased from the actor
    assert not hosts.used_fallback
    ray.kill(actor)
    for _ in range(8):
        await hosts.acquire("h")
    assert hosts.used_fallback, "the local limiter took over"
