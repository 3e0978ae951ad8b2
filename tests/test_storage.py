"""The storage room on its own: targets (local, memory://), the probe, WebDataset shards.

The shards are read back by the `webdataset` package and by pyarrow, not by our own reader.
The harvests that write to S3 (moto) and to shards are in test_storage_runs.py.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds

from harvester import targets
from harvester.cli import build_run_config
from harvester.cluster_engine import storage_env
from harvester.cluster_task import NODE_SPOOL, node_spool
from harvester.config import OutputFormat, RunConfig
from harvester.exceptions import ConfigError, HarvestError, WriteError
from harvester.storage.probe import check_shared, in_subprocess, write_probe
from harvester.storage.shards import (
    ShardDropped,
    ShardMember,
    read_shard,
    shard_names,
    status_label,
    write_shard,
)
from harvester.storage.target import (
    FsspecTarget,
    LocalTarget,
    Upload,
    is_remote,
    local_path,
    open_target,
)
from harvester.store.shards import DirPhoto
from harvester.targets import (
    STAGING_DIR,
    DirPlan,
    Finaliser,
    PlannedMember,
    engine_files,
    is_complete,
    pack_dir,
    photos_on_target,
    prepare_output,
    resolve_out,
    sweep_uploads,
)


@pytest.mark.parametrize(
    ("spec", "remote"),
    [
        ("out", False),
        ("/data/out", False),
        ("file:///data/out", False),
        ("s3://bucket/prefix", True),
        ("gs://bucket", True),
        ("memory://x", True),
        ("weird:name", False),  # a local directory with a colon in its name
    ],
)
def test_which_out_is_remote(spec: str, remote: bool) -> None:
    assert is_remote(spec) is remote


def test_file_urls_are_local_paths() -> None:
    assert local_path("file:///data/out") == Path("/data/out")
    assert isinstance(open_target("file:///tmp/x"), LocalTarget)
    assert isinstance(open_target("memory://x"), FsspecTarget)


def test_a_scheme_with_no_filesystem_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="no filesystem for nosuchfs://"):
        open_target("nosuchfs://bucket/x")


def test_a_remote_out_needs_a_store(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--store DIR"):
        resolve_out("s3://bucket/x", None)
    assert resolve_out("s3://bucket/x", tmp_path) == (tmp_path, "s3://bucket/x")
    assert resolve_out("out", None) == (Path("out"), None)


def memory_url() -> str:
    return f"memory://t-{uuid.uuid4().hex}"


@pytest.mark.parametrize("kind", ["local", "memory"])
def test_a_write_that_fails_midway_leaves_nothing(tmp_path: Path, kind: str) -> None:
    target = LocalTarget(tmp_path, fsync=False) if kind == "local" else open_target(memory_url())
    target.put("a/b.bin", [b"x", memoryview(b"yz")])
    assert target.read("a/b.bin") == b"xyz"

    def killed_midway() -> None:
        with target.writer("a/c.tar") as f:
            f.write(b"half")
            raise RuntimeError("killed midway")

    with pytest.raises(RuntimeError):
        killed_midway()
    assert not target.exists("a/c.tar")
    if kind == "local":
        assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b.bin"], "no temp file"
    target.remove("a/b.bin")
    target.remove("a/b.bin")  # twice: removing what is gone is fine
    assert not target.exists("a/b.bin")


@pytest.mark.parametrize("kind", ["local", "memory"])
def test_a_target_lists_its_files_by_relative_name(tmp_path: Path, kind: str) -> None:
    target = LocalTarget(tmp_path, fsync=False) if kind == "local" else open_target(memory_url())
    assert target.find() == []
    assert target.find("sky/00001") == [], "a directory that is not there: nothing"
    for name in ("sky/00001/2_b.jpg", "sky/00001/1_a.jpg", "sky/00002/3_c.jpg", "CREDITS.csv"):
        target.put(name, [b"x"])
    assert target.find("sky/00001") == ["sky/00001/1_a.jpg", "sky/00001/2_b.jpg"]
    assert target.find("sky/00001/") == target.find("sky/00001")
    everything = ["CREDITS.csv", "sky/00001/1_a.jpg", "sky/00001/2_b.jpg", "sky/00002/3_c.jpg"]
    assert target.find() == everything
    target.remove("sky/00001/1_a.jpg")
    assert target.find("sky") == ["sky/00001/2_b.jpg", "sky/00002/3_c.jpg"], "never a stale list"


class PagedS3:
    """An S3FileSystem's `call_s3` for ListMultipartUploads in pages of two; records aborts."""

    def __init__(self, keys: list[str]) -> None:
        self.uploads = [{"Key": k, "UploadId": f"u{i}"} for i, k in enumerate(sorted(keys))]
        self.calls: list[dict[str, str]] = []
        self.aborted: list[tuple[str, str, str]] = []

    def call_s3(self, method: str, **kw: str) -> dict[str, object]:
        self.calls.append(kw)
        if method == "abort_multipart_upload":
            self.aborted.append((kw["Bucket"], kw["Key"], kw["UploadId"]))
            return {}
        rest = [u for u in self.uploads if u["Key"].startswith(kw["Prefix"])]
        if "KeyMarker" in kw:
            marker = (kw["KeyMarker"], kw["UploadIdMarker"])
            rest = [u for u in rest if (u["Key"], u["UploadId"]) > marker]
        page, more = rest[:2], len(rest) > 2
        last = page[-1] if page else {"Key": "", "UploadId": ""}
        return {
            "Uploads": page,
            "IsTruncated": more,
            "NextKeyMarker": last["Key"],
            "NextUploadIdMarker": last["UploadId"],
        }


def test_unfinished_uploads_follow_every_page_of_the_listing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = [f"pre/sky/{n:05d}.tar" for n in range(1, 6)]
    fs = PagedS3([*keys, "prelude/x.tar"])
    target = open_target(memory_url())
    monkeypatch.setattr(target, "_fs", fs)
    monkeypatch.setattr(target, "_root", "bucket/pre")
    found = target.unfinished_uploads()
    assert [u.name for u in found] == [k.removeprefix("pre/") for k in keys], "all five pages"
    assert len(fs.calls) == 3, "pages of two"
    assert all(c["Prefix"] == "pre/" for c in fs.calls)
    target.abort_upload(found[2])
    assert fs.aborted == [("bucket", "pre/sky/00003.tar", found[2].upload_id)]
    assert LocalTarget(Path("unused")).unfinished_uploads() == []
    assert open_target(memory_url()).unfinished_uploads() == [], "no multipart on memory://"


class RefusingUploads(LocalTarget):
    """A target whose store refuses to list or abort uploads (no permission for it)."""

    def __init__(self, root: Path, uploads: list[Upload], *, refuse: str) -> None:
        super().__init__(root, fsync=False)
        self.uploads, self.refuse, self.aborted = uploads, refuse, list[Upload]()

    def unfinished_uploads(self) -> list[Upload]:
        if self.refuse == "list":
            raise WriteError("cannot list the unfinished uploads: AccessDenied")
        return self.uploads

    def abort_upload(self, upload: Upload) -> None:
        if self.refuse == "abort":
            raise WriteError("cannot abort the upload: AccessDenied")
        self.aborted.append(upload)


@pytest.mark.parametrize("refuse", ["list", "abort", "nothing"])
def test_the_upload_sweep_never_fails_a_run(
    tmp_path: Path, refuse: str, caplog: pytest.LogCaptureFixture
) -> None:
    ours, stranger = Upload("sky/00001.tar", "u1"), Upload("notes/big.bin", "u2")
    target = RefusingUploads(tmp_path, [stranger, ours], refuse=refuse)
    aborted = sweep_uploads(target, {"sky"}, files=False)
    assert aborted == (1 if refuse == "nothing" else 0)
    assert target.aborted == ([ours] if refuse == "nothing" else [])
    if refuse != "nothing":
        assert "unfinished uploads not swept: cannot" in caplog.text
    else:
        assert "holds 1 unfinished uploads that are not this harvest's" in caplog.text


def test_ray_tasks_get_only_the_object_store_settings(tmp_path: Path) -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "id",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "FSSPEC_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AZURE_STORAGE_ACCOUNT_NAME": "acct",
        "FLICKR_API_KEY": "never sent",
        "HOME": "/root",
        "PATH": "/bin",
    }
    remote = build_run_config(tmp_path / "q.txt", tmp_path, {"output.target": "s3://b/x"})
    assert storage_env(remote, env) == {
        k: v for k, v in env.items() if k.startswith(("AWS_", "FSSPEC_", "AZURE_STORAGE_"))
    }
    local = build_run_config(tmp_path / "q.txt", tmp_path, {"output.target": str(tmp_path)})
    assert storage_env(local, env) == {}, "a local or shared --out: nothing to send"
    assert storage_env(build_run_config(tmp_path / "q.txt", tmp_path, {}), env) == {}


# --- the probe -----------------------------------------------------------------------------------


def test_the_probe_passes_on_a_directory_the_child_shares(tmp_path: Path) -> None:
    check_shared(str(tmp_path), in_subprocess)
    assert list(tmp_path.iterdir()) == [], "the probe file is removed"


def test_the_probe_fails_clearly_where_the_child_sees_another_store() -> None:
    # memory:// is one filesystem per process: the child's file is not the driver's.
    with pytest.raises(ConfigError, match=r"is not shared: the driver does not see the file"):
        check_shared(memory_url(), in_subprocess, where="a child process")


def test_the_probe_fails_clearly_when_a_node_mounts_something_else(tmp_path: Path) -> None:
    elsewhere = tmp_path / "node-b"

    def other_mount(_out: str, name: str, token: bytes) -> None:
        write_probe(str(elsewhere), name, token)  # the same path name, another filesystem

    with pytest.raises(ConfigError, match="use a filesystem every node mounts"):
        check_shared(str(tmp_path / "out"), other_mount)


def test_a_probe_writer_that_fails_is_one_clear_error(tmp_path: Path) -> None:
    def broken(_out: str, _name: str, _token: bytes) -> None:
        raise OSError("no route to host")

    with pytest.raises(ConfigError, match="could not write a probe file: no route to host"):
        check_shared(str(tmp_path), broken, where="node 10.0.0.2")


# --- shards --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason", "label"),
    [
        ("failed", "download: HTTP 404", "failed_to_download"),
        ("failed", "image: cannot decode", "failed_to_resize"),
        ("failed", "unsafe record: bad secret", "failed_to_resize"),
        ("skipped", "too small: 320x240", "skipped"),
    ],
)
def test_status_labels_follow_img2dataset(status: str, reason: str, label: str) -> None:
    assert status_label(status, reason) == label


def jpeg(seed: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 8), (seed % 256, 40, 90)).save(buf, "JPEG")
    return buf.getvalue()


def members(ids: range) -> list[ShardMember]:
    return [
        ShardMember(
            key=str(i),
            image=jpeg(i),
            meta={"photo_id": str(i), "record": {"id": str(i), "tags": ["a", "b"]}, "width": 16},
        )
        for i in ids
    ]


def test_a_shard_reads_back_with_webdataset_and_pyarrow(tmp_path: Path) -> None:
    target = LocalTarget(tmp_path, fsync=False)
    dropped = [ShardDropped(key="99", status="failed", reason="download: 404", meta={})]
    manifest = write_shard(target, "sky/00001", members(range(10, 15)), dropped=dropped)
    assert manifest.keys == ("10", "11", "12", "13", "14")
    tar, parquet, stats = shard_names("sky/00001")
    assert (manifest.tar, manifest.parquet, manifest.stats) == (tar, parquet, stats)
    samples = list(wds.WebDataset(str(tmp_path / tar), shardshuffle=False))
    assert [s["__key__"] for s in samples] == ["10", "11", "12", "13", "14"]
    for sample in samples:
        meta = json.loads(sample["json"])
        assert meta["photo_id"] == sample["__key__"]
        assert meta["record"] == {"id": sample["__key__"], "tags": ["a", "b"]}
        assert sample["jpg"] == jpeg(int(sample["__key__"]))
    rows = pq.read_table(tmp_path / parquet).to_pylist()
    assert [(r["key"], r["status"], r["error_message"]) for r in rows][-2:] == [
        ("14", "success", None),
        ("99", "failed_to_download", "download: 404"),
    ]
    assert json.loads(rows[0]["record"]) == {"id": "10", "tags": ["a", "b"]}
    counts = json.loads((tmp_path / stats).read_text())
    assert {k: counts[k] for k in ("count", "successes", "failed_to_download")} == {
        "count": 6,
        "successes": 5,
        "failed_to_download": 1,
    }
    assert counts["status_dict"] == {"download": 1}


def test_a_shard_is_the_same_bytes_when_written_again(tmp_path: Path) -> None:
    target = open_target(memory_url())
    write_shard(target, "a/00001", members(range(3)))
    first = target.read("a/00001.tar")
    write_shard(target, "a/00001", members(range(3)))
    assert target.read("a/00001.tar") == first
    assert read_shard(target, "a/00001") == {str(i): jpeg(i) for i in range(3)}
    assert read_shard(target, "a/00002") == {}
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        assert tar.getnames() == ["0.jpg", "0.json", "1.jpg", "1.json", "2.jpg", "2.json"]


def test_a_shard_refuses_a_key_twice(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="twice"):
        write_shard(LocalTarget(tmp_path), "a/00001", [*members(range(2)), *members(range(1))])
    assert not (tmp_path / "a" / "00001.tar").exists()


def photo(seq: int, status: str) -> DirPhoto:
    return DirPhoto(
        id=seq + 1,
        seq=seq,
        keyword="k",
        keywords=("k",),
        status=status,
        reason=None,
        path=None,
        sha256=None,
        width=None,
        height=None,
        size_label=None,
        record="{}",
    )


@pytest.mark.parametrize(
    ("statuses", "searched", "complete"),
    [
        (["done"] * 1000, False, True),  # all 1,000 decided
        (["done"] * 999 + ["skipped"], False, True),
        (["done"] * 999 + ["claimed"], True, False),  # one still pending
        (["done"] * 400, False, False),  # more may come while the keyword is searched
        (["done"] * 400, True, True),  # its search is over
        (["done", "failed", "skipped"], True, True),
        ([], True, True),
    ],
)
def test_a_directory_is_complete_when_it_can_get_no_more_photos(
    statuses: list[str], searched: bool, complete: bool
) -> None:
    photos = [photo(i, s) for i, s in enumerate(statuses)]
    assert is_complete(photos, searched=searched) is complete


def plan(ids: range, *, dropped: tuple[ShardDropped, ...] = ()) -> DirPlan:
    """A directory `k/00001` whose done photos are `ids`, staged at their files-layout names."""
    return DirPlan(
        key="k/00001",
        members=tuple(
            PlannedMember(key=str(i), path=f"k/00001/{i}_s.jpg", meta={"photo_id": str(i)})
            for i in ids
        ),
        dropped=dropped,
    )


class CountingReads(FsspecTarget):
    """A memory target that records what is read from it."""

    def __init__(self, url: str, *, spool_dir: Path | None = None) -> None:
        super().__init__(url, spool_dir=spool_dir)
        self.reads: list[str] = []

    def read(self, name: str) -> bytes:
        self.reads.append(name)
        return super().read(name)


def test_a_directory_staged_on_the_target_is_packed_beside_it_and_its_photos_removed() -> None:
    """`--ray` webdataset: the photos are staged on the output target itself, in the files
    layout; the shard is written beside them, read one photo at a time, then they go."""
    target = CountingReads(memory_url())
    for i in range(3):
        target.put(f"k/00001/{i}_s.jpg", [jpeg(i)])
    target.put("k/00002/9_s.jpg", [jpeg(9)])  # another directory's: untouched
    gone = ShardDropped(key="7", status="failed", reason="download: 404", meta={"photo_id": "7"})
    packed = pack_dir(plan(range(3), dropped=(gone,)), target, target)
    assert packed.missing == ()
    assert packed.manifest is not None
    assert packed.manifest.keys == ("0", "1", "2")
    assert read_shard(target, "k/00001") == {str(i): jpeg(i) for i in range(3)}
    assert target.find() == [
        "k/00001.parquet",
        "k/00001.tar",
        "k/00001_stats.json",
        "k/00002/9_s.jpg",
    ]
    staged_reads = [name for name in target.reads if name.endswith(".jpg")]
    assert staged_reads == [f"k/00001/{i}_s.jpg" for i in range(3)], "each staged photo read once"
    rows = pq.read_table(io.BytesIO(target.read("k/00001.parquet"))).to_pylist()
    assert [(r["key"], r["status"]) for r in rows] == [
        ("0", "success"),
        ("1", "success"),
        ("2", "success"),
        ("7", "failed_to_download"),
    ]


def test_a_rebuild_takes_the_photos_its_tar_holds_and_a_lost_one_writes_nothing() -> None:
    target = open_target(memory_url())
    write_shard(target, "k/00001", members(range(2)))  # an earlier run's tar: photos 0 and 1
    target.put("k/00001/2_s.jpg", [jpeg(2)])  # a photo redone since, staged
    packed = pack_dir(plan(range(3)), target, target)
    assert packed.manifest is not None
    assert packed.manifest.keys == ("0", "1", "2")
    assert read_shard(target, "k/00001") == {str(i): jpeg(i) for i in range(3)}
    assert not target.exists("k/00001/2_s.jpg")
    tar_before = target.read("k/00001.tar")
    target.put("k/00001/3_s.jpg", [jpeg(3)])
    lost = pack_dir(plan(range(5)), target, target)  # 4 is neither staged nor in the tar
    assert (lost.manifest, lost.missing) == (None, (4,))
    assert target.read("k/00001.tar") == tar_before, "nothing written"
    assert target.exists("k/00001/3_s.jpg"), "nothing staged dropped"


def test_a_rebuild_holds_one_old_image_at_a_time_not_the_tar(tmp_path: Path) -> None:
    """A directory of Originals is 1,000 x several MB: its rebuild must not read the old tar
    (nor every image in it) into memory at once."""
    import tracemalloc

    size, count = 2 * 2**20, 12
    target = LocalTarget(tmp_path, fsync=False)
    big = [
        ShardMember(key=str(i), image=os.urandom(size), meta={"photo_id": str(i)})
        for i in range(count)
    ]
    write_shard(target, "k/00001", big)
    expected = {m.key: m.data() for m in big}
    del big
    target.put(f"k/00001/{count}_s.jpg", [jpeg(count)])
    tracemalloc.start()
    try:
        packed = pack_dir(plan(range(count + 1)), target, target)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert packed.manifest is not None
    assert packed.missing == ()
    assert peak < 3 * size, f"{peak / 2**20:.1f} MiB held for a {count * size / 2**20:.0f} MiB tar"
    assert read_shard(target, "k/00001") == expected | {str(count): jpeg(count)}


def test_a_rebuild_on_an_object_store_fetches_the_old_tar_to_a_spool_once(tmp_path: Path) -> None:
    target = CountingReads(memory_url(), spool_dir=tmp_path)  # where the fetched tar goes
    write_shard(target, "k/00001", members(range(2)))
    target.put("k/00001/2_s.jpg", [jpeg(2)])
    packed = pack_dir(plan(range(3)), target, target)
    assert packed.manifest is not None
    assert packed.manifest.keys == ("0", "1", "2")
    assert "k/00001.tar" not in target.reads, "fetched to a spool file, not into memory"
    assert list(tmp_path.iterdir()) == [], "the spool is gone"
    assert read_shard(target, "k/00001") == {str(i): jpeg(i) for i in range(3)}


def test_a_damaged_old_tar_keeps_its_whole_images_and_requeues_the_rest(tmp_path: Path) -> None:
    target = LocalTarget(tmp_path, fsync=False)
    write_shard(target, "k/00001", members(range(3)))
    data = target.read("k/00001.tar")
    cut = data.index(jpeg(2)) + 10  # inside the third image
    target.put("k/00001.tar", [data[:cut]])
    lost = pack_dir(plan(range(3)), target, target)
    assert (lost.manifest, lost.missing) == (None, (2,)), "the cut image is queued again"
    target.put("k/00001/2_s.jpg", [jpeg(2)])  # redone, staged
    packed = pack_dir(plan(range(3)), target, target)
    assert packed.manifest is not None
    assert read_shard(target, "k/00001") == {str(i): jpeg(i) for i in range(3)}
    target.put("k/00001.tar", [b"not a tar at all" * 64])
    assert pack_dir(plan(range(3)), target, target).missing == (0, 1, 2)


class VanishingReads(FsspecTarget):
    """A memory target on which one listed file is gone by the time it is read."""

    def __init__(self, url: str, gone: str) -> None:
        super().__init__(url)
        self.gone = gone

    def read(self, name: str) -> bytes:
        if name == self.gone:
            super().remove(name)  # removed by hand between the listing and the tar's read
        return super().read(name)


def test_a_staged_photo_gone_while_its_tar_is_written_is_missing_not_an_error() -> None:
    target = VanishingReads(memory_url(), gone="k/00001/1_s.jpg")
    for i in range(3):
        target.put(f"k/00001/{i}_s.jpg", [jpeg(i)])
    packed = pack_dir(plan(range(3)), target, target)
    assert (packed.manifest, packed.missing) == (None, (1,)), "redone, not a crash"
    assert target.find() == ["k/00001/0_s.jpg", "k/00001/2_s.jpg"], "no tar, nothing dropped"


def test_the_finaliser_raises_only_when_its_last_pass_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    passes: list[int | HarvestError] = [WriteError("a hiccup"), 2, WriteError("still down")]

    def finalise_ready(*_args: object, **_kwargs: object) -> int:
        outcome = passes.pop(0)
        if isinstance(outcome, HarvestError):
            raise outcome
        return outcome

    monkeypatch.setattr(targets, "finalise_ready", finalise_ready)
    cfg = build_run_config(
        tmp_path / "q.txt", tmp_path / "out", {"output.format": OutputFormat.WEBDATASET}
    )
    finaliser = Finaliser(cfg, ["k"], frozenset)
    finaliser._pass(frozenset())  # a pass during the run fails: logged, the run goes on
    assert finaliser.error is not None
    finaliser.finish()  # the last pass gets past it: no error
    assert repr(finaliser) == "<Finaliser built=2 busy=False error=None>"
    with pytest.raises(WriteError, match="still down"):
        finaliser.finish()


def test_a_local_staging_directory_is_removed_once_packed(tmp_path: Path) -> None:
    staging, out = LocalTarget(tmp_path / "staging"), LocalTarget(tmp_path / "out")
    staging.put("k/00001/0_s.jpg", [jpeg(0)])
    staging.put("k/00001/.0_s.jpg.tmp-1", [b"half"])  # a killed write's: not a member
    packed = pack_dir(plan(range(1)), out, staging)
    assert packed.manifest is not None
    assert packed.manifest.keys == ("0",)
    assert not (tmp_path / "staging" / "k" / "00001").exists()
    assert out.find() == ["k/00001.parquet", "k/00001.tar", "k/00001_stats.json"]


@pytest.mark.parametrize(
    ("ray", "target", "staged_at"),
    [
        (False, None, "staging"),  # one machine: beside the store
        (False, "memory://wds", "staging"),
        (True, None, "out"),  # --ray: on --out itself, which every node writes to
        (True, "memory://wds", "memory://wds"),
    ],
)
def test_webdataset_photos_are_staged_where_the_image_half_runs(
    tmp_path: Path, ray: bool, target: str | None, staged_at: str
) -> None:
    settings: dict[str, object] = {"output.format": OutputFormat.WEBDATASET}
    if ray:
        settings["cluster.address"] = "auto"
    if target is not None:
        settings["output.target"] = target
    cfg = build_run_config(tmp_path / "q.txt", tmp_path / "out", settings)
    files = engine_files(cfg)
    assert files is not None
    out = tmp_path / "out"
    expected = {"staging": str(out / STAGING_DIR), "out": str(out)}
    assert files.url == expected.get(staged_at, staged_at)
    assert photos_on_target(cfg) is ray, "the start-up sweep looks at staged photos on --out"


@pytest.mark.parametrize("first_on_ray", [False, True])
def test_a_webdataset_harvest_switches_ray_only_once_nothing_waits_for_a_tar(
    tmp_path: Path, first_on_ray: bool
) -> None:
    out = tmp_path / "out"

    def cfg(ray: bool) -> RunConfig:
        settings: dict[str, object] = {"output.format": OutputFormat.WEBDATASET}
        if ray:
            settings["cluster.address"] = "auto"
        return build_run_config(tmp_path / "q.txt", out, settings)

    first, second = cfg(first_on_ray), cfg(not first_on_ray)
    prepare_output(first)
    staged = engine_files(first)
    assert staged is not None
    staged.put("k/00001/7_s.jpg", [jpeg(7)])  # done, waiting for its tar: a killed run's
    switch = "with" if first_on_ray else "without"
    with pytest.raises(
        ConfigError, match=rf"^1 photos .* wait for their tar .*: run it {switch} --ray"
    ):
        prepare_output(second)
    prepare_output(first)  # the same mode again: fine
    staged.remove("k/00001/7_s.jpg")  # packed
    prepare_output(second)
    moved = engine_files(second)
    assert moved is not None
    moved.put("k/00001/8_s.jpg", [jpeg(8)])
    with pytest.raises(ConfigError, match="wait for their tar"):  # the switch was recorded
        prepare_output(first)


def test_a_pack_task_clears_the_spools_its_dead_predecessors_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    spool = tmp_path / NODE_SPOOL
    spool.mkdir()
    dead = spool / f".spool-a1b2.tmp-{2**31 - 1}"  # no such pid: a worker Ray lost mid-upload
    live = spool / f".spool-c3d4.tmp-{os.getppid()}"  # another task's, uploading now
    for path in (dead, live):
        path.write_bytes(b"part of a tar")
    assert node_spool() == spool
    assert (dead.exists(), live.exists()) == (False, True)
