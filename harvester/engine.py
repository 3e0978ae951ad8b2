"""The engine: the one place that knows queues, tasks, the thread pool and shutdown.

    keywords ─► search_keyword (planner + client) ─► store.commit_window (checkpoint + claim)
    store.pending ─► feeder ─► bounded queue ─► N download tasks (choose_size + fetcher.fetch)
        ─► thread pool (process_image + write_atomic) ─► store.mark_done | skipped | failed

Each photo's work is `batch.PhotoWork.harvest`, which a Ray task runs too; with `--ray` the
image half is the `image_half` given (cluster_engine.Dispatcher) instead of the tasks above.

The downloader reads its work from the store, not from the searcher directly, so a fresh run
and a resumed one are the same code path, and memory is bounded by the queue, not the job.
Exactly once: a window's claims are committed with its checkpoint; a photo's file is renamed
into place before its outcome is recorded, and its path is a pure function of (keyword, seq,
record), so a photo redone after a kill lands on the same file. Durable: with fsync on and the
files under out_dir, the store's done barrier (images/durable.py: one syncfs) runs before each
batch of outcomes is committed, so a row says done only once its file and name are on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Protocol

from harvester.batch import Dropped, Outcome, PhotoWork, failed, record_outcome, remove_file
from harvester.config import RunConfig
from harvester.dataset.sources import SourceMap
from harvester.exceptions import StoreError
from harvester.images.arenas import cap_malloc_arenas
from harvester.images.download import Fetcher
from harvester.images.durable import BatchSync, batch_sync
from harvester.progress import RunStats
from harvester.search.listings import DonePage, ListingBackend, SourceGone, search_source
from harvester.search.loop import SearchBackend, WindowResult
from harvester.search.queries import KeywordQuery
from harvester.search.windows import Checkpoint
from harvester.storage.target import Target
from harvester.store.lookups import clear_gone, record_gone
from harvester.store.rows import PendingPhoto
from harvester.store.sqlite import Store

log = logging.getLogger(__name__)

MAX_KEYWORDS_IN_FLIGHT = 4  # keywords searched at once per worker (API calls overlap)
IDLE_POLL_S = 1.0  # how long the feeder sleeps when the queue is empty and search goes on


class ImageHalf(Protocol):
    """Another way to run the image half (harvester/cluster_engine.py: Ray tasks).

    `run` harvests the claimed photos of `keywords` until `search` has ended and none
    remain, or `stop` is set; `new_work` is set whenever a window claimed new photos.
    """

    async def run(
        self,
        keywords: Sequence[str],
        search: asyncio.Task[None],
        new_work: asyncio.Event,
        stop: asyncio.Event,
    ) -> None: ...


class Engine:
    """Runs one worker's share of a harvest until it is finished or asked to stop."""

    def __init__(
        self,
        cfg: RunConfig,
        keywords: Sequence[KeywordQuery],
        store: Store,
        backend: SearchBackend,
        fetcher: Fetcher | None,
        stats: RunStats,
        *,
        negatives: Sequence[str] = (),
        sources: SourceMap | None = None,
        listings: ListingBackend | None = None,
        clock: Callable[[], float] = time.time,
        image_half: ImageHalf | None = None,
        files: Target | None = None,
    ) -> None:
        self._cfg = cfg
        self._image_half = image_half  # None: this engine's own download tasks and threads
        # Where each photo's file goes when not straight under out_dir (targets.engine_files):
        # an object store, another directory, or the webdataset staging area.
        self._files = files
        self._listings = listings  # the list methods, for album: and gallery: lines
        self._sources = sources or SourceMap.builtin()
        self._negatives = tuple(negatives)
        self._keywords = tuple(keywords)
        self._names = [k.keyword for k in self._keywords]
        self._store = store
        self._backend = backend
        self._stats = stats
        self._clock = clock
        self._stop = asyncio.Event()
        self._new_work = asyncio.Event()
        cap_malloc_arenas(cfg.threads)  # before the image threads allocate (images/arenas.py)
        self._pool = ThreadPoolExecutor(cfg.threads, thread_name_prefix="image")
        # Files straight under out_dir, fsync on: one syncfs per committed store batch, before
        # the commit that calls its photos done, instead of one fsync per file (images/durable).
        self._durable = None if image_half is not None or files is not None else durable_writes(cfg)
        work_cfg = cfg
        if self._durable is not None:
            work_cfg = replace(cfg, write=replace(cfg.write, fsync=False, fsync_dir=False))
        store.set_done_barrier(self._durable)  # None: no barrier left by an earlier engine
        self._work = PhotoWork(
            work_cfg, fetcher, self._pool, clock=clock, on_bytes=self._count_bytes, files=files
        )
        self._in_hand: set[int] = set()  # photo ids queued or in flight
        self.fatal: BaseException | None = None

    def _count_bytes(self, size: int) -> None:
        self._stats.bytes_downloaded += size

    def __repr__(self) -> str:
        return (
            f"<Engine keywords={len(self._keywords)} in_hand={len(self._in_hand)} "
            f"stopping={self._stop.is_set()} done={self._stats.done_count()}>"
        )

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested (signal, fatal error)."""
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Stop searching and feeding; photos in hand finish within the grace period."""
        if not self._stop.is_set():
            log.info("stopping: finishing photos in flight (up to %.0fs)", self._cfg.stop_grace_s)
        self._stop.set()
        self._new_work.set()

    def tick(self) -> None:
        """Periodic housekeeping from the runner's display loop: flush buffered outcomes."""
        try:
            self._store.flush()
        except StoreError as exc:
            self._fail(exc)

    async def run(self) -> None:
        """Search every keyword and harvest every claimed photo of this worker's keywords.

        Raises the first fatal error (rejected key, store or disk failure) unwrapped.
        """
        if self._cfg.retry_failed:
            requeued = self._store.requeue_failed(self._names)
            log.info("re-queued %d failed photos", requeued)
        try:
            async with asyncio.TaskGroup() as tg:
                search = tg.create_task(self._search_all(), name="search")
                watch = tg.create_task(self._cancel_on_stop(search), name="stop-watch")
                if self._cfg.metadata_only:
                    await asyncio.wait([search])
                elif self._image_half is not None:
                    await self._image_half.run(self._names, search, self._new_work, self._stop)
                else:
                    await self._harvest_all(search)
                watch.cancel()
        except BaseExceptionGroup as group:
            leaf = _first_leaf(group)
            raise leaf from leaf.__cause__
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            try:
                self._store.flush()
            finally:
                if self._durable is not None:
                    self._durable.close()  # a later flush (the store's close) reopens it
            self._store.release_leases(self._store.worker_id)
        if self.fatal is not None:
            raise self.fatal

    async def _cancel_on_stop(self, search: asyncio.Task[None]) -> None:
        """A window cut short by a stop is simply searched again next time: cancel at once."""
        await self._stop.wait()
        search.cancel()

    def _fail(self, exc: BaseException) -> None:
        if self.fatal is None:
            self.fatal = exc
            log.error("fatal: %s", exc)
        self.request_stop()

    # -- search half -------------------------------------------------------------------------

    async def _search_all(self) -> None:
        gate = asyncio.Semaphore(MAX_KEYWORDS_IN_FLIGHT)
        async with asyncio.TaskGroup() as tg:
            for kq in self._keywords:
                tg.create_task(self._search_one(kq, gate), name=f"search:{kq.keyword}")

    async def _search_one(self, kq: KeywordQuery, gate: asyncio.Semaphore) -> None:
        async with gate:
            if self._stop.is_set():
                return
            rows = self._store.done_windows(kq.keyword)
            stream = search_source(
                kq,
                self._backend,
                self._listings,
                plan_config=self._cfg.planner,
                now=int(self._clock()),
                done_windows=[Checkpoint(window=row.window, found=row.found) for row in rows],
                done_pages=[
                    DonePage(page=r.window.start, reported_total=r.reported_total) for r in rows
                ],
                negatives=self._negatives,
                send_negatives=self._cfg.search.send_negatives,
            )
            gone = False
            async with contextlib.aclosing(stream) as results:
                async for result in results:
                    if isinstance(result, SourceGone):
                        record_gone(self._store, result.keyword, result.reason)
                        self._stats.reasons[result.reason.split(":", 1)[0]] += 1
                        gone = True
                    else:
                        self._commit_window(result)
            if kq.source is not None and not gone:
                clear_gone(self._store, kq.keyword)  # it answered to the end this time
            self._stats.keyword(kq.keyword).search_done = True

    def _commit_window(self, result: WindowResult) -> None:
        claim = self._store.commit_window(
            result.keyword,
            result.window,
            self._sources.apply(result.photos),
            reported_total=result.reported_total,
            capped=result.capped,
            calls=result.calls,
            negatives=result.filtered_negative,
        )
        stats = self._stats.keyword(result.keyword)
        stats.windows_done += 1
        stats.windows_planned = max(stats.windows_planned, result.windows_planned)
        stats.coverage = result.coverage
        stats.found += len(result.photos)
        stats.new += len(claim.new)
        stats.duplicates += claim.duplicates
        stats.negatives += result.filtered_negative
        stats.capped_lost += result.lost_estimate
        stats.calls += result.calls
        if claim.new:
            self._new_work.set()

    # -- harvest half ------------------------------------------------------------------------

    async def _harvest_all(self, search: asyncio.Task[None]) -> None:
        queue: asyncio.Queue[PendingPhoto | None] = asyncio.Queue(self._cfg.fetch.concurrency * 2)
        workers = [
            asyncio.create_task(self._download_worker(queue), name=f"download-{i}")
            for i in range(self._cfg.fetch.concurrency)
        ]
        try:
            await self._feed(queue, search)
            for _ in workers:
                await queue.put(None)
            await self._join_workers(workers)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _join_workers(self, workers: list[asyncio.Task[None]]) -> None:
        async def finished() -> bool:
            await asyncio.gather(*workers)
            return True

        everything = asyncio.create_task(finished())
        stop = asyncio.create_task(self._stop.wait())
        await asyncio.wait([everything, stop], return_when=asyncio.FIRST_COMPLETED)
        if not everything.done():
            # Stopping: give the photos in hand a grace period, then abandon them (still claimed).
            await asyncio.wait([everything], timeout=self._cfg.stop_grace_s)
        stop.cancel()
        everything.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await everything

    async def _feed(
        self, queue: asyncio.Queue[PendingPhoto | None], search: asyncio.Task[None]
    ) -> None:
        """Move claimed photos into the queue until search has ended and none remain.

        Reads walk photo ids upwards from `after`; claims committed meanwhile may have lower
        ids, so an empty read rescans once from the start before waiting. Buffered outcomes
        are flushed before each read and photos in hand are skipped, so none is taken twice.
        """
        after, fresh = 0, 0
        batch_size = max(8, self._cfg.fetch.concurrency * 2)
        while not self._stop.is_set():
            searching = not search.done()
            self._new_work.clear()
            self._store.flush()
            batch = self._store.pending(batch_size, self._names, after=after)
            for item in batch:
                after = item.rowid
                if item.rowid not in self._in_hand:
                    self._in_hand.add(item.rowid)
                    fresh += 1
                    await queue.put(item)
            if batch:
                continue
            rescan, after, fresh = fresh > 0, 0, 0
            if rescan:
                continue
            if not searching:
                return  # a whole pass found nothing new and no claims can come
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_work.wait(), timeout=IDLE_POLL_S)

    async def _download_worker(self, queue: asyncio.Queue[PendingPhoto | None]) -> None:
        while (item := await queue.get()) is not None:
            try:
                if self._stop.is_set():
                    continue
                outcome = await self._harvest_one(item)
                self._record(item, outcome)
            except StoreError as exc:  # disk full, store unwritable: stop, lose nothing
                self._fail(exc)
            except Exception as exc:  # a bug must cost one photo, not the run
                log.exception("photo %s: unexpected error", item.rowid)
                self._record(item, failed(item.record.id, f"internal: {exc}"))
            finally:
                self._in_hand.discard(item.rowid)

    async def _harvest_one(self, item: PendingPhoto) -> Outcome:
        return await self._work.harvest(item)

    @property
    def fingerprint_cpu_s(self) -> float:
        """CPU seconds the image threads have spent computing fingerprints so far."""
        return self._work.fingerprint_cpu_s

    def _record(self, item: PendingPhoto, outcome: Outcome) -> None:
        if isinstance(outcome, Dropped):
            # A photo that did not make it must not keep a file from an attempt cut off by a kill.
            remove_file(self._cfg.out_dir, item, self._files)
        record_outcome(self._store, self._stats, item, outcome)


def durable_writes(cfg: RunConfig) -> BatchSync | None:
    """The store's done barrier for files written under out_dir: None with --no-fsync, for a
    metadata-only run, or where syncfs is missing (then the writer fsyncs each file)."""
    if not cfg.write.fsync or cfg.metadata_only:
        return None
    return batch_sync(cfg.out_dir)


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first real error inside nested task-group exception groups."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
