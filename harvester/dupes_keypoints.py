"""`harvest dupes`'s crop channel: keypoint signatures of the stored files, and their pairs.

    stored files without a signature ─► 256-px grey decode ─► dataset.keypoints.signature
      ─► photo_keypoints (once per photo; threads: Pillow and OpenCV release the GIL)
    every signature ─► dataset.keypoints.shared_pairs (only pairs with a new photo)
      ─► candidate row pairs, confirmed by local features like every other crop candidate

`--crops auto` (the default) runs it for harvests of up to AUTO_LIMIT photos, where its
index fits the memory budget (keypoints.py); `on` and `off` say so for any size.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from pathlib import Path
from typing import Final

import numpy as np
from PIL import Image

from harvester.dataset import keypoints
from harvester.exceptions import HarvestError, ImageError
from harvester.store.dupes import DupesStore, SignalTable

log = logging.getLogger(__name__)

AUTO_LIMIT: Final = 100_000  # photos; 6.4 M descriptors, about 0.8 GB of index
_CHUNK = 256  # files per batch handed to the threads


class CropMode(StrEnum):
    """Whether `harvest dupes` looks for crops with local features."""

    AUTO = "auto"
    ON = "on"
    OFF = "off"

    def wanted(self, photos: int) -> bool:
        """Whether to run the channel on a harvest of `photos` fingerprinted photos."""
        return self is CropMode.ON or (self is CropMode.AUTO and photos <= AUTO_LIMIT)


def file_signature(data: bytes) -> bytes:
    """The stored keypoint blob of one stored file (already upright and unframed)."""
    with Image.open(io.BytesIO(data)) as image:
        image.draft("L", (keypoints.SIDE, keypoints.SIDE))
        gray = image.convert("L")
        gray.thumbnail((keypoints.SIDE, keypoints.SIDE))
        pixels = np.asarray(gray, dtype=np.uint8)
    return keypoints.to_blob(keypoints.signature(pixels))


def update_signatures(ds: DupesStore, out: Path, *, workers: int | None = None) -> int:
    """Compute and store the signatures stored photos lack; returns how many were computed.

    An unreadable file gets an empty signature (it then proposes nothing) and a warning, so it
    is not read again on every run; its fingerprint step has already counted it.
    """
    todo = ds.unkeyed(keypoints.KP_VERSION)
    if not todo:
        return 0
    log.info("computing keypoint signatures of %d photos (crop channel)", len(todo))

    def one(item: tuple[int, str]) -> tuple[int, int, bytes]:
        photo_id, rel = item
        try:
            blob = file_signature((out / rel).read_bytes())
        except (OSError, ImageError, ValueError, HarvestError) as exc:
            log.warning("photo %s: no keypoints for %s: %s", photo_id, rel, exc)
            blob = b""
        return photo_id, keypoints.KP_VERSION, blob

    def rows(pool: ThreadPoolExecutor) -> Iterator[tuple[int, int, bytes]]:
        for start in range(0, len(todo), _CHUNK):
            yield from pool.map(one, todo[start : start + _CHUNK])
            if start and start % (_CHUNK * 40) == 0:
                log.info("keypoint signatures: %d of %d", start, len(todo))

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        return ds.write_keypoints(rows(pool))


def crop_candidates(
    blobs: dict[int, bytes], t: SignalTable, new: np.ndarray
) -> list[tuple[int, int]]:
    """Row pairs (i < j, at least one in `new`) whose signatures share enough descriptors.

    `blobs`: photo id → stored signature (`DupesStore.keypoints`); photos of `t` without one
    take no part.
    """
    rows_of = {int(photo_id): k for k, photo_id in enumerate(t.ids.tolist())}
    codes, owners = keypoints.stacked(keypoints.stored_signatures(blobs, rows_of))
    is_new = np.zeros(len(t), np.bool_)
    is_new[new] = True
    found = keypoints.shared_pairs(codes, owners, is_new)
    return [(int(a), int(b)) for a, b, _shared in found.tolist()]
