"""Store benchmark: claim/commit and outcome rates, summary time and file size at N photos.

    python -m bench.store --photos 1000000 [--photos 10000000] [--dir /tmp/x]

Windows of 400 photos (a tenth of the planner's default 4,000: ten times its commits per photo)
are committed for 20 keywords; a tenth of the photos are found again by a second keyword
(duplicates). Then every photo is read back through `Store.pending` and marked done in the
engine's batch sizes. Prints a table and writes bench/results/store.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench import common
from harvester.records import PhotoRecord, SizeVariant, Window
from harvester.store.sqlite import Store

WINDOW = 400
KEYWORDS = 20
LEASE_BATCH = 256


def record(i: int) -> PhotoRecord:
    """A record shaped like a real search result with harvest's extras (about 1 KB of JSON)."""
    pid = 50_000_000_000 + i
    base = f"https://live.staticflickr.com/65535/{pid}_0123456789"
    sizes = tuple(
        SizeVariant(label=label, url=f"{base}{suffix}.jpg", width=w, height=w * 3 // 4)
        for label, suffix, w in (
            ("s", "_m", 240),
            ("m", "", 500),
            ("z", "_z", 640),
            ("c", "_c", 800),
            ("l", "_b", 1024),
        )
    )
    return PhotoRecord(
        id=str(pid),
        owner="12345678@N06",
        secret="0123456789",
        server="65535",
        farm=66,
        title=f"Photo number {i} of the benchmark",
        description='A short description with <a href="https://example.org">a link</a>.',
        owner_name="bench owner",
        tags=("city", "night", "lights", "street"),
        license=4,
        date_upload=1_600_000_000 + i,
        date_taken="2020-01-01 12:00:00",
        latitude=48.8566 if i % 4 == 0 else None,
        longitude=2.3522 if i % 4 == 0 else None,
        accuracy=16 if i % 4 == 0 else None,
        views=i % 1000,
        o_width=4000,
        o_height=3000,
        sizes=sizes,
    )


def windows(n: int) -> Iterator[tuple[str, int, list[PhotoRecord]]]:
    """(keyword, window index, photos) with ~10% of photos re-found by a second keyword."""
    for w, start in enumerate(range(0, n, WINDOW)):
        photos = [record(i) for i in range(start, min(n, start + WINDOW))]
        yield f"keyword{w % KEYWORDS}", w, photos
        if w % 10 == 9:
            yield f"keyword{(w + 1) % KEYWORDS}", w + 1_000_000_000, photos


def bench(n: int, directory: Path) -> dict[str, float]:
    """Run the benchmark at `n` photos in a fresh store under `directory`."""
    path = directory / f"bench-{n}.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    store = Store(path, worker_id="bench")
    t0 = time.perf_counter()
    found = 0
    for keyword, w, photos in windows(n):
        store.commit_window(
            keyword,
            Window(start=w * 600, end=w * 600 + 600),
            photos,
            reported_total=len(photos),
            capped=False,
        )
        found += len(photos)
    t_claim = time.perf_counter() - t0
    t0 = time.perf_counter()
    done = 0
    while batch := store.pending(LEASE_BATCH, after=0):
        for item in batch:
            store.mark_done(
                item.record.id,
                path=f"{item.keyword}/{item.seq // 1000 + 1:05d}/x.jpg",
                sha256="0" * 64,
                width=1024,
                height=768,
                size_label="l",
            )
        store.flush()
        done += len(batch)
    t_done = time.perf_counter() - t0
    t0 = time.perf_counter()
    summary = store.summary()
    t_summary = time.perf_counter() - t0
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = path.stat().st_size
    assert summary.statuses == {"done": n}, summary.statuses
    return {
        "photos": n,
        "found_incl_duplicates": found,
        "claim_s": t_claim,
        "claim_photos_per_s": found / t_claim,
        "done_s": t_done,
        "done_per_s": done / t_done,
        "summary_s": t_summary,
        "file_mb": size / 1e6,
        "bytes_per_photo": size / n,
    }


def main() -> None:
    """Parse arguments, run each size, print the table, write the JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.store",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--photos", type=int, action="append", default=None)
    parser.add_argument("--dir", type=Path, default=None, help="where the store files go")
    parser.add_argument("--keep", action="store_true", help="keep the store files")
    args = parser.parse_args()
    sizes = args.photos or [1_000_000]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        results = [bench(n, Path(tmp)) for n in sizes]
    print(
        f"{'photos':>10} {'claim/s':>10} {'done/s':>10} {'summary s':>10} {'MB':>8} {'B/photo':>8}"
    )
    for r in results:
        print(
            f"{r['photos']:>10,} {r['claim_photos_per_s']:>10,.0f} {r['done_per_s']:>10,.0f} "
            f"{r['summary_s']:>10.2f} {r['file_mb']:>8,.0f} {r['bytes_per_photo']:>8,.0f}"
        )
    out = common.RESULTS / "store.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
