"""The image half of one photo, and of a batch of them, outside any queue.

    PendingPhoto ─► photo_path (validate) ─► choose_size ─► fetcher.fetch ─► thread pool:
        process_image ─► write_atomic ─► signal_row  ═► Outcome (Stored | Dropped)

`PhotoWork.harvest(item)` is what the engine's download tasks await for each photo, and what a
Ray task (harvester/cluster_task.py) awaits for each photo of its batch through `run_batch`;
`record_outcome` turns an outcome into the store's update, in the engine and in the Ray driver
alike. Nothing here knows queues, leases or Ray.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from harvester.config import RunConfig
from harvester.dataset.fingerprint import fingerprint
from harvester.exceptions import (
    DownloadError,
    HarvestError,
    ImageError,
    StoreError,
    UnsafeRecordError,
    WriteError,
)
from harvester.images.download import Fetcher
from harvester.images.process import ProcessedImage, Rejected, process_image
from harvester.images.provenance import Provenance
from harvester.images.sizes import NoSize, choose_size
from harvester.images.writer import photo_path, write_atomic
from harvester.progress import RunStats
from harvester.records import PhotoStatus, reason_key
from harvester.storage.target import Target
from harvester.store.rows import PendingPhoto
from harvester.store.sqlite import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Stored:
    """A photo whose file is durably written: recorded as done (a few hundred bytes)."""

    photo_id: str
    path: str  # relative to the output directory, with forward slashes
    sha256: str
    width: int  # the stored file's
    height: int
    size_label: str
    signal: tuple[object, ...] | None  # the fingerprint row (store.schema.SIGNAL_COLUMNS)


@dataclass(frozen=True, slots=True, kw_only=True)
class Dropped:
    """A photo that will not be stored: SKIPPED by policy or FAILED by an error, with why."""

    photo_id: str
    status: PhotoStatus  # SKIPPED or FAILED
    reason: str


#: What became of one photo: one store update.
Outcome = Stored | Dropped


def failed(photo_id: str, reason: str) -> Dropped:
    """A FAILED outcome."""
    return Dropped(photo_id=photo_id, status=PhotoStatus.FAILED, reason=reason)


class PhotoWork:
    """choose size → fetch → process → write → fingerprint row, for one photo at a time.

    `pool` runs the CPU part (the codecs release the GIL); `on_bytes` is told the size of
    each download (the run's byte counter).
    """

    def __init__(
        self,
        cfg: RunConfig,
        fetcher: Fetcher | None,
        pool: Executor,
        *,
        clock: Callable[[], float] = time.time,
        on_bytes: Callable[[int], None] | None = None,
        files: Target | None = None,
    ) -> None:
        self._cfg = cfg
        # Where each file goes when not straight under out_dir (targets.engine_files): an
        # object store, another directory, or the webdataset staging area.
        self._files = files
        self._fetcher = fetcher
        self._pool = pool
        self._clock = clock
        self._on_bytes = on_bytes
        self._fingerprint_cpu = 0.0  # thread CPU seconds spent on fingerprints (benchmarks)
        self._fingerprint_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<PhotoWork out={self._cfg.out_dir} fetcher={self._fetcher!r}>"

    async def harvest(self, item: PendingPhoto) -> Outcome:
        """The outcome of one claimed photo; its file, if stored, is at its fixed path."""
        record = item.record
        try:  # first: photo_path validates the record's fields before any request is made
            path = photo_path(self._cfg.out_dir, item.keyword, item.seq, record)
        except UnsafeRecordError as exc:
            return failed(record.id, f"unsafe record: {exc}")
        choice = choose_size(record, self._cfg.sizes)
        if isinstance(choice, NoSize):
            return Dropped(photo_id=record.id, status=PhotoStatus.SKIPPED, reason=choice.reason)
        if self._fetcher is None:
            raise HarvestError("the engine has no fetcher but was asked to download")
        try:
            downloaded = await self._fetcher.fetch(choice)
        except DownloadError as exc:
            return failed(record.id, f"download: {exc}")
        if self._on_bytes is not None:
            self._on_bytes(len(downloaded.data))
        prov = Provenance.from_record(
            record,
            keywords=item.keywords,
            size_label=choice.label,
            source_url=choice.url,
            harvested_at=datetime.fromtimestamp(self._clock(), UTC),
        )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, self._process_and_write, path, downloaded.data, prov
        )

    def _process_and_write(self, path: Path, data: bytes, prov: Provenance) -> Outcome:
        """Runs in the thread pool: decode, clean, stamp and write one image."""
        result = process_image(data, prov, self._cfg.images)
        if isinstance(result, Rejected):
            return Dropped(photo_id=prov.id, status=result.status, reason=result.reason)
        relative = path.relative_to(self._cfg.out_dir).as_posix()
        if self._files is None:
            write_atomic(path, result.parts, self._cfg.write)
        else:
            self._files.put(relative, result.parts)
        return Stored(
            photo_id=prov.id,
            path=relative,
            sha256=result.sha256,
            width=result.width,
            height=result.height,
            size_label=prov.size_label,
            signal=self._signal(prov, data, result),
        )

    def _signal(
        self, prov: Provenance, data: bytes, image: ProcessedImage
    ) -> tuple[object, ...] | None:
        started = time.thread_time()
        row = signal_row(prov, data, image)
        spent = time.thread_time() - started
        with self._fingerprint_lock:
            self._fingerprint_cpu += spent
        return row

    @property
    def fingerprint_cpu_s(self) -> float:
        """CPU seconds the image threads have spent computing fingerprints so far."""
        with self._fingerprint_lock:
            return self._fingerprint_cpu


async def run_batch(
    work: PhotoWork,
    items: Sequence[PendingPhoto],
    concurrency: int,
    *,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Every photo of a batch, `concurrency` at a time; one outcome per photo, in order.

    A bug costs its photo (a FAILED outcome), not the batch; a StoreError (disk full, an
    unwritable output) propagates.
    """
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(item: PendingPhoto) -> Outcome:
        async with gate:
            try:
                outcome = await work.harvest(item)
            except StoreError:  # disk full, output unwritable: the run stops, as in the engine
                raise
            except Exception as exc:  # a bug must cost one photo, not the batch
                log.exception("photo %s: unexpected error", item.rowid)
                outcome = failed(item.record.id, f"internal: {exc}")
        if on_outcome is not None:
            on_outcome(outcome)
        return outcome

    return list(await asyncio.gather(*(one(item) for item in items)))


def record_outcome(store: Store, stats: RunStats, item: PendingPhoto, outcome: Outcome) -> None:
    """Queue the store's update for one photo's outcome and count it in the run's stats."""
    keyword = stats.keyword(item.keyword)
    if isinstance(outcome, Stored):
        store.mark_done(
            item.record.id,
            path=outcome.path,
            sha256=outcome.sha256,
            width=outcome.width,
            height=outcome.height,
            size_label=outcome.size_label,
            signal=outcome.signal,
        )
        keyword.downloaded += 1
        return
    if outcome.status is PhotoStatus.SKIPPED:
        store.mark_skipped(item.record.id, outcome.reason)
        keyword.skipped += 1
    else:
        store.mark_failed(item.record.id, outcome.reason)
        keyword.failed += 1
    stats.reasons[reason_key(outcome.status, outcome.reason)] += 1


def remove_file(out: Path, item: PendingPhoto, files: Target | None = None) -> None:
    """Delete a photo's file if an attempt cut off by a kill left one (it did not make it)."""
    with contextlib.suppress(UnsafeRecordError, OSError, WriteError):
        path = photo_path(out, item.keyword, item.seq, item.record)
        if files is None:
            path.unlink(missing_ok=True)
        else:
            files.remove(path.relative_to(out).as_posix())


def signal_row(prov: Provenance, data: bytes, image: ProcessedImage) -> tuple[object, ...] | None:
    """The photo's fingerprint row, from the small image frame detection made (no new decode).

    The content's size is in the downloaded file's pixels, with the original's scale where
    Flickr gave the original's size (a half-size re-upload has a Large as big as its source's;
    only the originals tell the resize). None for a content box too small to hash: the photo
    is kept, `harvest dupes` skips it.

    The scan digest of a re-encoded photo is its stored file's: equal downloaded pixels give
    equal re-encodes, and an Original's own scan would cost a second pass over megabytes
    (bench.pipeline: 2.8 CPU ms per image on the mix when both passes went over the download).
    """
    scan = b"".join(image.parts) if image.reencoded else None
    try:
        found = fingerprint(image.thumb, src=data, scan=scan)
    except (ImageError, ValueError) as exc:
        log.info("photo %s: no fingerprint: %s", prov.id, exc)
        return None
    crop = image.crop
    width, height = (crop.width, crop.height) if crop else (image.source_width, image.source_height)
    original = max(prov.original_width or 0, prov.original_height or 0)
    scale = original / max(image.source_width, image.source_height) if original else None
    return (int(prov.id), *found.to_row(), width, height, scale)
