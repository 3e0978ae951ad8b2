"""geometry: ORB + RANSAC confirmation on real photographs (scikit-image's) under transforms of
known parameters, and pairs that must not verify.

``python -m tests.test_geometry`` prints the measured score distributions and timings.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import itertools
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image
from skimage import data as skdata

from harvester.dataset.geometry import (
    ACCEPT_SCORE,
    CANDIDATE_SCORE,
    MIN_CONTAINED,
    MIN_COVERAGE,
    MIN_INLIERS,
    Features,
    GeometryKind,
    GeometryParams,
    Model,
    Verified,
    classify_geometry,
    coverage,
    features,
    verify,
)
from harvester.exceptions import ConfigError

Pixels = npt.NDArray[np.uint8]
Floats = npt.NDArray[np.float64]
Box = tuple[float, float, float, float]

needs_cv2 = pytest.mark.skipif(
    importlib.util.find_spec("cv2") is None, reason="needs opencv-python-headless"
)

_LOADERS: dict[str, Callable[[], Pixels]] = {
    "astronaut": skdata.astronaut,
    "camera": skdata.camera,
    "chelsea": skdata.chelsea,
    "coffee": skdata.coffee,
    "rocket": skdata.rocket,
    "motorcycle": lambda: skdata.stereo_motorcycle()[0],
    "hubble": skdata.hubble_deep_field,
    "coins": skdata.coins,
    "clock": skdata.clock,  # soft and low-contrast: OpenCV's default FAST threshold finds 10
}
PHOTOS = tuple(_LOADERS)
WORKING_SIDE_PX = 512  # the caller decodes at about 256–512 px on the long side
FEATURES_N = 500

# fractions cut from (left, top, right, bottom)
CROPS: dict[str, tuple[float, float, float, float]] = {
    "sym3": (0.03, 0.03, 0.03, 0.03),
    "sym10": (0.10, 0.10, 0.10, 0.10),
    "sym25": (0.25, 0.25, 0.25, 0.25),
    "asym": (0.03, 0.20, 0.10, 0.05),
    "left25": (0.25, 0.0, 0.0, 0.0),
    "corner": (0.0, 0.10, 0.25, 0.15),
}


@dataclass(frozen=True, slots=True)
class Pair:
    """Two greyscale pictures and what is known about how b was made from a."""

    name: str
    a: Pixels
    b: Pixels
    box: Box | None = None  # where b's frame lies in a (pixel edges)
    scale: float = 1.0
    angle_deg: float = 0.0
    homography: Floats | None = None  # a → b, pixel edges


# --- building the pictures ---------------------------------------------------------------------


@functools.cache
def photo(name: str) -> Pixels:
    """A scikit-image photograph as RGB, at most the working size on its long side."""
    import cv2

    img = np.asarray(_LOADERS[name](), np.uint8)
    img = np.stack([img] * 3, axis=-1) if img.ndim == 2 else img[..., :3]
    factor = WORKING_SIDE_PX / max(img.shape[:2])
    if factor < 1:
        size = (round(img.shape[1] * factor), round(img.shape[0] * factor))
        img = np.asarray(cv2.resize(img, size, interpolation=cv2.INTER_AREA), np.uint8)
    return np.ascontiguousarray(img)


def gray(rgb: Pixels) -> Pixels:
    """Luma as the caller's decoder gives it."""
    return np.asarray(Image.fromarray(rgb).convert("L"), np.uint8)


def jpeg(rgb: Pixels, quality: int) -> Pixels:
    """A JPEG round trip."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"), np.uint8)


def cut(rgb: Pixels, fractions: tuple[float, float, float, float]) -> tuple[Pixels, Box]:
    """The crop that removes these fractions of each side, and its box."""
    height, width = rgb.shape[:2]
    left, top = round(fractions[0] * width), round(fractions[1] * height)
    right, bottom = width - round(fractions[2] * width), height - round(fractions[3] * height)
    return np.ascontiguousarray(rgb[top:bottom, left:right]), (left, top, right, bottom)


def edge_homography(centre_coords: Floats) -> Floats:
    """An OpenCV warp matrix (pixel centres) in pixel-edge coordinates."""
    shift = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    back = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
    return np.asarray(shift @ centre_coords @ back, np.float64)


def crop_pair(name: str, crop: str) -> Pair:
    """b is a crop of a."""
    rgb = photo(name)
    b, box = cut(rgb, CROPS[crop])
    return Pair(f"{name} crop {crop}", gray(rgb), gray(b), box=box)


def zoom_pair(name: str) -> Pair:
    """b is the central 60 % × 60 % of a, upscaled back to the working size."""
    import cv2

    rgb = photo(name)
    b, box = cut(rgb, (0.2, 0.2, 0.2, 0.2))
    factor = WORKING_SIDE_PX / max(b.shape[:2])
    size = (round(b.shape[1] * factor), round(b.shape[0] * factor))
    b = np.asarray(cv2.resize(b, size, interpolation=cv2.INTER_CUBIC), np.uint8)
    return Pair(f"{name} zoom", gray(rgb), gray(b), box=box, scale=size[0] / (box[2] - box[0]))


def half_pair(name: str) -> Pair:
    """b is a at half size."""
    import cv2

    rgb = photo(name)
    b = np.asarray(cv2.resize(rgb, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA), np.uint8)
    return Pair(f"{name} half", gray(rgb), gray(b), scale=0.5)


def turn_pair(name: str, angle_deg: float) -> Pair:
    """b is a turned counter-clockwise about its centre, on the same canvas (corners black)."""
    import cv2

    rgb = photo(name)
    height, width = rgb.shape[:2]
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle_deg, 1.0)
    b = np.asarray(cv2.warpAffine(rgb, matrix, (width, height)), np.uint8)
    return Pair(f"{name} turn {angle_deg:g}", gray(rgb), gray(b), angle_deg=angle_deg)


def quarter_pair(name: str, quarters: int) -> Pair:
    """b is a turned by quarters × 90° counter-clockwise (np.rot90)."""
    rgb = photo(name)
    b = np.ascontiguousarray(np.rot90(rgb, quarters))
    return Pair(f"{name} rot90×{quarters}", gray(rgb), gray(b), angle_deg=90.0 * quarters)


def perspective_pair(name: str) -> Pair:
    """b is a photographed at an angle, like a print on a table: a keystoned quad on grey."""
    import cv2

    rgb = photo(name)
    height, width = rgb.shape[:2]
    src = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    corners = [[0.12, 0.08], [0.85, 0.02], [0.97, 0.97], [0.03, 0.90]]
    dst = np.array([[x * width, y * height] for x, y in corners], np.float32)
    matrix = np.asarray(cv2.getPerspectiveTransform(src, dst), np.float64)
    b = np.asarray(
        cv2.warpPerspective(rgb, matrix, (width, height), borderValue=(90, 90, 90)), np.uint8
    )
    return Pair(
        f"{name} perspective", gray(rgb), gray(jpeg(b, 80)), homography=edge_homography(matrix)
    )


def tint_pair(name: str) -> Pair:
    """b is a sepia-toned, 15 % darker copy of a saved at JPEG quality 60."""
    rgb = photo(name).astype(np.float64)
    sepia = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])
    b = np.clip(rgb @ sepia.T * 0.85, 0, 255).astype(np.uint8)
    return Pair(f"{name} jpeg60+tint", gray(photo(name)), gray(jpeg(b, 60)))


def dark_pair(name: str) -> Pair:
    """b is a at 30 % brightness, JPEG quality 75."""
    b = (photo(name).astype(np.float64) * 0.3).astype(np.uint8)
    return Pair(f"{name} dark", gray(photo(name)), gray(jpeg(b, 75)))


def positives() -> Iterator[Pair]:
    """Every transformed copy of every photo."""
    for name in PHOTOS:
        yield from (crop_pair(name, crop) for crop in CROPS)
        yield from (zoom_pair(name), half_pair(name), perspective_pair(name))
        yield from (turn_pair(name, angle) for angle in (5.0, 30.0, -12.0))
        yield from (quarter_pair(name, quarters) for quarters in (1, 2, 3))
        yield from (tint_pair(name), dark_pair(name))


def negatives() -> Iterator[Pair]:
    """Different photos (and transformed copies of other photos), and disjoint crops of one."""
    for first, second in itertools.permutations(PHOTOS, 2):
        yield Pair(f"{first} / {second}", gray(photo(first)), gray(photo(second)))
    for name in PHOTOS:
        yield from (disjoint_pair(name, split) for split in ("left-right", "top-bottom"))
        others = [other for other in PHOTOS if other != name]
        yield Pair(f"{name} / {others[0]} zoom", gray(photo(name)), zoom_pair(others[0]).b)
        yield Pair(f"{name} / {others[1]} turn", gray(photo(name)), turn_pair(others[1], 30).b)
        yield Pair(f"{name} / {others[2]} tilt", gray(photo(name)), perspective_pair(others[2]).b)


def disjoint_pair(name: str, split: str) -> Pair:
    """Two crops of one photo that share nothing: 45 % either side of a 10 % gap."""
    rgb = photo(name)
    first, second = (
        ((0, 0, 0.55, 0), (0.55, 0, 0, 0))
        if split == "left-right"
        else ((0, 0, 0, 0.55), (0, 0.55, 0, 0))
    )
    return Pair(f"{name} disjoint {split}", gray(cut(rgb, first)[0]), gray(cut(rgb, second)[0]))


def overlapping_pair(name: str) -> Pair:
    """Two crops of one photo, each 70 % of its width, that share the middle 40 %: two shots
    of one scene, not a copy of each other."""
    rgb = photo(name)
    left, right = cut(rgb, (0, 0, 0.3, 0))[0], cut(rgb, (0.3, 0, 0, 0))[0]
    return Pair(f"{name} overlapping", gray(left), gray(right))


# --- measuring ---------------------------------------------------------------------------------


@functools.cache
def _features_cached(key: bytes, shape: tuple[int, int], n: int) -> Features:
    return features(np.frombuffer(key, np.uint8).reshape(shape), n=n)


def feats(img: Pixels) -> Features:
    """Features of a picture, computed once per distinct picture."""
    return _features_cached(img.tobytes(), (img.shape[0], img.shape[1]), FEATURES_N)


def check(pair: Pair, model: Model = Model.SIMILARITY) -> Verified:
    """The pair's verification, which must exist."""
    v = verify(feats(pair.a), feats(pair.b), model=model)
    assert v is not None, f"{pair.name}: no verification"
    return v


def wrap(angle_deg: float) -> float:
    """An angle in (-180, 180]."""
    return -((-angle_deg + 180.0) % 360.0 - 180.0)


def transfer_error(v: Verified, pair: Pair, points: Floats) -> Floats:
    """Distances, in b's pixels, between where the fit and the truth put these points of a."""
    assert pair.homography is not None
    homogeneous = np.column_stack([points, np.ones(len(points))])
    matrix = v.matrix if v.matrix.shape == (3, 3) else np.vstack([v.matrix, [0, 0, 1]])
    fitted, truth = homogeneous @ matrix.T, homogeneous @ pair.homography.T
    diff = fitted[:, :2] / fitted[:, 2:] - truth[:, :2] / truth[:, 2:]
    return np.asarray(np.hypot(diff[:, 0], diff[:, 1]), np.float64)


def corner_error(v: Verified, pair: Pair) -> float:
    """The largest transfer error at a's corners (extrapolated where a's corners are flat)."""
    height, width = pair.a.shape
    return float(
        transfer_error(
            v, pair, np.array([[0, 0], [width, 0], [width, height], [0, height]], float)
        ).max()
    )


def content_error(v: Verified, pair: Pair) -> float:
    """The 95th percentile transfer error over a's keypoints: where a has something to see."""
    return float(np.quantile(transfer_error(v, pair, feats(pair.a).points.astype(float)), 0.95))


def kept(pair: Pair) -> float:
    """The true share of a's area that b shows."""
    assert pair.box is not None
    left, top, right, bottom = pair.box
    return (right - left) * (bottom - top) / pair.a.size


def iou(first: Box, second: Box) -> float:
    """Intersection over union of two (l, t, r, b) boxes."""
    width = min(first[2], second[2]) - max(first[0], second[0])
    height = min(first[3], second[3]) - max(first[1], second[1])
    inter = max(width, 0) * max(height, 0)
    area = (first[2] - first[0]) * (first[3] - first[1]) + (second[2] - second[0]) * (
        second[3] - second[1]
    )
    return inter / (area - inter)


# --- copies that must verify, with the right parameters ----------------------------------------


@needs_cv2
@pytest.mark.parametrize("model", list(Model))
@pytest.mark.parametrize("crop", list(CROPS))
@pytest.mark.parametrize("name", PHOTOS)
def test_crop_recovers_its_box_and_kept_area(name: str, crop: str, model: Model) -> None:
    pair = crop_pair(name, crop)
    v = check(pair, model)
    assert pair.box is not None
    assert iou(v.box_in_a, pair.box) >= 0.9
    assert v.kept_area == pytest.approx(kept(pair), abs=0.03)
    assert v.contained >= MIN_CONTAINED
    assert v.score > ACCEPT_SCORE
    kind, param = classify_geometry(v)
    assert kind is GeometryKind.CROPPED
    assert param == {"kept_area": v.kept_area, "box": v.box_in_a}


@needs_cv2
def test_crop_translation_is_where_a_origin_lands_in_b() -> None:
    pair = crop_pair("astronaut", "asym")
    v = check(pair)
    assert pair.box is not None
    assert v.translation == pytest.approx((-pair.box[0], -pair.box[1]), abs=2.0)
    assert v.scale == pytest.approx(1.0, rel=0.02)


@needs_cv2
@pytest.mark.parametrize("name", PHOTOS)
def test_zoomed_crop_recovers_box_and_scale(name: str) -> None:
    pair = zoom_pair(name)
    v = check(pair)
    assert pair.box is not None
    assert iou(v.box_in_a, pair.box) >= 0.9
    assert v.scale == pytest.approx(pair.scale, rel=0.02)
    assert v.score > ACCEPT_SCORE
    assert classify_geometry(v)[0] is GeometryKind.CROPPED


@needs_cv2
@pytest.mark.parametrize("name", PHOTOS)
def test_half_size_copy_has_scale_one_half_and_the_reverse_two(name: str) -> None:
    pair = half_pair(name)
    v = check(pair)
    assert v.scale == pytest.approx(0.5, rel=0.02)
    assert abs(v.angle_deg) < 1.0
    assert v.kept_area == pytest.approx(1.0, abs=0.03)
    back = verify(feats(pair.b), feats(pair.a))
    assert back is not None
    assert back.scale == pytest.approx(2.0, rel=0.02)


@needs_cv2
@pytest.mark.parametrize("angle", [5.0, 30.0, -12.0])
@pytest.mark.parametrize("name", PHOTOS)
def test_turned_copy_recovers_its_angle(name: str, angle: float) -> None:
    pair = turn_pair(name, angle)
    v = check(pair)
    assert v.angle_deg == pytest.approx(angle, abs=1.0)
    assert v.scale == pytest.approx(1.0, rel=0.02)
    assert v.score > ACCEPT_SCORE
    kind, param = classify_geometry(v)
    assert kind is GeometryKind.OTHER
    assert param["angle"] == pytest.approx(angle, abs=1.0)


@needs_cv2
@pytest.mark.parametrize("quarters", [1, 2, 3])
@pytest.mark.parametrize("name", PHOTOS)
def test_quarter_turn_is_rotate90i(name: str, quarters: int) -> None:
    v = check(quarter_pair(name, quarters))
    assert abs(wrap(v.angle_deg - 90 * quarters)) < 1.0
    assert classify_geometry(v) == (GeometryKind.ROTATED, {"angle": 90.0 * quarters})


@needs_cv2
@pytest.mark.parametrize("name", PHOTOS)
def test_photographed_at_an_angle_needs_the_homography(name: str) -> None:
    pair = perspective_pair(name)
    v = check(pair, Model.HOMOGRAPHY)
    assert v.matrix.shape == (3, 3)
    assert content_error(v, pair) <= 0.01 * max(pair.a.shape)
    assert v.score > ACCEPT_SCORE
    similarity = verify(feats(pair.a), feats(pair.b), model="similarity")
    assert similarity is None or similarity.inliers < v.inliers


@needs_cv2
@pytest.mark.parametrize("name", PHOTOS)
def test_anisotropic_stretch_shows_in_the_lambdas(name: str) -> None:
    """A copy squeezed to another aspect ratio: H = R(θ)R(−φ)diag(λ1, λ2)R(φ) with λ1/λ2 = 1.3."""
    import cv2

    rgb = photo(name)
    height, width = rgb.shape[:2]
    b = np.asarray(cv2.resize(rgb, (round(width * 0.65), round(height * 0.5))), np.uint8)
    v = check(Pair(f"{name} squeezed", gray(rgb), gray(b)), Model.HOMOGRAPHY)
    assert v.model is Model.HOMOGRAPHY
    assert v.lambdas == pytest.approx((0.65, 0.5), rel=0.03)
    assert v.scale == pytest.approx(np.sqrt(0.65 * 0.5), rel=0.03)
    assert abs(v.angle_deg) < 1.0


@needs_cv2
@pytest.mark.parametrize("make", [tint_pair, dark_pair], ids=["jpeg60+tint", "dark"])
@pytest.mark.parametrize("name", PHOTOS)
def test_recoloured_reencoded_copy_is_the_whole_picture(
    name: str, make: Callable[[str], Pair]
) -> None:
    v = check(make(name))
    assert v.score > ACCEPT_SCORE
    assert v.scale == pytest.approx(1.0, rel=0.02)
    assert abs(v.angle_deg) < 1.0
    assert v.kept_area == pytest.approx(1.0, abs=0.03)


# --- pairs that must not verify ------------------------------------------------------------------


@needs_cv2
@pytest.mark.parametrize("model", list(Model))
@pytest.mark.parametrize(("first", "second"), list(itertools.permutations(PHOTOS, 2)))
def test_different_photos_do_not_verify(first: str, second: str, model: Model) -> None:
    assert verify(feats(gray(photo(first))), feats(gray(photo(second))), model=model) is None


@needs_cv2
@pytest.mark.parametrize("model", list(Model))
@pytest.mark.parametrize("split", ["left-right", "top-bottom"])
@pytest.mark.parametrize("name", PHOTOS)
def test_disjoint_crops_of_one_photo_do_not_verify(name: str, split: str, model: Model) -> None:
    pair = disjoint_pair(name, split)
    assert verify(feats(pair.a), feats(pair.b), model=model) is None


@needs_cv2
@pytest.mark.parametrize("name", PHOTOS)
def test_overlapping_crops_verify_but_neither_contains_the_other(name: str) -> None:
    pair = overlapping_pair(name)
    v = verify(feats(pair.a), feats(pair.b))
    assert v is not None, f"{pair.name}: the shared middle should verify"
    assert v.contained < MIN_CONTAINED
    assert v.contained == pytest.approx(0.4 / 0.7, abs=0.05)


@needs_cv2
def test_thresholds_separate_true_and_false_pairs() -> None:
    """Even with 4 inliers allowed, no false pair (other photos and their transformed copies,
    disjoint crops) gets near the inlier floor or the candidate score, and every true pair clears
    the accept score: the margins the module's docstring quotes."""
    loose = GeometryParams(min_inliers=4)
    false = [verify(feats(p.a), feats(p.b), params=loose) for p in negatives()]
    false += [verify(feats(p.a), feats(p.b), params=loose) for p in hard_negatives()]
    worst = max((v for v in false if v is not None), key=lambda v: v.inliers, default=None)
    assert worst is None or (worst.inliers <= MIN_INLIERS // 2 and worst.score < CANDIDATE_SCORE)
    weakest = min(check(p).score for p in positives() if p.homography is None)
    assert weakest > ACCEPT_SCORE


def stereo_pair(tile: int, crop: float) -> Pair:
    """b: tile `tile` (of 2x2) of the motorcycle's right view; a: the same tile of the left view,
    `crop` cut from each side. A look-alike: the camera moved, near things more than far ones."""
    import cv2

    left, right, _disparity = skdata.stereo_motorcycle()
    height, width = left.shape[:2]
    y, x = (tile // 2) * height // 2, (tile % 2) * width // 2
    views = [
        np.asarray(v[y : y + height // 2, x : x + width // 2], np.uint8) for v in (left, right)
    ]
    views[0], _box = cut(views[0], (crop, crop, crop, crop))

    def small(rgb: Pixels) -> Pixels:
        factor = WORKING_SIDE_PX / max(rgb.shape[:2])
        size = (round(rgb.shape[1] * factor), round(rgb.shape[0] * factor))
        return np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), np.uint8)

    return Pair(f"stereo tile{tile} crop{crop}", gray(small(views[0])), gray(small(views[1])))


@needs_cv2
def test_a_crop_of_one_stereo_view_lies_within_the_other_but_is_no_copy() -> None:
    """Containment alone called this a crop (bench.dupes linked such look-alikes); the inliers
    hold to one depth plane, so they cover only part of the picture."""
    v = check(stereo_pair(1, 0.05))
    assert v.score >= ACCEPT_SCORE
    assert v.contained >= MIN_CONTAINED, "it does lie within the other view"
    assert v.coverage < MIN_COVERAGE
    assert not v.is_copy


@needs_cv2
def test_every_true_copy_covers_the_picture_it_lies_in() -> None:
    weakest = min(
        (
            check(p, Model.HOMOGRAPHY if p.homography is not None else Model.SIMILARITY).coverage,
            p.name,
        )
        for p in positives()
    )
    assert weakest[0] >= MIN_COVERAGE, weakest


def _spread(cols: int, rows: int, width: float, height: float) -> Floats:
    """A cols x rows lattice of points over [0, width) x [0, height), at cell centres."""
    xs = (np.arange(cols) + 0.5) * width / cols
    ys = (np.arange(rows) + 0.5) * height / rows
    return np.array([(x, y) for y in ys for x in xs], np.float64)


@pytest.mark.parametrize(
    ("inliers", "points", "expected"),
    [
        (_spread(16, 16, 320, 240), None, 1.0),  # everywhere the keypoints are
        # 64 inliers in the top-left quarter: a quarter of the keypoints, where 64 points spread
        # like them would reach 1 - (63/64)^64 of them
        (_spread(8, 8, 160, 120), None, pytest.approx(0.25 / (1 - (63 / 64) ** 64))),
        (_spread(8, 8, 160, 120), _spread(16, 16, 160, 120), 1.0),  # all the points there are
        (_spread(4, 4, 320, 240), None, 1.0),  # 16 evenly: more than 16 at random would reach
        (np.zeros((0, 2)), None, 0.0),
        (_spread(16, 16, 320, 240), np.full((3, 2), np.nan), 0.0),  # no point in the frame
        (_spread(16, 16, 320, 240), _spread(4, 4, 640, 480), 1.0),  # those outside are ignored
    ],
    ids=["spread", "quarter", "only-there", "few", "none", "nan", "outside"],
)
def test_coverage_is_observed_over_expected(
    inliers: Floats, points: Floats | None, expected: object
) -> None:
    f = Features(
        _spread(16, 16, 320, 240).astype(np.float32), np.zeros((256, 32), np.uint8), 320, 240
    )
    assert coverage(f, inliers, points) == expected


# --- edges ---------------------------------------------------------------------------------------


@needs_cv2
def test_flat_noisy_tiny_and_empty_images_give_nothing_to_verify() -> None:
    rng = np.random.default_rng(0)
    flat = np.full((384, 512), 128, np.uint8)
    noisy = np.clip(128 + rng.normal(0, 2, flat.shape), 0, 255).astype(np.uint8)
    real = feats(gray(photo("astronaut")))
    assert len(features(flat)) == 0
    assert len(features(np.zeros((8, 8), np.uint8))) == 0
    assert len(features(np.zeros((0, 0), np.uint8))) == 0
    for other in (features(flat), features(noisy)):
        for model in Model:
            assert verify(other, real, model=model) is None
            assert verify(real, other, model=model) is None
            assert verify(other, other, model=model) is None


@needs_cv2
def test_features_are_edge_coordinates_and_descriptors() -> None:
    img = gray(photo("coffee"))
    f = features(img, n=200)
    assert 0 < len(f) <= 200
    assert f.descriptors.shape == (len(f), 32)
    assert f.descriptors.dtype == np.uint8
    assert (f.width, f.height) == (img.shape[1], img.shape[0])
    assert f.points.min() >= 0
    assert f.points[:, 0].max() <= f.width
    with pytest.raises(ValueError, match="2-D"):
        features(photo("coffee"))


def test_without_opencv_the_module_imports_and_calls_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code = "import sys; sys.modules['cv2'] = None; import harvester.dataset.geometry"
    subprocess.run([sys.executable, "-c", code], check=True)
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(ConfigError, match="pip install opencv-python-headless"):
        features(np.zeros((64, 64), np.uint8))
    empty = Features(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), 64, 64)
    with pytest.raises(ConfigError, match="opencv-python-headless"):
        verify(empty, empty)


def _verified(angle: float, lambdas: tuple[float, float] = (1.0, 1.0)) -> Verified:
    return Verified(
        model=Model.SIMILARITY,
        inliers=50,
        matches=80,
        score=0.4,
        matrix=np.eye(3)[:2],
        scale=float(np.sqrt(lambdas[0] * lambdas[1])),
        angle_deg=angle,
        lambdas=lambdas,
        translation=(0.0, 0.0),
        box_in_a=(10.0, 20.0, 300.0, 200.0),
        kept_area=0.5,
        contained=1.0,
        coverage=1.0,
    )


@pytest.mark.parametrize(
    ("angle", "lambdas", "kind", "param"),
    [
        (0.0, (1.0, 1.0), "cropped", {"kept_area": 0.5, "box": (10.0, 20.0, 300.0, 200.0)}),
        (-1.99, (0.5, 0.5), "cropped", {"kept_area": 0.5, "box": (10.0, 20.0, 300.0, 200.0)}),
        (2.0, (1.0, 1.0), "other", {"angle": 2.0, "scale": 1.0}),
        (90.0, (1.0, 1.0), "rotated", {"angle": 90.0}),
        (104.9, (1.05, 0.95), "rotated", {"angle": 90.0}),
        (-90.0, (1.0, 1.0), "rotated", {"angle": 270.0}),
        (180.0, (1.0, 1.0), "rotated", {"angle": 180.0}),
        (-176.0, (1.0, 1.0), "rotated", {"angle": 180.0}),
        (106.0, (1.0, 1.0), "other", {"angle": 106.0, "scale": 1.0}),
        (90.0, (1.2, 1.2), "other", {"angle": 90.0, "scale": 1.2}),
        (90.0, (1.0, 0.85), "other", {"angle": 90.0, "scale": pytest.approx(0.922, abs=1e-3)}),
        (30.0, (1.0, 1.0), "other", {"angle": 30.0, "scale": 1.0}),
    ],
)
def test_classify_geometry_reads_the_transform_as_vise_does(
    angle: float, lambdas: tuple[float, float], kind: str, param: dict[str, object]
) -> None:
    assert classify_geometry(_verified(angle, lambdas)) == (kind, param)


# --- the report: python -m tests.test_geometry [--side 256] [--n 500] -------------------------

Row = tuple[Pair, Verified | None, float]


def _rows(pairs: list[Pair], model: Model, params: GeometryParams) -> list[Row]:
    out = []
    for pair in pairs:
        fa, fb = feats(pair.a), feats(pair.b)
        start = time.process_time()
        out.append((pair, verify(fa, fb, model=model, params=params), time.process_time() - start))
    return out


def _quantiles(label: str, rows: list[Row]) -> None:
    for field in ("inliers", "score"):
        values = np.array([0.0 if v is None else float(getattr(v, field)) for _, v, _ in rows])
        q = np.quantile(values, [0, 0.05, 0.5, 0.95, 1])
        print(
            f"  {label:5} {field:7} n={len(values):4}  min {q[0]:7.3f}  p5 {q[1]:7.3f}  "
            f"median {q[2]:7.3f}  p95 {q[3]:7.3f}  max {q[4]:7.3f}"
        )


def _worst(ok: list[tuple[Pair, Verified]]) -> str:
    """The largest error of the recovered parameters against the truth, over a kind's pairs."""
    if not ok:
        return ""
    pair = ok[0][0]
    if pair.box is not None:
        boxes = [(iou(v.box_in_a, p.box), abs(v.kept_area - kept(p))) for p, v in ok if p.box]
        return f"IoU ≥ {min(b[0] for b in boxes):.3f}, Δkept ≤ {max(b[1] for b in boxes):.3f}"
    if pair.homography is not None:
        corners = max(corner_error(v, p) for p, v in ok)
        content = max(content_error(v, p) for p, v in ok)
        return f"keypoints p95 ≤ {content:.1f} px, corners ≤ {corners:.1f} px"
    angle = max(abs(wrap(v.angle_deg - p.angle_deg)) for p, v in ok)
    scale = max(abs(v.scale / p.scale - 1) for p, v in ok)
    return f"Δangle ≤ {angle:.2f}°, Δscale ≤ {100 * scale:.1f} %"


def _per_kind(rows: list[Row]) -> None:
    kinds: dict[str, list[Row]] = {}
    for row in rows:
        kinds.setdefault(row[0].name.split(" ", 1)[1], []).append(row)
    print(
        f"    {'kind':12} {'ok':>5} {'min inl':>7} {'min score':>9} {'median':>7}  worst parameter"
    )
    for kind, group in kinds.items():
        ok = [(pair, v) for pair, v, _ in group if v is not None]
        scores = [v.score for _, v in ok] or [0.0]
        fewest = min((v.inliers for _, v in ok), default=0)
        print(
            f"    {kind:12} {len(ok):>2}/{len(group):<2} {fewest:>7} "
            f"{min(scores):>9.3f} {float(np.median(scores)):>7.3f}  "
            f"{_worst(ok)}"
        )


def hard_negatives() -> Iterator[Pair]:
    """Every photo against every transformed copy of every other photo."""
    copies = list(positives())
    for name in PHOTOS:
        yield from (
            Pair(f"{name} / {c.name}", gray(photo(name)), c.b)
            for c in copies
            if not c.name.startswith(name + " ")
        )


def report(n: int) -> None:
    """Score distributions of true and false pairs, per kind, and timings."""
    true, false = list(positives()), list(negatives()) + list(hard_negatives())
    pictures = {p.tobytes(): p for pair in true + false for p in (pair.a, pair.b)}
    start = time.process_time()
    for img in pictures.values():
        _features_cached(img.tobytes(), (img.shape[0], img.shape[1]), n)
    ms = 1000 * (time.process_time() - start) / len(pictures)
    print(f"features (n={n}): {len(pictures)} pictures, {ms:.2f} ms CPU each, one thread")
    loose = GeometryParams(min_inliers=4)  # so that false pairs show what they would score
    for model in Model:
        rows_t, rows_f = _rows(true, model, loose), _rows(false, model, loose)
        ms = 1000 * float(np.mean([t for *_, t in rows_t + rows_f]))
        print(f"{model}: {ms:.2f} ms CPU per verify (features cached), min_inliers=4 here")
        _quantiles("true", rows_t)
        _quantiles("false", rows_f)
        _per_kind(rows_t)
        strongest = sorted(rows_f, key=lambda r: 0 if r[1] is None else -r[1].inliers)[:3]
        for pair, v, _ in strongest:
            got = "None" if v is None else f"inliers {v.inliers} score {v.score:.3f}"
            print(f"    strongest false: {pair.name}: {got}")


if __name__ == "__main__":
    import cv2

    cv2.setNumThreads(1)  # CPU time then measures one core's work
    args = dict(zip(sys.argv[1::2], sys.argv[2::2], strict=True))
    WORKING_SIDE_PX = int(args.get("--side", WORKING_SIDE_PX))
    FEATURES_N = int(args.get("--n", FEATURES_N))
    report(FEATURES_N)
