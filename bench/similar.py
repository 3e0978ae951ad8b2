"""Search-by-image benchmark: `harvest similar`'s recall@1 per kind of copy, and its query time
beside a million photos.

Run: python -m bench.similar [--work DIR] [--scale 1000000] [--queries 80]
     (prints both tables; bench/results/similar.json)

The labelled set is the duplicates benchmark's (bench/dupes_truth.py: every source in 26 copies of
9 kinds, plus hard negatives), with two kinds more made here from every source: "at an angle"
(a print photographed from the side: a perspective warp of the whole picture onto a grey table,
corners moved 2-15 % inwards) and "off a screen" (a milder warp in a dark bezel, blurred, mid-
tones lifted, a blue cast, scan lines, 3/4 size, JPEG 75).

The harvest searched is the set's sources and hard negatives: their fingerprints as `harvest
dupes` computes them from a file (`file_signal_row`) and their keypoint signatures as `harvest
dupes --crops` stores them (`file_signature`). Every copy is a query; recall@1 is the share whose
first hit is its source, "kind right" the share of those whose kind is the expected one (same
picture for identical, recompressed, resized, rotated and flipped copies; same picture or
transformed copy for tinted and darkened ones; transformed copy for crops and the two new kinds).

Scale: the same harvest beside SCALE synthetic photos — clustered 256-bit hashes made as
bench/dupes_scale.py makes them (for ph256 and, from another seed, c80), and 64 keypoint
descriptors each drawn byte by byte from the real signatures' byte distributions (so the vote
index's buckets fill as real ORB bytes fill them; correlations between bytes are not kept). Each
synthetic photo's file is one of the hard negatives, so verifying it costs a real decode and ORB.
A sample of `--queries` copies (every kind) is timed one by one with the feature cache emptied
before each: p50 and p95 wall seconds of `SimilarIndex.search`, the index's build time and the
process's peak RSS.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import resource
import sqlite3
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFilter

from bench import common
from bench.dupes import _signal_table
from bench.dupes_scale import generate
from bench.dupes_truth import TruthSet, build, encode
from bench.report import build_store
from harvester.dataset import keypoints
from harvester.dupes import file_signal_row
from harvester.dupes_keypoints import file_signature
from harvester.similar import (
    VOTE_TABLES,
    VOTE_TABLES_LARGE,
    VOTE_TABLES_LIMIT,
    MatchKind,
    SimilarIndex,
)
from harvester.store.dupes import SignalTable
from harvester.store.schema import INSERT_SIGNAL
from harvester.store.sqlite import STORE_FILENAME

Pixels = npt.NDArray[np.uint8]
EXTRA_KINDS = ("at an angle", "off a screen")
SAME = {MatchKind.SAME}
COPY = {MatchKind.TRANSFORMED}
#: The kinds a rank-1 hit should carry, by the copy's kind.
EXPECTED: dict[str, set[MatchKind]] = {
    "identical-bytes": SAME,
    "identical-pixels": SAME,
    "recompressed": SAME,
    "resized": SAME,
    "rotated": SAME,
    "flipped": SAME,
    "tinted": SAME | COPY,
    "darkened": SAME | COPY,
    "cropped": COPY,
    "at an angle": COPY,
    "off a screen": COPY,
}
TARGET_P50_S = 0.5


@dataclass(frozen=True, slots=True)
class Query:
    path: Path
    source: int
    kind: str


# --- the two new kinds -------------------------------------------------------------------------


def _warp(pixels: Pixels, corners: list[tuple[float, float]], fill: int) -> Pixels:
    h, w = pixels.shape[:2]
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    dst = np.array([[x * w, y * h] for x, y in corners], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(pixels, matrix, (w, h), borderValue=(fill, fill, fill))
    return np.asarray(warped, dtype=np.uint8)


def at_an_angle(pixels: Pixels, rng: random.Random) -> bytes:
    """A print on a grey table seen from one side: corners pulled in by 2-15 %."""
    near, far = rng.uniform(0.02, 0.05), rng.uniform(0.08, 0.15)
    corners = [(near, far), (1 - near, near), (1 - near, 1 - near), (near, 1 - far)]
    if rng.random() < 0.5:  # seen from the other side
        corners = [(1 - x, y) for x, y in (corners[1], corners[0], corners[3], corners[2])]
    return encode(_warp(pixels, corners, 128), 85)


def off_a_screen(pixels: Pixels, rng: random.Random) -> bytes:
    """A phone's photo of a monitor showing the picture."""
    d = [rng.uniform(0.03, 0.1) for _ in range(8)]
    corners = [(d[0], d[1]), (1 - d[2], d[3]), (1 - d[4], 1 - d[5]), (d[6], 1 - d[7])]
    warped = Image.fromarray(_warp(pixels, corners, 18)).filter(ImageFilter.GaussianBlur(1.2))
    lifted = 255 * (np.asarray(warped, np.float64) / 255) ** 0.8 * np.array([0.92, 0.97, 1.08])
    lifted[::3] *= 0.93
    image = Image.fromarray(np.clip(lifted, 0, 255).astype(np.uint8))
    image = image.resize((image.width * 3 // 4, image.height * 3 // 4))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=75)
    return buf.getvalue()


def extra_queries(ts: TruthSet, seed: int = 7) -> list[Query]:
    """Both new kinds of every source, written under the set's folder (extra/)."""
    rng = random.Random(seed)
    folder = ts.folder / "extra"
    folder.mkdir(exist_ok=True)
    made = []
    makers: dict[str, Callable[[Pixels, random.Random], bytes]] = {
        "at an angle": at_an_angle,
        "off a screen": off_a_screen,
    }
    for item in ts.items:
        if item.role != "source":
            continue
        with Image.open(ts.folder / item.path) as image:
            pixels = np.asarray(image.convert("RGB"))
        for kind, make in makers.items():
            path = folder / f"{item.id:05d}-{kind.replace(' ', '-')}.jpg"
            path.write_bytes(make(pixels, rng))
            made.append(Query(path, item.id, kind))
    return made


# --- the harvest -------------------------------------------------------------------------------


def harvest_of(ts: TruthSet) -> tuple[SignalTable, dict[int, bytes]]:
    """The sources' and negatives' fingerprints and keypoint signatures, as `harvest dupes`
    computes them from the files."""
    kept = [item for item in ts.items if item.role in ("source", "negative")]
    rows, blobs = [], {}
    for item in kept:
        data = (ts.folder / item.path).read_bytes()
        rows.append(file_signal_row(item.id, data))
        blobs[item.id] = file_signature(data)
    return _signal_table(rows, {item.id: item.path for item in kept}), blobs


def vote_chunks(
    blobs: dict[int, bytes], row_of: dict[int, int]
) -> Iterator[tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]]:
    yield keypoints.stacked(keypoints.stored_signatures(blobs, row_of))


def synthetic_chunks(
    real: npt.NDArray[np.uint8], first_row: int, n: int, seed: int
) -> Iterator[tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]]:
    """n photos × POINTS descriptors, each byte drawn from that byte's real distribution."""
    rng = np.random.default_rng(seed)
    per = keypoints.POINTS
    step = 20_000
    for lo in range(0, n, step):
        count = min(step, n - lo) * per
        codes = np.empty((count, keypoints.DESCRIPTOR_BYTES), np.uint8)
        for j in range(keypoints.DESCRIPTOR_BYTES):
            codes[:, j] = real[rng.integers(0, len(real), count), j]
        rows = first_row + lo + np.arange(count, dtype=np.int64) // per
        yield codes, rows


def with_synthetic(table: SignalTable, n: int, distractors: list[str], seed: int) -> SignalTable:
    """The table followed by n synthetic photos (ids above the real ones)."""
    ph, c80 = generate("clustered", n, seed).codes, generate("clustered", n, seed + 1).codes
    ids = np.arange(n, dtype=np.int64) + int(table.ids.max()) + 1
    width = np.full(n, 1024, np.int64)
    height = np.full(n, 768, np.int64)
    return SignalTable(
        ids=np.concatenate([table.ids, ids]),
        ph256=np.concatenate([table.ph256, ph]),
        c80=np.concatenate([table.c80, c80]),
        quality=np.concatenate([table.quality, np.full(n, 80, np.int64)]),
        width=np.concatenate([table.width, width]),
        height=np.concatenate([table.height, height]),
        scale=np.concatenate([table.scale, np.full(n, np.nan)]),
        uploaded=np.concatenate([table.uploaded, ids]),
        compared=np.zeros(len(table) + n, np.bool_),
        src_sha256=[*table.src_sha256, *([None] * n)],
        scan_sha256=[*table.scan_sha256, *([None] * n)],
        paths=[*table.paths, *(distractors[i % len(distractors)] for i in range(n))],
        titles=[""] * (len(table) + n),
        taken=[""] * (len(table) + n),
    )


# --- measuring ---------------------------------------------------------------------------------


def copy_queries(ts: TruthSet) -> list[Query]:
    return [Query(ts.folder / i.path, i.source, i.kind) for i in ts.items if i.role == "copy"]


def recall(index: SimilarIndex, queries: list[Query], *, cold: bool) -> dict[str, Any]:
    """Recall@1 and kind-right per kind; wall seconds per query."""
    found: Counter[str] = Counter()
    right: Counter[str] = Counter()
    total: Counter[str] = Counter()
    times: list[float] = []
    misses: dict[str, list[str]] = defaultdict(list)
    for q in queries:
        if cold:
            index._cache.clear()  # every verification pays its decode and ORB
        started = time.perf_counter()
        hits = index.search(q.path, k=10).hits
        times.append(time.perf_counter() - started)
        total[q.kind] += 1
        if hits and hits[0].photo_id == q.source:
            found[q.kind] += 1
            right[q.kind] += hits[0].kind in EXPECTED[q.kind]
        elif len(misses[q.kind]) < 5:
            top = f"{hits[0].photo_id} {hits[0].kind.value} {hits[0].detail}" if hits else "none"
            misses[q.kind].append(f"{q.path.name}: source {q.source}, got {top}")
    kinds = [k for k in EXPECTED if total[k]]
    return {
        "per_kind": {
            k: {
                "queries": total[k],
                "recall_at_1": found[k] / total[k],
                "kind_right": right[k] / total[k],
            }
            for k in kinds
        },
        "recall_at_1": sum(found.values()) / max(1, sum(total.values())),
        "queries": sum(total.values()),
        "p50_s": float(np.percentile(times, 50)) if times else 0.0,
        "p95_s": float(np.percentile(times, 95)) if times else 0.0,
        "misses": dict(misses),
    }


def sample(queries: list[Query], n: int, seed: int) -> list[Query]:
    """n queries spread over every kind."""
    by_kind: dict[str, list[Query]] = defaultdict(list)
    for q in queries:
        by_kind[q.kind].append(q)
    rng = random.Random(seed)
    per = max(1, n // len(by_kind))
    return [q for k in sorted(by_kind) for q in rng.sample(by_kind[k], min(per, len(by_kind[k])))]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, help="where the set is built (default: a temp dir)")
    p.add_argument("--scale", type=int, default=1_000_000, help="synthetic photos beside it")
    p.add_argument("--queries", type=int, default=80, help="queries timed at scale")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument(
        "--store-photos", type=int, default=1_000_000, help="photos of the store timed loading"
    )
    p.add_argument("--child-load", type=Path, help=argparse.SUPPRESS)  # the timed child process
    return p.parse_args(argv)


def store_load(photos: int, directory: Path) -> dict[str, Any]:
    """`SimilarIndex.load` on a store of `photos` (bench/report.py's synthetic store, each done
    photo given a fingerprint row and a keypoint signature of random bytes), in a child process
    measured as a process tree: what `harvest similar` pays before its first query."""
    path = directory / STORE_FILENAME
    build_store(path, photos)
    rng = np.random.default_rng(3)
    with sqlite3.connect(path) as db:
        ids = [int(r[0]) for r in db.execute("SELECT id FROM photos WHERE status = 'done'")]
        for lo in range(0, len(ids), 50_000):
            chunk = ids[lo : lo + 50_000]
            codes = rng.integers(0, 256, (len(chunk), 2, 32), dtype=np.uint8)
            kp = rng.integers(0, 256, (len(chunk), keypoints.POINTS * 32), dtype=np.uint8)
            db.executemany(
                INSERT_SIGNAL,
                (
                    (i, 1, c[0].tobytes(), c[1].tobytes(), 0, 80, None, None, 128, 96, 1024,
                     768, None)
                    for i, c in zip(chunk, codes, strict=True)
                ),
            )  # fmt: skip
            db.executemany(
                "INSERT INTO photo_keypoints VALUES (?, ?, ?)",
                ((i, keypoints.KP_VERSION, k.tobytes()) for i, k in zip(chunk, kp, strict=True)),
            )
    cmd = [sys.executable, "-m", "bench.similar", "--child-load", str(directory)]
    log = directory / "load.log"
    code, usage = common.run_measured(cmd, cwd=common.ROOT, log_path=log)
    child = json.loads(log.read_text().strip().splitlines()[-1])
    return {
        "photos": len(ids),
        "exit_code": code,
        "load_wall_s": round(usage.wall_s, 1),
        "load_cpu_s": round(usage.cpu_s, 1),
        "peak_rss_mb": round(usage.peak_rss_bytes / 2**20),
        **child,
    }


def _child_load(directory: Path) -> int:
    started = time.perf_counter()
    index = SimilarIndex.load(directory)
    print(json.dumps({"load_s": round(time.perf_counter() - started, 2), "indexed": len(index)}))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child_load is not None:
        return _child_load(args.child_load)
    with tempfile.TemporaryDirectory(prefix="bench-similar-") as tmp:
        work = args.work or Path(tmp)
        started = time.perf_counter()
        ts = build(work, seed=args.seed)
        queries = copy_queries(ts) + extra_queries(ts)
        table, blobs = harvest_of(ts)
        set_s = time.perf_counter() - started
        row_of = {int(i): r for r, i in enumerate(table.ids.tolist())}
        votes = keypoints.VoteIndex(vote_chunks(blobs, row_of), tables=VOTE_TABLES)
        small = SimilarIndex(ts.folder, table, votes=votes, describe=lambda ids: {})
        labelled = recall(small, queries, cold=False)
        scale = _at_scale(ts, table, blobs, queries, args)
        loading = store_load(args.store_photos, Path(tempfile.mkdtemp(dir=tmp)))
    payload = {
        "machine": common.machine(),
        "set": {
            "harvest_photos": len(table),
            "queries": len(queries),
            "build_s": round(set_s, 1),
        },
        "labelled": labelled,
        "scale": scale,
        "store_load": loading,
    }
    path = common.write_result("similar", payload)
    _print(labelled, scale)
    print(
        f"loading a store of {loading['photos']:,} fingerprinted photos: {loading['load_wall_s']}"
        f" s wall, {loading['load_cpu_s']} s CPU, peak RSS {loading['peak_rss_mb']} MB"
    )
    print(f"wrote {path}")
    return 0


def _at_scale(
    ts: TruthSet,
    table: SignalTable,
    blobs: dict[int, bytes],
    queries: list[Query],
    args: argparse.Namespace,
) -> dict[str, Any]:
    negatives = [i.path for i in ts.items if i.role == "negative"]
    big = with_synthetic(table, args.scale, negatives, args.seed)
    row_of = {int(i): r for r, i in enumerate(table.ids.tolist())}
    real = keypoints.stacked(keypoints.stored_signatures(blobs, row_of))[0]
    started = time.perf_counter()

    def chunks() -> Iterator[tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]]:
        yield from vote_chunks(blobs, row_of)
        yield from synthetic_chunks(real, len(table), args.scale, args.seed)

    large = len(big) > VOTE_TABLES_LIMIT
    votes = keypoints.VoteIndex(chunks(), tables=VOTE_TABLES_LARGE if large else VOTE_TABLES)
    index = SimilarIndex(ts.folder, big, votes=votes, describe=lambda ids: {})
    build_s = time.perf_counter() - started
    timed = sample(queries, args.queries, args.seed)
    index.search(timed[0].path)  # the first query pays numpy's and OpenCV's warm-up
    measured = recall(index, timed, cold=True)
    return {
        "photos": len(big),
        "index_build_s": round(build_s, 1),
        "vote_index_mb": round(votes.memory_bytes / 2**20),
        "vote_tables": votes.tables,
        "peak_rss_mb": round(peak_rss_mb()),
        **measured,
    }


def _print(labelled: dict[str, Any], scale: dict[str, Any]) -> None:
    headers = ["kind", "queries", "recall@1", "kind right", f"recall@1 at {scale['photos']:,}"]
    rows: list[list[object]] = []
    for kind, figures in labelled["per_kind"].items():
        at_scale = scale["per_kind"].get(kind, {}).get("recall_at_1")
        rows.append(
            [
                kind,
                figures["queries"],
                f"{figures['recall_at_1']:.3f}",
                f"{figures['kind_right']:.3f}",
                "" if at_scale is None else f"{at_scale:.3f}",
            ]
        )
    rows.append(["all", labelled["queries"], f"{labelled['recall_at_1']:.3f}", "", ""])
    common.print_table(headers, rows)
    print(
        f"at {scale['photos']:,} photos: p50 {scale['p50_s']:.3f} s, p95 {scale['p95_s']:.3f} s"
        f" over {scale['queries']} cold queries (target p50 <= {TARGET_P50_S} s);"
        f" index built in {scale['index_build_s']} s, vote index {scale['vote_index_mb']} MB,"
        f" peak RSS {scale['peak_rss_mb']} MB"
    )
    for kind, lines in labelled["misses"].items():
        print(f"misses, {kind}: " + "; ".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
