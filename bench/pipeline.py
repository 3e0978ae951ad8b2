"""Pipeline benchmark: harvest's engine against img2dataset on the same emulator photos.

    python -m bench.pipeline --photos 5000        # see bench/README.md

The Flickr emulator (harvester/emulator) serves in its own process pinned to core 0, from an
on-disk image cache warmed before anything is timed. The photos (a Large-heavy mix with big
Originals and frames, bench/pipeline_corpus.py) are picked by the emulator's ground truth.
Each tool then runs in turn, in its own process tree pinned to the other core(s):

- harvest: the real engine (harvester/engine.py `Engine`) over the photos pre-claimed in a
  fresh store, with a search backend that finds nothing, so it only downloads and processes;
- img2dataset: the like-for-like command (bench/pipeline_img2dataset.py) on the same URLs.

Reported: images/s, CPU-seconds per image and peak RSS of each tool's process tree, their
ratios, and the PSNR of both tools' resized images against a float LANCZOS reference.
`measure_image_half()` is the harvest half alone, for other benchmarks to compare against.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import shutil
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp

from bench import common
from bench.pipeline_corpus import Photo, corpus_size, fetch_bytes, save_photos, select_photos
from bench.pipeline_img2dataset import measure_img2dataset
from bench.pipeline_quality import compare_quality, imaging_costs
from bench.pipeline_report import report_markdown, report_table
from harvester.config import FetchPolicy, PlannerConfig, RunConfig, WritePolicy
from harvester.engine import Engine
from harvester.images.download import Fetcher
from harvester.progress import RunStats
from harvester.records import PhotoRecord, SearchPage, SearchQuery, Window
from harvester.runner import run_loop
from harvester.search.planner import plan_range
from harvester.search.queries import KeywordQuery, QueryFile
from harvester.store.sqlite import STORE_FILENAME, Store

log = logging.getLogger("bench.pipeline")

KEYWORD = "bench"
SINCE = 1_076_371_200  # the emulator corpus's first upload day (a multiple of the date floor)
UNTIL = 1_790_000_100  # just past its last upload (EmulatorConfig.end_ts), on the floor grid


# --- harvest's half: the real engine over pre-claimed photos ---------------------------------


class EmptySearch:
    """A SearchBackend that finds nothing: the engine only harvests what the store holds."""

    def __init__(self) -> None:
        self.calls = 0

    async def search(self, query: SearchQuery) -> SearchPage:
        """An empty page, whatever the query."""
        self.calls += 1
        return SearchPage(page=query.page, pages=0, per_page=query.per_page, total=0, photos=())


def bench_queries() -> QueryFile:
    """One keyword covering the whole corpus; its window is committed by `preclaim`."""
    return QueryFile("bench", (KeywordQuery(KEYWORD, text=KEYWORD, since=SINCE, until=UNTIL),))


def preclaim(out: Path, records: Sequence[PhotoRecord]) -> None:
    """Claim `records` in a fresh store at `out`, as a finished search window would have."""
    out.mkdir(parents=True, exist_ok=True)
    floor_s = PlannerConfig().floor_s
    start, end = plan_range(SINCE, UNTIL, int(time.time()), floor_s)
    with Store.open(out / STORE_FILENAME) as store:
        store.commit_window(
            KEYWORD,
            Window(start=start, end=end),
            records,
            reported_total=len(records),
            capped=False,
            lease_new=False,
        )


def harvest_config(out: Path, concurrency: int, threads: int, *, fsync: bool) -> RunConfig:
    """The run configuration of the measured engine (harvest's defaults otherwise)."""
    return RunConfig(
        queries_path=out / "queries.txt",
        out_dir=out,
        fetch=FetchPolicy(concurrency=concurrency),
        write=WritePolicy(fsync=fsync),
        threads=threads,
    )


async def run_engine(cfg: RunConfig) -> dict[str, Any]:
    """Build the session, fetcher and Engine as `harvester.runner.run_worker` does, and run;
    returns a few of the engine's own counters."""
    queries = bench_queries()
    backend = EmptySearch()
    store = Store.open(cfg.out_dir / STORE_FILENAME)
    stats = RunStats(budget_per_hour=cfg.api.calls_per_hour)
    connector = aiohttp.TCPConnector(limit=cfg.fetch.concurrency + 8, ttl_dns_cache=300)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            fetcher = Fetcher(session, cfg.fetch)
            engine = Engine(cfg, queries.keywords, store, backend, fetcher, stats)
            task = asyncio.create_task(engine.run(), name="engine")
            while not task.done():  # the runner's display loop, without a display
                await asyncio.wait([task], timeout=0.5)
                engine.tick()
            await task
    finally:
        store.close()
    return {
        "search_calls": backend.calls,
        "fetcher": repr(fetcher),
        "reasons": stats.reasons,
        "fingerprint_cpu_s": engine.fingerprint_cpu_s,
    }


def harvest_worker(args: argparse.Namespace) -> int:
    """Entry point of the measured harvest process."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    cfg = harvest_config(args.out, args.concurrency, args.threads, fsync=not args.no_fsync)
    counters: dict[str, Any] = {}

    async def engine() -> int:
        counters.update(await run_engine(cfg))
        return 0

    code = run_loop(engine())  # uvloop when installed, as `harvest run`
    args.result.write_text(json.dumps(counters))
    return code


def measure_image_half(
    records: Sequence[PhotoRecord],
    out: Path,
    *,
    concurrency: int = 16,
    threads: int = 2,
    fsync: bool = True,
    cpus: Sequence[int] | None = None,
) -> dict[str, Any]:
    """harvest's download-and-process half on `records`, measured as a process tree.

    Claims the records in a fresh store under `out` (which must not hold one), then runs the
    engine in a child process pinned to `cpus` (default: every core but the emulator's) and
    returns images (stored), wall_s, cpu_s, images_per_s, cpu_s_per_image, peak_rss_mb,
    outcome counts, and `paths` (photo id -> stored file).
    """
    if (out / STORE_FILENAME).exists():
        raise FileExistsError(f"{out / STORE_FILENAME} exists: measure on a fresh output")
    preclaim(out, records)
    result = out.parent / f"{out.name}-engine.json"
    cmd = [sys.executable, "-m", "bench.pipeline", "--worker", "harvest"]
    cmd += ["--out", str(out), "--result", str(result)]
    cmd += ["--concurrency", str(concurrency), "--threads", str(threads)]
    cmd += [] if fsync else ["--no-fsync"]
    code, usage = common.run_measured(
        common.pinned(cmd, cpus or common.tool_cores()),
        cwd=common.ROOT,
        log_path=out.parent / f"{out.name}.log",
    )
    figures = common.tool_figures(usage, code, _stored(out))
    engine = json.loads(result.read_text()) if result.exists() else {}
    return figures | {"engine": engine, "concurrency": concurrency, "threads": threads}


def _stored(out: Path) -> dict[str, Any]:
    """Outcome counts and stored files from the store the engine left."""
    statuses: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    paths: dict[str, str] = {}
    with Store.open(out / STORE_FILENAME, readonly=True) as store:
        for row in store.iter_export():
            statuses[row.status] += 1
            if row.path and row.status == "done":
                paths[row.record.id] = str(out / row.path)
            elif row.reason:
                reasons[f"{row.status}: {row.reason.split(':')[0]}"] += 1
    return {"statuses": dict(statuses), "reasons": dict(reasons), "paths": paths}


# --- the comparison ---------------------------------------------------------------------------


def ratios(h: dict[str, Any], i: dict[str, Any]) -> dict[str, float]:
    """harvest / img2dataset for every headline figure (>1 is better for throughput)."""

    def div(a: float, b: float) -> float:
        return a / b if b else float("nan")

    return {
        "images_per_s": div(h["images_per_s"], i["images_per_s"]),
        "images_per_cpu_s": div(h["images_per_cpu_s"], i["images_per_cpu_s"]),
        "peak_rss": div(h["peak_rss_mb"], i["peak_rss_mb"]),
        "bytes_stored": div(h["bytes_stored"], i["bytes_stored"]),
    }


def warm_up(photos: Sequence[Photo]) -> float:
    """Fetch every image once, unmeasured, so the emulator renders and caches it now."""
    start = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        total = sum(pool.map(lambda p: len(fetch_bytes(p.choice.url)), photos))
    print(f"warm-up: {total / 2**20:.0f} MB in {time.perf_counter() - start:.1f}s", flush=True)
    return total


def run_tool(name: str, emu: common.EmulatorProcess, measure: Any) -> dict[str, Any]:
    """Run one measured tool, noting the emulator's CPU over the same span."""
    before = emu.cpu_s()
    figures: dict[str, Any] = measure()
    figures["emulator_cpu_s"] = emu.cpu_s() - before
    print(
        f"{name}: {figures['images']} images in {figures['wall_s']:.1f}s, "
        f"{figures['cpu_s']:.1f} CPU-s (exit {figures['exit_code']})",
        flush=True,
    )
    return figures


def by_kind(args: argparse.Namespace, photos: Sequence[Photo]) -> dict[str, Any]:
    """Each tool on the Larges alone and on the Originals alone (framed ones included), less
    its startup (a 10-photo run): where the mix's ratio comes from."""
    larges = [p for p in photos if not p.is_original]
    groups = {
        "startup": larges[:: max(1, len(larges) // 10)][:10],
        "large": larges,
        "original": [p for p in photos if p.is_original],
    }
    raw: dict[str, dict[str, Any]] = {}
    for name, group in groups.items():
        out = args.work / f"harvest-{name}"
        h = measure_image_half(
            [p.record for p in group],
            out,
            concurrency=args.concurrency,
            threads=args.threads,
            fsync=not args.no_fsync,
        )
        i = measure_img2dataset(
            group,
            args.work,
            processes=args.i2d_processes,
            threads=args.i2d_threads,
            quality=args.quality,
            name=f"img2dataset-{name}",
        )
        for path in (out, args.work / f"img2dataset-{name}-out"):
            shutil.rmtree(path, ignore_errors=True)
        raw[name] = {"photos": len(group), "harvest": _cpu(h), "img2dataset": _cpu(i)}
        print(f"by kind, {name}: {raw[name]}", flush=True)
    return {"raw": raw, **{k: _marginal(raw, k) for k in ("large", "original")}}


def _cpu(figures: dict[str, Any]) -> dict[str, Any]:
    return {"images": figures["images"], "cpu_s": figures["cpu_s"]}


def _marginal(raw: dict[str, dict[str, Any]], kind: str) -> dict[str, float]:
    """CPU ms per stored image of one kind, each tool's startup taken out, and the ratio."""
    ms = {
        tool: 1000
        * (raw[kind][tool]["cpu_s"] - raw["startup"][tool]["cpu_s"])
        / max(1, raw[kind][tool]["images"])
        for tool in ("harvest", "img2dataset")
    }
    return ms | {"ratio": ms["img2dataset"] / ms["harvest"] if ms["harvest"] else math.nan}


def compare(args: argparse.Namespace, emu: common.EmulatorProcess) -> dict[str, Any]:
    """Pick the photos, warm the cache, run both tools, compare quality; the JSON payload."""
    work: Path = args.work
    photos = select_photos(emu.base_url, args.photos, seed=args.seed)
    save_photos(photos, str(work / "photos.jsonl"))
    mix = dict(Counter(p.kind for p in photos))
    print(f"{len(photos)} photos from {emu.base_url}: {mix}", flush=True)
    source_bytes = warm_up(photos)
    tools: dict[str, dict[str, Any]] = {}
    tools["harvest"] = run_tool(
        "harvest",
        emu,
        lambda: measure_image_half(
            [p.record for p in photos],
            work / "harvest-out",
            concurrency=args.concurrency,
            threads=args.threads,
            fsync=not args.no_fsync,
        ),
    )
    tools["img2dataset"] = run_tool(
        "img2dataset",
        emu,
        lambda: measure_img2dataset(
            photos,
            work,
            processes=args.i2d_processes,
            threads=args.i2d_threads,
            quality=args.quality,
        ),
    )
    outputs = {name: t.pop("paths") for name, t in tools.items()}
    quality = compare_quality(photos, outputs, fetch_bytes, args.psnr_sample)
    costs = imaging_costs(photos, fetch_bytes, args.imaging_sample) if args.imaging_sample else {}
    kinds = by_kind(args, photos) if args.by_kind else {}
    return {
        "benchmark": "pipeline",
        "command": " ".join(["python", "-m", "bench.pipeline", *sys.argv[1:]]),
        "machine": common.machine(),
        "emulator": {"base_url": emu.base_url, "corpus_photos": corpus_size(args.photos)},
        "photos": len(photos),
        "mix": mix,
        "source_mb": source_bytes / 2**20,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "harvest": tools["harvest"],
        "img2dataset": tools["img2dataset"],
        "ratios_harvest_over_img2dataset": ratios(tools["harvest"], tools["img2dataset"]),
        "quality": quality,
        "imaging_cpu_ms": costs,
        "by_kind_cpu_ms": kinds,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options (the hidden ones start the measured harvest process)."""
    p = argparse.ArgumentParser(
        prog="python -m bench.pipeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--photos", type=int, default=5000, help="photos to harvest (default 5000)")
    p.add_argument("--seed", type=int, default=0, help="emulator corpus and selection seed")
    p.add_argument("--concurrency", type=int, default=16, help="harvest downloads in flight")
    p.add_argument("--threads", type=int, default=2, help="harvest image threads")
    p.add_argument("--no-fsync", action="store_true", help="harvest without fsync per file")
    p.add_argument("--i2d-processes", type=int, default=2)
    p.add_argument("--i2d-threads", type=int, default=8, help="img2dataset threads per process")
    p.add_argument("--quality", type=int, default=90, help="img2dataset JPEG quality (harvest: 90)")
    p.add_argument("--psnr-sample", type=int, default=100, help="images compared per kind")
    p.add_argument("--imaging-sample", type=int, default=40, help="per-kind imaging CPU sample")
    p.add_argument("--by-kind", action="store_true", help="also run each tool per kind")
    p.add_argument("--work", type=Path, default=common.RESULTS / "pipeline-work")
    p.add_argument("--keep-cache", action="store_true", help="keep the emulator's image cache")
    p.add_argument("--keep-outputs", action="store_true", help="keep both tools' outputs")
    p.add_argument("--worker", choices=("harvest",), help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison and write bench/results/pipeline.{json,md}."""
    args = parse_args(argv)
    if args.worker == "harvest":
        return harvest_worker(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    work: Path = args.work
    cache = work / "emulator-cache"  # the emulator keys it by seed and corpus size itself
    for old in work.glob("*") if work.exists() else ():
        if old.name != "emulator-cache":
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    work.mkdir(parents=True, exist_ok=True)
    try:
        with common.emulator_process(
            corpus_size(args.photos), seed=args.seed, image_cache=cache
        ) as emu:
            payload = compare(args, emu)
    finally:
        if not args.keep_outputs:
            for name in ("harvest-out", "img2dataset-out"):
                shutil.rmtree(work / name, ignore_errors=True)
        if not args.keep_cache:
            shutil.rmtree(work / "emulator-cache", ignore_errors=True)
    report_table(payload)
    print(f"\nwrote {common.write_result('pipeline', payload)}")
    md = common.RESULTS / "pipeline.md"
    md.write_text(report_markdown(payload))
    print(f"wrote {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
