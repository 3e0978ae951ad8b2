"""The SQLite store: claims, checkpoints, leases and batched outcomes, across processes too."""

from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeAlias

import pytest

from harvester.exceptions import StoreError
from harvester.records import PhotoRecord, SizeVariant, Window
from harvester.store.rows import WindowRow
from harvester.store.sqlite import Store
from tests.harness import FakeClock


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
        sizes=(SizeVariant(label="l", url=url, width=1024, height=768),),
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "harvest.sqlite"


def test_wal_mode_and_records_round_trip(db_path: Path) -> None:
    original = replace(photo(7), description="<b>hi</b>", views=3, o_width=4000, o_height=3000)
    with Store(db_path) as store:
        assert store.journal_mode() == "wal"
        store.commit_window(
            "paris", Window(start=0, end=10), [original], reported_total=1, capped=False
        )
    with Store.open(db_path, readonly=True) as store:
        [pending] = store.pending(10)
        assert pending.record == original
        assert (pending.keyword, pending.keywords, pending.seq) == ("paris", ("paris",), 0)


def test_first_keyword_claims_and_every_keyword_is_recorded(db_path: Path) -> None:
    with Store(db_path) as store:
        first = store.commit_window(
            "paris",
            Window(start=0, end=10),
            [photo(1), photo(2), photo(3)],
            reported_total=3,
            capped=False,
        )
        second = store.commit_window(
            "france",
            Window(start=0, end=10),
            [photo(2), photo(3), photo(4)],
            reported_total=3,
            capped=False,
        )
        again = store.commit_window(
            "paris", Window(start=10, end=20), [photo(1), photo(1)], reported_total=2, capped=False
        )
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
        store.commit_window(
            "paris", Window(start=100, end=200), [photo(1)], reported_total=None, capped=False
        )
        store.commit_window(
            "paris",
            Window(start=200, end=260, license=4),
            [photo(2), photo(1)],
            reported_total=5000,
            capped=True,
        )
        store.commit_window("rome", Window(start=0, end=50), [], reported_total=0, capped=False)
    with Store(db_path) as store:
        assert store.done_windows("paris") == [
            WindowRow(
                keyword="paris",
                window=Window(start=100, end=200),
                found=1,
                new=1,
                reported_total=None,
                capped=False,
                finished_at=clock.now,
            ),
            WindowRow(
                keyword="paris",
                window=Window(start=200, end=260, license=4),
                found=2,
                new=1,
                reported_total=5000,
                capped=True,
                finished_at=clock.now,
            ),
        ]
        assert [w.found for w in store.done_windows("rome")] == [0]
        assert store.done_windows("london") == []


def test_outcomes_are_batched_and_survive_reopen(db_path: Path) -> None:
    clock = FakeClock()
    store = Store(db_path, batch_size=1000, flush_interval_s=60, clock=clock)
    store.commit_window(
        "paris",
        Window(start=0, end=10),
        [photo(i) for i in range(1, 6)],
        reported_total=5,
        capped=False,
    )
    store.mark_done(
        "1",
        path="paris/00001/1_abc.jpg",
        sha256="ab" * 32,
        width=1024,
        height=768,
        size_label="l",
    )
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
        store.commit_window(
            "k",
            Window(start=0, end=1),
            [photo(i) for i in range(1, 10)],
            reported_total=9,
            capped=False,
        )
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
        store.commit_window(
            "paris", Window(start=0, end=10), [photo(1), photo(2)], reported_total=2, capped=False
        )
        store.commit_window(
            "paris", Window(start=10, end=20), [photo(3)], reported_total=1, capped=False
        )
        store.commit_window(
            "france", Window(start=0, end=10), [photo(2), photo(4)], reported_total=2, capped=False
        )
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
        a.commit_window(
            "k",
            Window(start=0, end=1),
            [photo(i) for i in range(1, 4)],
            reported_total=3,
            capped=False,
        )
        b.commit_window(
            "k", Window(start=1, end=2), [photo(4), photo(5)], reported_total=2, capped=False
        )
        b.commit_window(
            "k", Window(start=2, end=3), [photo(6)], reported_total=1, capped=False, lease_new=False
        )
        assert [p.record.id for p in a.pending(10)] == ["1", "2", "3", "6"]  # b's claims hidden
        assert [p.record.id for p in b.pending(10)] == ["4", "5", "6"]  # a's claims hidden
        assert [p.record.id for p in a.pending(10, after=3)] == ["6"]
        clock.now += 601  # b died: its leases go stale
        assert [p.record.id for p in a.pending(10)] == ["1", "2", "3", "4", "5", "6"]
        assert a.release_leases("a") == 3
        assert [p.record.id for p in b.pending(10)] == ["1", "2", "3", "4", "5", "6"]
    finally:
        a.close()
        b.close()


def test_read_only_open_of_a_missing_store_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no harvest store"):
        Store.open(tmp_path / "missing.sqlite", readonly=True)


def test_sqlite_errors_become_store_errors(db_path: Path) -> None:
    with Store(db_path) as store:
        store.commit_window("k", Window(start=0, end=1), [photo(1)], reported_total=1, capped=False)
    with Store.open(db_path, readonly=True) as store, pytest.raises(StoreError):
        store.commit_window("k", Window(start=1, end=2), [photo(2)], reported_total=1, capped=False)


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
        won.extend(
            store.commit_window(
                keyword, Window(start=start, end=start + 1), chunk, reported_total=25, capped=False
            ).new_ids
        )
    store.close()
    out.put((keyword, won))


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


def test_search_tally_adds_up_with_each_window_in_its_transaction(db_path: Path) -> None:
    with Store(db_path) as store:
        for start, calls, negatives in ((0, 3, 1), (10, 2, 0), (20, 0, 0)):
            store.commit_window(
                "paris",
                Window(start=start, end=start + 10),
                [photo(start + 1)],
                reported_total=1,
                capped=False,
                calls=calls,
                negatives=negatives,
            )
        store.commit_window(
            "rome", Window(start=0, end=10), [], reported_total=0, capped=False, calls=1
        )
    db = sqlite3.connect(db_path)
    rows = dict(db.execute("SELECT key, value FROM meta WHERE key LIKE 'search_tally:%'"))
    db.close()
    assert {k: json.loads(v) for k, v in rows.items()} == {
        "search_tally:paris": {"calls": 5, "negatives": 1},
        "search_tally:rome": {"calls": 1, "negatives": 0},
    }
