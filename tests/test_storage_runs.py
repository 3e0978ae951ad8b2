"""Harvests to object storage and to WebDataset shards, for real: moto's S3 server on a loopback
port, s3fs as harvest's client, boto3 to look; the shards read back by `webdataset` and pyarrow.

Each ends with files = store = emulator truth: every done photo is exactly one object (or one
tar member) with the store's bytes, every object or member is a done photo, nothing pending,
no temporary or staged file left, no partial tar.
"""

from __future__ import annotations

import errno
import hashlib
import io
import signal
import sqlite3
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from fsspec.spec import AbstractFileSystem

from harvester.storage.target import Upload, open_target
from tests.harness import (
    STORE,
    ThreadedEmulator,
    error_line,
    harvest,
    harvest_args,
    run_args,
    run_harvest,
    store_count,
    store_rows,
    threaded_emulator,
    write_queries,
)
from tests.s3_support import BUCKET, EXTRAS, assert_objects_are_the_store, objects, put_object
from tests.shard_support import check_shards, local_shards, photos

KEYWORDS = ("sunset", "sky")  # 31 and 84 matches in the 3,000-photo corpus (seed 0)
SMALL = ("sunset",)


@pytest.fixture(scope="module")
def emu() -> Iterator[ThreadedEmulator]:
    # A pool of rendered pixels (a load-test knob): what is tested here is where the files go,
    # not the images, and rendering each photo's own would be most of these tests' time.
    with threaded_emulator(photos=3000, seed=0, profile="ideal", image_pool=16) as running:
        yield running


def to(args: list[str], url: str) -> list[str]:
    """`args` with `--out URL` (the helpers take a Path, which would fold s3:// into s3:/)."""
    args = list(args)
    args[args.index("--out") + 1] = url
    return args


def test_a_harvest_to_s3_is_the_store_and_the_truth(
    s3: Any, emu: ThreadedEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLICKR_API_KEY", emu.api_key)
    queries = write_queries(tmp_path / "q.txt", SMALL)
    store = tmp_path / "state"
    url = f"s3://{BUCKET}/files-run"
    code = harvest(*to(run_args(emu, queries, store, "--store", str(store)), url))
    assert code == 0
    rows = photos(store)
    assert set(rows) == emu.truth("sunset")
    done = {path: sha for status, path, sha, _ in rows.values() if status == "done"}
    stored = objects(s3, "files-run/")
    jpgs = {name: hashlib.sha256(body).hexdigest() for name, body in stored.items() if "/" in name}
    assert jpgs == done, "every object is a done photo, with its bytes, and nothing else"
    assert set(stored) - set(jpgs) == {"CREDITS.csv", "CREDITS.md", "README.md"}
    assert stored["CREDITS.csv"] == (store / "CREDITS.csv").read_bytes()
    assert all(status != "claimed" for status, *_ in rows.values())
    assert harvest("status", store) == 0


def done_paths(store_dir: Path) -> set[str]:
    return {p for (p,) in store_rows(store_dir, "SELECT path FROM photos WHERE status = 'done'")}


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped): a killed run's."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


async def test_files_to_s3_killed_then_resumed_leave_no_orphan_object(
    s3: Any, emu: ThreadedEmulator, tmp_path: Path
) -> None:
    """SIGKILL a run writing to S3, add what a killed run (or an earlier attempt) leaves that
    a rerun would not overwrite, rerun: objects = store = truth, the stranger's object kept."""
    store = tmp_path / "state"
    prefix = "killed-run/"
    url = f"s3://{BUCKET}/{prefix.rstrip('/')}"
    queries = write_queries(tmp_path / "q.txt", KEYWORDS)
    extra = ("--store", str(store), "--concurrency", "4")
    args = to(harvest_args(emu, queries, store, *extra), url)
    done = "SELECT COUNT(*) FROM photos WHERE status = 'done'"
    exited = await run_harvest(emu, args, stop_when=lambda: store_count(store, done) >= 20)
    assert exited.signalled
    assert exited.code == -signal.SIGKILL
    pid = dead_pid()
    (kept,) = store_rows(store, "SELECT path FROM photos WHERE status = 'done' LIMIT 1")[0]
    kw_dir, _num, name = kept.split("/")
    left = {
        f".write-test-{pid}": b"ok",  # the write test, killed before it removed its object
        f".harvest-probe-{pid}-0badc0de": b"token",  # a node probe, likewise
        f"{kw_dir}/00001/999999999_ffffffff.jpg": b"an attempt's photo no row holds",
        f"{kw_dir}/00002/{name}": s3.get_object(Bucket=BUCKET, Key=prefix + kept)["Body"].read(),
    }
    for key, body in left.items():
        put_object(s3, prefix + key, body)
    put_object(s3, prefix + "notes/mine.txt", b"not the harvest's")
    resumed = await run_harvest(emu, args)
    assert resumed.code == 0, resumed.err[-2000:]
    others = EXTRAS | {"notes/mine.txt"}
    status = assert_objects_are_the_store(s3, prefix, store, others=others)
    assert set(objects(s3, prefix)) - set(done_paths(store)) == others, "the stranger's is kept"
    assert set(status) == emu.truth(KEYWORDS[0]) | emu.truth(KEYWORDS[1])
    assert "1 objects that are not this harvest's, left in place: notes/mine.txt" in resumed.err


def test_a_remote_out_without_a_store_is_one_clear_error(
    emu: ThreadedEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queries = write_queries(tmp_path / "q.txt", SMALL)
    assert harvest(*to(run_args(emu, queries, tmp_path), "s3://bucket/x")) == 2
    line = error_line(capsys.readouterr().err)
    assert "--store DIR" in line
    assert "SQLite" in line


class ReadOnlyFileSystem(MemoryFileSystem):  # type: ignore[misc]
    """memory:// that refuses every write, as a bucket without s3:PutObject does."""

    protocol = "readonly"

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        raise PermissionError(errno.EACCES, "Access Denied", path)


class FullFileSystem(MemoryFileSystem):  # type: ignore[misc]
    """memory:// that takes small files and then fills up, as a quota'd share does."""

    protocol = "fullfs"
    room = 8

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        if len(value) > 100:
            type(self).room -= 1
            if self.room < 0:
                raise OSError(errno.ENOSPC, "No space left on device", path)
        super().pipe_file(path, value, mode, **kwargs)


@pytest.fixture
def odd_filesystems() -> Iterator[None]:
    fsspec.register_implementation("readonly", ReadOnlyFileSystem, clobber=True)
    fsspec.register_implementation("fullfs", FullFileSystem, clobber=True)
    FullFileSystem.room = 8
    yield
    AbstractFileSystem.clear_instance_cache()


def test_a_read_only_target_is_one_clear_error(
    emu: ThreadedEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    odd_filesystems: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLICKR_API_KEY", emu.api_key)
    queries = write_queries(tmp_path / "q.txt", SMALL)
    args = to(
        run_args(emu, queries, tmp_path, "--store", str(tmp_path / "s")), "readonly://bucket/x"
    )
    assert harvest(*args) == 2
    line = error_line(capsys.readouterr().err)
    assert "readonly://bucket/x is not writable" in line
    assert "Access Denied" in line
    assert store_count(tmp_path / "s", "SELECT COUNT(*) FROM photos") == 0, "no work started"


def test_a_target_that_fills_up_stops_the_run_with_one_clear_error(
    emu: ThreadedEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    odd_filesystems: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLICKR_API_KEY", emu.api_key)
    queries = write_queries(tmp_path / "q.txt", SMALL)
    store = tmp_path / "s"
    args = to(run_args(emu, queries, tmp_path, "--store", str(store)), "fullfs://share/x")
    assert harvest(*args) == 4
    line = error_line(capsys.readouterr().err)
    assert "output full" in line
    assert "No space left on device" in line
    assert "free space" in line
    fs = fsspec.filesystem("fullfs")
    written = {p.removeprefix("fullfs://share/x/") for p in fs.find("fullfs://share/x")}
    done = {path for status, path, _, _ in photos(store).values() if status == "done"}
    assert done == written, "what was written is recorded, and only that"
    assert len(done) == 8


# --- webdataset ---------------------------------------------------------------------------------


def test_webdataset_in_a_directory_reads_back_and_a_redone_photo_rebuilds_its_tar(
    emu: ThreadedEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLICKR_API_KEY", emu.api_key)
    queries = write_queries(tmp_path / "q.txt", SMALL)
    out, state = tmp_path / "out", tmp_path / "state"
    args = run_args(emu, queries, out, "--store", str(state), "--output-format", "webdataset")
    assert harvest(*args) == 0
    check_shards(state, local_shards(out), SMALL)
    assert set(photos(state)) == emu.truth("sunset")
    assert not list(out.rglob("*.jpg")), "no loose JPEG"
    assert (out / "harvest.store").read_text().strip() == str((state / STORE).resolve())
    assert harvest("status", out) == 0, "the store is found from the output directory"
    # A photo the store no longer counts as done is redone, and its tar rebuilt around it.
    (redo,) = store_rows(state, "SELECT id FROM photos WHERE status = 'done' LIMIT 1")[0]
    db = sqlite3.connect(state / STORE)
    with db:
        db.execute("UPDATE photos SET status = 'claimed', path = NULL WHERE id = ?", (redo,))
    db.close()
    assert harvest(*args) == 0
    check_shards(state, local_shards(out), SMALL)
    assert not [p for p in (state / "harvest.staging").rglob("*") if p.is_file()], "none staged"


async def test_webdataset_to_s3_killed_then_resumed_is_exactly_once(
    s3: Any, emu: ThreadedEmulator, tmp_path: Path
) -> None:
    store = tmp_path / "state"
    prefix = "wds-run/"
    url = f"s3://{BUCKET}/{prefix.rstrip('/')}"
    queries = write_queries(tmp_path / "q.txt", KEYWORDS)
    extra = ("--store", str(store), "--output-format", "webdataset", "--concurrency", "4")
    args = to(harvest_args(emu, queries, store, *extra), url)
    done = "SELECT COUNT(*) FROM photos WHERE status = 'done'"
    exited = await run_harvest(emu, args, stop_when=lambda: store_count(store, done) >= 40)
    assert exited.signalled
    assert exited.code == -signal.SIGKILL
    for name, body in objects(s3, prefix).items():  # what the kill left: whole tars only
        if name.endswith(".tar"):
            with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                assert all(tar.extractfile(m) is not None for m in tar.getmembers())
    # What a kill during a big tar's upload leaves (s3fs sends 100 MiB and more in parts):
    # an unfinished multipart upload at the tar's name, seen by no listing of objects.
    killed = begin_upload(s3, f"{prefix}{KEYWORDS[1]}/00001.tar")
    stranger = begin_upload(s3, f"{prefix}notes/big.bin")
    resumed = await run_harvest(emu, args)
    assert resumed.code == 0, resumed.err[-2000:]
    assert unfinished(s3, prefix) == {stranger}, "the killed upload aborted, the stranger's kept"
    assert killed != stranger
    named = "holds 1 unfinished uploads that are not this harvest's, left in place: notes/big.bin"
    assert named in resumed.err
    check_shards(store, objects(s3, prefix), KEYWORDS)
    expected = emu.truth(KEYWORDS[0]) | emu.truth(KEYWORDS[1])
    assert set(photos(store)) == expected, "the store holds exactly the emulator's truth"
    assert not [p for p in (store / "harvest.staging").rglob("*") if p.is_file()], "none staged"


def begin_upload(client: Any, key: str) -> str:
    """A multipart upload with one part sent and never completed, as a killed writer leaves."""
    upload: str = client.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    client.upload_part(Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=1, Body=b"x" * 1024)
    return upload


def unfinished(client: Any, prefix: str) -> set[str]:
    """The ids of the unfinished uploads under `prefix`."""
    listed = client.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix)
    return {str(u["UploadId"]) for u in listed.get("Uploads", [])}


def test_unfinished_uploads_are_listed_under_the_prefix_and_aborted(s3: Any) -> None:
    prefix = f"uploads-{uuid.uuid4().hex}"
    ids = {key: begin_upload(s3, f"{prefix}/{key}") for key in ("sky/00002.tar", "sky/00001.tar")}
    outside = begin_upload(s3, f"{prefix}-other/sky/00001.tar")  # a prefix that only starts so
    target = open_target(f"s3://{BUCKET}/{prefix}")
    found = target.unfinished_uploads()
    assert found == [
        Upload("sky/00001.tar", ids["sky/00001.tar"]),
        Upload("sky/00002.tar", ids["sky/00002.tar"]),
    ], "by relative name, sorted, nothing from outside the prefix"
    target.abort_upload(found[0])
    target.abort_upload(found[0])  # twice: an upload that is gone is not an error
    assert target.unfinished_uploads() == found[1:]
    assert outside in unfinished(s3, f"{prefix}-other/")


def test_a_harvest_is_not_split_between_targets_or_formats(
    emu: ThreadedEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLICKR_API_KEY", emu.api_key)
    queries = write_queries(tmp_path / "q.txt", SMALL)
    out, state = tmp_path / "out", tmp_path / "state"
    first = run_args(emu, queries, out, "--store", str(state), "--metadata-only")
    assert harvest(*first) == 0
    capsys.readouterr()
    again = {
        "another target": [*run_args(emu, queries, tmp_path / "b", "--store", str(state))],
        "another format": [*first, "--output-format", "webdataset"],
        "the store left out": run_args(emu, queries, out, "--metadata-only"),
    }
    expected = {
        "another target": "this store's files go to",
        "another format": "keep --output-format files",
        "the store left out": f"run with --store {state}",
    }
    for name, args in again.items():
        assert harvest(*args) == 2, name
        assert expected[name] in error_line(capsys.readouterr().err), name
    assert harvest(*first) == 0, "the same command still resumes"
