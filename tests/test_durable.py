"""One syncfs per committed store batch: before the commit that calls its photos done, with
per-file fsync where syncfs is missing or fails, and nothing of it with --no-fsync."""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import harvester.engine
from harvester.config import RunConfig, WritePolicy
from harvester.engine import durable_writes
from harvester.exceptions import StoreError
from harvester.images import durable, writer
from harvester.images.durable import BatchSync, batch_sync, libc_syncfs
from harvester.records import Window
from harvester.store.sqlite import STORE_FILENAME, Store
from tests.harness import harvest, run_args, store_rows, threaded_emulator, write_queries
from tests.test_store import photo


def config(out: Path, **fields: Any) -> RunConfig:
    return RunConfig(out_dir=out, queries_path=out / "q.txt", **fields)


def statuses(db: Path) -> dict[int, str]:
    """Each photo's status, read through a connection of its own (what another reader sees)."""
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT id, status FROM photos").fetchall())


def claimed_store(tmp_path: Path, ids: Sequence[int]) -> Store:
    store = Store(tmp_path / STORE_FILENAME, batch_size=1000, flush_interval_s=1e9)
    store.commit_window(
        "kw", Window(start=0, end=10), [photo(i) for i in ids], reported_total=3, capped=False
    )
    return store


def mark_done(store: Store, i: int) -> None:
    store.mark_done(str(i), path=f"kw/00001/{i}.jpg", sha256="0" * 64, width=1, height=1,
                    size_label="l")  # fmt: skip


# --- the store's barrier ------------------------------------------------------------------------


def test_the_barrier_runs_before_the_commit_that_marks_rows_done(tmp_path: Path) -> None:
    store = claimed_store(tmp_path, [1, 2, 3])
    seen: list[tuple[list[str], dict[int, str]]] = []

    def barrier(paths: Sequence[str]) -> None:
        seen.append((list(paths), statuses(store.path)))

    store.set_done_barrier(barrier)
    mark_done(store, 1)
    store.mark_failed("2", "download: 404")
    mark_done(store, 3)
    assert store.flush() == 3
    [(paths, during)] = seen
    assert paths == ["kw/00001/1.jpg", "kw/00001/3.jpg"]  # the done rows only
    assert during == {1: "claimed", 2: "claimed", 3: "claimed"}  # nothing committed yet
    assert statuses(store.path) == {1: "done", 2: "failed", 3: "done"}
    store.close()


def test_a_batch_without_done_rows_needs_no_barrier(tmp_path: Path) -> None:
    store = claimed_store(tmp_path, [1, 2])
    calls: list[Sequence[str]] = []
    store.set_done_barrier(calls.append)
    store.mark_skipped("1", "too small")
    store.mark_failed("2", "download: 404")
    store.flush()
    assert calls == []
    store.close()


def test_a_failed_barrier_commits_nothing_and_keeps_the_batch(tmp_path: Path) -> None:
    store = claimed_store(tmp_path, [1, 2])

    def broken(paths: Sequence[str]) -> None:
        raise OSError(errno.EIO, "Input/output error")

    store.set_done_barrier(broken)
    mark_done(store, 1)
    store.mark_failed("2", "download: 404")
    with pytest.raises(StoreError, match="not durable"):
        store.flush()
    assert statuses(store.path) == {1: "claimed", 2: "claimed"}
    synced: list[Sequence[str]] = []
    store.set_done_barrier(synced.append)
    assert store.flush() == 2  # the kept batch, this time behind a barrier that worked
    assert synced == [["kw/00001/1.jpg"]]
    assert statuses(store.path) == {1: "done", 2: "failed"}
    store.close()


# --- BatchSync: syncfs, and fsync per file where it fails ---------------------------------------


class Recorder:
    """A fake syncfs and fsync that note what they were called on."""

    def __init__(self, fail: int | None = None) -> None:
        self.fail = fail
        self.syncfs: list[int] = []  # st_dev of each syncfs call's descriptor
        self.fsync: list[Path] = []

    def do_syncfs(self, fd: int) -> None:
        self.syncfs.append(os.fstat(fd).st_dev)
        if self.fail is not None:
            raise OSError(self.fail, os.strerror(self.fail))

    def do_fsync(self, fd: int) -> None:
        self.fsync.append(Path(os.readlink(f"/proc/self/fd/{fd}")))


def written(out: Path, names: Sequence[str]) -> list[str]:
    for name in names:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(b"x")
    return list(names)


needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")


@needs_proc
def test_one_syncfs_of_the_output_filesystem_per_batch(tmp_path: Path) -> None:
    rec = Recorder()
    barrier = BatchSync(tmp_path, rec.do_syncfs, fsync=rec.do_fsync)
    barrier(written(tmp_path, ["a/00001/1.jpg", "a/00001/2.jpg", "b/00001/3.jpg"]))
    barrier([])  # nothing to make durable: no call
    assert rec.syncfs == [tmp_path.stat().st_dev]
    assert rec.fsync == []
    barrier.close()


@needs_proc
def test_a_failed_syncfs_falls_back_to_fsync_of_each_file_and_directory(tmp_path: Path) -> None:
    rec = Recorder(fail=errno.EIO)
    barrier = BatchSync(tmp_path, rec.do_syncfs, fsync=rec.do_fsync)
    paths = written(tmp_path, ["a/00001/1.jpg", "a/00001/2.jpg", "b/00001/3.jpg"])
    barrier(paths)
    files = [tmp_path / p for p in paths]
    dirs = [tmp_path / "a" / "00001", tmp_path / "b" / "00001"]
    assert rec.fsync == [*files, *dirs]
    barrier(paths[:1])
    assert len(rec.syncfs) == 2  # EIO may pass: syncfs is tried again on the next batch
    barrier.close()


@needs_proc
@pytest.mark.parametrize("code", [errno.ENOSYS, errno.EPERM])
def test_an_unsupported_syncfs_is_not_tried_again(tmp_path: Path, code: int) -> None:
    rec = Recorder(fail=code)
    barrier = BatchSync(tmp_path, rec.do_syncfs, fsync=rec.do_fsync)
    paths = written(tmp_path, ["a/00001/1.jpg"])
    barrier(paths)
    barrier(paths)
    assert len(rec.syncfs) == 1
    assert rec.fsync == [tmp_path / paths[0], tmp_path / "a" / "00001"] * 2
    barrier.close()


def test_a_file_that_cannot_be_fsynced_either_raises(tmp_path: Path) -> None:
    rec = Recorder(fail=errno.EIO)
    barrier = BatchSync(tmp_path, rec.do_syncfs, fsync=rec.do_fsync)
    with pytest.raises(FileNotFoundError):
        barrier(["a/00001/missing.jpg"])
    barrier.close()


@needs_proc
def test_a_directory_on_another_filesystem_is_fsynced_by_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = Recorder()
    barrier = BatchSync(tmp_path, rec.do_syncfs, fsync=rec.do_fsync)
    paths = written(tmp_path, ["here/00001/1.jpg", "mounted/00001/2.jpg"])
    real_stat = os.stat
    mounted = tmp_path / "mounted" / "00001"

    def stat(path: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(path) == mounted:
            return os.stat_result((0, 0, -7, 0, 0, 0, 0, 0, 0, 0))  # st_dev -7
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)  # durable.py looks it up at call time
    barrier(paths)
    monkeypatch.undo()
    assert rec.syncfs == [tmp_path.stat().st_dev]
    assert rec.fsync == [tmp_path / paths[1], mounted]
    barrier.close()


def test_the_real_syncfs_runs_on_linux(tmp_path: Path) -> None:
    found = libc_syncfs()
    if found is None:
        pytest.skip("no syncfs here (not Linux)")
    barrier = batch_sync(tmp_path)
    assert barrier is not None
    barrier(written(tmp_path, ["a/00001/1.jpg"]))
    barrier.close()
    barrier(written(tmp_path, ["a/00001/2.jpg"]))  # after close: opens the root again
    barrier.close()


def test_without_syncfs_the_writer_keeps_its_fsync_per_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(durable, "libc_syncfs", lambda: None)
    assert batch_sync(tmp_path) is None
    assert durable_writes(config(tmp_path)) is None


def test_an_output_that_cannot_be_opened_keeps_the_fsync_per_file(tmp_path: Path) -> None:
    assert batch_sync(tmp_path / "missing", lambda fd: None) is None


def test_no_fsync_means_no_barrier(tmp_path: Path) -> None:
    barrier = durable_writes(config(tmp_path))
    assert (barrier is None) == (libc_syncfs() is None)
    if barrier is not None:
        barrier.close()
    assert durable_writes(config(tmp_path, write=WritePolicy(fsync=False))) is None
    assert durable_writes(config(tmp_path, metadata_only=True)) is None


# --- the engine: the barrier in place of the writer's fsync --------------------------------------


def harvest_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *flags: str
) -> tuple[Path, list[tuple[list[str], int]], list[bool]]:
    """An in-process harvest of one keyword, fsync flags as given: what the barrier was called
    with (its paths, and how many of their rows were done at that moment), and the fsync flag
    of every file the writer wrote."""
    barriers: list[tuple[list[str], int]] = []
    writes: list[bool] = []
    out = tmp_path / "out"

    class Checked(BatchSync):
        def __call__(self, paths: Sequence[str]) -> None:
            assert all((out / p).is_file() for p in paths), "a file not yet in place"
            marks = ",".join("?" * len(paths))
            with sqlite3.connect(out / STORE_FILENAME) as conn:
                sql = f"SELECT COUNT(*) FROM photos WHERE status = 'done' AND path IN ({marks})"
                done = conn.execute(sql, list(paths)).fetchone()[0]
            barriers.append((list(paths), done))
            super().__call__(paths)

    def factory(root: Path, syncfs: Any = None) -> BatchSync:
        return Checked(root, syncfs or (lambda fd: None))

    real_write = writer._write_file

    def recording(temp: Path, parts: Any, fsync: bool) -> int:
        writes.append(fsync)
        return real_write(temp, parts, fsync)

    monkeypatch.setattr(harvester.engine, "batch_sync", factory)
    monkeypatch.setattr(writer, "_write_file", recording)
    with threaded_emulator(photos=3000, seed=0, profile="ideal") as emu:
        queries = write_queries(tmp_path / "q.txt", ("sky",))
        monkeypatch.setenv("FLICKR_API_KEY", emu.api_key)
        args = [a for a in run_args(emu, queries, out, "--concurrency", "4") if a != "--no-fsync"]
        assert harvest(*args, *flags) == 0
    return out, barriers, writes


def test_the_engine_syncs_each_batch_before_calling_it_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, barriers, writes = harvest_recorded(tmp_path, monkeypatch)
    done = {p for (p,) in store_rows(out, "SELECT path FROM photos WHERE status = 'done'")}
    assert len(done) > 20
    assert writes
    assert not any(writes), "the writer fsynced a file the barrier covers"
    synced = {p for paths, _ in barriers for p in paths}
    assert done <= synced, "a row called done that no barrier covered"
    assert all(already == 0 for _, already in barriers), "a row was done before its barrier"


def test_no_fsync_skips_the_barrier_and_the_writer_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, barriers, writes = harvest_recorded(tmp_path, monkeypatch, "--no-fsync")
    assert store_rows(out, "SELECT COUNT(*) FROM photos WHERE status = 'done'")[0][0] > 20
    assert barriers == []
    assert writes
    assert not any(writes)
