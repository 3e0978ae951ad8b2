"""`harvest index OUT --embedder MODEL.onnx`, and the embedding search `harvest similar` calls.

    store (read-only): the done photos that have a file ─► less those the index already holds
       or has recorded as unreadable
    ─► batches of --batch (32) ─► decoded and prepared on 2 threads, one batch ahead of the
       model (dataset/embed.py) ─► Embedder.run: unit vectors
    ─► one atomic chunk per batch (dataset/vectors.py): the vectors, and the photos whose file
       could not be read, with why ─► progress: a rich bar on a terminal, else a log line
       every 10 s; a summary at the end

Resumable: the same command after a kill, a Ctrl-C or more harvesting embeds only the stored
photos the index has not seen; a kill loses at most the batch in flight. A file that cannot be
read is logged with its photo id, recorded once in its batch's chunk and counted, and not tried
again (delete the index's directory to start over). Each model (its file's SHA-256) has its own
index, `OUT/harvest.vectors/<sha256[:16]>/`; two never mix.

The query side, for `harvest similar --embedder MODEL.onnx` and `harvest serve`:

    EmbeddingSearch.open(out: Path, model: Path, options: EmbedOptions | None = None)
        -> EmbeddingSearch    model and index loaded once (ConfigError when there is no index)
    EmbeddingSearch.query(image: bytes | Path, k: int = 20) -> list[tuple[int, float]]
    EmbeddingSearch.indexed: int  (vectors searched)
    embed_query(out: Path, model: Path, image: bytes | Path, k: int = 20)
        -> list[tuple[int, float]]    one-shot: (photo id, cosine in -1..1), best first

A query is prepared with the preprocessing its index recorded (size, layout, mean/std), so it
matches the stored vectors whatever --preset or --size the index was made with. Both read only.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from harvester.dataset.embed import (
    UNREADABLE,
    Embedder,
    EmbedOptions,
    Floats,
    Preprocessing,
    model_sha256,
)
from harvester.dataset.vectors import IndexSpec, IndexWriter, VectorIndex, index_dir
from harvester.exceptions import ConfigError, ImageError
from harvester.progress import stderr_console
from harvester.store.sqlite import Store, existing_store
from harvester.store.stored import stored_files

log = logging.getLogger(__name__)

DEFAULT_BATCH = 32
DECODE_THREADS = 2  # Pillow decodes without the GIL; 2 keep ahead of a CPU model on 2 cores
PLAIN_INTERVAL_S = 10.0
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchDone:
    """One batch through the model: its vectors, and the photos whose file could not be read."""

    ids: np.ndarray[tuple[int], np.dtype[np.int64]]
    vectors: Floats
    skipped: dict[int, str]  # photo id → reason


@dataclass(frozen=True, slots=True, kw_only=True)
class IndexReport:
    """What one `harvest index` run did, and what the index holds after it."""

    index: Path
    model: str  # file name and short SHA-256
    dim: int
    stored: int  # stored photos with a file
    already: int  # of those, in the index (or recorded as unreadable) before this run
    embedded: int
    skipped: int  # files this run could not read
    reasons: Counter[str] = field(default_factory=Counter)
    count: int = 0  # vectors in the index now
    elapsed_s: float = 0.0

    def render(self) -> str:
        """The summary lines the command prints."""
        rate = self.embedded / self.elapsed_s if self.elapsed_s > 0 else 0.0
        lines = [
            f"index {self.index} ({self.model}, {self.dim} dimensions): {self.count:,} vectors",
            f"stored photos {self.stored:,}: already indexed {self.already:,}, embedded now "
            f"{self.embedded:,} ({rate:.1f}/s), unreadable {self.skipped:,}",
            *(f"  {reason}: {n:,}" for reason, n in self.reasons.most_common()),
        ]
        return "\n".join(lines)


def spec_for(embedder: Embedder) -> IndexSpec:
    """The index identity of a loaded model: its file's SHA-256, output and preprocessing."""
    return IndexSpec(
        model_sha256=embedder.sha256,
        model_name=embedder.path.name,
        dim=embedder.dim,
        output=embedder.output,
        preprocessing=embedder.preprocessing.as_json(),
    )


def run_index(
    out: Path,
    model: Path,
    *,
    options: EmbedOptions | None = None,
    batch: int = DEFAULT_BATCH,
    live: bool = False,
    on_batch: Callable[[BatchDone], None] | None = None,
    clock: Clock = time.monotonic,
) -> IndexReport:
    """Embed every stored photo not yet in the model's index; `on_batch` sees each batch after
    it is durable (the progress display and tests use it)."""
    store_path = existing_store(out)  # before the model, which may take seconds to load
    embedder = Embedder.load(model, options or EmbedOptions())
    with Store.open(store_path, readonly=True) as store:
        stored = stored_files(store)
    started = clock()
    with IndexWriter.open(out, spec_for(embedder)) as writer:
        todo = [(pid, path) for pid, path in stored if pid not in writer.done]
        log.info("%d stored photos, %d to embed with %r", len(stored), len(todo), embedder)
        reasons: Counter[str] = Counter()
        with _Display(len(todo), live=live, clock=clock) as display:
            for done in embed_batches(embedder, out, todo, batch):
                writer.append(done.ids, done.vectors, done.skipped)
                reasons.update(_head(r) for r in done.skipped.values())
                display.advance(len(done.ids), len(done.skipped))
                if on_batch is not None:
                    on_batch(done)
        writer.merge_small()
        writer.write_manifest()
        count = writer.count
    return IndexReport(
        index=writer.directory,
        model=f"{model.name} sha256 {embedder.sha256[:12]}",
        dim=embedder.dim,
        stored=len(stored),
        already=len(stored) - len(todo),
        embedded=len(todo) - reasons.total(),
        skipped=reasons.total(),
        reasons=reasons,
        count=count,
        elapsed_s=clock() - started,
    )


def embed_batches(
    embedder: Embedder, out: Path, todo: Sequence[tuple[int, str]], size: int
) -> Iterator[BatchDone]:
    """(photo id, path under `out`) in batches of `size` through the model, in order; the next
    batch is decoded while the model runs on this one."""
    batches = [todo[i : i + size] for i in range(0, len(todo), size)]
    pool = ThreadPoolExecutor(max_workers=DECODE_THREADS, thread_name_prefix="embed-decode")
    try:
        ahead = [_submit(pool, embedder, out, b) for b in batches[:1]]
        for i, batch in enumerate(batches):
            futures = ahead.pop(0)
            if i + 1 < len(batches):
                ahead.append(_submit(pool, embedder, out, batches[i + 1]))
            yield _through_model(embedder, batch, [f.result() for f in futures])
    finally:  # Ctrl-C: drop the queued decodes, wait only for the two running
        pool.shutdown(wait=True, cancel_futures=True)


def _submit(
    pool: ThreadPoolExecutor, embedder: Embedder, out: Path, batch: Sequence[tuple[int, str]]
) -> list[Future[Floats | str]]:
    return [pool.submit(_prepared, embedder, out / path) for _pid, path in batch]


def _prepared(embedder: Embedder, path: Path) -> Floats | str:
    """The model's input for one file, or why it cannot be read."""
    try:
        return embedder.prepare(path)
    except UNREADABLE as exc:
        return f"{type(exc).__name__}: {exc}".replace("\n", " ")


def _through_model(
    embedder: Embedder, batch: Sequence[tuple[int, str]], inputs: Sequence[Floats | str]
) -> BatchDone:
    good: list[tuple[int, Floats]] = []
    skipped: dict[int, str] = {}
    for (pid, path), item in zip(batch, inputs, strict=True):
        if isinstance(item, str):
            log.warning("photo %d (%s): not embedded: %s", pid, path, item)
            skipped[pid] = item
        else:
            good.append((pid, item))
    ids = np.array([pid for pid, _ in good], dtype=np.int64)
    if not good:
        return BatchDone(ids=ids, vectors=np.zeros((0, embedder.dim), np.float32), skipped=skipped)
    vectors = embedder.run(np.stack([pixels for _, pixels in good]))
    return BatchDone(ids=ids, vectors=vectors, skipped=skipped)


def _head(reason: str) -> str:
    """A reason's kind for the tally: the part before the first colon."""
    return reason.split(":", 1)[0]


class _Display:
    """A rich progress bar on a terminal; otherwise a log line every PLAIN_INTERVAL_S."""

    def __init__(self, total: int, *, live: bool, clock: Clock) -> None:
        self._total, self._clock = total, clock
        self._done = self._skipped = 0
        self._started = self._last_line = clock()
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        if live:
            self._bar = Progress(
                TextColumn("embedding"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} img/s, unreadable {task.fields[skipped]}"),
                TimeRemainingColumn(),
                console=stderr_console(),
            )
            self._task = self._bar.add_task("embed", total=total, rate="-", skipped=0)

    def __enter__(self) -> _Display:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self._done:
            self._log()

    def advance(self, embedded: int, skipped: int) -> None:
        """Count one batch (its embedded and its unreadable photos)."""
        self._done += embedded + skipped
        self._skipped += skipped
        now = self._clock()
        rate = self._done / max(now - self._started, 1e-9)
        if self._bar is not None and self._task is not None:
            self._bar.update(
                self._task, completed=self._done, rate=f"{rate:.1f}", skipped=self._skipped
            )
        elif now - self._last_line >= PLAIN_INTERVAL_S:
            self._last_line = now
            self._log()

    def _log(self) -> None:
        rate = self._done / max(self._clock() - self._started, 1e-9)
        log.info(
            "embedded %d/%d photos (%.1f/s), unreadable %d",
            self._done,
            self._total,
            rate,
            self._skipped,
        )


# --- the query side ----------------------------------------------------------------------------


class EmbeddingSearch:
    """One model and its index over one harvest, loaded once: images in, nearest photos out."""

    def __init__(self, embedder: Embedder, index: VectorIndex) -> None:
        self.embedder = embedder
        self.index = index

    @classmethod
    def open(cls, out: Path, model: Path, options: EmbedOptions | None = None) -> EmbeddingSearch:
        """The model's index in `out` and the model, set to prepare queries as the index was.

        ConfigError when `out` holds no harvest, the model cannot be loaded, or `harvest
        index` has not been run with this model.
        """
        existing_store(out)
        if not model.is_file():
            raise ConfigError(f"{model}: no such model file")
        sha = model_sha256(model)
        index = VectorIndex.open(out, sha)
        if index is None:
            raise ConfigError(
                f"{out} has no index for {model.name} (looked in {index_dir(out, sha)}): run "
                f"`harvest index {out} --embedder {model}` first"
            )
        prep = Preprocessing.from_json(index.spec.preprocessing)
        chosen = replace(options or EmbedOptions(), output=index.spec.output)
        return cls(Embedder.load(model, chosen, prep=prep, sha256=sha), index)

    @property
    def indexed(self) -> int:
        """Vectors a query is compared with."""
        return self.index.count

    def query(self, image: bytes | Path, k: int = 20) -> list[tuple[int, float]]:
        """The `k` stored photos nearest `image`: (photo id, cosine), best first.

        ImageError when the image cannot be read.
        """
        try:
            vector = self.embedder.embed([image])[0]
        except ImageError:
            raise
        except UNREADABLE as exc:
            raise ImageError(f"the query image cannot be read: {exc}") from exc
        return self.index.search(vector, k)

    def __repr__(self) -> str:
        return f"<EmbeddingSearch {self.embedder!r} {self.index!r}>"


def embed_query(
    out: Path, model: Path, image: bytes | Path, k: int = 20
) -> list[tuple[int, float]]:
    """The `k` photos of the harvest in `out` nearest `image` by `model`'s embedding (one-shot:
    loads the model and the index each call; keep an EmbeddingSearch to ask many)."""
    return EmbeddingSearch.open(out, model).query(image, k)
