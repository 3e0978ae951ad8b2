"""What one copy is of another: the pair classifier of `harvest dupes` (duplicates.md §5.4).

Pure: two photos' signals in, one `PairVerdict` out. The rules run in order and the first that
holds wins: the byte digests, then the best of the 8 rotations/flips of A's hash against B's,
then the content aspect ratios, which tell a resize or an exact rotation/flip from a crop. A
crop, or anything else the global hash cannot explain, is left `needs_geometry` for the local
feature check (dataset/geometry.py), which only the caller can run (it needs the pixels).

Pairs are directed: `a` is the better copy (more pixels, then earlier upload, then lower id),
so every parameter says what `b` is relative to `a` (scale < 1 is a smaller copy).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from harvester.dataset.fingerprint import TRANSFORMS, Dihedral, dihedral, hamming_many
from harvester.dataset.fingerprint import Kind as TurnKind

#: Largest 256-bit distance taken as the same picture (PDQ's published match threshold).
MATCH_RADIUS = 31
#: The best variant must beat the second best by this much, or the picture is symmetric and
#: its rotation cannot be told from its hash.
VARIANT_MARGIN = 8
#: Content aspect ratios within this share are the same shape (JPEG sizes round to pixels).
ASPECT_TOLERANCE = 0.01
#: Sizes within this share are the same size (a recompression, not a resize).
SCALE_TOLERANCE = 0.005


class Kind(StrEnum):
    """The kinds of copy `harvest dupes` reports."""

    IDENTICAL_BYTES = "identical-bytes"
    IDENTICAL_PIXELS = "identical-pixels"
    RECOMPRESSED = "recompressed"
    RESIZED = "resized"
    ROTATED = "rotated"
    FLIPPED = "flipped"
    CROPPED = "cropped"
    OTHER = "other"


#: Kinds whose members are the same file content: grouped by connected components.
IDENTICAL_KINDS = frozenset({Kind.IDENTICAL_BYTES, Kind.IDENTICAL_PIXELS})


@dataclass(frozen=True, slots=True, kw_only=True)
class Signal:
    """What the classifier needs of one photo: its fingerprint and its content's size."""

    photo_id: int
    ph256: bytes
    src_sha256: bytes | None  # None when unknown (the download is gone): never equal
    scan_sha256: bytes | None
    width: int  # the content box (frame stripped, orientation applied) in downloaded pixels
    height: int
    original_scale: float | None = None  # the original's long side / the download's, if known
    uploaded: int = 0  # unix time; the earlier upload is the better copy at equal size

    @property
    def area(self) -> float:
        """The content's pixels in the original (in the download where that is unknown)."""
        return self.width * self.height * (self.original_scale or 1.0) ** 2

    @property
    def rank(self) -> tuple[float, int, int]:
        """Sort key of the better copy: most pixels, then earliest upload, then lowest id."""
        return (-self.area, self.uploaded, self.photo_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class PairVerdict:
    """One classified pair: `b` is a `kind` copy of `a`, with the kind's parameter."""

    a: int
    b: int
    kind: Kind
    param: str  # scale ("0.5"), angle ("90"), axis ("h"), kept area ("0.81"), or ""
    distance: int  # Hamming distance of the best variant, 0-256
    variant: Dihedral  # b looks like this turn of a
    needs_geometry: bool = False  # a crop or other: only local features can confirm it


def ordered(x: Signal, y: Signal) -> tuple[Signal, Signal]:
    """The pair with the better copy first."""
    return (x, y) if x.rank <= y.rank else (y, x)


def classify(x: Signal, y: Signal, *, radius: int = MATCH_RADIUS) -> PairVerdict | None:
    """Classify a candidate pair; None when the two are not the same picture at `radius`."""
    a, b = ordered(x, y)
    if a.src_sha256 is not None and a.src_sha256 == b.src_sha256:
        return _verdict(a, b, Kind.IDENTICAL_BYTES, "", 0, Dihedral.IDENTITY)
    if a.scan_sha256 is not None and a.scan_sha256 == b.scan_sha256:
        return _verdict(a, b, Kind.IDENTICAL_PIXELS, "", 0, Dihedral.IDENTITY)
    distances = hamming_many(dihedral(a.ph256), np.frombuffer(b.ph256, dtype=np.uint8))
    order = sorted(range(len(distances)), key=lambda i: (int(distances[i]), i))
    best, second = order[0], order[1]
    distance = int(distances[best])
    if distance > radius:
        return None
    if int(distances[second]) < distance + VARIANT_MARGIN:
        # A symmetric picture matches several variants: the copy is real, its geometry unknown.
        return _verdict(a, b, Kind.OTHER, "symmetric", distance, Dihedral(best))
    return _geometric(a, b, Dihedral(best), distance)


def _geometric(a: Signal, b: Signal, variant: Dihedral, distance: int) -> PairVerdict:
    turn = TRANSFORMS[variant]
    # A quarter turn or a diagonal mirror swaps the sides: compare b with a as turned.
    aw, ah = (a.height, a.width) if turn.transpose else (a.width, a.height)
    if abs((aw / ah) / (b.width / b.height) - 1) > ASPECT_TOLERANCE:
        # Another shape: a crop (or a pad) of the same picture; local features must say.
        return _verdict(a, b, Kind.CROPPED, "", distance, variant, needs_geometry=True)
    if variant is not Dihedral.IDENTITY:
        if turn.kind is TurnKind.ROTATION:
            return _verdict(a, b, Kind.ROTATED, str(turn.angle), distance, variant)
        return _verdict(a, b, Kind.FLIPPED, turn.axis or "", distance, variant)
    scale = b.width / aw
    if a.original_scale and b.original_scale:  # the downloads may be two capped Larges
        scale *= b.original_scale / a.original_scale
    if abs(scale - 1) <= SCALE_TOLERANCE:
        return _verdict(a, b, Kind.RECOMPRESSED, "", distance, variant)
    return _verdict(a, b, Kind.RESIZED, f"{scale:.3f}", distance, variant)


def _verdict(
    a: Signal,
    b: Signal,
    kind: Kind,
    param: str,
    distance: int,
    variant: Dihedral,
    *,
    needs_geometry: bool = False,
) -> PairVerdict:
    return PairVerdict(
        a=a.photo_id,
        b=b.photo_id,
        kind=kind,
        param=param,
        distance=distance,
        variant=variant,
        needs_geometry=needs_geometry,
    )
