"""Serve benchmark: `harvest serve`'s page times (p50, p95) on a synthetic store of N photos.

    python -m bench.serve [--photos 1000000] [--repeats 40] [--dir /tmp] [--keep]

The store is bench/report.py's (20 keywords, 90 % done, licences 0-16, a quarter geotagged, a
sixth from three institutions, 20,000 duplicate groups), written straight into the real schema.
The app (harvester/serve) runs in-process on a loopback port over the store opened read-only,
as `harvest serve` opens it and with its policy (the counts are cached while fresh, so the
overview and /api/status are timed as a polling browser sees them; a fresh read of the counts,
`StoreLibrary.counts`, is timed apart); an aiohttp client times each page `--repeats` times
after one warm-up request: the overview,
the first browse page, one page per filter, a deep keyset page (past 99 % of the ids), a photo
page, /api/photos and /api/status. Also timed once: a writer adding the browse indexes to a
store that lacks them (the in-place migration). The stored files are not on disk (the store
is synthetic), so thumbnails are not timed. Writes bench/results/serve.json.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench import common
from bench.report import build_store
from harvester.config import ServePolicy
from harvester.serve.app import make_app
from harvester.serving import StoreLibrary
from harvester.store.schema import BROWSE_INDEXES, connect
from harvester.store.sqlite import Store

FIRST_ID = 50_000_000_000  # bench/report.py's first photo id
TARGET_P95_S = 0.5  # a page a person waits for


def pages(n: int) -> list[tuple[str, str]]:
    """(label, path) of every page timed."""
    deep = FIRST_ID + n * 99 // 100
    return [
        ("overview", "/"),
        ("browse, first page", "/browse"),
        ("browse keyword", "/browse?keyword=keyword7"),
        ("browse licence", "/browse?license=4"),
        ("browse source", "/browse?source=NASA"),
        ("browse geotagged", "/browse?geotagged=yes"),
        ("browse status failed", "/browse?status=failed"),
        ("browse all filters", "/browse?keyword=keyword3&license=2&geotagged=no&source=flickr"),
        ("browse deep keyset page", f"/browse?after={deep}"),
        ("photo page", f"/photo/{FIRST_ID + n // 2}"),
        ("/api/photos (100)", "/api/photos?limit=100"),
        ("/api/photos deep, licence", f"/api/photos?limit=100&license=9&after={deep}"),
        ("/api/status", "/api/status"),
        ("needs a human", "/attention"),
        ("duplicates", "/duplicates"),
    ]


async def _time(session: aiohttp.ClientSession, url: str, repeats: int) -> list[float]:
    took = []
    for i in range(repeats + 1):
        started = time.perf_counter()
        async with session.get(url) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"{url} answered {r.status}")
        if i:  # the first is the warm-up (page cache, the sources list)
            took.append(time.perf_counter() - started)
    return took


async def time_pages(out: Path, n: int, repeats: int) -> list[dict[str, Any]]:
    """Serve `out` in-process and time each page."""
    with Store.open(out / "harvest.sqlite", readonly=True) as store:
        library = StoreLibrary(out, store)
        app = make_app(library, None, ServePolicy())
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        rows = [_row("counts read afresh", "StoreLibrary.counts", _fresh(library, repeats))]
        try:
            async with aiohttp.ClientSession() as session:
                for label, path in pages(n):
                    took = await _time(session, f"http://127.0.0.1:{port}{path}", repeats)
                    rows.append(_row(label, path, took))
        finally:
            await runner.cleanup()
    return rows


def _fresh(library: StoreLibrary, repeats: int) -> list[float]:
    took = []
    for i in range(repeats + 1):
        started = time.perf_counter()
        library.counts()
        if i:
            took.append(time.perf_counter() - started)
    return took


def _row(label: str, path: str, took: list[float]) -> dict[str, Any]:
    ordered = sorted(took)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "page": label,
        "path": path,
        "p50_ms": statistics.median(ordered) * 1000,
        "p95_ms": p95 * 1000,
        "max_ms": ordered[-1] * 1000,
        "repeats": len(took),
    }


def time_migration(store: Path) -> float:
    """Seconds a writer takes to add the browse indexes to a copy of the store without them."""
    copy = store.with_name("migrate.sqlite")
    shutil.copyfile(store, copy)
    db = sqlite3.connect(copy)
    for name in BROWSE_INDEXES:
        db.execute(f"DROP INDEX {name}")
    db.commit()
    db.close()
    started = time.perf_counter()
    connect(copy).close()
    took = time.perf_counter() - started
    copy.unlink()
    for suffix in ("-wal", "-shm"):
        copy.with_name(copy.name + suffix).unlink(missing_ok=True)
    return took


def bench(n: int, repeats: int, directory: Path, migration: bool) -> dict[str, Any]:
    """Build the store, time the pages (and the migration), return the figures."""
    out = directory / f"serve-{n}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    started = time.perf_counter()
    build_store(out / "harvest.sqlite", n)
    build_s = time.perf_counter() - started
    rows = asyncio.run(time_pages(out, n, repeats))
    return {
        "photos": n,
        "build_s": build_s,
        "store_mb": (out / "harvest.sqlite").stat().st_size / 1e6,
        "pages": rows,
        "migration_s": time_migration(out / "harvest.sqlite") if migration else None,
        "meets_target": all(r["p95_ms"] <= TARGET_P95_S * 1000 for r in rows[1:]),
    }


def main() -> None:
    """Parse arguments, run, print the table, write the JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.serve",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--photos", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--dir", type=Path, default=None, help="where the store goes")
    parser.add_argument("--keep", action="store_true", help="keep the store")
    parser.add_argument("--no-migration", action="store_true", help="skip the index build")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(dir=args.dir, prefix="bench-serve-"))
    try:
        result = bench(args.photos, args.repeats, tmp, not args.no_migration)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    headers = ["page", "p50 ms", "p95 ms", "max ms"]
    common.print_table(
        headers, [[r["page"], r["p50_ms"], r["p95_ms"], r["max_ms"]] for r in result["pages"]]
    )
    verdict = "meets" if result["meets_target"] else "MISSES"
    migration = result["migration_s"]
    print(
        f"{result['photos']:,} photos, store {result['store_mb']:,.0f} MB (built in"
        f" {result['build_s']:.0f} s); {verdict} the target (p95 <= {TARGET_P95_S * 1000:.0f} ms)"
        + ("" if migration is None else f"; indexes added in place in {migration:.1f} s")
    )
    payload = {"machine": common.machine(), "sqlite": sqlite3.sqlite_version, "result": result}
    print(f"wrote {common.write_result('serve', payload)}")


if __name__ == "__main__":
    main()
