"""Thumbnails made on request from the stored file, kept in memory only (never written to OUT).

A stored file is at most the run's --max-side (1,024 px), so a 256 px thumbnail is a DCT-scaled
decode (`draft`: 1/2 or 1/4 scale, no full decode) and one small resize, about 3 ms. The cache
is a bounded LRU by bytes, so memory does not grow with the harvest.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from pathlib import Path

from PIL import Image

from harvester.exceptions import ImageError

QUALITY = 80


def make_thumbnail(path: Path, side_px: int) -> bytes:
    """A JPEG of the image at `path` whose long side is at most `side_px`; ImageError if the
    file is not a readable image."""
    try:
        with Image.open(path) as im:
            im.draft("RGB", (side_px, side_px))  # JPEG: decode at the smallest scale that fits
            small = im.convert("RGB")
            small.thumbnail((side_px, side_px), Image.Resampling.BICUBIC, reducing_gap=2.0)
        sink = io.BytesIO()
        small.save(sink, "JPEG", quality=QUALITY)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"cannot make a thumbnail of {path.name}: {exc}") from exc
    return sink.getvalue()


class Thumbnails:
    """A bounded LRU of thumbnails by photo id; thread-safe (made in a worker thread)."""

    def __init__(self, side_px: int, max_bytes: int) -> None:
        self.side_px = side_px
        self.max_bytes = max_bytes
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, photo_id: int, path: Path) -> bytes:
        """The thumbnail of the photo whose stored file is `path`, made once while cached."""
        with self._lock:
            cached = self._cache.get(photo_id)
            if cached is not None:
                self._cache.move_to_end(photo_id)
                self.hits += 1
                return cached
            self.misses += 1
        data = make_thumbnail(path, self.side_px)
        self._put(photo_id, data)
        return data

    def _put(self, photo_id: int, data: bytes) -> None:
        with self._lock:
            if photo_id in self._cache or len(data) > self.max_bytes:
                return
            self._cache[photo_id] = data
            self._bytes += len(data)
            while self._bytes > self.max_bytes:
                _, old = self._cache.popitem(last=False)
                self._bytes -= len(old)

    @property
    def size_bytes(self) -> int:
        """Bytes held now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._cache)

    def __repr__(self) -> str:
        return (
            f"Thumbnails({len(self)} held, {self._bytes:,} of {self.max_bytes:,} bytes,"
            f" hits={self.hits}, misses={self.misses})"
        )
