"""Report benchmark: `harvest report` on a synthetic store of N photos, wall time and peak RSS.

    python -m bench.report [--photos 1000000] [--dir /tmp] [--keep]

The store is written straight into the real schema (store.schema.connect) with SQL inserts, in a
few large transactions, so a million photos take about a minute rather than a harvest: 20
keywords over 72 hours and 3 runs (one interrupted); 90 % done, 4 % skipped (a quarter of them
for an error), 3 % failed, 3 % still claimed; a quarter geotagged, licences 0-16, a tenth found
again by a second keyword; windows of 4,000 with some split by licence and capped; 20,000
duplicate pairs. Then `python -m harvester report` runs as a child process and its process tree
is sampled (bench/common.py). Targets: at most 60 s and 1 GB at 1M photos. Writes
bench/results/report.json.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from bench import common
from harvester.store.schema import SEARCH_TALLY_PREFIX, connect

KEYWORDS = 20
HOURS = 72
T0 = 1_780_000_000 // 3600 * 3600
WINDOW = 4000
BATCH = 50_000
SKIPS = ("too small: 400 px < 500", "no size: no large or original (smaller sizes not allowed)")
ERROR_SKIP = "no size: the search returned no image URL"
FAILS = ("download: not found (http 404)", "download: timeout (after 5 tries)")
KINDS = ("identical-bytes", "recompressed", "resized", "rotated", "cropped")
SOURCES = ("flickr",) * 17 + (
    "Library of Congress",
    "Smithsonian Institution",
    "NASA on The Commons",
)
TARGET_S, TARGET_MB = 60.0, 1024.0


def record(i: int, rng: random.Random) -> dict[str, Any]:
    """A record shaped like a real search result with harvest's extras (about 1 KB of JSON)."""
    pid = 50_000_000_000 + i
    base = f"https://live.staticflickr.com/65535/{pid}_0123456789"
    geo = rng.random() < 0.25
    return {
        "source": SOURCES[i % len(SOURCES)],
        "id": str(pid),
        "owner": f"{10_000_000 + i % 5000}@N0{i % 8}",
        "secret": "0123456789",
        "server": "65535",
        "farm": 66,
        "title": f"Photo number {i} <of> the benchmark & more",
        "description": 'A short description with <a href="https://example.org">a link</a>.',
        "owner_name": "bench owner",
        "tags": ["city", "night", "lights", "street"],
        "license": rng.randrange(17),
        "date_upload": 1_600_000_000 + i,
        "date_taken": "2020-01-01 12:00:00",
        "latitude": rng.uniform(-60, 70) if geo else None,
        "longitude": rng.uniform(-180, 180) if geo else None,
        "accuracy": 16 if geo else None,
        "views": i % 1000,
        "o_width": 4000,
        "o_height": 3000,
        "sizes": [
            {"label": lab, "url": f"{base}{suf}.jpg", "width": w, "height": w * 3 // 4}
            for lab, suf, w in (("m", "", 500), ("c", "_c", 800), ("l", "_b", 1024))
        ],
    }


def _outcome(rng: random.Random) -> tuple[str, str | None]:
    roll = rng.random()
    if roll < 0.90:
        return "done", None
    if roll < 0.93:
        return "skipped", rng.choice(SKIPS)
    if roll < 0.94:
        return "skipped", ERROR_SKIP
    if roll < 0.97:
        return "failed", rng.choice(FAILS)
    return "claimed", None


def photo_rows(n: int, seed: int = 0) -> Iterator[tuple[Any, ...]]:
    """Rows of the photos table, in id order."""
    rng = random.Random(seed)
    seqs = [0] * KEYWORDS
    for i in range(n):
        k = i * KEYWORDS // n  # keywords own contiguous id ranges, like date-ordered claims
        rec = record(i, rng)
        status, reason = _outcome(rng)
        claimed = T0 + i * HOURS * 3600 / n
        updated = None if status == "claimed" else claimed + rng.uniform(0, 900)
        done = status == "done"
        yield (
            50_000_000_000 + i,
            f"keyword{k}",
            status,
            reason,
            0 if status == "claimed" else 1 + (status == "failed") * 4,
            f"keyword{k}/{seqs[k] // 1000 + 1:05d}/x.jpg" if done else None,
            "0" * 64 if done else None,
            1024 if done else None,
            768 if done else None,
            "l" if done else None,
            orjson.dumps(rec).decode(),
            seqs[k],
            claimed,
            updated,
            rec["source"],
        )
        seqs[k] += 1


def _insert(db: sqlite3.Connection, sql: str, rows: Iterator[tuple[Any, ...]]) -> None:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH:
            db.executemany(sql, batch)
            batch = []
    db.executemany(sql, batch)


def _windows(n: int) -> Iterator[tuple[Any, ...]]:
    per = n // KEYWORDS
    for k in range(KEYWORDS):
        for w, start in enumerate(range(0, per, WINDOW)):
            found = min(WINDOW, per - start)
            s = 1_600_000_000 + k * per + start
            if w % 10 == 9:  # a floor bucket over the cap, searched per licence; one capped
                for lic in range(17):
                    yield (
                        f"keyword{k}",
                        s,
                        s + 300,
                        lic,
                        found // 17,
                        found // 17,
                        found // 17 + (900 if lic == 4 else 0),
                        int(lic == 4),
                        T0,
                    )
            else:
                yield (f"keyword{k}", s, s + 3600, -1, found, found, found, 0, T0)


def build_store(path: Path, n: int) -> None:
    """A store of `n` photos in the real schema (see the module docstring)."""
    db = connect(path)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("BEGIN")
    _insert(
        db, "INSERT INTO photos VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,NULL,NULL,?)", photo_rows(n)
    )
    _insert(db, "INSERT INTO windows VALUES (?,?,?,?,?,?,?,?,?)", _windows(n))
    db.execute("INSERT INTO photo_keywords SELECT id, keyword FROM photos")
    db.execute("INSERT INTO keywords SELECT keyword, MAX(seq) + 1 FROM photos GROUP BY keyword")
    db.execute(
        "INSERT OR IGNORE INTO photo_keywords SELECT id, 'keyword' || ((CAST(substr(keyword, 8)"
        f" AS INTEGER) + 1) % {KEYWORDS}) FROM photos WHERE id % 10 = 0"
    )
    for k in range(KEYWORDS):
        tally = orjson.dumps({"calls": n // KEYWORDS // 480, "negatives": 37}).decode()
        db.execute("INSERT INTO meta VALUES (?, ?)", (f"{SEARCH_TALLY_PREFIX}keyword{k}", tally))
    runs = ((T0, T0 + 30 * 3600, "interrupted"), (T0 + 31 * 3600, T0 + 60 * 3600, "finished"))
    for start, end, outcome in (*runs, (T0 + 61 * 3600, T0 + HOURS * 3600 + 900, "finished")):
        db.execute(
            "INSERT INTO runs (worker, started_at, finished_at, outcome, config) VALUES"
            " ('bench:1', ?, ?, ?, '{}')",
            (start, end, outcome),
        )
    pairs = ((50_000_000_000 + 2 * j, 50_000_000_001 + 2 * j, KINDS[j % 5]) for j in range(20_000))
    _insert(db, "INSERT INTO dup_pair VALUES (?, ?, ?, '', 3, 0, NULL, 'bench')", pairs)
    # each pair a group: a the representative, b its copy (as `harvest dupes` writes them)
    db.execute("INSERT INTO dup_group SELECT a, a, NULL, '' FROM dup_pair")
    db.execute("INSERT INTO dup_group SELECT b, a, kind, param FROM dup_pair")
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def bench(n: int, directory: Path) -> dict[str, Any]:
    """Build the store, run the report on it, return the figures."""
    out = directory / f"report-{n}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    build_store(out / "harvest.sqlite", n)
    build_s = time.perf_counter() - t0
    cmd = [sys.executable, "-m", "harvester", "report", str(out)]
    code, usage = common.run_measured(cmd, cwd=common.ROOT, log_path=directory / "report.log")
    if code != 0:
        raise RuntimeError(
            f"harvest report exited {code}: {(directory / 'report.log').read_text()}"
        )
    return {
        "photos": n,
        "build_s": build_s,
        "store_mb": (out / "harvest.sqlite").stat().st_size / 1e6,
        "report_s": usage.wall_s,
        "cpu_s": usage.cpu_s,
        "peak_rss_mb": usage.peak_rss_bytes / 2**20,
        "html_kb": (out / "report.html").stat().st_size / 1024,
        "csv_rows": sum(1 for _ in (out / "needs-attention.csv").open(encoding="utf-8")) - 1,
        "meets_target": usage.wall_s <= TARGET_S and usage.peak_rss_bytes / 2**20 <= TARGET_MB,
    }


def main() -> None:
    """Parse arguments, run, print the table, write the JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--photos", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=None, help="where the store goes")
    parser.add_argument("--keep", action="store_true", help="keep the store and the report")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(dir=args.dir, prefix="bench-report-"))
    try:
        result = bench(args.photos, tmp)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    headers = ["photos", "store MB", "report s", "CPU s", "peak RSS MB", "HTML KB", "CSV rows"]
    row = [f"{result['photos']:,}", result["store_mb"], result["report_s"], result["cpu_s"]]
    row += [result["peak_rss_mb"], result["html_kb"], f"{result['csv_rows']:,}"]
    common.print_table(headers, [row])
    verdict = "meets" if result["meets_target"] else "MISSES"
    print(
        f"{verdict} the target ({TARGET_S:.0f} s, {TARGET_MB:.0f} MB); store built in "
        f"{result['build_s']:.0f} s" + (f", kept in {tmp}" if args.keep else "")
    )
    payload = {"machine": common.machine(), "sqlite": sqlite3.sqlite_version, "result": result}
    print(f"wrote {common.write_result('report', payload)}")


if __name__ == "__main__":
    main()
