"""Pipeline benchmark: harvest's download-and-process path against img2dataset, same photos.

    python bench/pipeline.py --photos 5000        # see bench/README.md

The image host (for now the local one of bench/pipeline_corpus.py; the Flickr emulator once its
image host exists) runs in its own process pinned to core 0; each tool runs in turn, in its own
process tree pinned to the other core(s), fetching the same URLs (the ones harvest's size choice
picks). Reported: images/s, CPU-seconds per image and peak RSS (whole process tree), their
ratios harvest/img2dataset, and the PSNR of both tools' resized Originals against a float
LANCZOS reference resize of the original bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import logging
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from bench.pipeline_corpus import Photo, build_pool, fetch_bytes, local_host, local_photos
from bench.pipeline_img2dataset import ensure_img2dataset, img2dataset_command, img2dataset_outputs
from bench.pipeline_quality import QualityReport, compare_quality
from harvester.download import Fetcher, FetchPolicy, open_image_session
from harvester.exceptions import DownloadError
from harvester.imaging import ImagePolicy, Rejected, process_image
from harvester.provenance import Provenance
from harvester.records import PhotoRecord, SizeVariant
from harvester.sizes import NoSize, SizeChoice, SizePolicy, choose_size
from harvester.writer import WritePolicy, write_photo

log = logging.getLogger("bench.pipeline")

BENCH = Path(__file__).resolve().parent
KEYWORD = "bench"


# --- harvest: the download-and-process path ---------------------------------------------------


@dataclass
class HarvestRun:
    """What run_harvest did: counts by outcome and the stored file of each photo."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    paths: dict[str, str] = field(default_factory=dict)  # photo id -> path relative to out
    wall_s: float = 0.0


async def run_harvest(
    records: Sequence[PhotoRecord],
    out_dir: Path,
    *,
    concurrency: int,
    threads: int = 2,
    size_policy: SizePolicy | None = None,
    image_policy: ImagePolicy | None = None,
    write_policy: WritePolicy | None = None,
) -> HarvestRun:
    """Download, process and write `records` into `out_dir` with harvest's stages.

    A stand-in for the engine (harvester/pipeline.py): the same stages in the same shape (a
    fixed pool of download tasks, a thread pool for decode/resize/write), without the store.
    Swap the body for an Engine call once it runs from a record list.
    """
    sizes, images, writes = (
        size_policy or SizePolicy(),
        image_policy or ImagePolicy(),
        write_policy or WritePolicy(),
    )
    run = HarvestRun()
    queue: asyncio.Queue[tuple[int, PhotoRecord] | None] = asyncio.Queue(concurrency * 2)
    start = time.perf_counter()
    with ThreadPoolExecutor(threads, thread_name_prefix="image") as pool:
        async with open_image_session(FetchPolicy(concurrency=concurrency)) as session:
            fetcher = Fetcher(session, FetchPolicy(concurrency=concurrency, rate_per_s=100_000.0))
            step = _Step(fetcher, pool, out_dir, sizes, images, writes, run)
            async with asyncio.TaskGroup() as tg:
                for _ in range(concurrency):
                    tg.create_task(step.worker(queue))
                for item in enumerate(records):
                    await queue.put(item)
                for _ in range(concurrency):
                    await queue.put(None)
    run.wall_s = time.perf_counter() - start
    log.info("harvest: %s", fetcher)
    return run


@dataclass
class _Step:
    """One photo through harvest's stages; shared by the download tasks."""

    fetcher: Fetcher
    pool: ThreadPoolExecutor
    out_dir: Path
    sizes: SizePolicy
    images: ImagePolicy
    writes: WritePolicy
    run: HarvestRun

    async def worker(self, queue: asyncio.Queue[tuple[int, PhotoRecord] | None]) -> None:
        while (item := await queue.get()) is not None:
            seq, record = item
            outcome = await self.one(seq, record)
            self.tally(record.id, outcome)

    async def one(self, seq: int, record: PhotoRecord) -> str:
        choice = choose_size(record, self.sizes)
        if isinstance(choice, NoSize):
            return f"skipped: {choice.reason}"
        try:
            got = await self.fetcher.fetch(choice)
        except DownloadError as exc:
            return f"failed: {exc}"
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, self.process, seq, record, choice, got.data)

    def process(self, seq: int, record: PhotoRecord, choice: SizeChoice, data: bytes) -> str:
        """Thread pool: decode, clean, stamp, write."""
        prov = Provenance.from_record(
            record,
            keywords=(KEYWORD,),
            size_label=choice.label,
            source_url=choice.url,
            harvested_at=_now(),
        )
        result = process_image(data, prov, self.images)
        if isinstance(result, Rejected):
            return f"{result.status.value}: {result.reason}"
        path = write_photo(self.out_dir, KEYWORD, seq, record, result.parts, self.writes)
        return "done:" + str(path.relative_to(self.out_dir))

    def tally(self, photo_id: str, outcome: str) -> None:
        status, _, detail = outcome.partition(":")
        if status == "done":
            self.run.done += 1
            self.run.paths[photo_id] = detail
            return
        self.run.reasons[f"{status}: {detail.split(':')[0].strip()}"] += 1
        if status == "skipped":
            self.run.skipped += 1
        else:
            self.run.failed += 1


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


# --- records on disk (for the measured subprocess) ------------------------------------------


def save_records(records: Sequence[PhotoRecord], path: Path) -> None:
    """One JSON record per line."""
    with path.open("w") as f:
        for record in records:
            f.write(json.dumps(asdict(record)) + "\n")


def load_records(path: Path) -> list[PhotoRecord]:
    """Inverse of save_records."""
    records = []
    for line in path.read_text().splitlines():
        raw = json.loads(line)
        raw["tags"] = tuple(raw["tags"])
        raw["sizes"] = tuple(SizeVariant(**s) for s in raw["sizes"])
        records.append(PhotoRecord(**raw))
    return records


def harvest_worker(args: argparse.Namespace) -> int:
    """Entry point of the measured harvest process."""
    records = load_records(args.records)
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    run = asyncio.run(
        run_harvest(records, args.out, concurrency=args.concurrency, threads=args.threads)
    )
    args.result.write_text(json.dumps(asdict(run)))
    return 0


# --- the comparison ---------------------------------------------------------------------------


@dataclass
class ToolResult:
    """One tool's run: stored images and its process tree's usage."""

    name: str
    images: int
    exit_code: int
    usage: common.TreeUsage
    bytes_stored: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.images / self.usage.wall_s if self.usage.wall_s else 0.0

    @property
    def cpu_s_per_image(self) -> float:
        return self.usage.cpu_s / self.images if self.images else float("inf")

    def summary(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "exit_code": self.exit_code,
            "wall_s": self.usage.wall_s,
            "cpu_s": self.usage.cpu_s,
            "cpu_s_sampled": self.usage.cpu_s_sampled,
            "cpu_s_rusage": self.usage.cpu_s_rusage,
            "images_per_s": self.images_per_s,
            "cpu_s_per_image": self.cpu_s_per_image,
            "images_per_cpu_s": 1 / self.cpu_s_per_image if self.images else 0.0,
            "peak_rss_mb": self.usage.peak_rss_bytes / 2**20,
            "peak_processes": self.usage.peak_processes,
            "bytes_stored": self.bytes_stored,
            **self.extra,
        }


def run_harvest_measured(work: Path, args: argparse.Namespace) -> ToolResult:
    """harvest in its own pinned process, measured as a tree."""
    out = work / "harvest-out"
    result = work / "harvest-result.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "harvest"]
    cmd += ["--records", str(work / "records.jsonl"), "--out", str(out), "--result", str(result)]
    cmd += ["--concurrency", str(args.concurrency), "--threads", str(args.threads)]
    env = {**os.environ, "PYTHONPATH": str(common.ROOT)}
    code, usage = common.run_measured(
        common.pinned(cmd, common.tool_cores()),
        cwd=common.ROOT,
        env=env,
        log_path=work / "harvest.log",
    )
    empty: dict[str, Any] = {"done": 0, "paths": {}}
    run: dict[str, Any] = json.loads(result.read_text()) if result.exists() else empty
    stored = sum((out / p).stat().st_size for p in run["paths"].values())
    extra = {
        "skipped": run.get("skipped"),
        "failed": run.get("failed"),
        "reasons": run.get("reasons"),
    }
    tool = ToolResult("harvest", run["done"], code, usage, stored, extra)
    tool.extra["paths"] = {pid: str(out / p) for pid, p in run["paths"].items()}
    return tool


def run_img2dataset_measured(work: Path, args: argparse.Namespace) -> ToolResult:
    """img2dataset in its own venv and pinned process tree, measured the same way."""
    exe = ensure_img2dataset()
    out = work / "img2dataset-out"
    cmd = img2dataset_command(
        exe,
        work / "urls.csv",
        out,
        processes=args.i2d_processes,
        threads=args.i2d_threads,
        quality=args.quality,
    )
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"}
    env.pop("PYTHONPATH", None)
    code, usage = common.run_measured(
        common.pinned(cmd, common.tool_cores()),
        cwd=work,
        env=env,
        log_path=work / "img2dataset.log",
    )
    found = img2dataset_outputs(out)
    stored = sum(Path(p).stat().st_size for p in found.values())
    tool = ToolResult("img2dataset", len(found), code, usage, stored)
    tool.extra["by_url"] = found
    return tool


def prepare(work: Path, photos: Sequence[Photo]) -> None:
    """records.jsonl for harvest and urls.csv (the same chosen URLs) for img2dataset."""
    save_records([p.record for p in photos], work / "records.jsonl")
    with (work / "urls.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["url", "photo_id"])
        for p in photos:
            writer.writerow([p.choice.url, p.record.id])


def ratios(h: ToolResult, i: ToolResult) -> dict[str, float]:
    """harvest / img2dataset for every headline figure (>1 is better for throughput)."""

    def div(a: float, b: float) -> float:
        return a / b if b else float("nan")

    return {
        "images_per_s": div(h.images_per_s, i.images_per_s),
        "images_per_cpu_s": div(i.cpu_s_per_image, h.cpu_s_per_image),
        "peak_rss": div(h.usage.peak_rss_bytes, i.usage.peak_rss_bytes),
        "bytes_stored": div(h.bytes_stored, i.bytes_stored),
    }


def report(h: ToolResult, i: ToolResult, quality: QualityReport, r: dict[str, float]) -> None:
    """The table on stdout."""
    rows = []
    for t in (h, i):
        s = t.summary()
        psnr = quality.mean_psnr.get(t.name)
        rows.append(
            [
                t.name,
                t.images,
                s["wall_s"],
                s["images_per_s"],
                s["cpu_s"],
                s["cpu_s_per_image"] * 1000,
                s["images_per_cpu_s"],
                s["peak_rss_mb"],
                t.bytes_stored / 2**20,
                "n/a" if psnr is None else f"{psnr:.2f}",
            ]
        )
    common.print_table(
        [
            "tool",
            "images",
            "wall s",
            "img/s",
            "CPU s",
            "CPU ms/img",
            "img/CPU-s",
            "peak RSS MB",
            "stored MB",
            "PSNR dB",
        ],
        rows,
    )
    print()
    print("harvest / img2dataset: " + ", ".join(f"{k} {v:.2f}x" for k, v in r.items()))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--photos", type=int, default=5000, help="photos to harvest (default 5000)")
    p.add_argument("--concurrency", type=int, default=16, help="harvest downloads in flight")
    p.add_argument("--threads", type=int, default=2, help="harvest image threads")
    p.add_argument("--i2d-processes", type=int, default=2)
    p.add_argument("--i2d-threads", type=int, default=8, help="img2dataset threads per process")
    p.add_argument("--quality", type=int, default=90, help="img2dataset JPEG quality (harvest: 90)")
    p.add_argument("--psnr-sample", type=int, default=60, help="Originals compared for PSNR")
    p.add_argument("--work", type=Path, default=BENCH / "results" / "pipeline-work")
    # The emulator source (harvester/emulator) plugs in here once its image host exists.
    p.add_argument("--source", choices=("local",), default="local", help="image host")
    p.add_argument("--worker", choices=("harvest",), help=argparse.SUPPRESS)
    p.add_argument("--records", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker == "harvest":
        return harvest_worker(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    work: Path = args.work
    if work.exists():
        subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    with photo_source(args) as (source, base_url, photos):
        outcome = compare(work, args, photos, base_url)
    payload = result_payload(args, argv, source, photos, *outcome)
    print(f"\nwrote {common.write_result('pipeline', payload)}")
    return 0


@contextlib.contextmanager
def photo_source(args: argparse.Namespace) -> Iterator[tuple[str, str, list[Photo]]]:
    """The photos and the server that hosts them, running until the block ends."""
    cache = BENCH / "results" / "pipeline-pool"
    pool = build_pool(cache)
    with local_host(cache) as base_url:
        yield "local", base_url, local_photos(base_url, pool, args.photos)


def compare(
    work: Path, args: argparse.Namespace, photos: list[Photo], base_url: str
) -> tuple[ToolResult, ToolResult, QualityReport, dict[str, float]]:
    """Run both tools on the photos, then compare quality and print the table."""
    prepare(work, photos)
    print(
        f"{len(photos)} photos from {base_url}: {dict(Counter(p.kind for p in photos))}", flush=True
    )
    warm_up(photos)
    h = run_harvest_measured(work, args)
    print(f"harvest: {h.images} images in {h.usage.wall_s:.1f}s (exit {h.exit_code})", flush=True)
    i = run_img2dataset_measured(work, args)
    print(
        f"img2dataset: {i.images} images in {i.usage.wall_s:.1f}s (exit {i.exit_code})", flush=True
    )
    by_id = {p.choice.url: p.record.id for p in photos}
    outputs = {
        "harvest": h.extra["paths"],
        "img2dataset": {by_id[url]: path for url, path in i.extra["by_url"].items()},
    }
    quality = compare_quality(photos, outputs, fetch_bytes, args.psnr_sample)
    r = ratios(h, i)
    report(h, i, quality, r)
    return h, i, quality, r


def warm_up(photos: Sequence[Photo]) -> None:
    """Fetch every image once, unmeasured, so that neither tool pays the server's first render."""
    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        total = sum(pool.map(lambda p: len(fetch_bytes(p.choice.url)), photos))
    print(f"warm-up: {total / 2**20:.0f} MB in {time.perf_counter() - start:.1f}s", flush=True)


def result_payload(
    args: argparse.Namespace,
    argv: Sequence[str] | None,
    source: str,
    photos: Sequence[Photo],
    h: ToolResult,
    i: ToolResult,
    quality: QualityReport,
    r: dict[str, float],
) -> dict[str, Any]:
    """Everything bench/results/pipeline.json holds."""
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    i2d_cmd = img2dataset_command(
        Path("img2dataset"),
        Path("urls.csv"),
        Path("OUT"),
        processes=args.i2d_processes,
        threads=args.i2d_threads,
        quality=args.quality,
    )
    return {
        "benchmark": "pipeline",
        "command": " ".join(["python", "bench/pipeline.py", *(argv or sys.argv[1:])]),
        "machine": common.machine(),
        "source": source,
        "photos": len(photos),
        "mix": dict(Counter(p.kind for p in photos)),
        "settings": settings,
        "img2dataset_command": i2d_cmd,
        "harvest": {k: v for k, v in h.summary().items() if k != "paths"},
        "img2dataset": {k: v for k, v in i.summary().items() if k != "by_url"},
        "ratios_harvest_over_img2dataset": r,
        "quality": asdict(quality),
    }


if __name__ == "__main__":
    sys.exit(main())
