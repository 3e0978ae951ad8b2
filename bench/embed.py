"""Embedding index benchmark: brute-force search over N synthetic vectors, and image preparation.

    python -m bench.embed [--vectors 1000000] [--dim 512] [--queries 21] [--k 20] [--dir /tmp/x]

Writes N random unit vectors through `IndexWriter` (chunks of 64 MiB, fsynced, as `harvest
index` leaves them after its merges), opens the index as `harvest similar` would
(`VectorIndex.open`: memory-mapped), and times `search` for random queries: p50 and p90 after
one warm-up query (the files were just written, so they are in the page cache: a cold disk adds
its read of the index once). Also times `prepare_image` (decode, orient, resize and crop, normalise)
of a 1024×683 JPEG for a 224×224 input, the per-image cost `harvest index` adds to the model's.
Prints a table and writes bench/results/embed.json. The model's own cost depends on the user's
network and is not measured here.
"""

from __future__ import annotations

import argparse
import io
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from bench import common
from harvester.dataset.embed import PRESETS, Layout, Preprocessing, Preset, prepare_image
from harvester.dataset.vectors import SMALL_CHUNK_BYTES, IndexSpec, IndexWriter, VectorIndex

SHA = "be" * 32  # a made-up model identity


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> npt.NDArray[np.float32]:
    """`n` random unit vectors."""
    rows = rng.standard_normal((n, dim), dtype=np.float32)
    unit: npt.NDArray[np.float32] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return unit


def build_index(directory: Path, n: int, dim: int) -> float:
    """Write `n` vectors into an index under `directory`; returns the seconds it took."""
    spec = IndexSpec(
        model_sha256=SHA, model_name="synthetic", dim=dim, output="y", preprocessing={}
    )
    rng = np.random.default_rng(0)
    step = SMALL_CHUNK_BYTES // (4 * dim)
    started = time.perf_counter()
    with IndexWriter.open(directory, spec) as writer:
        for first in range(0, n, step):
            rows = min(step, n - first)
            writer.append(
                np.arange(first, first + rows, dtype=np.int64), unit_rows(rng, rows, dim), {}
            )
    return time.perf_counter() - started


def time_search(directory: Path, queries: int, k: int) -> dict[str, Any]:
    """Open the index and time `queries` searches after a warm-up; p50/p90 in seconds."""
    started = time.perf_counter()
    index = VectorIndex.open(directory, SHA)
    assert index is not None
    open_s = time.perf_counter() - started
    rng = np.random.default_rng(1)
    index.search(unit_rows(rng, 1, index.spec.dim)[0], k)  # warm-up: maps the pages in
    took = []
    for query in unit_rows(rng, queries, index.spec.dim):
        started = time.perf_counter()
        index.search(query, k)
        took.append(time.perf_counter() - started)
    took.sort()
    return {
        "vectors": index.count,
        "dim": index.spec.dim,
        "open_s": open_s,
        "search_p50_s": statistics.median(took),
        "search_p90_s": took[int(0.9 * (len(took) - 1))],
        "index_bytes": index.nbytes(),
    }


def time_prepare(repeats: int = 30) -> float:
    """Milliseconds to prepare one 1024×683 JPEG for a 224×224 input (one thread)."""
    rng = np.random.default_rng(2)
    base = rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)
    picture = Image.fromarray(base).resize((1024, 683), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    mean, std = PRESETS[Preset.IMAGENET]
    prep = Preprocessing(
        width=224, height=224, layout=Layout.NCHW, mean=mean, std=std, source="imagenet"
    )
    prepare_image(data, prep, max_pixels=10**8)
    started = time.perf_counter()
    for _ in range(repeats):
        prepare_image(data, prep, max_pixels=10**8)
    return (time.perf_counter() - started) / repeats * 1000


def main() -> None:
    """Parse arguments, build the index, time it, print the table, write the JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.embed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=21)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--dir", type=Path, default=None, help="where the index files go")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        write_s = build_index(Path(tmp), args.vectors, args.dim)
        result = time_search(Path(tmp), args.queries, args.k)
    result["write_vectors_per_s"] = args.vectors / write_s
    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result["prepare_ms_per_image"] = time_prepare()
    common.print_table(
        ["vectors", "dim", "open s", "p50 s", "p90 s", "index MiB", "peak RSS MiB", "prep ms"],
        [
            [
                f"{result['vectors']:,}",
                result["dim"],
                result["open_s"],
                result["search_p50_s"],
                result["search_p90_s"],
                result["index_bytes"] / 2**20,
                result["peak_rss_bytes"] / 2**20,
                result["prepare_ms_per_image"],
            ]
        ],
    )
    path = common.write_result("embed", {"machine": common.machine(), "result": result})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
