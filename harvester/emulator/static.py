"""The static image host: /{server}/{id}_{secret}[_{suffix}][_d].{ext}, served from a byte cache."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from harvester.emulator import copies as cp
from harvester.emulator.config import EmulatorConfig
from harvester.emulator.corpus import Corpus
from harvester.emulator.faults import TOO_MANY_REQUESTS, Stats, unit
from harvester.emulator.images import RENDER_VERSION, ImageJob, RenderSpec, produce
from harvester.emulator.photojson import geom, original_format, secret_for
from harvester.emulator.sizes import BY_SUFFIX, MIME, SizeClass, dims, exists

log = logging.getLogger(__name__)

_PATH = re.compile(
    r"^/(\d+)/(\d+)_([0-9a-f]{10})(?:_(s|q|t|m|n|w|z|c|b|h|k|3k|4k|5k|6k|o))?(_d)?\.(jpg|png|gif)$"
)
_HEADERS = {
    "Cache-Control": "public, max-age=31536000",
    "Access-Control-Allow-Origin": "*",
    "Server": "Jubilee",
    "Last-Modified": "Fri, 08 Mar 2024 15:54:33 GMT",
}


def spec_for(corpus: Corpus, row: int, size: SizeClass, scale: float = 1.0) -> RenderSpec:
    """The photo's own picture at one size, its frame included (`scale` shrinks it, for load
    tests). A copy's file is drawn from its source's picture instead: see `job_for`."""
    c = corpus.cols
    w, h = dims(size, int(c["o_w"][row]), int(c["o_h"][row]))
    if scale != 1.0:
        w, h = max(16, round(w * scale)), max(16, round(h * scale))
    return _spec(corpus, row, w, h, row)


def _spec(corpus: Corpus, row: int, w: int, h: int, grain_row: int) -> RenderSpec:
    """Row's picture (look and frame) drawn w x h with the film grain of `grain_row`."""
    c = corpus.cols
    fw = c["frame_w"][row]
    return RenderSpec(
        look=int(c["look"][row]),
        width=w,
        height=h,
        frame_permille=(int(fw[0]), int(fw[1]), int(fw[2]), int(fw[3])),
        frame_color=int(c["frame_color"][row]),
        grain_phase=int(c["id"][grain_row]) % 1_000_003,
    )


def job_for(corpus: Corpus, row: int, size: SizeClass, scale: float = 1.0) -> ImageJob:
    """Everything that decides one image file's bytes.

    A copy's file is its source's picture at the copy's size, edited (copies.py). Identical,
    recompressed, rotated, flipped, tinted and darkened copies start from the very pixels of the
    source's file of the same size (so an identical copy is its bytes); a resized copy is the
    source's picture drawn at the copy's size with its own grain; a cropped copy is the box of a
    render of the source scaled so the box comes out at the copy's size. Squares of resized and
    cropped copies are fresh renders of the source's square.
    """
    c = corpus.cols
    fmt = original_format(corpus, row) if size.extra == "o" else "jpg"
    kind = int(c["copy_kind"][row])
    own = spec_for(corpus, row, size, scale)
    if kind == cp.NONE:
        return ImageJob(own, fmt=fmt)
    src = int(c["copy_of"][row])
    w, h = own.width, own.height
    p = c["copy_param"][row]
    param = (float(p[0]), float(p[1]), float(p[2]), float(p[3]))
    job = ImageJob(spec_for(corpus, src, size, scale), kind, param, w, h, fmt)
    if kind == cp.IDENTICAL:
        return ImageJob(job.base, fmt=fmt)
    if kind == cp.RECOMPRESSED:
        base_fmt = original_format(corpus, src) if size.extra == "o" else "jpg"
        return replace(job, quality=int(param[0]), base_fmt=base_fmt)
    if kind == cp.RESIZED or (kind == cp.CROPPED and size.square):
        return ImageJob(_spec(corpus, src, w, h, row), fmt=fmt)
    if kind == cp.CROPPED:
        k = w / int(c["o_w"][row])
        sw, sh = int(c["o_w"][src]), int(c["o_h"][src])
        return replace(
            job, base=_spec(corpus, src, max(16, round(sw * k)), max(16, round(sh * k)), src)
        )
    return job


def canonical_row(corpus: Corpus, row: int) -> int:
    """The row whose files are this row's: an identical copy's source, else the row itself."""
    if int(corpus.cols["copy_kind"][row]) == cp.IDENTICAL:
        return int(corpus.cols["copy_of"][row])
    return row


class ImageStore:
    """Encoded images by (row, suffix): an in-memory LRU under a byte budget, an optional disk
    cache, and one render per key however many requests race for it."""

    def __init__(
        self,
        corpus: Corpus,
        seed: int,
        max_bytes: int,
        disk: str | None,
        *,
        pool: int = 0,
        scale: float = 1.0,
    ) -> None:
        self.corpus, self.seed, self.max_bytes = corpus, seed, max_bytes
        self.pool, self.scale = pool, scale
        tag = f"-v{RENDER_VERSION}"
        tag += "" if (pool, scale) == (0, 1.0) else f"-pool{pool}-scale{scale:g}"
        # The corpus is generated from (seed, size): the same photo id may render differently
        # in a corpus of another size, so one directory per (seed, size, pool, scale) lets
        # caches share a parent safely. (end_ts also shapes the corpus; runs keep its default.)
        # RENDER_VERSION: a cache written before the pixels of a seed changed is not read.
        self.disk = Path(disk) / f"seed{seed}-n{corpus.size}{tag}" if disk else None
        self._lru: OrderedDict[tuple[int, str], bytes] = OrderedDict()
        self._bytes = 0
        self._inflight: dict[tuple[int, str], asyncio.Future[bytes]] = {}
        self.renders = 0
        self._pool_rows: dict[str, list[int]] = {}

    def render_now(self, row: int, size: SizeClass) -> bytes:
        """Render and encode synchronously (no cache)."""
        self.renders += 1
        return produce(self.seed, job_for(self.corpus, row, size, self.scale))

    async def get(self, row: int, size: SizeClass) -> bytes:
        """The bytes of one image, from memory, disk, or a fresh render in a worker thread."""
        row = self._pooled(row, size) if self.pool else canonical_row(self.corpus, row)
        key = (row, size.suffix)
        if (hit := self._lru.get(key)) is not None:
            self._lru.move_to_end(key)
            return hit
        if (pending := self._inflight.get(key)) is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            data = await asyncio.to_thread(self._load_or_render, row, size)
            fut.set_result(data)
        except BaseException as exc:
            fut.set_exception(exc)
            raise
        finally:
            del self._inflight[key]
        self._remember(key, data)
        return data

    def _pooled(self, row: int, size: SizeClass) -> int:
        """A row below `pool` whose image stands in for `row`'s (same format for originals)."""
        fmt = original_format(self.corpus, row) if size.extra == "o" else "jpg"
        if not self._pool_rows:
            for r in range(min(self.pool, len(self.corpus.cols["id"]))):
                self._pool_rows.setdefault(original_format(self.corpus, r), []).append(r)
        rows = self._pool_rows.get(fmt) or [row]
        return rows[row % len(rows)]

    def _load_or_render(self, row: int, size: SizeClass) -> bytes:
        path = self.disk / f"{self.corpus.photo_id(row)}_{size.suffix}" if self.disk else None
        if path is not None and path.exists():
            return path.read_bytes()
        data = self.render_now(row, size)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return data

    def _remember(self, key: tuple[int, str], data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        self._lru[key] = data
        self._bytes += len(data)
        while self._bytes > self.max_bytes:
            _, old = self._lru.popitem(last=False)
            self._bytes -= len(old)

    @property
    def cached_bytes(self) -> int:
        """Bytes held in memory."""
        return self._bytes


class StaticHost:
    """Resolves image paths against the corpus, checking server, secret, size and format."""

    def __init__(self, corpus: Corpus, config: EmulatorConfig, stats: Stats) -> None:
        self.corpus, self.config, self.stats = corpus, config, stats
        self.store = ImageStore(
            corpus,
            config.seed,
            config.image_cache_bytes,
            config.image_cache_dir,
            pool=config.image_pool,
            scale=config.image_scale,
        )
        self._count = 0
        self._streak = 0
        self._resolved: dict[str, tuple[int, SizeClass, dict[str, str]]] = {}

    def resolve(self, path: str) -> tuple[int, SizeClass, bool] | None:
        """(row, size, download) for a valid image path, else None."""
        m = _PATH.match(path)
        if m is None:
            return None
        server, pid, secret, suffix, download, ext = m.groups()
        row = self.corpus.row_of_id(int(pid))
        size = BY_SUFFIX.get(suffix or "")
        if row is None or size is None or int(self.corpus.cols["server"][row]) != int(server):
            return None
        want_ext = original_format(self.corpus, row) if size.extra == "o" else "jpg"
        ok = secret == secret_for(self.corpus, row, size) and ext == want_ext
        return (
            (row, size, download is not None)
            if ok and exists(size, geom(self.corpus, row))
            else None
        )

    async def handle(self, request: web.Request) -> web.Response:
        """GET one image."""
        if self.config.image_delay_s > 0:
            await asyncio.sleep(self.config.image_delay_s)
        if self._throttled():
            return self._done(
                web.Response(status=429, body=TOO_MANY_REQUESTS, content_type="text/html")
            )
        hit = self._resolved.get(request.path) or self._resolve_headers(request.path)
        if hit is None:
            return self._done(web.Response(status=404, body=b"", content_type="text/html"))
        row, size, headers = hit
        data = await self.store.get(row, size)
        return self._done(web.Response(body=data, headers=headers))

    def _resolve_headers(self, path: str) -> tuple[int, SizeClass, dict[str, str]] | None:
        found = self.resolve(path)
        if found is None:
            return None
        row, size, download = found
        w, h = dims(size, int(self.corpus.cols["o_w"][row]), int(self.corpus.cols["o_h"][row]))
        ext = original_format(self.corpus, row) if size.extra == "o" else "jpg"
        headers = {
            **_HEADERS,
            "Content-Type": MIME[ext],
            "imagewidth": str(w),
            "imageheight": str(h),
            "ETag": f'"{self.corpus.photo_id(row)}{size.suffix}.1"',
        }
        if download:
            name = path.rsplit("/", 1)[1].replace("_d.", ".")
            headers["Content-Disposition"] = f"attachment; filename={name}"
        if len(self._resolved) > 200_000:  # bounded: a crawl of millions must not grow it forever
            self._resolved.clear()
        self._resolved[path] = (row, size, headers)
        return self._resolved[path]

    def _throttled(self) -> bool:
        rate = float(self.config.image_429_rate or 0)
        if rate <= 0:
            return False
        self._count += 1
        hit = unit(self.config.seed, self._count, 11) < rate and self._streak < 3
        self._streak = self._streak + 1 if hit else 0
        return hit

    def _done(self, resp: web.Response) -> web.Response:
        body = resp.body
        self.stats.image(resp.status, len(body) if isinstance(body, bytes) else 0)
        return resp
