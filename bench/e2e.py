"""End-to-end throughput: does searching overlap with downloading and processing?

In one run, against one emulator whose image cache is warmed first, the same photos are
harvested twice by the real `harvest run`:

- **image half**: the output is searched first with `--metadata-only`; the timed run then only
  downloads, processes and writes the claimed photos (the engine's image path alone);
- **end to end**: a fresh output, searched and harvested by one timed `harvest run`.

The issue's target: end to end reaches at least 80% of the image half's images per second.

    python -m bench.e2e [--photos 30000] [--keywords nature,sky]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import common
from harvester.store.sqlite import STORE_FILENAME

CACHE = Path(tempfile.gettempdir()) / "harvest-e2e-image-cache"
KEY = "0123456789abcdef0123456789abcdef"


def harvest(url: str, queries: Path, out: Path, *extra: str) -> tuple[float, float]:
    """Run `harvest run`; returns (wall seconds, CPU seconds of its process tree)."""
    cmd = [sys.executable, "-m", "harvester", "run", str(queries), "--out", str(out)]
    cmd += ["--flickr-url", url, "--calls-per-hour", "10000000", "--image-rate", "100000"]
    cmd += ["--plain", *extra]  # no limiter in the way: the pipeline itself is measured
    started, before = time.monotonic(), common.children_cpu_s()
    subprocess.run(
        cmd,
        env={**os.environ, "FLICKR_API_KEY": KEY},
        cwd=common.ROOT,
        check=True,
        stderr=subprocess.DEVNULL,
    )
    return time.monotonic() - started, common.children_cpu_s() - before


def finished(out: Path) -> int:
    with sqlite3.connect(out / STORE_FILENAME) as db:
        return int(db.execute("SELECT COUNT(*) FROM photos WHERE status = 'done'").fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.e2e", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--photos", type=int, default=30_000, help="emulator corpus size")
    parser.add_argument("--keywords", default="nature,sky")
    args = parser.parse_args()
    extra = ("--time-scale", "1000000")
    with (
        common.emulator_process(args.photos, extra=extra, image_cache=CACHE) as emulator,
        tempfile.TemporaryDirectory(prefix="harvest-e2e-") as tmp,
    ):
        url = emulator.base_url + "/services/rest/"
        work = Path(tmp)
        queries = work / "q.txt"
        queries.write_text("\n".join(args.keywords.split(",")) + "\n", encoding="utf-8")
        harvest(url, queries, work / "warm")  # renders and caches every image once
        harvest(url, queries, work / "half", "--metadata-only")
        half_s, half_cpu = harvest(url, queries, work / "half")
        half_n = finished(work / "half")
        full_s, full_cpu = harvest(url, queries, work / "full")
        full_n = finished(work / "full")
    half, full = _figures(half_n, half_s, half_cpu), _figures(full_n, full_s, full_cpu)
    ratio = round(full["img_s"] / half["img_s"], 3)
    result = {"photos": full_n, "image_half": half, "end_to_end": full, "ratio": ratio}
    common.RESULTS.mkdir(parents=True, exist_ok=True)
    (common.RESULTS / "e2e.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(
        f"image half: {half_n} images in {half_s:.1f} s = {half_n / half_s:.1f} img/s\n"
        f"end to end: {full_n} images in {full_s:.1f} s = {full_n / full_s:.1f} img/s "
        f"(search included)\n"
        f"ratio end-to-end / image half: {result['ratio']:.2f} (target >= 0.80)\n"
        f"CPU ms per image: image half {1000 * half_cpu / max(1, half_n):.2f}, "
        f"end to end {1000 * full_cpu / max(1, full_n):.2f}"
    )


def _figures(images: int, wall_s: float, cpu_s: float) -> dict[str, float]:
    return {
        "images": images,
        "wall_s": round(wall_s, 2),
        "img_s": images / wall_s,
        "cpu_s": round(cpu_s, 2),
        "cpu_ms_per_image": 1000 * cpu_s / max(1, images),
    }


if __name__ == "__main__":
    main()
