"""`--ray`: the image half as Ray tasks, one per output directory; the driver commits.

    engine (search, API budget, store: all on the driver)
      └─ Dispatcher.run: store.claimed_dirs ─► ready_batches (cluster/policy.py) ─► submit
           process_batch.remote(cfg, photos, attempt)   ≤ inflight_per_cpu x cluster CPUs
         ─► ray.wait ─► outcomes ─► one transaction ─► sweep the directory
         failed or past its deadline ─► ray.cancel(force=True), attempt + 1 ─► … ─► given up

Exactly once: a photo counts only when the driver commits it; its file is written atomically
at the path its claim fixed (keyword, seq), so every attempt writes the same bytes to the same
place; after each commit the directory (on disk or on an object store) is swept of files the
store does not hold as done (an earlier attempt that got further, a photo that failed since).
A directory may have several batches in flight (different photos; a late keyword's one
directory then spreads over the cluster); a sweep spares the files of the photos still in
flight, so it never races a write. On restart,
claimed photos are simply claimed still: their batches go out again (an object store is first
swept of what the killed run left: targets.sweep_output). The run ends when the last batch is
committed or given up, each of its photos then failed with the reason.

`--output-format webdataset`: the batches stage their photos on the output target in the files
layout (targets.staging_target), and the run's Finaliser hands each complete directory to a Ray
task that writes its shard there (ray_packer, cluster_task.pack_shard).

With the Engine, this is the only module that knows tasks and waits; the decisions are pure
(cluster/policy.py) and the worker's side is cluster_task.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harvester.batch import failed, record_outcome
from harvester.cluster.policy import (
    DirBacklog,
    DirKey,
    Durations,
    GiveUp,
    after_failure,
    deadline_s,
    max_inflight,
    ready_batches,
)
from harvester.cluster_task import (
    CHAOS_ENV,
    CHAOS_MARKS_ENV,
    BatchResult,
    HostLimiterActor,
    pack_shard,
    process_batch,
)
from harvester.config import ClusterPolicy, RunConfig
from harvester.exceptions import ConfigError, HarvestError, StoreError, WriteError
from harvester.images.writer import FILES_PER_DIR, safe_dirname, shard_dir
from harvester.progress import RunStats
from harvester.storage.probe import check_shared, write_probe
from harvester.storage.target import Target, is_remote
from harvester.store.batches import claimed_dirs, dir_claimed
from harvester.store.rows import PendingPhoto
from harvester.store.sqlite import STORE_FILENAME, Store
from harvester.targets import DirPlan, Packed, Packer, output_spec, output_target, sweep_dir

log = logging.getLogger(__name__)

RAY_MISSING = "--ray needs Ray, an optional extra: pip install 'harvest[ray]' (ray>=2.60,<3)"
POLL_S = 0.5  # how long one ray.wait blocks (the stop flag and deadlines are checked between)
LOCAL_OBJECT_STORE_BYTES = 128 * 2**20  # specs and outcomes only: a few MB at most
#: What a worker needs to reach an object-store --out as the driver does: the AWS SDK's
#: credentials, region, profile and endpoint (botocore, so s3fs), Azure's storage settings
#: (adlfs), fsspec's own (FSSPEC_S3_ENDPOINT_URL, ...). Only these are sent, and only with a
#: URL --out; their values are never logged.
STORAGE_ENV_PREFIXES = ("AWS_", "AZURE_STORAGE_", "FSSPEC_")
#: A shard task's CPUs: none reserved. Reading the staged photos and writing the tar are mostly
#: I/O, and the batches keep every CPU reserved (2 in flight per CPU), so a shard that needed one
#: would wait behind them and the staged photos pile up on --out until the run's end.
PACK_CPUS = 0


def require_ray() -> None:
    """ConfigError (exit 2) saying how to install Ray, when it is not installed."""
    try:
        import ray  # noqa: F401
    except ImportError as exc:
        raise ConfigError(RAY_MISSING) from exc


def check_ray(cfg: RunConfig) -> None:
    """One clear ConfigError (exit 2) for a `--ray` run that cannot work, before any write."""
    require_ray()
    check_address(cfg.cluster.address or "")
    if cfg.workers > 1:
        raise ConfigError("--ray runs the image half on the cluster: drop --workers")


def storage_env(cfg: RunConfig, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The driver's object-store settings, for the tasks' runtime_env (empty: a local --out).

    A worker of a joined cluster does not have the driver's environment, nor does one of a
    Ray started before the variables were set: without these it would write elsewhere, or
    nowhere. Set on a node, the same names are overridden by the driver's.
    """
    if not is_remote(output_spec(cfg)):
        return {}
    env = os.environ if environ is None else environ
    return {k: v for k, v in sorted(env.items()) if k.startswith(STORAGE_ENV_PREFIXES)}


def task_options(cfg: RunConfig, **options: Any) -> dict[str, Any]:
    """`options` for ray.remote, with the variables the tasks need in their runtime_env."""
    env = storage_env(cfg)
    for name in (CHAOS_ENV, CHAOS_MARKS_ENV):
        if value := os.environ.get(name):
            env[name] = value
    if env:
        options["runtime_env"] = {"env_vars": env}
    return options


def probe_nodes(cfg: RunConfig) -> None:
    """ConfigError (exit 2) unless every node of a joined cluster can write where the driver
    reads: a local --out must be a filesystem every node mounts at the same path."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if (cfg.cluster.address or "local") == "local":
        return  # a private Ray on this machine: its workers share this filesystem
    out = output_spec(cfg)
    remote = ray.remote(**task_options(cfg, num_cpus=0))(write_probe)
    for node in ray.nodes():  # type: ignore[no-untyped-call]
        if not node.get("Alive"):
            continue
        pinned = NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)

        def writer(o: str, n: str, t: bytes, pinned: object = pinned) -> None:
            ray.get(remote.options(scheduling_strategy=pinned).remote(o, n, t))

        check_shared(out, writer, where=f"node {node.get('NodeManagerAddress', '?')}")


def check_address(address: str) -> None:
    """`--ray` takes local, auto or a cluster address; Ray Client (ray://) is not supported."""
    if address.startswith("ray://"):
        raise ConfigError(
            "--ray: Ray Client addresses (ray://) are not supported; run the driver on a"
            " cluster node (--ray auto) or submit it with `ray job submit`"
        )
    if not address.strip():
        raise ConfigError("--ray needs local, auto or a cluster address (HOST:PORT)")


@contextlib.contextmanager
def ray_session(policy: ClusterPolicy) -> Iterator[None]:
    """Start a private Ray (`local`) or join a cluster (`auto`, ADDRESS) for the run.

    A Ray this process already started (tests, a notebook) is used as it is and left running.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    address = policy.address or "local"
    if address == "local":
        ray.init(
            num_cpus=policy.local_cpus,
            include_dashboard=False,
            object_store_memory=LOCAL_OBJECT_STORE_BYTES,
            log_to_driver=False,  # worker logs stay in Ray's session directory
            logging_level=logging.WARNING,
        )
    else:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


@dataclass(slots=True, kw_only=True)
class _Running:
    """A batch in flight."""

    key: DirKey
    photos: tuple[PendingPhoto, ...]
    attempt: int
    started_s: float
    deadline_s: float


class Dispatcher:
    """The image half of a `--ray` run (engine.ImageHalf): batches out, outcomes committed."""

    def __init__(self, cfg: RunConfig, stats: RunStats, *, clock: Callable[[], float] = time.time):
        self._cfg, self._policy, self._stats, self._clock = cfg, cfg.cluster, stats, clock
        self._running: dict[Any, _Running] = {}  # ObjectRef -> batch
        self._durations = Durations()
        self._inflight = 1
        self._fallback_per_s = cfg.fetch.rate_per_s
        self._remote: Any = None
        self._limiter: Any = None
        self._cfg_ref: Any = None
        self._store: Store | None = None
        # Where the sweep looks: where the files are (a directory, or an object store).
        self._files: Target = output_target(cfg)
        self.committed = self.resubmitted = self.given_up = 0  # batches
        self.most_per_dir = 0  # the most batches of one directory in flight at once

    def __repr__(self) -> str:
        return (
            f"<Dispatcher running={len(self._running)}/{self._inflight} committed="
            f"{self.committed} resubmitted={self.resubmitted} given_up={self.given_up} "
            f"most_per_dir={self.most_per_dir} {self._durations!r}>"
        )

    async def run(
        self,
        keywords: Sequence[str],
        search: asyncio.Task[None],
        new_work: asyncio.Event,
        stop: asyncio.Event,
    ) -> None:
        """Send, collect and commit batches until search has ended and none remain."""
        import ray

        # Its own connection, buffering without limit: flush() commits one batch at once.
        self._store = Store.open(
            self._cfg.out_dir / STORE_FILENAME, batch_size=2**31, flush_interval_s=float("inf")
        )
        try:
            self._start(ray)
            await self._loop(ray, keywords, search, new_work, stop)
            if stop.is_set():
                await self._drain(ray)
        finally:
            for ref in self._running:
                ray.cancel(ref, force=True)  # still claimed: redone next run
            if self._limiter is not None:
                ray.kill(self._limiter)
            self._store.close()
            log.info("ray: %r", self)

    def _start(self, ray: Any) -> None:
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        self._inflight = max_inflight(cpus, self._policy)
        self._fallback_per_s = self._cfg.fetch.rate_per_s / max(1, nodes)
        options = task_options(self._cfg, num_cpus=1, max_retries=0)  # retries are ours
        if names := sorted(storage_env(self._cfg)):
            log.info("ray: the tasks get %s from the driver (values not shown)", ", ".join(names))
        self._remote = ray.remote(**options)(process_batch)
        actor = ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=1000)(HostLimiterActor)
        policy = self._policy
        self._limiter = actor.remote(
            self._cfg.fetch.rate_per_s, policy.lease_block, policy.recover_per_min
        )
        self._cfg_ref = ray.put(self._cfg)
        log.info(
            "ray: %d nodes, %.0f CPUs, up to %d batches in flight, image hosts at %.0f/s",
            nodes,
            cpus,
            self._inflight,
            self._cfg.fetch.rate_per_s,
        )

    async def _loop(
        self,
        ray: Any,
        keywords: Sequence[str],
        search: asyncio.Task[None],
        new_work: asyncio.Event,
        stop: asyncio.Event,
    ) -> None:
        while not stop.is_set():
            new_work.clear()
            searching = (
                set()
                if search.done()
                else {k for k in keywords if not self._stats.keyword(k).search_done}
            )
            self._submit_ready(keywords, searching)
            if self._running:
                await self._collect(ray)
                self._reap_overdue(ray)
            elif search.done():
                return  # nothing in flight and, search over, every directory was ready
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(new_work.wait(), min(1.0, self._policy.flush_s))

    def _submit_ready(self, keywords: Sequence[str], searching: set[str]) -> None:
        room = self._inflight - len(self._running)
        if room <= 0 or self._store is None:
            return
        held = self._held()
        backlog = [
            DirBacklog(
                key=(key := DirKey(d.keyword, d.index)),
                claimed=d.claimed - len(held.get(key, ())),
                oldest_s=d.oldest_s,
                closed=d.next_seq >= (d.index + 1) * FILES_PER_DIR,
                inflight=len(held.get(key, ())),
            )
            for d in claimed_dirs(self._store, keywords, FILES_PER_DIR)
        ]
        ready = ready_batches(
            backlog,
            now_s=self._clock(),
            searching=searching,
            flush_s=self._policy.flush_s,
            batch_photos=self._policy.batch_photos,
        )
        waiting: dict[DirKey, list[PendingPhoto]] = {}
        for key in ready[:room]:
            if key not in waiting:
                claimed = dir_claimed(self._store, key.keyword, key.index, FILES_PER_DIR)
                waiting[key] = [p for p in claimed if p.rowid not in held.get(key, ())]
            photos = waiting[key][: self._policy.batch_photos]
            del waiting[key][: self._policy.batch_photos]
            if photos:
                self._submit(key, tuple(photos), 0)

    def _held(self) -> dict[DirKey, set[int]]:
        """The store rowids of the photos in batches in flight, by directory."""
        held: dict[DirKey, set[int]] = {}
        for batch in self._running.values():
            held.setdefault(batch.key, set()).update(p.rowid for p in batch.photos)
        return held

    def _submit(self, key: DirKey, photos: tuple[PendingPhoto, ...], attempt: int) -> None:
        ref = self._remote.remote(
            self._cfg_ref, list(photos), attempt, self._limiter, self._fallback_per_s
        )
        deadline = deadline_s(self._durations, len(photos), self._policy)
        self._running[ref] = _Running(
            key=key, photos=photos, attempt=attempt, started_s=self._clock(), deadline_s=deadline
        )
        beside = sum(1 for r in self._running.values() if r.key == key)
        self.most_per_dir = max(self.most_per_dir, beside)
        log.debug("batch %s/%d: %d photos, attempt %d", *key_name(key), len(photos), attempt)

    async def _collect(self, ray: Any) -> None:
        refs = list(self._running)
        ready, _ = await asyncio.to_thread(ray.wait, refs, num_returns=1, timeout=POLL_S)
        if ready:  # and every other one already done
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in ready:
            batch = self._running.pop(ref)
            try:
                result: BatchResult = ray.get(ref)
            except ray.exceptions.RayError as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, StoreError):  # disk full, output unwritable: stop
                    raise cause from exc
                self._retry(batch, _describe(exc))
                continue
            self._commit(batch, result)

    def _reap_overdue(self, ray: Any) -> None:
        now = self._clock()
        for ref, batch in list(self._running.items()):
            if now - batch.started_s > batch.deadline_s:
                ray.cancel(ref, force=True)
                del self._running[ref]
                log.warning("batch %s/%d overran %.0fs: cancelled", *_name(batch), batch.deadline_s)
                self._retry(batch, f"overran its deadline of {batch.deadline_s:.0f}s")

    def _commit(self, batch: _Running, result: BatchResult) -> None:
        assert self._store is not None
        for item, outcome in zip(batch.photos, result.outcomes, strict=True):
            record_outcome(self._store, self._stats, item, outcome)
        self._store.flush()  # the batch's one transaction: now its photos count
        self._stats.bytes_downloaded += result.downloaded_bytes
        self._durations.add(self._clock() - batch.started_s, len(batch.photos))
        self.committed += 1
        if result.fallback:
            log.warning("batch %s/%d: the image-host limiter was unreachable", *_name(batch))
        self._sweep(batch.key)

    def _retry(self, batch: _Running, error: str) -> None:
        decision = after_failure(batch.attempt, error, self._policy)
        if isinstance(decision, GiveUp):
            self._give_up(batch, decision.reason)
            return
        log.info("batch %s/%d: %s; attempt %d", *_name(batch), error, decision.attempt + 1)
        self.resubmitted += 1
        self._submit(batch.key, batch.photos, decision.attempt)

    def _give_up(self, batch: _Running, reason: str) -> None:
        assert self._store is not None
        log.error("batch %s/%d: %s", *_name(batch), reason)
        for item in batch.photos:
            record_outcome(self._store, self._stats, item, failed(item.record.id, reason))
        self._store.flush()
        self.given_up += 1
        self._sweep(batch.key)

    def _sweep(self, key: DirKey) -> None:
        """Delete the directory's files the store does not hold as done at that path, but
        for those of the photos other batches of the directory still have in flight."""
        assert self._store is not None
        rel = f"{safe_dirname(key.keyword)}/{shard_dir(key.index * FILES_PER_DIR)}"
        spare = {int(p.record.id) for b in self._running.values() if b.key == key for p in b.photos}
        sweep_dir(self._store, self._files, rel, spare=spare)

    async def _drain(self, ray: Any) -> None:
        """Stopping: commit what finishes within the grace period; the rest stays claimed."""
        until = self._clock() + self._cfg.stop_grace_s
        while self._running and self._clock() < until:
            refs = list(self._running)
            ready, _ = await asyncio.to_thread(ray.wait, refs, num_returns=len(refs), timeout=0.2)
            for ref in ready:
                batch = self._running.pop(ref)
                with contextlib.suppress(ray.exceptions.RayError):
                    self._commit(batch, ray.get(ref))


def ray_packer(cfg: RunConfig) -> Packer:
    """webdataset under `--ray`: each complete directory's shard is a Ray task (pack_shard),
    run where there is room, several at once; the driver only plans them (the store's rows)
    and records what they did. A task whose worker dies is run again by Ray (a shard is the
    same bytes however often it is written). One that raises, or runs past the first batch
    deadline (`pack_deadline_s`, then cancelled), fails the finaliser's pass once every task
    of the pass has ended, so no directory is packed twice at once; the next pass tries it
    again, its staged photos kept, and the run stops with the error only if its last pass
    still fails."""
    import ray

    remote = ray.remote(
        **task_options(cfg, num_cpus=PACK_CPUS, max_retries=cfg.cluster.max_attempts - 1)
    )(pack_shard)
    cfg_ref = ray.put(cfg)
    limit_s = cfg.cluster.pack_deadline_s

    def pack(plans: Sequence[DirPlan]) -> list[Packed]:
        refs = [remote.remote(cfg_ref, plan) for plan in plans]
        deadline = time.monotonic() + limit_s
        done: list[Packed] = []
        failed: list[HarvestError] = []
        for plan, ref in zip(plans, refs, strict=True):
            try:
                done.append(ray.get(ref, timeout=max(0.0, deadline - time.monotonic())))
            except ray.exceptions.GetTimeoutError:
                ray.cancel(ref, force=True)
                failed.append(WriteError(f"the shard {plan.key} took over {limit_s:.0f} s"))
            except ray.exceptions.RayError as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, HarvestError):
                    failed.append(cause)
                    continue
                why = f"could not write the shard {plan.key}: {_describe(exc)}"
                failed.append(WriteError(why))
        if failed:
            raise failed[0]
        return done

    return pack


def _name(batch: _Running) -> tuple[str, int]:
    return key_name(batch.key)


def key_name(key: DirKey) -> tuple[str, int]:
    """The keyword and the directory's number as on disk (00001 is index 0)."""
    return key.keyword, key.index + 1


def _describe(exc: BaseException) -> str:
    """A short reason for a failed attempt: the error's class and its first line."""
    cause = getattr(exc, "cause", None) or exc
    first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return f"{type(cause).__name__}: {first}"[:200]
