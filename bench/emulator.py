"""Emulator benchmark: Large images/s on one core, and 1M-photo start-up time and peak RSS.

    python -m bench.emulator [--photos 1000000] [--seconds 10] [--concurrency 64]

The server runs in its own process pinned to core 0 (`taskset -c 0`); this process is the
aiohttp client, pinned to the other core(s). Prints a table and writes bench/results/emulator.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from typing import Any

import aiohttp
import psutil

from bench import common

RESULTS = common.RESULTS / "emulator.json"
KEY = "0123456789abcdef0123456789abcdef"


def start_server(photos: int, core: int = 0) -> tuple[subprocess.Popen[str], str, float]:
    """`serve_forever` in a pinned child process; returns it, its base URL and start-up seconds."""
    code = (
        "from harvester.emulator import EmulatorConfig, serve_forever;"
        f"serve_forever(EmulatorConfig(photos={photos}, profile='ideal', "
        "image_cache_bytes=1 << 30))"
    )
    cmd = ["taskset", "-c", str(core), sys.executable, "-c", code]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=common.ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("http"):
        proc.kill()
        raise SystemExit(f"emulator did not start: {line!r}")
    return proc, line, time.perf_counter() - t0


def rss_mb(proc: subprocess.Popen[str]) -> float:
    """Resident memory of the server process tree, in MB."""
    p = psutil.Process(proc.pid)
    return sum(q.memory_info().rss for q in [p, *p.children(recursive=True)]) / 1e6


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, then wait."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


async def large_urls(session: aiohttp.ClientSession, base: str, n: int) -> list[str]:
    """url_l of the first `n` photos that have one."""
    urls: list[str] = []
    page = 1
    while len(urls) < n:
        params = {
            "method": "flickr.photos.search",
            "api_key": KEY,
            "format": "json",
            "nojsoncallback": "1",
            "text": "photo",
            "extras": "url_l",
            "per_page": "500",
            "page": str(page),
        }
        async with session.get(base + "/services/rest/", params=params) as r:
            photos = json.loads(await r.read())["photos"]["photo"]
        urls += [p["url_l"] for p in photos if "url_l" in p]
        page += 1
    return urls[:n]


async def hammer(
    session: aiohttp.ClientSession, urls: list[str], seconds: float, conc: int
) -> dict[str, float]:
    """Fetch random URLs from `urls` with `conc` workers for `seconds`; images/s and MB/s."""
    done, nbytes, errors = 0, 0, 0
    deadline = time.perf_counter() + seconds
    rng = random.Random(1)

    async def worker() -> None:
        nonlocal done, nbytes, errors
        while time.perf_counter() < deadline:
            async with session.get(rng.choice(urls)) as r:
                body = await r.read()
                if r.status == 200:
                    done, nbytes = done + 1, nbytes + len(body)
                else:
                    errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    dt = time.perf_counter() - t0
    return {
        "images_per_s": done / dt,
        "mb_per_s": nbytes / dt / 1e6,
        "images": done,
        "errors": errors,
        "mean_kb": nbytes / max(done, 1) / 1e3,
    }


async def warm(session: aiohttp.ClientSession, urls: list[str], conc: int) -> dict[str, float]:
    """Fetch every URL once (renders them): the cold, render-bound rate."""
    sem = asyncio.Semaphore(conc)

    async def one(u: str) -> int:
        async with sem, session.get(u) as r:
            return len(await r.read())

    t0 = time.perf_counter()
    sizes = await asyncio.gather(*(one(u) for u in urls))
    dt = time.perf_counter() - t0
    return {"images_per_s": len(urls) / dt, "mb_per_s": sum(sizes) / dt / 1e6}


async def throughput(args: argparse.Namespace) -> dict[str, Any]:
    """Serve Large images from a pinned server to this process."""
    proc, base, _ = start_server(args.serve_photos)
    try:
        conn = aiohttp.TCPConnector(limit=args.concurrency)
        async with aiohttp.ClientSession(connector=conn) as session:
            urls = await large_urls(session, base, args.images)
            cold = await warm(session, urls, args.concurrency)
            cpu0, t0 = sum(psutil.Process(proc.pid).cpu_times()[:2]), time.perf_counter()
            hot = await hammer(session, urls, args.seconds, args.concurrency)
            cpu1, t1 = sum(psutil.Process(proc.pid).cpu_times()[:2]), time.perf_counter()
            hot["server_core_busy"] = (cpu1 - cpu0) / (t1 - t0)
        return {
            "distinct_images": len(urls),
            "cold": cold,
            "cached": hot,
            "server_rss_mb": rss_mb(proc),
        }
    finally:
        stop(proc)


def startup(photos: int) -> dict[str, float]:
    """Start-up time (to the URL line) and RSS for a corpus of `photos`, then stop."""
    proc, _, seconds = start_server(photos)
    try:
        return {"photos": photos, "startup_s": seconds, "rss_mb": rss_mb(proc)}
    finally:
        stop(proc)


def main() -> None:
    """Run both measurements, print a table, write the JSON."""
    ap = argparse.ArgumentParser(
        prog="python -m bench.emulator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--photos", type=int, default=1_000_000)
    ap.add_argument("--serve-photos", type=int, default=50_000)
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()
    others = sorted(os.sched_getaffinity(0) - {0}) or [0]
    os.sched_setaffinity(0, others)
    start = startup(args.photos)
    serve = asyncio.run(throughput(args))
    result = {"startup": start, "serve": serve, "cpus": os.cpu_count(), "client_cores": others}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'measure':<34}{'value':>14}")
    print(f"{'start-up, ' + str(args.photos) + ' photos (s)':<34}{start['startup_s']:>14.2f}")
    print(f"{'server RSS after start-up (MB)':<34}{start['rss_mb']:>14.0f}")
    print(f"{'Large cold (renders/s)':<34}{serve['cold']['images_per_s']:>14.0f}")
    print(f"{'Large cached (images/s, 1 core)':<34}{serve['cached']['images_per_s']:>14.0f}")
    print(f"{'Large cached (MB/s)':<34}{serve['cached']['mb_per_s']:>14.1f}")
    print(f"{'mean Large size (KB)':<34}{serve['cached']['mean_kb']:>14.0f}")
    print(f"{'server core busy while cached':<34}{serve['cached']['server_core_busy']:>14.2f}")
    print(f"wrote {RESULTS.relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
