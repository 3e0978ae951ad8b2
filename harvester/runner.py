"""`harvest run`: wire the engine to the outside world.

Resolves the key (or starts the bundled emulator), opens the store, builds the session, client,
budget and fetcher, installs signal handlers, runs one engine per worker process and returns the
summary for the CLI to print. Nothing here decides anything about photos.
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
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from harvester.config import BundledEmulator, OutputFormat, RunConfig, ShardSpec
from harvester.dataset.sources import SourceMap, SourcesFile
from harvester.engine import Engine, ImageHalf
from harvester.exceptions import ConfigError, HarvestError
from harvester.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, exit_code_for
from harvester.flickr.budget import BUDGET_FILENAME, SharedBudget, budget_name
from harvester.flickr.client import FlickrClient
from harvester.flickr.keys import load_api_key
from harvester.images.download import Fetcher
from harvester.images.writer import cleanup_temp_files
from harvester.lookups import resolve_queries
from harvester.outputs import after_run
from harvester.progress import ProgressDisplay, RunStats, setup_logging, wants_live
from harvester.search.queries import KeywordQuery, QueryFile, load_queries
from harvester.sources import ApiAccess, load_sources_file, source_map
from harvester.store.outputs import add_api_calls
from harvester.store.rows import StoreSummary
from harvester.store.sqlite import STORE_FILENAME, Store
from harvester.targets import (
    Finaliser,
    copy_extras,
    engine_files,
    prepare_output,
    sweep_output,
    target_root,
)

log = logging.getLogger(__name__)

BUDGET_NAME = BUDGET_FILENAME


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


EMULATOR_PORT_FILE = "emulator.port"  # in OUT: the port the bundled emulator last served on


@contextlib.contextmanager
def bundled_emulator(spec: BundledEmulator, log_path: Path) -> Iterator[str]:
    """Run `harvest emulate` in a child process on a loopback port; yield its REST URL.

    The port is the one this output's last run used, when it is free (the claimed photos'
    image URLs name it, so a resumed run can still fetch them), else any free one; it is kept
    in `emulator.port` beside `log_path`. Its log goes to `log_path`, not to our terminal,
    where it would tear the live view.
    """
    port_path = log_path.with_name(EMULATOR_PORT_FILE)
    previous = _previous_port(port_path)
    proc, url = None, ""
    for port in ([previous] if previous else []) + [0]:
        proc, url = _start_emulator(spec, port, log_path)
        if url:
            break
        log.info("the bundled emulator could not take port %s; trying another", port)
    if proc is None or not url:
        raise HarvestError(f"the bundled emulator did not start; see {log_path}")
    try:
        port_path.write_text(f"{urlsplit(url).port}\n", encoding="ascii")
        log.info("bundled Flickr emulator at %s (%d photos, %s)", url, spec.photos, spec.profile)
        yield url.rstrip("/") + "/services/rest/"
    finally:
        _stop(proc)


def _previous_port(path: Path) -> int | None:
    try:
        port = int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None
    return port if 1024 <= port <= 65535 else None


def _start_emulator(
    spec: BundledEmulator, port: int, log_path: Path
) -> tuple[subprocess.Popen[str], str]:
    """The child and the base URL it printed ("" when it did not start: it is stopped)."""
    cmd = [sys.executable, "-m", "harvester", "emulate", "--port", str(port)]
    cmd += ["--photos", str(spec.photos), "--profile", spec.profile, "--seed", str(spec.seed)]
    cmd += ["--time-scale", "1000"]
    # Its own session: Ctrl-C in the terminal must stop the harvest gracefully, not cut the
    # emulator from under the photos in flight; we stop it when the harvest is done.
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=log_file, text=True, start_new_session=True
        )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line.startswith("http"):
        return proc, line
    _stop(proc)
    return proc, ""


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    """How `harvest run` ended: its exit code and the store's summary (None if unreadable)."""

    code: int
    summary: StoreSummary | None


def run_command(cfg: RunConfig) -> RunResult:
    """`harvest run`: validate inputs, then run the workers."""
    if cfg.cluster.address is not None:  # before anything is read or written
        from harvester.cluster_engine import check_ray

        check_ray(cfg)
    queries = load_queries(cfg.queries_path, cfg.search.date_field)
    # A bad sources file stops the run before anything is written.
    spec = None if cfg.sources_path is None else load_sources_file(cfg.sources_path)
    check_output_dir(cfg.out_dir)
    prepare_output(cfg)  # --out URL or directory: writable, pointing at the store, the same
    if cfg.emulator is None:
        return _run_all(cfg, queries, load_api_key(), spec)
    from harvester.emulator import DEFAULT_API_KEY

    with bundled_emulator(cfg.emulator, cfg.out_dir / "emulator.log") as url:
        # The emulator keeps its own rate limit (time-scaled); ours must not bind before it.
        api = replace(cfg.api, rest_url=url, calls_per_hour=max(cfg.api.calls_per_hour, 3.6e6))
        return _run_all(replace(cfg, api=api), queries, DEFAULT_API_KEY, spec)


def _run_all(
    cfg: RunConfig, queries: QueryFile, api_key: str, spec: SourcesFile | None
) -> RunResult:
    cleanup_temp_files(cfg.out_dir)
    if (root := target_root(cfg)) is not None:
        cleanup_temp_files(root)
    sweep_output(cfg)  # an object store: what a killed run left under the prefix
    with Store.open(cfg.out_dir / STORE_FILENAME) as store:
        access = ApiAccess(out_dir=cfg.out_dir, api=cfg.api, key=lambda: api_key)
        sources = source_map(store, spec, access, keep=True)  # before the run is recorded
        # Source lines resolved (cached, else through the API) before any claim or download;
        # an unknown or private source stops here, naming its line.
        queries = resolve_queries(queries, store, access)
        keywords = shard_keywords(queries.keywords, cfg.shard)
        if not keywords:
            log.warning("shard %d/%d has no keywords", cfg.shard.index + 1, cfg.shard.count)
        # Leases of workers killed earlier; no worker of ours runs on this output yet.
        freed = store.release_leases()
        if freed:
            log.info("released %d photos leased by an earlier run", freed)
        run_id = store.start_run(_loggable(cfg))
    code = EXIT_FAILED
    try:
        if cfg.cluster.address is not None:
            code = _run_ray(cfg, queries, keywords, api_key, sources)
        elif cfg.workers == 1:
            live = wants_live(plain=cfg.plain)
            code = run_loop(run_worker(cfg, queries, keywords, api_key, live=live, sources=sources))
        else:
            run_loop(check_key(cfg, api_key))  # one clear line here, not one per worker
            _count_calls(cfg.out_dir, 1)
            code = _run_processes(cfg, queries, keywords, api_key, sources)
    finally:
        outcome = {EXIT_OK: "finished", EXIT_INTERRUPTED: "interrupted"}.get(code, "failed")
        summary = _finish(cfg.out_dir, run_id, outcome)
        after_run(cfg.out_dir)  # CREDITS.csv, CREDITS.md and the card, whatever the outcome
        copy_extras(cfg)  # and beside the files, when they are not beside the store
    return RunResult(code=code, summary=summary)


def _run_ray(
    cfg: RunConfig,
    queries: QueryFile,
    keywords: Sequence[KeywordQuery],
    api_key: str,
    sources: SourceMap,
) -> int:
    """`--ray`: this process searches and commits; Ray tasks do the image half."""
    from harvester.cluster_engine import Dispatcher, probe_nodes, ray_session

    with ray_session(cfg.cluster):
        probe_nodes(cfg)
        live = wants_live(plain=cfg.plain)
        worker = run_worker(
            cfg,
            queries,
            keywords,
            api_key,
            live=live,
            sources=sources,
            image_half=lambda stats: Dispatcher(cfg, stats),
        )
        return run_loop(worker)


def _finish(out: Path, run_id: int, outcome: str) -> StoreSummary | None:
    """Record how the run ended; never hides the run's own error."""
    try:
        with Store.open(out / STORE_FILENAME) as store:
            summary = store.summary()
            store.finish_run(run_id, outcome, dict(summary.statuses))
    except HarvestError as exc:  # e.g. the disk is full: the summary can wait for `status`
        log.warning("could not record the end of the run: %s", exc)
        return None
    return summary


def _count_calls(out: Path, calls: int) -> None:
    """Add API calls to the store's total (the card reports it); never fails the run."""
    try:
        with Store.open(out / STORE_FILENAME) as store:
            add_api_calls(store, calls)
    except HarvestError as exc:
        log.warning("could not record %d API calls: %s", calls, exc)


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
    cfg: RunConfig,
    queries: QueryFile,
    keywords: Sequence[KeywordQuery],
    api_key: str,
    sources: SourceMap,
) -> int:
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(
            target=_worker_process,
            args=(cfg, queries, worker_keywords(keywords, i, cfg.workers), api_key, sources),
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
    cfg: RunConfig,
    queries: QueryFile,
    keywords: Sequence[KeywordQuery],
    api_key: str,
    sources: SourceMap,
) -> None:
    # A spawned process starts with no logging; plain lines, as several workers share stderr.
    setup_logging(verbosity=0)
    try:
        code = run_loop(run_worker(cfg, queries, keywords, api_key, live=False, sources=sources))
    except HarvestError as exc:
        print(f"harvest: {exc}", file=sys.stderr)
        code = exit_code_for(exc)
    sys.exit(code)


async def check_key(cfg: RunConfig, api_key: str) -> int:
    """One flickr.test.echo: raises InvalidApiKeyError for a rejected key."""
    budget = SharedBudget(cfg.out_dir / BUDGET_NAME, budget_name(api_key), cfg.api.calls_per_hour)
    try:
        async with aiohttp.ClientSession() as session:
            await FlickrClient(session, api_key, budget, rest_url=cfg.api.rest_url).echo()
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
    sources: SourceMap | None = None,
    image_half: Callable[[RunStats], ImageHalf] | None = None,
) -> int:
    """One worker: its own event loop, session, client and engine over the shared store.

    `image_half` builds the image half when it is not the engine's own (`--ray`).
    """
    store = Store.open(cfg.out_dir / STORE_FILENAME)
    stats = RunStats(budget_per_hour=cfg.api.calls_per_hour)
    for kq in keywords:
        stats.keyword(kq.keyword)
    stats.pending_at_start = store.count("claimed")
    budget = SharedBudget(cfg.out_dir / BUDGET_NAME, budget_name(api_key), cfg.api.calls_per_hour)
    connector = aiohttp.TCPConnector(limit=cfg.fetch.concurrency + 8, ttl_dns_cache=300)
    client: FlickrClient | None = None
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            client = FlickrClient(session, api_key, budget, rest_url=cfg.api.rest_url)
            await client.echo()  # a rejected key ends the run here, before any work
            fetcher = None if cfg.metadata_only else Fetcher(session, cfg.fetch)
            engine = Engine(
                cfg,
                keywords,
                store,
                client,
                fetcher,
                stats,
                negatives=queries.negatives,
                sources=sources,
                listings=client,
                files=engine_files(cfg),
                image_half=None if image_half is None else image_half(stats),
            )
            finaliser = _finaliser(cfg, keywords, stats)
            interrupted = await _run_engine(engine, client, stats, live=live, finaliser=finaliser)
            if finaliser is not None:  # the directories complete now; the rest wait, staged
                await asyncio.to_thread(finaliser.finish)
    finally:
        store.close()
        budget.close()
        if client is not None:
            _count_calls(cfg.out_dir, client.stats.calls)
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


def _finaliser(
    cfg: RunConfig, keywords: Sequence[KeywordQuery], stats: RunStats
) -> Finaliser | None:
    """webdataset: the tars of this worker's keywords, built as their directories complete."""
    if cfg.output.format is not OutputFormat.WEBDATASET or cfg.metadata_only:
        return None

    def searched() -> list[str]:
        return [name for name, k in stats.keywords.items() if k.search_done]

    packer = None
    if cfg.cluster.address is not None:  # --ray: shards written by Ray tasks
        from harvester.cluster_engine import ray_packer

        packer = ray_packer(cfg)
    return Finaliser(cfg, [k.keyword for k in keywords], searched, packer=packer)


async def _run_engine(
    engine: Engine,
    client: FlickrClient,
    stats: RunStats,
    *,
    live: bool,
    finaliser: Finaliser | None = None,
) -> bool:
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
                if finaliser is not None:
                    finaliser.poll()
                display.update()
            with contextlib.suppress(asyncio.CancelledError):
                await run
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return signals_seen > 0
