"""`harvest match`'s keypoint stage: files no hash matched, proposed by shared local features.

Crops of a few percent a side defeat every hash (bench/README.md, match); they keep most of
their keypoints. Each file still without a match gets a keypoint signature
(dataset/keypoints.py) of its upright grey picture; the photos whose stored signatures share
enough descriptors with it (`harvest dupes` stores them; OUT is only read) are verified by
ORB+RANSAC on the files, and the best verified photo that contains the file's picture, or is
contained in it, is its match (stage `geometry`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from itertools import chain

import numpy as np
from PIL import Image

from harvester.dataset import geometry, keypoints
from harvester.dataset.fingerprint import hamming
from harvester.match import FileMatch, Harvest, Probe, Stage, Verdict, upright_gray
from harvester.match_albums import LocalFeatures

log = logging.getLogger(__name__)

MAX_CANDIDATES = 20  # photos verified per file, those sharing the most descriptors first


def resolve(
    probes: Sequence[Probe], harvest: Harvest, rows: Sequence[FileMatch], *, max_pixels: int
) -> dict[str, FileMatch]:
    """The rows this stage changes, by file name: unmatched files it can verify."""
    todo = [
        k
        for k, (p, r) in enumerate(zip(probes, rows, strict=True))
        if r.verdict is Verdict.NONE and not p.error
    ]
    if not todo:
        return {}
    if not harvest.keypoints:
        log.info("no keypoint signatures in the harvest: run `harvest dupes --crops on` first")
        return {}
    candidates = _candidates([probes[k] for k in todo], harvest, max_pixels)
    features = LocalFeatures(harvest, max_pixels)
    changed: dict[str, FileMatch] = {}
    for k, rows_of in zip(todo, candidates, strict=True):
        best = _best(probes[k], rows_of, features)
        if best is not None:
            changed[probes[k].name] = _row(probes[k], harvest, *best)
    return changed


def _candidates(probes: Sequence[Probe], harvest: Harvest, max_pixels: int) -> list[list[int]]:
    """Per probe, harvest rows sharing descriptors with it, most shared first."""
    n = len(harvest.table)
    files = ((n + k, _signature(probe, max_pixels)) for k, probe in enumerate(probes))
    photos = keypoints.stored_signatures(harvest.keypoints, harvest.row_of)
    codes, owners = keypoints.stacked(chain(photos, files))
    new = np.zeros(n + len(probes), np.bool_)
    new[n:] = True
    shared = keypoints.shared_pairs(codes, owners, new, min_shared=1)
    counts: dict[int, dict[int, int]] = defaultdict(dict)
    for a, b, count in shared.tolist():
        if a < n <= b:  # a photo and a file, not two files
            counts[b - n][a] = count
    return [
        [
            row
            for row, shared_n in sorted(counts[k].items(), key=lambda x: (-x[1], x[0]))
            if shared_n >= keypoints.MIN_SHARED
        ][:MAX_CANDIDATES]
        for k in range(len(probes))
    ]


def _signature(probe: Probe, max_pixels: int) -> np.ndarray:
    try:
        gray, _ = upright_gray(probe.path, max_pixels=max_pixels, side=keypoints.SIDE)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        log.info("%s: no keypoints: %s", probe.name, exc)
        return np.empty((0, keypoints.DESCRIPTOR_BYTES), np.uint8)
    image = Image.fromarray(gray)
    image.thumbnail((keypoints.SIDE, keypoints.SIDE))
    return keypoints.signature(np.asarray(image, dtype=np.uint8))


def _best(
    probe: Probe, rows: Sequence[int], features: LocalFeatures
) -> tuple[int, geometry.Verified] | None:
    """The candidate row verified with the highest score that holds or is held by the file."""
    found = []
    for row in rows:
        v = features.verified(probe, row)
        if v is not None and v.is_copy:
            found.append((v.score, -row, v))
    if not found:
        return None
    _score, row, v = max(found, key=lambda x: (x[0], x[1]))
    return -row, v


def _row(probe: Probe, harvest: Harvest, row: int, v: geometry.Verified) -> FileMatch:
    kind, _params = geometry.classify_geometry(v)
    distance = min(hamming(key.ph256, harvest.table.ph256[row].tobytes()) for key in probe.keys)
    return FileMatch(
        file=probe.name,
        photo_id=int(harvest.table.ids[row]),
        distance=distance,
        kind=kind.value,
        verdict=Verdict.MATCH,
        larger=probe.width * probe.height > harvest.original_px[row],
        stage=Stage.GEOMETRY,
    )
