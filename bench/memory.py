"""Memory benchmark: does a long harvest hold a flat RSS?

Runs the real `harvest run` (one worker, default concurrency and threads) against the emulator
on a corpus where one keyword matches about N photos, samples the harvest process's RSS and the
store's count of finished photos every second, and reports RSS at 10,000 photos and at N - 10,000
(the issue's 10k vs 190k for N = 200,000) plus the peak.

To keep a 200,000-photo run to minutes on two cores, the emulator serves the pixels of a pool of
400 photos for every photo (`--image-pool`) at a quarter of their size (`--image-scale 0.25`),
and the harvest accepts them (`--min-side 64`). Every photo is still searched, claimed,
downloaded, decoded, stamped with its own metadata, written and recorded: what could grow with
the job (queues, the store, caches, per-photo state) is exercised in full; only the per-image
pixel work is smaller.

    python -m bench.memory                 # 200,000 photos
    python -m bench.memory --photos 30000  # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench import common
from harvester.store.sqlite import STORE_FILENAME

MATCH_SHARE = 0.898  # share of the corpus matching "photo" (seed 0), measured with /_emulator/truth


def count_done(store: Path) -> int:
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as db:
            return int(
                db.execute("SELECT COUNT(*) FROM photos WHERE status != 'claimed'").fetchone()[0]
            )
    except sqlite3.Error:
        return -1


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def run(target: int, work: Path) -> dict[str, object]:
    corpus = int(target / MATCH_SHARE) + 1
    extra = ("--time-scale", "1000000", "--image-pool", "400", "--image-scale", "0.25")
    queries = work / "q.txt"
    queries.write_text("photo\n", encoding="utf-8")
    out = work / "out"
    env = {**os.environ, "FLICKR_API_KEY": "0123456789abcdef0123456789abcdef"}
    samples: list[tuple[float, int, int]] = []
    with common.emulator_process(corpus, extra=extra) as emulator:
        cmd = [sys.executable, "-m", "harvester", "run", str(queries), "--out", str(out)]
        cmd += ["--flickr-url", emulator.base_url + "/services/rest/", "--plain"]
        cmd += ["--calls-per-hour", "10000000", "--min-side", "64"]
        started = time.monotonic()
        harvest = subprocess.Popen(cmd, env=env, cwd=common.ROOT, stderr=subprocess.DEVNULL)
        try:
            ps = psutil.Process(harvest.pid)
            while harvest.poll() is None:
                done = count_done(out / STORE_FILENAME)
                rss = tree_rss(ps)
                if done >= 0 and rss:
                    samples.append((time.monotonic() - started, done, rss))
                time.sleep(1.0)
        finally:
            harvest.wait()
    final = count_done(out / STORE_FILENAME)
    return summarise(samples, final, harvest.returncode, time.monotonic() - started)


def rss_at(samples: list[tuple[float, int, int]], done: int) -> int:
    """RSS of the first sample at or past `done` finished photos."""
    for _t, n, rss in samples:
        if n >= done:
            return rss
    return samples[-1][2]


def summarise(
    samples: list[tuple[float, int, int]], final: int, code: int, wall: float
) -> dict[str, object]:
    early, late = 10_000, max(10_000, final - 10_000)
    rss_early, rss_late = rss_at(samples, early), rss_at(samples, late)
    return {
        "photos_finished": final,
        "exit_code": code,
        "wall_s": round(wall, 1),
        "rss_mb_at": {str(early): rss_early / 2**20, str(late): rss_late / 2**20},
        "rss_growth_ratio": round(rss_late / rss_early, 3),
        "peak_rss_mb": max(s[2] for s in samples) / 2**20,
        "curve": [
            (round(t, 1), n, round(r / 2**20, 1))
            for t, n, r in samples[:: max(1, len(samples) // 60)]
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--photos", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="harvest-memory-") as tmp:
        result = run(args.photos, Path(tmp))
    common.RESULTS.mkdir(parents=True, exist_ok=True)
    (common.RESULTS / "memory.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    at = result["rss_mb_at"]
    assert isinstance(at, dict)
    lines = [
        f"photos finished: {result['photos_finished']:,} in {result['wall_s']} s "
        f"(exit {result['exit_code']})",
        *(f"RSS after {int(k):,} photos: {v:.0f} MB" for k, v in at.items()),
        f"growth ratio late/early: {result['rss_growth_ratio']}   peak: "
        f"{result['peak_rss_mb']:.0f} MB",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
