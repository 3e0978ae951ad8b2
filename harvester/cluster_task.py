"""What runs on the Ray workers: one batch's image half, a directory's WebDataset shard, and
the cluster-wide host limiter.

`process_batch(...)` is the body of the Ray task (harvester/cluster_engine.py wraps it with
`ray.remote`): Ray has no async remote functions, so it runs the same async fetch → process
→ write code as the engine (`batch.run_batch`) in its own event loop and returns the
outcomes, a few hundred bytes a photo, never the images. `pack_shard(...)` writes one complete
directory's tar, Parquet and stats (`--output-format webdataset`) from the photos its batches
staged on the output target, so shards are written beside the work, not through the driver.
`HostLimiterActor` is the async
actor holding one AIMD token bucket per image host (cluster/bucket.py); `LeasedHosts` is its
client in each task, leasing tokens in blocks and falling back to rate/N locally when the
actor cannot be reached.

Chaos hook for the tests: `HARVEST_CHAOS=exit-after:N` makes a batch's first attempt die
with `os._exit(137)` after N photos; `hang-after:N` makes it hang (a straggler).
`pack-exit-after:N` and `pack-hang-after:N` do the same to a pack task after it has read N
staged photos into its tar; Ray's retries of a task carry no attempt number, so the first
attempt is the one that finds no marker for its directory under `HARVEST_CHAOS_MARKS`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import aiohttp
from aiolimiter import AsyncLimiter

from harvester.batch import Outcome, PhotoWork, run_batch
from harvester.cluster.bucket import TokenBucket
from harvester.config import RunConfig
from harvester.images.arenas import cap_malloc_arenas
from harvester.images.download import Fetcher
from harvester.images.writer import cleanup_temp_files
from harvester.storage.target import Target, open_target
from harvester.store.rows import PendingPhoto
from harvester.targets import DirPlan, Packed, engine_files, output_spec, pack_dir, staging_target

log = logging.getLogger(__name__)

CHAOS_ENV = "HARVEST_CHAOS"
CHAOS_MARKS_ENV = "HARVEST_CHAOS_MARKS"  # pack chaos: where first attempts leave their marker
PACK_CHAOS = "pack-"
LEASE_TIMEOUT_S = 30.0  # a lease slower than this: the actor counts as unreachable


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchResult:
    """What a task hands back: one outcome per photo of the batch, in its order."""

    outcomes: tuple[Outcome, ...]
    downloaded_bytes: int
    seconds: float  # wall time on the worker
    fallback: bool  # the limiter actor was unreachable at some point: rate/N was used


class HostLimiterActor:
    """One token bucket per image host for the whole cluster (run as an async Ray actor).

    `lease` waits (on the actor's loop, which serves every caller concurrently) until the
    block's tokens are due, so blocks go out at exactly the host's rate; `throttled` halves
    the rate on a 429. A restarted actor starts again at the full rate: its state is lost.
    """

    def __init__(self, rate_per_s: float, block: int, recover_per_min: float) -> None:
        self._rate, self._block, self._recover = rate_per_s, block, recover_per_min / 60
        self._buckets: dict[str, TokenBucket] = {}

    def _bucket(self, host: str) -> TokenBucket:
        if host not in self._buckets:
            self._buckets[host] = TokenBucket(
                target_per_s=self._rate,
                burst=self._block,
                recover_per_s=self._recover,
                now_s=time.monotonic(),
            )
        return self._buckets[host]

    async def lease(self, host: str, tokens: int) -> int:
        """Grant `tokens` requests to `host`, once they are due."""
        wait = self._bucket(host).take(tokens, time.monotonic())
        if wait > 0:
            await asyncio.sleep(wait)
        return tokens

    async def give_back(self, host: str, tokens: int) -> None:
        """A worker's unspent tokens, returned when its batch ends."""
        self._bucket(host).give_back(tokens, time.monotonic())

    async def throttled(self, host: str) -> float:
        """A worker saw a 429 from `host`; returns the host's rate after it."""
        bucket = self._bucket(host)
        if bucket.throttled(time.monotonic()):
            log.info("image host %s throttles: rate now %.1f/s", host, bucket.rate_per_s)
        return bucket.rate_per_s

    async def rate(self, host: str) -> float:
        """The host's current rate (tests, logs)."""
        return self._bucket(host).rate_per_s


class LeasedHosts:
    """A task's side of the shared limiter (download.HostLimiter): local blocks of tokens."""

    def __init__(self, actor: Any | None, block: int, fallback_per_s: float) -> None:
        self._actor = actor
        self._block = block
        self._fallback = AsyncLimiter(max(fallback_per_s, 0.1), 1.0)
        self._tokens: defaultdict[str, int] = defaultdict(int)
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.used_fallback = False

    def __repr__(self) -> str:
        return f"<LeasedHosts held={dict(self._tokens)} fallback={self.used_fallback}>"

    async def acquire(self, host: str) -> None:
        """One request's token: from the local block, else a new lease, else rate/N."""
        async with self._locks[host]:
            if self._tokens[host] == 0 and not await self._lease(host):
                await self._fallback.acquire()
                return
            self._tokens[host] -= 1

    async def _lease(self, host: str) -> bool:
        if self._actor is None:
            return False
        try:
            ref = self._actor.lease.remote(host, self._block)
            self._tokens[host] += int(await asyncio.wait_for(ref, LEASE_TIMEOUT_S))
        except Exception as exc:  # any Ray failure: the actor is gone or stuck
            if not self.used_fallback:
                log.warning("image-host limiter unreachable (%s): using rate/N locally", exc)
            self.used_fallback = True
            return False
        return True

    async def close(self) -> None:
        """Hand the unspent tokens back to the actor (its batch is over)."""
        left = {host: n for host, n in self._tokens.items() if n > 0}
        self._tokens.clear()
        if self._actor is None or not left:
            return
        try:
            refs = [self._actor.give_back.remote(host, n) for host, n in left.items()]
            await asyncio.wait_for(asyncio.gather(*refs), LEASE_TIMEOUT_S)
        except Exception as exc:  # the actor is gone: its successor starts full anyway
            log.info("could not return %s tokens to the limiter: %s", left, exc)

    def throttled(self, host: str) -> None:
        """Tell the actor about a 429 (fire and forget)."""
        if self._actor is not None:
            try:
                self._actor.throttled.remote(host)
            except Exception as exc:  # the actor is gone: the local backoff still applies
                log.info("could not report a 429 to the limiter: %s", exc)


def process_batch(
    cfg: RunConfig,
    photos: Sequence[PendingPhoto],
    attempt: int,
    limiter: Any | None,
    fallback_per_s: float,
) -> BatchResult:
    """The Ray task's body: every photo of one batch, in this worker's own event loop."""
    started = time.monotonic()
    threads = _assigned_cpus()
    cfg = replace(cfg, threads=threads)
    hosts = LeasedHosts(limiter, cfg.cluster.lease_block, fallback_per_s)
    outcomes, size = asyncio.run(_run(cfg, photos, hosts, _chaos(attempt)))
    return BatchResult(
        outcomes=tuple(outcomes),
        downloaded_bytes=size,
        seconds=time.monotonic() - started,
        fallback=hosts.used_fallback,
    )


async def _run(
    cfg: RunConfig, photos: Sequence[PendingPhoto], hosts: LeasedHosts, chaos: Chaos | None
) -> tuple[list[Outcome], int]:
    size = 0

    def count(n: int) -> None:
        nonlocal size
        size += n

    connector = aiohttp.TCPConnector(limit=cfg.fetch.concurrency + 8, ttl_dns_cache=300)
    cap_malloc_arenas(cfg.threads)  # before the image threads allocate (images/arenas.py)
    with ThreadPoolExecutor(cfg.threads, thread_name_prefix="image") as pool:
        async with aiohttp.ClientSession(connector=connector) as session:
            fetcher = Fetcher(session, cfg.fetch, hosts=hosts)
            work = PhotoWork(cfg, fetcher, pool, on_bytes=count, files=engine_files(cfg))
            on_outcome = None if chaos is None else chaos.tick
            try:
                outcomes = await run_batch(
                    work, photos, cfg.fetch.concurrency, on_outcome=on_outcome
                )
            finally:
                await hosts.close()
    return outcomes, size


@dataclass(slots=True)
class Chaos:
    """The test hook: after `after` photos, die (`exit`) or hang (`hang`)."""

    action: str
    after: int
    seen: int = 0

    def tick(self, _outcome: object = None) -> None:
        """Called after each photo of the batch (or each staged photo a pack task reads)."""
        self.seen += 1
        if self.seen < self.after:
            return
        if self.action == "exit":
            os._exit(137)
        time.sleep(3600)  # "hang": a straggler the dispatcher must cancel


#: Under this node's temporary directory: where pack tasks spool the tars they upload.
NODE_SPOOL = "harvest-spool"


def node_spool() -> Path:
    """This node's spool directory, cleared of the spools of pack tasks whose worker died
    (a tar's size each; Ray reruns the task, and nothing else would remove them)."""
    spool = Path(tempfile.gettempdir()) / NODE_SPOOL
    spool.mkdir(exist_ok=True)
    cleanup_temp_files(spool)
    return spool


def pack_shard(cfg: RunConfig, plan: DirPlan) -> Packed:
    """The body of a Ray task: one complete directory's shard through the output target.

    The tar is spooled under this node's temporary directory (the driver's store directory,
    the spool of a single machine, need not exist here)."""
    target = open_target(output_spec(cfg), fsync=cfg.write.fsync, spool_dir=node_spool())
    staging = staging_target(cfg)
    if (chaos := _pack_chaos(plan.key)) is not None:
        staging = cast(Target, _ChaosReads(staging, chaos))
    return pack_dir(plan, target, staging)


def _pack_chaos(dir_key: str) -> Chaos | None:
    """The chaos hook of a pack task's first attempt at `dir_key`, from HARVEST_CHAOS."""
    spec, marks = os.environ.get(CHAOS_ENV, ""), os.environ.get(CHAOS_MARKS_ENV, "")
    if not spec.startswith(PACK_CHAOS) or not marks:
        return None
    chaos = _parse_chaos(spec.removeprefix(PACK_CHAOS))
    marker = Path(marks) / dir_key.replace("/", "+")
    if chaos is None or marker.exists():
        return None
    marker.touch()
    return chaos


class _ChaosReads:
    """A staging target whose reads tick the chaos hook (the test of a pack task's death)."""

    def __init__(self, inner: Target, chaos: Chaos) -> None:
        self._inner = inner
        self._chaos = chaos

    def read(self, name: str) -> bytes:
        data = self._inner.read(name)
        self._chaos.tick()
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _chaos(attempt: int) -> Chaos | None:
    """The chaos hook for this attempt (only ever a batch's first), from HARVEST_CHAOS."""
    spec = os.environ.get(CHAOS_ENV, "")
    if attempt > 0 or spec.startswith(PACK_CHAOS):
        return None
    return _parse_chaos(spec)


def _parse_chaos(spec: str) -> Chaos | None:
    if ":" not in spec:
        return None
    action, _, after = spec.partition(":")
    name = action.removesuffix("-after")
    if name not in ("exit", "hang") or not after.isdigit():
        return None
    return Chaos(action=name, after=int(after))


def _assigned_cpus() -> int:
    """The CPUs Ray gave this task (its image threads), at least one."""
    try:
        import ray

        context = ray.get_runtime_context()
        cpus = context.get_assigned_resources().get("CPU", 1.0)  # type: ignore[no-untyped-call]
    except Exception:  # not inside a Ray worker (tests call the body directly)
        return 1
    return max(1, int(cpus))
