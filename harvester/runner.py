"""`harvest run`, `status` and `export`: wire the engine to the outside world.

Resolves the key (or starts the bundled emulator), opens the store, builds the session, client,
budget and fetcher, installs signal handlers, runs one engine per worker process and prints the
summary. Nothing here decides anything about photos.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import zlib
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO

import aiohttp

from harvester.config import RunConfig, ShardSpec
from harvester.engine import Engine
from harvester.exceptions import ConfigError, HarvestError
from harvester.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, exit_code_for
from harvester.flickr.budget import SharedBudget, budget_name
from harvester.flickr.client import FlickrClient, load_api_key
from harvester.images.download import Fetcher, FetchPolicy
from harvester.images.writer import cleanup_temp_files
from harvester.progress import ProgressDisplay, RunStats, setup_logging
from harvester.records import DateField
from harvester.search.queries import KeywordQuery, QueryFile, load_queries
from harvester.store.sqlite import Store

log = logging.getLogger(__name__)

STORE_NAME = "harvest.sqlite"
BUDGET_NAME = "budget.sqlite"
EMULATOR_KEY = "0123456789abcdef0123456789abcdef"  # the emulator's DEFAULT_API_KEY


def shard_keywords(keywords: Sequence[KeywordQuery], shard: ShardSpec) -> list[KeywordQuery]:
    """Keywords of one shard: a stable hash of the keyword, so editing the file moves none."""
    return [k for k in keywords if zlib.crc32(k.keyword.encode()) % shard.count == shard.index]


def worker_keywords(
    keywords: Sequence[KeywordQuery], worker: int, workers: int
) -> list[KeywordQuery]:
    """Keywords of one worker process: round-robin over the shard, balanced and deterministic."""
    return [k for i, k in enumerate(keywords) if i % workers == worker]


def check_output_dir(out: Path) -> None:
    """Create the output directory and prove it is writable, or fail with one clear line."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"output directory {out} is not writable: {exc.strerror}") from exc


@contextlib.contextmanager
def bundled_emulator(photos: int, profile: str, seed: int) -> Iterator[str]:
    """Run `harvest emulate` in a child process on a free loopback port; yield its REST URL."""
    cmd = [sys.executable, "-m", "harvester.cli", "emulate", "--port", "0", "--photos", str(photos)]
    cmd += ["--profile", profile, "--seed", str(seed), "--time-scale", "1000"]
    # Its own session: Ctrl-C in the terminal must stop the harvest gracefully, not cut the
    # emulator from under the photos in flight; we stop it when the harvest is done.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("http"):
            raise HarvestError(f"the bundled emulator did not start (said {line!r})")
        log.info("bundled Flickr emulator at %s (%d photos, %s)", line, photos, profile)
        yield line.rstrip("/") + "/services/rest/"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_command(cfg: RunConfig, args: object) -> int:
    """`harvest run`: validate inputs, then run the workers; returns the exit code."""
    queries = load_queries(cfg.queries_path, DateField(cfg.date_field))
    check_output_dir(cfg.out_dir)
    plain = bool(getattr(args, "plain", False))
    if getattr(args, "emulator", False):
        with bundled_emulator(
            getattr(args, "emulator_photos", 10_000),
            getattr(args, "emulator_profile", "realistic"),
            getattr(args, "emulator_seed", 0),
        ) as url:
            cfg = replace(cfg, flickr_url=url, calls_per_hour=max(cfg.calls_per_hour, 3_600_000))
            return _run_all(cfg, queries, EMULATOR_KEY, plain=plain)
    return _run_all(cfg, queries, load_api_key(), plain=plain)


def _run_all(cfg: RunConfig, queries: QueryFile, api_key: str, *, plain: bool) -> int:
    keywords = shard_keywords(queries.keywords, cfg.shard)
    if not keywords:
        log.warning("shard %d/%d has no keywords", cfg.shard.index + 1, cfg.shard.count)
    cleanup_temp_files(cfg.out_dir)
    with Store.open(cfg.out_dir / STORE_NAME) as store:
        # Leases of workers killed earlier; no worker of ours runs on this output yet.
        freed = store.release_leases()
        if freed:
            log.info("released %d photos leased by an earlier run", freed)
        run_id = store.start_run(_loggable(cfg))
    outcome = "failed"
    try:
        if cfg.workers == 1:
            live = sys.stderr.isatty() and not plain
            code = run_loop(run_worker(cfg, queries, keywords, api_key, live=live))
        else:
            run_loop(check_key(cfg, api_key))  # one clear line here, not one per worker
            code = _run_processes(cfg, queries, keywords, api_key)
        outcome = {EXIT_OK: "finished", EXIT_INTERRUPTED: "interrupted"}.get(code, "failed")
        return code
    finally:
        _finish(cfg.out_dir, run_id, outcome)


def _finish(out: Path, run_id: int, outcome: str) -> None:
    """Record how the run ended and print the summary; never hides the run's own error."""
    try:
        with Store.open(out / STORE_NAME) as store:
            summary = store.summary()
            store.finish_run(run_id, outcome, dict(summary.statuses))
    except HarvestError as exc:  # e.g. the disk is full: the summary can wait for `status`
        log.warning("could not record the end of the run: %s", exc)
        return
    print(summary.render(), file=sys.stderr)


def _loggable(cfg: RunConfig) -> dict[str, object]:
    """The run configuration as recorded in the store (it never holds the key)."""
    return {name: getattr(cfg, name) for name in cfg.__dataclass_fields__}


def run_loop(main: Coroutine[object, object, int]) -> int:
    """asyncio.run, on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional off Linux
        return asyncio.run(main)
    return uvloop.run(main)


def _run_processes(
    cfg: RunConfig, queries: QueryFile, keywords: Sequence[KeywordQuery], api_key: str
) -> int:
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(
            target=_worker_process,
            args=(cfg, queries, worker_keywords(keywords, i, cfg.workers), api_key),
            name=f"worker-{i + 1}",
        )
        for i in range(cfg.workers)
    ]

    def forward(signum: int, _frame: object) -> None:
        # Ctrl-C reaches every process of the terminal's group; SIGTERM (kill, docker stop)
        # reaches only us, so pass it on. Each worker stops gracefully on its first signal.
        if signum == signal.SIGTERM:
            for proc in procs:
                if proc.pid is not None and proc.exitcode is None:
                    os.kill(proc.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    codes = [EXIT_FAILED if p.exitcode is None else p.exitcode for p in procs]
    return max((EXIT_INTERRUPTED if c < 0 else c for c in codes), default=EXIT_OK)


def _worker_process(
    cfg: RunConfig, queries: QueryFile, keywords: Sequence[KeywordQuery], api_key: str
) -> None:
    # A spawned process starts with no logging; plain lines, as several workers share stderr.
    setup_logging(verbosity=0)
    try:
        code = run_loop(run_worker(cfg, queries, keywords, api_key, live=False))
    except HarvestError as exc:
        print(f"harvest: {exc}", file=sys.stderr)
        code = exit_code_for(exc)
    sys.exit(code)


async def check_key(cfg: RunConfig, api_key: str) -> int:
    """One flickr.test.echo: raises InvalidApiKeyError for a rejected key."""
    budget = SharedBudget(cfg.out_dir / BUDGET_NAME, budget_name(api_key), cfg.calls_per_hour)
    try:
        async with aiohttp.ClientSession() as session:
            await FlickrClient(session, api_key, budget, rest_url=cfg.flickr_url).echo()
    finally:
        budget.close()
    return EXIT_OK


async def run_worker(
    cfg: RunConfig,
    queries: QueryFile,
    keywords: Sequence[KeywordQuery],
    api_key: str,
    *,
    live: bool,
) -> int:
    """One worker: its own event loop, session, client and engine over the shared store."""
    store = Store.open(cfg.out_dir / STORE_NAME)
    stats = RunStats(budget_per_hour=cfg.calls_per_hour)
    for kq in keywords:
        stats.keyword(kq.keyword)
    stats.pending_at_start = store.count("claimed")
    budget = SharedBudget(cfg.out_dir / BUDGET_NAME, budget_name(api_key), cfg.calls_per_hour)
    connector = aiohttp.TCPConnector(limit=cfg.concurrency + 8, ttl_dns_cache=300)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            client = FlickrClient(session, api_key, budget, rest_url=cfg.flickr_url)
            await client.echo()  # a rejected key ends the run here, before any work
            fetcher = None if cfg.metadata_only else Fetcher(session, FetchPolicy.from_config(cfg))
            engine = Engine(cfg, queries, keywords, store, client, fetcher, stats)
            interrupted = await _run_engine(engine, client, stats, live=live)
    finally:
        store.close()
        budget.close()
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


async def _run_engine(engine: Engine, client: FlickrClient, stats: RunStats, *, live: bool) -> bool:
    loop = asyncio.get_running_loop()
    run = asyncio.create_task(engine.run(), name="engine")
    signals_seen = 0

    def on_signal() -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            engine.request_stop()
        else:
            log.warning("second signal: stopping now; unfinished photos are redone next run")
            run.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        with ProgressDisplay(stats, live=live) as display:
            while not run.done():
                await asyncio.wait([run], timeout=0.5)
                stats.api_calls = client.stats.calls
                stats.api_retries = client.stats.retries_total
                engine.tick()
                display.update()
            with contextlib.suppress(asyncio.CancelledError):
                await run
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return signals_seen > 0


def status_command(out: Path) -> int:
    """`harvest status OUT`: the same summary, while a run goes on or after it."""
    if not (out / STORE_NAME).exists():
        raise ConfigError(f"{out} holds no harvest (no {STORE_NAME})")
    with Store.open(out / STORE_NAME, readonly=True) as store:
        print(store.summary().render())
    return 0


def export_command(out: Path, fmt: str, output: Path | None) -> int:
    """`harvest export OUT --format jsonl|csv`: stream every record to a file or stdout."""
    from harvester.export import export

    if not (out / STORE_NAME).exists():
        raise ConfigError(f"{out} holds no harvest (no {STORE_NAME})")
    sink: IO[str]
    with contextlib.ExitStack() as stack:
        if output is None:
            sink = sys.stdout
        else:
            sink = stack.enter_context(output.open("w", encoding="utf-8", newline=""))
        count = export(out / STORE_NAME, fmt, sink)
    log.info("exported %d records", count)
    return 0


__all__ = ["run_command", "run_worker", "shard_keywords", "status_command"]
