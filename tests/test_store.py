"""The SQLite store: claims, checkpoints, leases and batched outcomes, across processes too."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeAlias

import pytest

from harvester.exceptions import StoreError
from harvester.records import PhotoRecord, SizeVariant
from harvester.store.sqlite import DoneWindow, Store
from tests.harness import FakeClock, FakeStoredImage


def photo(i: int) -> PhotoRecord:
    """A small valid record with id `i`."""
    url = f"https://live.staticflickr.com/65535/{i}_abcdef0123_b.jpg"
    return PhotoRecord(
        id=str(i),
        owner="7478087@N06",
        secret="abcdef0123",
        server="65535",
        title=f"photo {i}",
        tags=("a", "b"),
        license=4,
        date_upload=1_600_000_000 + i,
        latitude=48.85,
        longitude=2.35,
        sizes=(SizeVariant("l", url, 1024, 768),),
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "harvest.sqlite"


def test_wal_mode_and_records_round_trip(db_path: Path) -> None:
    original = replace(photo(7), description="<b>hi</b>", views=3, o_width=4000, o_height=3000)
    with Store(db_path) as store:
        assert store.journal_mode() == "wal"
        store.commit_window("paris", 0, 10, None, [original], 1, False)
    with Store.open(db_path, readonly=True) as store:
        [pending] = store.pending(10)
        assert pending.record == original
        assert (pending.keyword, pending.keywords, pending.seq) == ("paris", ("paris",), 0)


def test_first_keyword_claims_and_every_keyword_is_recorded(db_path: Path) -> None:
    with Store(db_path) as store:
        first = store.commit_window("paris", 0, 10, None, [photo(1), photo(2), photo(3)], 3, False)
        second = store.commit_window(
            "france", 0, 10, None, [photo(2), photo(3), photo(4)], 3, False
        )
        again = store.commit_window("paris", 10, 20, None, [photo(1), photo(1)], 2, False)
        assert first.new_ids == ("1", "2", "3")
        assert (second.new_ids, second.duplicates) == (("4",), 2)
        assert (again.new_ids, again.duplicates) == ((), 2)
        rows = {p.record.id: p for p in store.pending(10)}
    assert {i: (p.keyword, p.keywords) for i, p in rows.items()} == {
        "1": ("paris", ("paris",)),
        "2": ("paris", ("france", "paris")),
        "3": ("paris", ("france", "paris")),
        "4": ("france", ("france",)),
    }
    # seq counts each keyword's claims from 0: it names the writer's 1,000-file directory.
    assert {i: p.seq for i, p in rows.items()} == {"1": 0, "2": 1, "3": 2, "4": 0}


def test_windows_round_trip_for_resume(db_path: Path) -> None:
    clock = FakeClock()
    with Store(db_path, clock=clock) as store:
        store.commit_window("paris", 100, 200, None, [photo(1)], None, False)
        store.commit_window("paris", 200, 260, 4, [photo(2), photo(1)], 5000, True)
        store.commit_window("rome", 0, 50, None, [], 0, False)
    with Store(db_path) as store:
        assert store.done_windows("paris") == [
            DoneWindow("paris", 100, 200, None, 1, 1, None, False, clock.now),
            DoneWindow("paris", 200, 260, 4, 2, 1, 5000, True, clock.now),
        ]
        assert [w.found for w in store.done_windows("rome")] == [0]
        assert store.done_windows("london") == []


def test_outcomes_are_batched_and_survive_reopen(db_path: Path) -> None:
    clock = FakeClock()
    store = Store(db_path, batch_size=1000, flush_interval_s=60, clock=clock)
    store.commit_window("paris", 0, 10, None, [photo(i) for i in range(1, 6)], 5, False)
    store.mark_done("1", "paris/00001/1_abc.jpg", FakeStoredImage(1024, 768, "ab" * 32), "l")
    store.mark_skipped("2", "too small: 400x300")
    store.mark_failed("3", "download: HTTP 500")
    with Store.open(db_path, readonly=True) as other:  # nothing written yet: it is buffered
        assert other.summary().statuses == {"claimed": 5}
    store.close()  # close flushes
    with Store(db_path) as store:
        summary = store.summary()
        assert summary.statuses == {"claimed": 2, "done": 1, "skipped": 1, "failed": 1}
        assert summary.reasons == {
            "skipped: too small": 1,  # grouped by the reason's head
            "failed: download": 1,
        }
        assert [p.record.id for p in store.pending(10)] == ["4", "5"]
        assert [p.record.id for p in store.failed(10)] == ["3"]
        assert store.requeue_failed(["paris"]) == 1
        assert [(p.record.id, p.attempts) for p in store.pending(10)] == [
            ("3", 1),
            ("4", 0),
            ("5", 0),
        ]
        [done] = [row for row in store.iter_export() if row.record.id == "1"]
        assert (done.status, done.path, done.width, done.height, done.size_label) == (
            "done",
            "paris/00001/1_abc.jpg",
            1024,
            768,
            "l",
        )


def test_flush_by_size_and_by_time(db_path: Path) -> None:
    clock = FakeClock()
    with Store(db_path, batch_size=3, flush_interval_s=1.0, clock=clock) as store:
        store.commit_window("k", 0, 1, None, [photo(i) for i in range(1, 10)], 9, False)
        with Store.open(db_path, readonly=True) as reader:
            store.mark_skipped("1", "x")
            store.mark_skipped("2", "x")
            assert reader.summary().statuses.get("skipped") is None
            store.mark_skipped("3", "x")  # third: batch full
            assert reader.summary().statuses["skipped"] == 3
            store.mark_skipped("4", "x")
            clock.now += 1.5  # interval passed: the next mark flushes
            store.mark_skipped("5", "x")
            assert reader.summary().statuses["skipped"] == 5


def test_summary_per_keyword(db_path: Path) -> None:
    with Store(db_path) as store:
        store.commit_window("paris", 0, 10, None, [photo(1), photo(2)], 2, False)
        store.commit_window("paris", 10, 20, None, [photo(3)], 1, False)
        store.commit_window("france", 0, 10, None, [photo(2), photo(4)], 2, False)
        store.mark_skipped("4", "no usable size")
        store.flush()
        summary = store.summary()
    by_kw = {k.keyword: k for k in summary.keywords}
    assert (by_kw["paris"].windows, by_kw["paris"].found, by_kw["paris"].new) == (2, 3, 3)
    assert (by_kw["france"].found, by_kw["france"].new, by_kw["france"].duplicates) == (2, 1, 1)
    assert (by_kw["france"].skipped, by_kw["paris"].claimed) == (1, 3)
    assert summary.photos == 4
    with Store(db_path) as store:  # the cheap count agrees with the summary
        assert {s: store.count(s) for s in ("claimed", "skipped", "done")} == {
            "claimed": 3,
            "skipped": 1,
            "done": 0,
        }
    text = summary.render()
    assert "paris" in text
    assert "TOTAL" in text
    assert "skipped: no usable size: 1" in text


def test_leases_keep_workers_apart_and_go_stale(db_path: Path) -> None:
    clock = FakeClock()
    a = Store(db_path, worker_id="a", clock=clock, lease_ttl_s=600)
    b = Store(db_path, worker_id="b", clock=clock, lease_ttl_s=600)
    try:
        a.commit_window("k", 0, 1, None, [photo(i) for i in range(1, 4)], 3, False)
        b.commit_window("k", 1, 2, None, [photo(i) for i in range(4, 7)], 3, False, lease_new=False)
        assert [p.record.id for p in a.pending(10)] == ["1", "2", "3", "4", "5", "6"]
        assert [p.record.id for p in b.pending(10)] == ["4", "5", "6"]  # a's fresh claims hidden
        assert [p.record.id for p in b.lease(2)] == ["4", "5"]
        assert [p.record.id for p in a.pending(10)] == ["1", "2", "3", "6"]
        assert [p.record.id for p in a.pending(10, after=3)] == ["6"]
        clock.now += 601  # b died: its leases go stale
        assert [p.record.id for p in a.lease(10)] == ["1", "2", "3", "4", "5", "6"]
        assert a.release_leases("a") == 6
        assert [p.record.id for p in b.pending(10)] == ["1", "2", "3", "4", "5", "6"]
    finally:
        a.close()
        b.close()


def test_read_only_open_of_a_missing_store_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no harvest store"):
        Store.open(tmp_path / "missing.sqlite", readonly=True)


def test_sqlite_errors_become_store_errors(db_path: Path) -> None:
    with Store(db_path) as store:
        store.commit_window("k", 0, 1, None, [photo(1)], 1, False)
    with Store.open(db_path, readonly=True) as store, pytest.raises(StoreError):
        store.commit_window("k", 1, 2, None, [photo(2)], 1, False)


def test_runs_history(db_path: Path) -> None:
    out_dir = db_path.parent / "out"
    with Store(db_path, worker_id="w") as store:
        run = store.start_run({"out_dir": out_dir, "workers": 2})
        store.finish_run(run, "ok", {"done": 5})
        [row] = store.runs()
    assert (row["worker"], row["outcome"]) == ("w", "ok")
    assert '"workers":2' in row["config"]
    assert f'"out_dir":"{out_dir}"' in row["config"], "a path is recorded as its text"


# --- several processes sharing one file ------------------------------------------------------


Results: TypeAlias = "mp.Queue[tuple[str, list[str]]]"


def _claim_worker(path: str, keyword: str, ids: list[int], out: Results) -> None:
    store = Store(Path(path), worker_id=keyword)
    won: list[str] = []
    for start in range(0, len(ids), 25):  # many small transactions, interleaving with the peer
        chunk = [photo(i) for i in ids[start : start + 25]]
        won.extend(store.commit_window(keyword, start, start + 1, None, chunk, 25, False).new_ids)
    store.close()
    out.put((keyword, won))


def _lease_worker(path: str, name: str, out: Results) -> None:
    store = Store(Path(path), worker_id=name)
    got: list[str] = []
    while batch := store.lease(7):
        got.extend(p.record.id for p in batch)
    store.close()
    out.put((name, got))


def _run_two(
    target: Callable[..., None], args_a: tuple[object, ...], args_b: tuple[object, ...]
) -> list[set[str]]:
    ctx = mp.get_context("fork")
    out: Results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, out)) for args in (args_a, args_b)]
    for proc in procs:
        proc.start()
    results = dict(out.get(timeout=60) for _ in procs)
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    return [set(results[str(args_a[1])]), set(results[str(args_b[1])])]


def test_two_processes_claim_each_photo_once(db_path: Path) -> None:
    Store(db_path).close()  # create the schema once, as the runner does before spawning
    a_ids, b_ids = list(range(0, 1000)), list(range(500, 1500))
    won_a, won_b = _run_two(_claim_worker, (str(db_path), "a", a_ids), (str(db_path), "b", b_ids))
    assert not won_a & won_b
    assert won_a | won_b == {str(i) for i in range(1500)}
    with sqlite3.connect(db_path) as db:
        owners = dict(db.execute("SELECT id, keyword FROM photos").fetchall())
        links = db.execute("SELECT COUNT(*) FROM photo_keywords").fetchone()[0]
    assert all(owners[int(i)] == "a" for i in won_a)
    assert all(owners[int(i)] == "b" for i in won_b)
    assert links == 2000  # every keyword that found a photo is recorded


def test_two_processes_lease_disjoint_sets(db_path: Path) -> None:
    with Store(db_path) as store:
        store.commit_window(
            "k", 0, 1, None, [photo(i) for i in range(1, 301)], 300, False, lease_new=False
        )
    got_a, got_b = _run_two(_lease_worker, (str(db_path), "a"), (str(db_path), "b"))
    assert not got_a & got_b
    assert got_a | got_b == {str(i) for i in range(1, 301)}


def test_commit_result_takes_the_search_loops_result(db_path: Path) -> None:
    from harvester.search.loop import WindowResult
    from harvester.search.windows import Window

    result = WindowResult(
        keyword="paris",
        window=Window(100, 400, 4),
        photos=(photo(1), photo(2)),
        filtered_negative=0,
        calls=1,
        reported_total=2,
        capped=True,
    )
    with Store(db_path) as store:
        assert store.commit_result(result).new_ids == ("1", "2")
        [done] = store.done_windows("paris")
    assert (done.start, done.end, done.license, done.found, done.capped) == (100, 400, 4, 2, True)
