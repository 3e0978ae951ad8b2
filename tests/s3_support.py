"""moto's S3 server on loopback for the object-storage tests (tests/test_storage_runs.py,
tests/test_ray.py): the server with the environment pointing every AWS client at it, and a
look at what a bucket holds through boto3, not through harvest's own client."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fsspec.spec import AbstractFileSystem

from tests.harness import store_rows

BUCKET = "harvest-test"


@contextmanager
def moto_s3() -> Iterator[Any]:
    """A moto S3 server on loopback, the environment pointing s3fs at it; yields a boto3 client.

    The variables are the ones a run on S3 reads (credentials, region, AWS_ENDPOINT_URL, which
    botocore reads for every client, s3fs's too); a `--ray` run must hand them to its tasks.
    """
    import boto3
    import s3fs
    from moto.server import ThreadedMotoServer

    # fsspec caches filesystems per class: an S3FileSystem of an earlier server (another
    # module's) would still point at that server's port.
    s3fs.S3FileSystem.clear_instance_cache()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": url,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    try:
        with pytest.MonkeyPatch.context() as mp:
            for name, value in env.items():
                mp.setenv(name, value)
            client = boto3.client("s3", endpoint_url=url)
            client.create_bucket(Bucket=BUCKET)
            yield client
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        AbstractFileSystem.clear_instance_cache()
        server.stop()


def objects(client: Any, prefix: str) -> dict[str, bytes]:
    """Every object under `prefix`, by name relative to it."""
    found: dict[str, bytes] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            body = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
            found[item["Key"].removeprefix(prefix)] = body
    return found


def put_object(client: Any, key: str, body: bytes) -> None:
    """Put an object as another process would have (a killed run, by hand)."""
    client.put_object(Bucket=BUCKET, Key=key, Body=body)


#: What a run writes beside the photos on a target that is not the store's directory.
EXTRAS = frozenset({"CREDITS.csv", "CREDITS.md", "README.md"})


def assert_objects_are_the_store(
    client: Any, prefix: str, store_dir: Path, *, others: frozenset[str] = EXTRAS
) -> dict[str, str]:
    """Objects = store: every done photo is one object under `prefix` with the store's bytes,
    every other object is one of `others`, each photo once, none claimed still, no orphan;
    returns {id: status}."""
    rows = store_rows(store_dir, "SELECT id, status, path, sha256 FROM photos")
    done = {path: sha for _id, status, path, sha in rows if status == "done"}
    stored = objects(client, prefix)
    photos = {n: hashlib.sha256(b).hexdigest() for n, b in stored.items() if n not in others}
    assert photos == done, "every object is a done photo with its bytes, and nothing else"
    assert set(stored) - set(photos) <= others
    ids = [name.rsplit("/", 1)[-1].split("_", 1)[0] for name in photos]
    assert len(ids) == len(set(ids)), "each photo is stored once"
    status = {str(pid): s for pid, s, _path, _sha in rows}
    assert "claimed" not in status.values(), "no photo left uncommitted"
    return status


def with_out(args: list[str], url: str) -> list[str]:
    """`args` with `--out URL` (the harness takes a Path, which would fold s3:// into s3:/)."""
    args = list(args)
    args[args.index("--out") + 1] = url
    return args


def jpeg_objects(client: Any, prefix: str) -> int:
    """How many photos are under `prefix` now (the first 1,000 keys)."""
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sum(1 for item in listed.get("Contents", []) if item["Key"].endswith(".jpg"))
