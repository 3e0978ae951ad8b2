"""Checks of WebDataset shards against the store (tests/test_storage_runs.py, tests/test_ray.py):
every done photo in exactly one tar with the store's bytes and record, the Parquet's successes the
tar's keys, the stats beside them, nothing pending, no temporary file, no partial tar."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import webdataset as wds

from tests.harness import store_rows


def photos(store_dir: Path) -> dict[str, tuple[str, str | None, str | None, str]]:
    rows = store_rows(store_dir, "SELECT id, status, path, sha256, record FROM photos")
    return {str(i): (status, path, sha, record) for i, status, path, sha, record in rows}


def check_shards(store: Path, shards: dict[str, bytes], keywords: tuple[str, ...]) -> None:
    """Tars, Parquet and stats agree with the store; every done photo once, nothing else."""
    rows = photos(store)
    assert all(status != "claimed" for status, *_ in rows.values()), "nothing pending"
    tars = {name: body for name, body in shards.items() if name.endswith(".tar")}
    assert tars, "some tar was written"
    assert not [n for n in shards if ".tmp-" in n or n.startswith(".")], "no temp file"
    seen: list[str] = []
    for name, body in tars.items():
        assert name.removesuffix(".tar") + ".parquet" in shards
        assert name.removesuffix(".tar") + "_stats.json" in shards
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:  # a partial tar would not open
            tar.getmembers()
        keys = check_one_tar(name, body, rows)
        table = pq.read_table(io.BytesIO(shards[name.removesuffix(".tar") + ".parquet"]))
        success = [r["key"] for r in table.to_pylist() if r["status"] == "success"]
        assert sorted(success) == sorted(keys)
        seen += keys
    done = {pid for pid, (status, *_rest) in rows.items() if status == "done"}
    assert len(seen) == len(set(seen)), "each photo is in one tar, once"
    assert set(seen) == done, "every done photo is in a tar, and every member is a done photo"


def check_one_tar(name: str, body: bytes, rows: dict[str, Any]) -> list[str]:
    """Read with the webdataset package: each key a done photo with the store's record."""
    with tempfile.TemporaryDirectory(prefix="wds-") as scratch:
        path = Path(scratch) / "shard.tar"
        path.write_bytes(body)
        samples = list(wds.WebDataset(str(path), shardshuffle=False))
    for sample in samples:
        status, stored_path, sha, record = rows[sample["__key__"]]
        assert status == "done"
        assert hashlib.sha256(sample["jpg"]).hexdigest() == sha, "the store's bytes"
        meta = json.loads(sample["json"])
        assert meta["record"] == json.loads(record), "the record is the store's"
        assert meta["photo_id"] == sample["__key__"]
        assert stored_path is not None
        assert name.removesuffix(".tar") == str(Path(stored_path).parent)
    return [s["__key__"] for s in samples]


def local_shards(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and (p.suffix in (".tar", ".parquet", ".json") or ".tmp-" in p.name)
    }
