"""The pair classifier and the grouping of `harvest dupes`, on real photographs with known edits.

Each case edits a scikit-image photo at full size the way a re-upload would, hashes both sides
as the pipeline does (upright greyscale, box-reduced), and expects the kind and parameter.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image
from skimage import data as skdata

from harvester.dataset.classify import Kind, PairVerdict, Signal, classify, ordered
from harvester.dataset.fingerprint import Dihedral, ph256
from harvester.dataset.groups import build_groups

Gray = npt.NDArray[np.uint8]


@functools.cache
def photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(skdata, name)()).convert("RGB")


def _jpeg(image: Image.Image, quality: int = 92) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def signal(image: Image.Image, photo_id: int, *, data: bytes | None = None) -> Signal:
    """A photo's signal as the pipeline makes it: 1/8-ish greyscale, source pixel size."""
    data = data if data is not None else _jpeg(image)
    gray = image.convert("L")
    factor = next((f for f in (8, 4, 2) if min(gray.size) // f >= 64), 1)
    thumb: Gray = np.asarray(gray.reduce(factor))
    return Signal(
        photo_id=photo_id,
        ph256=ph256(thumb),
        src_sha256=hashlib.sha256(data).digest(),
        scan_sha256=hashlib.sha256(b"scan" + data).digest(),
        width=image.width,
        height=image.height,
    )


EDITS: dict[str, tuple[Callable[[Image.Image], Image.Image], Kind, str]] = {
    "recompressed": (
        lambda im: Image.open(io.BytesIO(_jpeg(im, 70))).convert("RGB"),
        Kind.RECOMPRESSED,
        "",
    ),
    "resized": (
        lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS),
        Kind.RESIZED,
        "0.500",
    ),
    "rot90": (lambda im: im.transpose(Image.Transpose.ROTATE_270), Kind.ROTATED, "90"),
    "rot180": (lambda im: im.transpose(Image.Transpose.ROTATE_180), Kind.ROTATED, "180"),
    "rot270": (lambda im: im.transpose(Image.Transpose.ROTATE_90), Kind.ROTATED, "270"),
    "flip_h": (lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), Kind.FLIPPED, "h"),
    "flip_v": (lambda im: im.transpose(Image.Transpose.FLIP_TOP_BOTTOM), Kind.FLIPPED, "v"),
    "darkened": (lambda im: im.point(lambda v: int(v * 0.45)), Kind.RECOMPRESSED, ""),
}


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "rocket"])
@pytest.mark.parametrize("edit", sorted(EDITS))
def test_edits_are_classified_with_their_parameter(name: str, edit: str) -> None:
    make, kind, param = EDITS[edit]
    source = photo(name)
    verdict = classify(signal(source, 1), signal(make(source), 2))
    assert verdict is not None, f"{edit} of {name} not found"
    assert verdict.kind is kind
    if kind is Kind.RESIZED:  # integer sides: 451 px halves to 225
        assert float(verdict.param) == pytest.approx(float(param), abs=0.003)
    else:
        assert verdict.param == param
    assert (verdict.a, verdict.b) == (1, 2)  # the source is the better copy (more pixels, or id)


def test_identical_bytes_and_pixels_come_from_the_digests() -> None:
    image = photo("coffee")
    a = signal(image, 1, data=b"same")
    b = signal(image, 2, data=b"same")
    assert classify(a, b) == PairVerdict(
        a=1, b=2, kind=Kind.IDENTICAL_BYTES, param="", distance=0, variant=Dihedral.IDENTITY
    )
    other_bytes = dataclasses.replace(b, src_sha256=b"x" * 32, scan_sha256=a.scan_sha256)
    verdict = classify(a, other_bytes)
    assert verdict is not None
    assert verdict.kind is Kind.IDENTICAL_PIXELS


def test_a_crop_changes_the_shape_and_asks_for_geometry() -> None:
    image = photo("astronaut")
    w, h = image.size
    crop = image.crop((0, 0, w, int(h * 0.98)))  # 2 % off the bottom: same picture, new shape
    verdict = classify(signal(image, 1), signal(crop, 2))
    assert verdict is not None
    assert verdict.kind is Kind.CROPPED
    assert verdict.needs_geometry


@pytest.mark.parametrize(
    ("x", "y"), [("astronaut", "coffee"), ("chelsea", "rocket"), ("camera", "moon")]
)
def test_different_photos_are_not_a_pair(x: str, y: str) -> None:
    assert classify(signal(photo(x), 1), signal(photo(y), 2)) is None


def test_a_mirror_symmetric_picture_flipped_is_the_same_picture() -> None:
    # Its odd-frequency coefficients are 0, so no hash can see a flip: it is not called one.
    half = np.asarray(photo("coffee").convert("RGB"))[:, :300]
    mirror = Image.fromarray(np.concatenate([half, half[:, ::-1]], axis=1))
    flipped = mirror.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    verdict = classify(signal(mirror, 1), signal(flipped, 2, data=_jpeg(mirror, 80)))
    assert verdict is not None
    assert verdict.kind is Kind.RECOMPRESSED


def test_the_better_copy_comes_first() -> None:
    image = photo("chelsea")
    big, small = signal(image, 9), signal(image.resize((150, 100)), 3)
    assert ordered(small, big) == (big, small)
    verdict = classify(small, big)
    assert verdict is not None
    assert (verdict.a, verdict.b) == (9, 3)


def _pair(a: int, b: int, kind: Kind, distance: int = 5) -> PairVerdict:
    return PairVerdict(a=a, b=b, kind=kind, param="", distance=distance, variant=Dihedral.IDENTITY)


def test_identical_copies_join_by_components_near_ones_by_stars() -> None:
    rank = {i: (-100 + i, 0, i) for i in range(1, 8)}  # 1 is the best copy, 7 the worst
    pairs = [
        _pair(2, 3, Kind.IDENTICAL_BYTES),
        _pair(3, 4, Kind.IDENTICAL_PIXELS),  # 2 = 3 = 4: one component, represented by 2
        _pair(1, 2, Kind.RESIZED),  # near: the unit {2, 3, 4} joins 1's star
        _pair(5, 6, Kind.ROTATED),
        _pair(6, 7, Kind.FLIPPED),  # a chain 5 ~ 6 ~ 7 must not merge into one group
    ]
    groups = {m.photo_id: (m.group, m.kind) for m in build_groups(pairs, rank)}
    assert groups[1] == (1, None)
    assert groups[2] == (1, Kind.RESIZED)
    assert groups[3] == (1, Kind.RESIZED)  # the unit's link to the representative
    assert groups[4] == (1, Kind.RESIZED)
    assert groups[5] == (5, None)
    assert groups[6] == (5, Kind.ROTATED)
    assert 7 not in groups  # near 6 only, and 6 is taken: no chain through it


def test_an_identical_group_alone_names_its_kind() -> None:
    rank = {i: (0, 0, i) for i in (1, 2, 3)}
    pairs = [_pair(1, 2, Kind.IDENTICAL_BYTES, 0), _pair(2, 3, Kind.IDENTICAL_BYTES, 0)]
    groups = {m.photo_id: (m.group, m.kind) for m in build_groups(pairs, rank)}
    assert groups == {1: (1, None), 2: (1, Kind.IDENTICAL_BYTES), 3: (1, Kind.IDENTICAL_BYTES)}
