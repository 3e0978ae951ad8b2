"""The vector index beside a store: unit vectors by photo id, one index per model, append-only.

    OUT/harvest.vectors/<model sha256[:16]>/
      manifest.json              model, dim, dtype, preprocessing, output, counts (JSON)
      writer.lock                flock: one writer at a time (readers never lock)
      chunks/00000001-00000001/  ids.npy (int64, N), vectors.npy (float32, N×D), skipped.json
      chunks/00000002-00000002/  the next batch ...
      chunks/00000001-00000040/  a merge of 1..40: it covers, and so replaces, those chunks

A chunk is written whole or not at all: its files go into a temporary directory, each fsynced,
and the directory is renamed into place (then its parent is fsynced). A merged chunk is named
for the sequence numbers it covers; a chunk inside another's range is stale (a merge killed
before it deleted its parts) and is ignored, then deleted by the next writer. So a kill at any
instant loses at most the batch being written, and no photo is ever in the index twice.

float32 on disk and in memory, not float16: numpy has no float16 matrix product, and converting
1M × 512 float16 to float32 took 1.6-2.4 s on this machine kind where the float32 product over
the same vectors takes 0.15 s. float32 files are also memory-mapped as they are, so opening an
index reads nothing, and processes that search it share the page cache. The price is disk:
2 KiB per photo at 512 dimensions (2 GiB per million), 8 KiB at ResNet-50's 2048.

Search is brute force: the query against every vector, in slices of at most SLICE_BYTES, each
slice keeping its k best (argpartition), so scratch memory is one slice's scores.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from harvester.exceptions import ConfigError, StoreError

log = logging.getLogger(__name__)

VECTORS_DIR = "harvest.vectors"
MANIFEST = "manifest.json"
FORMAT_VERSION = 1
SMALL_CHUNK_BYTES = 64 << 20  # chunks below this are merged with their neighbours
MERGE_AT = 32  # consecutive small chunks that trigger a merge while writing
SLICE_BYTES = 128 << 20  # vectors multiplied at once by search
_CHUNK = re.compile(r"^(\d{8})-(\d{8})$")
_TMP_PREFIX = ".tmp-"

Ids = npt.NDArray[np.int64]
Vectors = npt.NDArray[np.float32]


def index_dir(out: Path, model_sha: str) -> Path:
    """Where the index of the model with this SHA-256 lives in the output directory `out`."""
    return out / VECTORS_DIR / model_sha[:16]


@dataclass(frozen=True, slots=True, kw_only=True)
class IndexSpec:
    """What an index is of: never mixed with another (a change of any field is a new index or
    an error, never vectors side by side that do not compare)."""

    model_sha256: str
    model_name: str  # the model's file name when the index was made (for people, not checked)
    dim: int
    output: str
    preprocessing: Mapping[str, Any]

    def differences(self, other: IndexSpec) -> list[str]:
        """The fields (other than the name) in which `other` differs from this spec."""
        fields = ("model_sha256", "dim", "output")
        changed = [f for f in fields if getattr(self, f) != getattr(other, f)]
        same_prep = dict(self.preprocessing) == dict(other.preprocessing)
        return changed if same_prep else [*changed, "preprocessing"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Chunk:
    """One chunk directory: the batch sequence numbers it covers, and its rows."""

    path: Path
    first: int
    last: int

    def covers(self, other: Chunk) -> bool:
        """Whether `other` lies inside this chunk's range (and so is replaced by it)."""
        return self != other and self.first <= other.first and other.last <= self.last


def live_chunks(chunks_dir: Path) -> tuple[list[Chunk], list[Chunk]]:
    """(live chunks in order, stale ones) among the finished chunk directories."""
    found = []
    for entry in chunks_dir.iterdir() if chunks_dir.is_dir() else ():
        m = _CHUNK.match(entry.name)
        if m and entry.is_dir():
            found.append(Chunk(path=entry, first=int(m[1]), last=int(m[2])))
    found.sort(key=lambda c: (c.first, -c.last))
    live: list[Chunk] = []
    stale: list[Chunk] = []
    for chunk in found:
        if live and live[-1].covers(chunk):
            stale.append(chunk)
        else:
            live.append(chunk)
    return live, stale


def read_ids(chunk: Chunk) -> Ids:
    """The photo ids of a chunk's vectors."""
    ids: Ids = np.load(chunk.path / "ids.npy")
    return ids


def read_vectors(chunk: Chunk, *, mmap: bool) -> Vectors:
    """A chunk's vectors, memory-mapped read-only or read into memory."""
    vectors: Vectors = np.load(chunk.path / "vectors.npy", mmap_mode="r" if mmap else None)
    return vectors


def read_skipped(chunk: Chunk) -> dict[int, str]:
    """Photo id → why its file could not be embedded, for the photos of this chunk's batches."""
    data = json.loads((chunk.path / "skipped.json").read_text(encoding="utf-8"))
    return {int(k): str(v) for k, v in data.items()}


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest of the index in `directory`, or None when there is none."""
    try:
        data: dict[str, Any] = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StoreError(f"{directory / MANIFEST}: unreadable: {exc}") from exc
    return data


def spec_of(manifest: Mapping[str, Any]) -> IndexSpec:
    """The spec recorded in a manifest."""
    return IndexSpec(
        model_sha256=str(manifest["model_sha256"]),
        model_name=str(manifest.get("model_name", "")),
        dim=int(manifest["dim"]),
        output=str(manifest["output"]),
        preprocessing=dict(manifest["preprocessing"]),
    )


# --- reading and searching ----------------------------------------------------------------------


class VectorIndex:
    """A read-only view of one index: its ids, memory-mapped vectors, and a brute-force search."""

    def __init__(
        self,
        directory: Path,
        spec: IndexSpec,
        parts: list[tuple[Ids, Vectors]],
        skipped: dict[int, str],
    ) -> None:
        self.directory = directory
        self.spec = spec
        self._parts = parts
        self.skipped = skipped  # photo id → reason, for the files that could not be embedded
        self.count = sum(len(ids) for ids, _ in parts)

    @classmethod
    def open(cls, out: Path, model_sha: str) -> VectorIndex | None:
        """The index of model `model_sha` in the output directory `out`; None if it has none.

        Safe beside a running `harvest index`: a chunk merged away while being listed makes
        the listing start again.
        """
        directory = index_dir(out, model_sha)
        manifest = read_manifest(directory)
        if manifest is None:
            return None
        spec = spec_of(manifest)
        if spec.model_sha256 != model_sha:
            return None  # another model whose SHA-256 starts alike (never seen, but not ours)
        for _attempt in range(5):
            try:
                return cls(directory, spec, *_load_parts(directory / "chunks"))
            except FileNotFoundError:
                time.sleep(0.05)
        raise StoreError(f"{directory}: chunks kept changing while being read")

    @property
    def ids(self) -> Ids:
        """Every indexed photo id, in index order."""
        return np.concatenate([ids for ids, _ in self._parts] or [np.zeros(0, np.int64)])

    def nbytes(self) -> int:
        """Bytes of vectors and ids (mapped from files, in the page cache when used)."""
        return sum(ids.nbytes + vectors.nbytes for ids, vectors in self._parts)

    def search(self, query: npt.NDArray[Any], k: int) -> list[tuple[int, float]]:
        """The `k` photos whose vectors are nearest `query` (any length: it is normalised), as
        (photo id, cosine), best first; ties by photo id."""
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        if q.shape[0] != self.spec.dim:
            raise ValueError(f"query has {q.shape[0]} dimensions, the index {self.spec.dim}")
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        k = min(k, self.count)
        if k <= 0:
            return []
        scores, ids = self._candidates(q, k)
        order = np.lexsort((ids, -scores))[:k]
        return [(int(ids[i]), float(scores[i])) for i in order]

    def _candidates(self, q: Vectors, k: int) -> tuple[Vectors, Ids]:
        """Each slice's k best, concatenated."""
        step = max(1, SLICE_BYTES // (4 * self.spec.dim))
        found_scores: list[Vectors] = []
        found_ids: list[Ids] = []
        for ids, vectors in self._parts:
            for start in range(0, len(ids), step):
                scores = vectors[start : start + step] @ q
                top = np.argpartition(scores, -k)[-k:] if len(scores) > k else slice(None)
                found_scores.append(scores[top])
                found_ids.append(ids[start : start + step][top])
        return np.concatenate(found_scores), np.concatenate(found_ids)

    def __repr__(self) -> str:
        return (
            f"<VectorIndex {self.directory.name} {self.count} vectors dim={self.spec.dim} "
            f"chunks={len(self._parts)} skipped={len(self.skipped)}>"
        )


def _load_parts(chunks_dir: Path) -> tuple[list[tuple[Ids, Vectors]], dict[int, str]]:
    live, _stale = live_chunks(chunks_dir)
    parts = [(read_ids(c), read_vectors(c, mmap=True)) for c in live]
    skipped: dict[int, str] = {}
    for chunk in live:
        skipped.update(read_skipped(chunk))
    return [(ids, vectors) for ids, vectors in parts if len(ids)], skipped


# --- writing -------------------------------------------------------------------------------------


class IndexWriter:
    """Appends batches to one index, each as an atomic chunk; merges small chunks as it goes.

    Holds the index's writer lock while open. `done` is every photo id the index holds or has
    recorded as skipped, so a rerun embeds only the others.
    """

    def __init__(self, directory: Path, spec: IndexSpec, lock: int) -> None:
        self.directory = directory
        self.spec = spec
        self._lock = lock
        self._chunks_dir = directory / "chunks"
        self._chunks, stale = live_chunks(self._chunks_dir)
        _remove_leftovers(self._chunks_dir, stale)
        self.done: set[int] = set()
        self.count = self.skipped = 0
        self._rows: dict[Path, int] = {}  # chunk path → vectors in it
        for chunk in self._chunks:
            ids, skipped = read_ids(chunk), read_skipped(chunk)
            self.done.update(ids.tolist())
            self.done.update(skipped)
            self.count += len(ids)
            self.skipped += len(skipped)
            self._rows[chunk.path] = len(ids)
        self._next = max((c.last for c in self._chunks), default=0) + 1

    @classmethod
    def open(cls, out: Path, spec: IndexSpec) -> Self:
        """Open (creating) the index of `spec.model_sha256` in `out`, locked for writing.

        ConfigError when another writer holds it or when it was made with another spec (same
        model, other preprocessing or output: its vectors would not compare with these).
        """
        directory = index_dir(out, spec.model_sha256)
        try:
            (directory / "chunks").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the index in {directory}: {exc}") from exc
        lock = _lock(directory)
        try:
            _check_spec(directory, spec)
            writer = cls(directory, spec, lock)
        except BaseException:
            os.close(lock)
            raise
        writer.write_manifest()
        return writer

    def append(self, ids: Ids, vectors: Vectors, skipped: Mapping[int, str]) -> None:
        """One batch: vectors of `ids` (row i is photo ids[i]), and the photos that failed."""
        if vectors.shape != (len(ids), self.spec.dim):
            raise ValueError(f"vectors {vectors.shape} for {len(ids)} ids of dim {self.spec.dim}")
        chunk = self._write_chunk(self._next, self._next, ids, vectors, dict(skipped))
        self._next += 1
        self._chunks.append(chunk)
        self.done.update(ids.tolist())
        self.done.update(skipped)
        self.count += len(ids)
        self.skipped += len(skipped)
        self.merge_small(at_least=MERGE_AT)
        self.write_manifest()

    def merge_small(self, *, at_least: int = 2) -> int:
        """Merge each run of `at_least` or more consecutive small chunks; returns merges done."""
        merged = 0
        for run in self._small_runs(at_least):
            ids = np.concatenate([read_ids(c) for c in run])
            vectors = np.concatenate([read_vectors(c, mmap=False) for c in run])
            skipped: dict[int, str] = {}
            for chunk in run:
                skipped.update(read_skipped(chunk))
            whole = self._write_chunk(run[0].first, run[-1].last, ids, vectors, skipped)
            at = self._chunks.index(run[0])
            self._chunks[at : at + len(run)] = [whole]
            _remove_leftovers(self._chunks_dir, run)
            for chunk in run:
                self._rows.pop(chunk.path, None)
            merged += 1
        return merged

    def _small_runs(self, at_least: int) -> list[list[Chunk]]:
        limit = max(1, SMALL_CHUNK_BYTES // (4 * self.spec.dim))
        runs: list[list[Chunk]] = [[]]
        for chunk in self._chunks:
            if self._rows[chunk.path] < limit:
                runs[-1].append(chunk)
            elif runs[-1]:
                runs.append([])
        return [run for run in runs if len(run) >= at_least]

    def _write_chunk(
        self, first: int, last: int, ids: Ids, vectors: Vectors, skipped: dict[int, str]
    ) -> Chunk:
        name = f"{first:08d}-{last:08d}"
        tmp = self._chunks_dir / f"{_TMP_PREFIX}{name}-{os.getpid()}"
        tmp.mkdir()
        _write_npy(tmp / "ids.npy", np.ascontiguousarray(ids, dtype=np.int64))
        _write_npy(tmp / "vectors.npy", np.ascontiguousarray(vectors, dtype=np.float32))
        text = json.dumps({str(k): v for k, v in sorted(skipped.items())}, indent=0)
        _write_bytes(tmp / "skipped.json", text.encode())
        _fsync_dir(tmp)
        tmp.rename(self._chunks_dir / name)
        _fsync_dir(self._chunks_dir)
        self._rows[self._chunks_dir / name] = len(ids)
        return Chunk(path=self._chunks_dir / name, first=first, last=last)

    def write_manifest(self) -> None:
        """The manifest anew (atomically): the spec, and the counts as of now."""
        data = {
            "format": FORMAT_VERSION,
            "model_sha256": self.spec.model_sha256,
            "model_name": self.spec.model_name,
            "dim": self.spec.dim,
            "dtype": "float32",
            "output": self.spec.output,
            "preprocessing": dict(self.spec.preprocessing),
            "count": self.count,
            "skipped": self.skipped,
            "chunks": len(self._chunks),
        }
        tmp = self.directory / f"{_TMP_PREFIX}{MANIFEST}-{os.getpid()}"
        _write_bytes(tmp, json.dumps(data, indent=2).encode())
        tmp.replace(self.directory / MANIFEST)
        _fsync_dir(self.directory)

    def close(self) -> None:
        """Release the writer lock (every appended batch is already durable)."""
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<IndexWriter {self.directory.name} {self.count} vectors skipped={self.skipped} "
            f"chunks={len(self._chunks)} next={self._next}>"
        )


def _check_spec(directory: Path, spec: IndexSpec) -> None:
    manifest = read_manifest(directory)
    if manifest is None:
        return
    changed = spec_of(manifest).differences(spec)
    if changed:
        raise ConfigError(
            f"the index in {directory} was made with another {', '.join(changed)} "
            f"({json.dumps(manifest.get('preprocessing'))}): its vectors would not compare with "
            "these; run with the options it was made with, or delete that directory"
        )


def _lock(directory: Path) -> int:
    fd = os.open(directory / "writer.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(f"another `harvest index` is writing {directory}") from None
    return fd


def _remove_leftovers(chunks_dir: Path, stale: list[Chunk]) -> None:
    """Delete stale chunks and the temporary directories a killed writer left."""
    leftovers = [c.path for c in stale]
    leftovers += [p for p in chunks_dir.iterdir() if p.name.startswith(_TMP_PREFIX)]
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
    for path in chunks_dir.parent.glob(f"{_TMP_PREFIX}{MANIFEST}-*"):
        path.unlink(missing_ok=True)


def _write_npy(path: Path, array: npt.NDArray[Any]) -> None:
    with path.open("wb") as f:
        np.save(f, array, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def _write_bytes(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
