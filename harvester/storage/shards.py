"""WebDataset shards: one tar per output directory, its Parquet of records and its _stats.json.

    write_shard(target, "london/00001", members, dropped=...) -> ShardManifest
        london/00001.tar          {key}.jpg + {key}.json per stored photo (key = the photo id)
        london/00001.parquet      one row per photo of the directory, stored or not
        london/00001_stats.json   counts, duration, the reasons' histogram

Field names follow img2dataset's writer and logger where they exist (key, status,
error_message, width, height, original_width, original_height, sha256; count, successes,
failed_to_download, failed_to_resize, duration, start_time, end_time, status_dict), so
tools built for its shards read these. Each file is finalised atomically through the target,
the stats last: a shard with a `_stats.json` is complete. The content is a pure function of
the members (fixed member order and mtime), so a retried or resumed shard is the same bytes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tarfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO

import orjson

from harvester.storage.target import Target

log = logging.getLogger(__name__)
TAR_SUFFIX = ".tar"
PARQUET_SUFFIX = ".parquet"
STATS_SUFFIX = "_stats.json"
SUCCESS = "success"


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardMember:
    """One stored photo: its key (the photo id), its JPEG and its record (becomes {key}.json).

    `image` may be a function that reads the JPEG: the tar is then written one photo at a
    time, so a directory of 1,000 Originals is never all in memory at once.
    """

    key: str
    image: bytes | Callable[[], bytes]
    meta: Mapping[str, object]

    def data(self) -> bytes:
        """The JPEG's bytes (read now when `image` is a reader)."""
        return self.image if isinstance(self.image, bytes) else self.image()


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardDropped:
    """A photo of the directory that was not stored: a Parquet row and a count, no file."""

    key: str
    status: str  # the store's: "skipped" or "failed"
    reason: str
    meta: Mapping[str, object]


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardManifest:
    """What write_shard put where: the three names and the keys the tar holds."""

    dir_key: str
    tar: str
    parquet: str
    stats: str
    keys: tuple[str, ...]
    tar_bytes: int


def photo_meta(
    *,
    photo_id: str,
    keyword: str,
    keywords: Sequence[str],
    status: str,
    path: str | None,
    sha256: str | None,
    width: int | None,
    height: int | None,
    size_label: str | None,
    record_json: str | bytes,
) -> dict[str, object]:
    """A photo's {key}.json and Parquet row: its outcome and its record as the store keeps it.

    The one place this shape is made, so a shard written by the single-machine finaliser and
    one written by a worker with a batch in hand are the same.
    """
    return {
        "key": photo_id,
        "photo_id": photo_id,
        "keyword": keyword,
        "keywords": list(keywords),
        "status": status,
        "path": path,
        "sha256": sha256,
        "width": width,
        "height": height,
        "size_label": size_label,
        "record": orjson.loads(record_json),
    }


def shard_names(dir_key: str) -> tuple[str, str, str]:
    """The tar, Parquet and stats names of the directory `dir_key` ("london/00001")."""
    return dir_key + TAR_SUFFIX, dir_key + PARQUET_SUFFIX, dir_key + STATS_SUFFIX


def status_label(status: str, reason: str) -> str:
    """img2dataset's status for a photo not stored: failed_to_download, failed_to_resize, ..."""
    if status == "failed":
        return "failed_to_download" if reason.startswith("download") else "failed_to_resize"
    return status  # "skipped": a deliberate drop, which img2dataset has no name for


def write_shard(
    target: Target,
    dir_key: str,
    members: Sequence[ShardMember],
    *,
    dropped: Sequence[ShardDropped] = (),
    started_at: float | None = None,
    mtime: int = 0,
) -> ShardManifest:
    """Write the directory's tar, Parquet and stats through `target`, each all or nothing."""
    started = time.time() if started_at is None else started_at
    keys = [m.key for m in members]
    if len(keys) != len(set(keys)):
        raise ValueError(f"shard {dir_key}: a key appears twice")
    tar_name, parquet_name, stats_name = shard_names(dir_key)
    with target.writer(tar_name) as f:
        size = _write_tar(f, members, mtime)
    target.put(parquet_name, [_parquet(members, dropped)])
    stats = _stats(dir_key, members, dropped, started)
    target.put(stats_name, [orjson.dumps(stats, option=orjson.OPT_INDENT_2)])
    return ShardManifest(
        dir_key=dir_key,
        tar=tar_name,
        parquet=parquet_name,
        stats=stats_name,
        keys=tuple(keys),
        tar_bytes=size,
    )


def _write_tar(f: io.IOBase | object, members: Sequence[ShardMember], mtime: int) -> int:
    counter = _Counting(f)
    with tarfile.open(fileobj=counter, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for member in members:
            _add(tar, f"{member.key}.jpg", member.data(), mtime)
            _add(tar, f"{member.key}.json", orjson.dumps(member.meta), mtime)
    return counter.written


def _add(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), mtime, 0o644
    tar.addfile(info, io.BytesIO(data))


class _Counting:
    """A write-only file that counts what passes through (tarfile's stream mode needs write)."""

    def __init__(self, f: object) -> None:
        self._f = f
        self.written = 0

    def write(self, data: bytes) -> int:
        self._f.write(data)  # type: ignore[attr-defined]
        self.written += len(data)
        return len(data)


def _row(key: str, status: str, error: str | None, meta: Mapping[str, object]) -> dict[str, object]:
    row: dict[str, object] = {"key": key, "status": status, "error_message": error}
    for name, value in meta.items():
        if name not in row:
            row[name] = _flat(value)
    return row


def _flat(value: object) -> object:
    """Scalars as they are; lists and objects as JSON text (one Parquet type per column)."""
    if isinstance(value, dict | list | tuple):
        return orjson.dumps(value).decode()
    return value


def _parquet(members: Sequence[ShardMember], dropped: Sequence[ShardDropped]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [_row(m.key, SUCCESS, None, m.meta) for m in members]
    rows += [_row(d.key, status_label(d.status, d.reason), d.reason, d.meta) for d in dropped]
    names = list(dict.fromkeys(name for row in rows for name in row)) or ["key"]
    table = pa.Table.from_pylist([{n: row.get(n) for n in names} for row in rows])
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _stats(
    dir_key: str,
    members: Sequence[ShardMember],
    dropped: Sequence[ShardDropped],
    started: float,
) -> dict[str, object]:
    labels = Counter(status_label(d.status, d.reason) for d in dropped)
    ended = time.time()
    return {
        "shard": dir_key,
        "count": len(members) + len(dropped),
        "successes": len(members),
        "failed_to_download": labels["failed_to_download"],
        "failed_to_resize": labels["failed_to_resize"],
        "skipped": labels["skipped"],
        "duration": ended - started,
        "start_time": started,
        "end_time": ended,
        "status_dict": dict(Counter(_reason_key(d.reason) for d in dropped)),
    }


def _reason_key(reason: str) -> str:
    return reason.split(":", 1)[0]


def read_shard(target: Target, dir_key: str) -> dict[str, bytes]:
    """The images of an existing tar by key (empty when there is none): a rebuild keeps them."""
    tar_name = shard_names(dir_key)[0]
    try:
        data = target.read(tar_name)
    except FileNotFoundError:
        return {}
    images: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for info in tar:
            if info.isfile() and info.name.endswith(".jpg"):
                extracted = tar.extractfile(info)
                if extracted is not None:
                    images[info.name.removesuffix(".jpg")] = extracted.read()
    return images


@contextlib.contextmanager
def open_shard(target: Target, dir_key: str) -> Iterator[dict[str, Callable[[], bytes]]]:
    """The images of an existing tar by key, each a reader of its bytes (empty when there is
    no tar): a rebuild keeps them and holds one image at a time, never the tar.

    Only the headers are read up front. A tar cut short keeps the members that are whole,
    and one that is not a tar keeps none (their photos are missing, for the store to queue
    again); either is logged.
    """
    with contextlib.ExitStack() as stack:
        try:
            f: IO[bytes] | None = stack.enter_context(target.opened(shard_names(dir_key)[0]))
        except FileNotFoundError:
            f = None
        yield {} if f is None else _index(f, f"{target.url}/{dir_key}{TAR_SUFFIX}")


def _index(f: IO[bytes], where: str) -> dict[str, Callable[[], bytes]]:
    end = f.seek(0, os.SEEK_END)
    f.seek(0)
    spans: dict[str, tuple[int, int]] = {}
    try:
        with tarfile.open(fileobj=f, mode="r:") as tar:
            for info in tar:
                whole = info.offset_data + info.size <= end
                if info.isfile() and info.name.endswith(".jpg") and whole:
                    spans[info.name.removesuffix(".jpg")] = (info.offset_data, info.size)
    except tarfile.TarError as exc:
        log.warning("%s is damaged (%s): keeping its %d whole images", where, exc, len(spans))
    return {key: _span_reader(f, offset, size) for key, (offset, size) in spans.items()}


def _span_reader(f: IO[bytes], offset: int, size: int) -> Callable[[], bytes]:
    def read() -> bytes:
        f.seek(offset)
        return f.read(size)

    return read


def member_keys(names: Iterable[str]) -> list[str]:
    """The keys of a tar's member names, in order, each once."""
    return list(dict.fromkeys(name.split(".", 1)[0] for name in names))
