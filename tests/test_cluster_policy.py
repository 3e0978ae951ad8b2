"""The Ray image half's pure parts as tables: which directories go out, the straggler
deadline, retry or give up, and the limiter's token bucket with AIMD (time passed in)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harvester.cluster.bucket import TokenBucket
from harvester.cluster.policy import (
    DirBacklog,
    DirKey,
    Durations,
    GiveUp,
    Retry,
    after_failure,
    deadline_s,
    max_inflight,
    quantile,
    ready_batches,
)
from harvester.config import ClusterPolicy
from tests.harness import harvest, only_line

A0, A1, B0 = DirKey("a", 0), DirKey("a", 1), DirKey("b", 0)


def backlog(
    key: DirKey, oldest_s: float, *, closed: bool = False, claimed: int = 4, inflight: int = 0
) -> DirBacklog:
    return DirBacklog(key=key, claimed=claimed, oldest_s=oldest_s, closed=closed, inflight=inflight)


@pytest.mark.parametrize(
    ("dirs", "searching", "expected"),
    [
        # search over: everything goes, oldest claim first
        ([backlog(A1, 5), backlog(A0, 1)], set(), [A0, A1]),
        # still searching: an open directory waits, a closed one goes
        ([backlog(A0, 95), backlog(A1, 96, closed=True)], {"a"}, [A1]),
        # still searching but waited flush_s (30): sent anyway (a rare keyword)
        ([backlog(A0, 70), backlog(B0, 95)], {"a", "b"}, [A0]),
        # another keyword's search does not hold this one back
        ([backlog(B0, 99)], {"a"}, [B0]),
        # one batch per `batch_photos` (4) of a directory, the directories' batches alternating
        ([backlog(A0, 1, claimed=9), backlog(B0, 2, claimed=4)], set(), [A0, B0, A0, A0]),
        # nothing waiting (all of it in flight): nothing to send
        ([backlog(A0, 1, claimed=0, inflight=4)], set(), []),
        # a batch in flight, the directory complete: the rest goes beside it
        ([backlog(A0, 1, claimed=5, inflight=4)], set(), [A0, A0]),
        # a batch in flight, the directory still filling: full batches only, never crumbs
        ([backlog(A0, 50, claimed=9, inflight=4)], {"a"}, [A0, A0]),
        ([backlog(A0, 50, claimed=3, inflight=4)], {"a"}, []),
        # ... and a closed one sends its crumbs too
        ([backlog(A0, 99, claimed=3, inflight=4, closed=True)], {"a"}, [A0]),
    ],
)
def test_ready_batches(dirs: list[DirBacklog], searching: set[str], expected: list[DirKey]) -> None:
    ready = ready_batches(dirs, now_s=100, searching=searching, flush_s=30, batch_photos=4)
    assert ready == expected


@pytest.mark.parametrize(("cpus", "per_cpu", "expected"), [(2, 2.0, 4), (3, 1.5, 5), (0, 2.0, 1)])
def test_max_inflight(cpus: float, per_cpu: float, expected: int) -> None:
    assert max_inflight(cpus, ClusterPolicy(inflight_per_cpu=per_cpu)) == expected


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 0.5, None),
        ([1.0], 0.95, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.0),
        ([*range(1, 21)], 0.95, 19),
    ],
)
def test_quantile(values: list[float], q: float, expected: float | None) -> None:
    assert quantile(values, q) == expected


POLICY = ClusterPolicy(straggler_factor=3.0, min_deadline_s=10.0, first_deadline_s=500.0)


@pytest.mark.parametrize(
    ("timed", "photos", "expected"),
    [
        ([], 100, 500.0),  # nothing timed yet: the first deadline
        ([(10.0, 100), (10.0, 100)], 100, 500.0),  # two are not enough
        ([(10.0, 100)] * 3, 100, 30.0),  # 0.1 s a photo x 100 x 3
        ([(10.0, 100)] * 3, 1000, 300.0),  # scaled to the batch's photos
        ([(1.0, 100)] * 3, 100, 10.0),  # never under min_deadline_s
        ([(10.0, 100)] * 19 + [(100.0, 100)], 100, 30.0),  # one outlier in 20 is not the p95
    ],
)
def test_deadline(timed: list[tuple[float, int]], photos: int, expected: float) -> None:
    durations = Durations()
    for seconds, n in timed:
        durations.add(seconds, n)
    assert deadline_s(durations, photos, POLICY) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(0, Retry(1)), (1, Retry(2)), (2, GiveUp("batch gave up after 3 attempts: boom"))],
)
def test_after_failure(attempt: int, expected: Retry | GiveUp) -> None:
    assert after_failure(attempt, "boom", ClusterPolicy(max_attempts=3)) == expected


def test_bucket_paces_leases_at_the_rate() -> None:
    bucket = TokenBucket(target_per_s=100, burst=16)
    waits = [bucket.take(16, now_s=0.0) for _ in range(5)]
    # the first block is the burst; each next one is due 0.16 s after the one before
    assert waits == pytest.approx([0.0, 0.16, 0.32, 0.48, 0.64])
    assert bucket.take(16, now_s=10.0) == 0.0  # idle long enough: the burst is back
    bucket.give_back(16, now_s=10.0)  # unspent: the next lease needs no wait
    assert bucket.take(16, now_s=10.0) == 0.0


@pytest.mark.parametrize(
    ("cuts", "expected_rate"),
    [
        ([0.0], 50.0),  # one 429: halved
        ([0.0, 0.5], 50.0),  # a second within the interval is the same burst
        ([0.0, 1.0], 25.0),  # a second later: halved again
        ([float(t) for t in range(10)], 100 / 64),  # never under the floor
    ],
)
def test_bucket_halves_on_429(cuts: list[float], expected_rate: float) -> None:
    bucket = TokenBucket(target_per_s=100, burst=16, recover_per_s=0.0)
    for t in cuts:
        bucket.throttled(t)
    assert bucket.rate_per_s == pytest.approx(expected_rate)


def test_bucket_recovers_additively_up_to_the_target() -> None:
    bucket = TokenBucket(target_per_s=100, burst=16, recover_per_s=0.1 / 60)
    bucket.throttled(0.0)
    bucket.take(0, now_s=60.0)
    assert bucket.rate_per_s == pytest.approx(60.0)  # +10 % of the target a minute
    bucket.take(0, now_s=3600.0)
    assert bucket.rate_per_s == pytest.approx(100.0)


def test_ray_missing_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    queries = tmp_path / "q.txt"
    queries.write_text("sky\n")
    assert harvest("run", queries, "--out", tmp_path / "out", "--ray", "local") == 2
    line = only_line(capsys.readouterr().err)
    assert "pip install 'harvest[ray]'" in line
    assert not (tmp_path / "out").exists(), "nothing written"


def test_ray_client_addresses_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("ray", reason="needs Ray (pip install 'harvest[ray]')")
    queries = tmp_path / "q.txt"
    queries.write_text("sky\n")
    assert harvest("run", queries, "--out", tmp_path / "out", "--ray", "ray://head:10001") == 2
    assert "ray://" in only_line(capsys.readouterr().err)


def test_ray_with_workers_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ray", reason="needs Ray (pip install 'harvest[ray]')")
    queries = tmp_path / "q.txt"
    queries.write_text("sky\n")
    args = ("run", queries, "--out", tmp_path / "out", "--ray", "local", "--workers", "2")
    assert harvest(*args) == 2
    assert "--workers" in only_line(capsys.readouterr().err)
