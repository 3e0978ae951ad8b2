"""Local-feature confirmation of a pair of pictures, VISE's way: ORB keypoints, ratio-tested
Hamming matches, a RANSAC-fitted similarity (or a homography, for a copy photographed off a screen
or a print at an angle), score = inliers / keypoints, and the transform decomposed into scale,
angle and the box that b's frame covers in a.

Conventions. Inputs are upright greyscale uint8 arrays at a working size of about 256–512 px on
the long side; the caller decodes them, applies the dihedral variant it wants to test, and caches
`Features`. Coordinates are pixel edges: the crop ``a[t:b, l:r]`` is the box (l, t, r, b) and a
pixel's centre sits at +0.5. `Verified.matrix` maps a's coordinates to b's (b is a, transformed),
so a half-size copy has scale 0.5. Angles are counter-clockwise as seen on screen, as in
``cv2.getRotationMatrix2D`` and ``np.rot90``.

Model choice: `Model.HOMOGRAPHY` fits both transforms and keeps the homography only when the
similarity explains less than 80 % of its inliers; otherwise (a copy seen square-on) its four
extra degrees of freedom, fitted to points on a line or in a cluster, extrapolate wildly.

Thresholds, measured by ``python -m tests.test_geometry`` (ORB n=500, 512 px; 153 true pairs:
crops of 3–25 % a side, 60 % zoom, half size, turns of 5°, −12°, 30°, 90°, 180°, 270°,
perspective, JPEG 60 + sepia, 30 % brightness; 1,341 false pairs: other photos and their
transformed copies, disjoint crops of one photo). False pairs reach at most 4 inliers and a
score of 0.009; true pairs have at least 29 inliers and a score of 0.078. Hence `MIN_INLIERS` 12
(below it, `verify` answers None), `CANDIDATE_SCORE` 0.03 and `ACCEPT_SCORE` 0.05. VISE's 0.2 and
0.3 (duplicates.md §5.4) do not carry over: with a fixed keypoint budget the score is bounded by
the share of a that b shows, so they would reject every 25 % crop (median 0.17), the zooms
(median 0.16) and most perspective copies fitted by a similarity (median 0.20; 0.38 with the
homography).

OpenCV (``opencv-python-headless``) is imported only inside the functions that use it, so this
module imports without it and the first call says how to install it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from harvester.exceptions import ConfigError

Gray = npt.NDArray[np.uint8]
Floats = npt.NDArray[np.float64]
Points = npt.NDArray[np.float32]
Box = tuple[float, float, float, float]
Param = float | Box

MIN_INLIERS = 12  # false pairs measured: at most 4 inliers; true pairs: at least 29
CANDIDATE_SCORE = 0.03  # 3× the best false pair's score (0.009)
ACCEPT_SCORE = 0.05  # under ⅔ of the weakest true pair's (0.078, a 60 % zoom)
#: A copy lies within its source or holds it; two shots of one scene that only overlap are not
#: copies. bench.dupes: its 468 verified crops measure >= 0.998, the two cameras of its stereo
#: pairs 0.86-0.97, its tiles overlapping by under half much less. A crop of one stereo view
#: lies inside the other view, though: that look-alike passes.
MIN_CONTAINED = 0.98
#: A copy agrees wherever the pictures have corners; a look-alike agrees only on part: one depth
#: plane of two views of a 3-D scene, whose other planes move apart (parallax), or the overlap.
#: `Verified.coverage` (see `coverage`): how much of the contained picture's 8x8 cells the
#: inliers reach, against what as many points spread like the keypoints would reach.
#: bench.dupes: 12,941 verified true pairs, none below 0.65; 110 crops of one stereo view
#: within the other, 26 at 0.6 or more, 22 at 0.62 or more (0.83-0.99: every one the same 10 %
#: crop of the flattest tile, nearly a plane). tests/test_geometry.py's true pairs: at least
#: 0.634 (a 25 % a side crop).
MIN_COVERAGE = 0.62
COVERAGE_CELLS = 8

_NEEDS_CV2 = (
    "local-feature matching needs opencv-python-headless: pip install opencv-python-headless"
)
_REFERENCE_SIDE_PX = 512  # the RANSAC tolerance is given at this long side and scaled with it
_FAST_THRESHOLD = 10  # OpenCV's 20 finds a handful of corners on soft or dark pictures
_STRETCH_MIN_LEVELS = 24  # a 1–99 % range narrower than this is flat: noise is not stretched


class Model(StrEnum):
    """The transform fitted between the two pictures."""

    SIMILARITY = "similarity"  # scale, rotation, translation: crops, resizes, turns
    HOMOGRAPHY = "homography"  # a plane seen at an angle: a print or a screen photographed


class GeometryKind(StrEnum):
    """What a verified transform says the copy is (VISE's cropped / rotate90i / other)."""

    CROPPED = "cropped"
    ROTATED = "rotated"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class GeometryParams:
    """Tuning of `verify`; the defaults are the ones measured in tests/test_geometry.py."""

    ratio: float = 0.8  # Lowe's ratio test on the two nearest Hamming neighbours
    reproj_px_at_512: float = 3.0  # RANSAC tolerance in b's pixels at a 512 px long side
    min_inliers: int = MIN_INLIERS
    max_iters: int = 2000
    confidence: float = 0.995
    # a homography is kept only when the similarity explains less than this share of its inliers
    similarity_share: float = 0.8


@dataclass(frozen=True, slots=True, eq=False)
class Features:
    """ORB keypoints of one picture: edge coordinates (n×2) and 32-byte descriptors (n×32)."""

    points: Points
    descriptors: Gray
    width: int
    height: int

    def __len__(self) -> int:
        return int(self.points.shape[0])


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Verified:
    """A fitted transform from a to b, its support and its decomposition."""

    model: Model
    inliers: int
    matches: int  # ratio-test survivors the transform was fitted to
    score: float  # VISE's: inliers / min(keypoints of a, keypoints of b)
    matrix: Floats  # 2×3 (similarity) or 3×3 (homography), a's coordinates → b's
    scale: float  # √(λ1·λ2): b's size over a's
    angle_deg: float  # θ in (-180, 180], counter-clockwise on screen
    lambdas: tuple[float, float]  # λ1 ≥ λ2 of H = R(θ)R(−φ)diag(λ1, λ2)R(φ); equal for similarity
    translation: tuple[float, float]  # where a's origin lands in b
    box_in_a: Box  # (l, t, r, b): bounding box of b's frame mapped into a, clipped to a
    kept_area: float  # area of b's frame mapped into a (clipped) ÷ area of a
    contained: float  # the overlap ÷ the smaller of the two frames (both in a's pixels): 1 when
    #                   one picture lies within the other, less when they only overlap
    coverage: float  # share of the contained picture's keypoints in its cells with an inlier

    @property
    def is_copy(self) -> bool:
        """True when the transform is strong enough, one picture lies within the other, and
        they agree all over it: a copy, not an overlapping or look-alike scene."""
        return (
            self.score >= ACCEPT_SCORE
            and self.contained >= MIN_CONTAINED
            and self.coverage >= MIN_COVERAGE
        )


def features(gray: Gray, *, n: int = 500) -> Features:
    """Up to `n` ORB keypoints of an upright greyscale image; none for a flat or tiny one."""
    _require_cv2()
    import cv2

    img = np.ascontiguousarray(gray, dtype=np.uint8)
    if img.ndim != 2:
        raise ValueError(f"features wants a 2-D greyscale array, got shape {img.shape}")
    height, width = img.shape
    if img.size == 0:
        return _no_features(width, height)
    orb = cv2.ORB.create(nfeatures=n, fastThreshold=_FAST_THRESHOLD)
    keypoints, descriptors = orb.detectAndCompute(_stretch(img), None)
    if len(keypoints) == 0:  # OpenCV then answers None for the descriptors
        return _no_features(width, height)
    points = np.array([kp.pt for kp in keypoints], np.float32) + np.float32(0.5)
    return Features(points, np.asarray(descriptors, np.uint8), width, height)


def verify(
    a: Features,
    b: Features,
    *,
    model: Model | str = Model.SIMILARITY,
    params: GeometryParams | None = None,
) -> Verified | None:
    """The transform taking a to b, fitted by RANSAC on ratio-tested matches; None when fewer
    than `params.min_inliers` matches agree or the fit is degenerate."""
    _require_cv2()
    params = params or GeometryParams()
    model = Model(model)
    if min(len(a), len(b)) < params.min_inliers:
        return None
    points_a, points_b = _ratio_matches(a, b, params.ratio)
    if len(points_a) < params.min_inliers:
        return None
    tolerance = params.reproj_px_at_512 * max(b.width, b.height) / _REFERENCE_SIDE_PX
    fit = _fit(points_a, points_b, model, tolerance, params)
    if model is Model.HOMOGRAPHY:
        fit = _prefer_similarity(fit, points_a, points_b, tolerance, params, b)
    if fit is None or fit.inliers < params.min_inliers:
        return None
    return _describe(fit, a, b, points_a[fit.agrees], points_b[fit.agrees], matches=len(points_a))


def classify_geometry(
    v: Verified,
    *,
    crop_max_angle_deg: float = 2.0,
    turn_tolerance_deg: float = 15.0,
    turn_max_stretch: float = 0.1,
) -> tuple[GeometryKind, dict[str, Param]]:
    """VISE's reading of a verified transform: cropped (kept area, box) when it barely turns,
    rotated by 90/180/270 (counter-clockwise) when λ1, λ2 ≈ 1 and θ is near a quarter turn,
    otherwise other (angle, scale)."""
    if abs(v.angle_deg) < crop_max_angle_deg:
        return GeometryKind.CROPPED, {"kept_area": v.kept_area, "box": v.box_in_a}
    quarters = round(v.angle_deg / 90.0)
    near_turn = abs(v.angle_deg - 90.0 * quarters) <= turn_tolerance_deg
    unscaled = all(abs(lam - 1.0) < turn_max_stretch for lam in v.lambdas)
    if quarters % 4 and near_turn and unscaled:
        return GeometryKind.ROTATED, {"angle": 90.0 * (quarters % 4)}
    return GeometryKind.OTHER, {"angle": v.angle_deg, "scale": v.scale}


def _require_cv2() -> None:
    """Import OpenCV, or say how to install it."""
    try:
        import cv2  # noqa: F401
    except ImportError as exc:
        raise ConfigError(_NEEDS_CV2) from exc


def _no_features(width: int, height: int) -> Features:
    """The features of a picture with no corners."""
    return Features(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), width, height)


def _stretch(img: Gray) -> Gray:
    """Spread the 1–99 % grey range over 0–255, so dark, faded or tinted copies find the same
    corners as their source (ORB's descriptors are already invariant to it; FAST's threshold is
    not)."""
    import cv2

    cumulative = np.asarray(cv2.calcHist([img], [0], None, [256], [0, 256])).ravel().cumsum()
    lo, hi = np.searchsorted(cumulative, (0.01 * cumulative[-1], 0.99 * cumulative[-1]))
    if hi - lo < _STRETCH_MIN_LEVELS:
        return img
    levels = (np.arange(256, dtype=np.float32) - np.float32(lo)) * np.float32(255 / (hi - lo))
    table = np.clip(levels, 0, 255).astype(np.uint8)
    return np.asarray(cv2.LUT(img, table), np.uint8)


def _ratio_matches(a: Features, b: Features, ratio: float) -> tuple[Points, Points]:
    """Matched point pairs whose nearest neighbour beats the second by Lowe's ratio."""
    import cv2

    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(a.descriptors, b.descriptors, k=2)
    best: dict[int, tuple[float, int]] = {}  # b's keypoint → (distance, a's keypoint)
    for m in pairs:
        if len(m) == 2 and m[0].distance < ratio * m[1].distance:
            first = m[0]
            if first.trainIdx not in best or first.distance < best[first.trainIdx][0]:
                best[first.trainIdx] = (first.distance, first.queryIdx)
    # one match per keypoint of b too, so inliers never exceed either keypoint count
    index = np.array([(qi, ti) for ti, (_, qi) in best.items()], np.intp).reshape(-1, 2)
    return a.points[index[:, 0]], b.points[index[:, 1]]


@dataclass(frozen=True, slots=True, eq=False)
class _Fit:
    """A RANSAC answer: the model, its 3×3 matrix (a → b) and which matches agree with it."""

    model: Model
    matrix: Floats
    agrees: npt.NDArray[np.bool_]

    @property
    def inliers(self) -> int:
        return int(np.count_nonzero(self.agrees))


def _fit(
    points_a: Points, points_b: Points, model: Model, tolerance: float, params: GeometryParams
) -> _Fit | None:
    """RANSAC fit of a → b."""
    import cv2

    if model is Model.SIMILARITY:
        found, mask = cv2.estimateAffinePartial2D(
            points_a,
            points_b,
            method=cv2.RANSAC,
            ransacReprojThreshold=tolerance,
            maxIters=params.max_iters,
            confidence=params.confidence,
        )
    else:
        found, mask = cv2.findHomography(
            points_a,
            points_b,
            method=cv2.RANSAC,
            ransacReprojThreshold=tolerance,
            maxIters=params.max_iters,
            confidence=params.confidence,
        )
    matrix = _as_matrix(found)
    return None if matrix is None else _Fit(model, matrix, np.asarray(mask).reshape(-1) != 0)


def _prefer_similarity(
    homography: _Fit | None,
    points_a: Points,
    points_b: Points,
    tolerance: float,
    params: GeometryParams,
    b: Features,
) -> _Fit | None:
    """The similarity instead of the homography when it explains most of the homography's
    inliers (a plane seen square-on), or when the homography folds b's frame: its four extra
    degrees of freedom are then noise, and fitted to a cluster or a line of points (a tower, a
    horizon) they extrapolate wildly."""
    similarity = _fit(points_a, points_b, Model.SIMILARITY, tolerance, params)
    if homography is None or similarity is None or _folds(homography.matrix, b):
        return similarity
    agree_a, agree_b = points_a[homography.agrees], points_b[homography.agrees]
    residual = np.hypot(*(_project(similarity.matrix, agree_a) - agree_b).T)
    explained = float(np.mean(residual <= tolerance)) if len(residual) else 1.0
    return similarity if explained >= params.similarity_share else homography


def _as_matrix(found: object) -> Floats | None:
    """OpenCV's 2×3 or 3×3 answer as a 3×3 float matrix; None when it found nothing usable."""
    if found is None:
        return None
    matrix = np.asarray(found, np.float64)
    if matrix.shape == (2, 3):
        matrix = np.vstack([matrix, [0.0, 0.0, 1.0]])
    if matrix.shape != (3, 3) or not np.all(np.isfinite(matrix)):
        return None
    return matrix if abs(np.linalg.det(matrix)) > 1e-9 else None


def _describe(
    fit: _Fit, a: Features, b: Features, inliers_a: Points, inliers_b: Points, *, matches: int
) -> Verified | None:
    """Decompose a fitted a → b matrix; None when it folds or flips the picture."""
    matrix = fit.matrix
    if _folds(matrix, b):
        return None
    inverse = _inverse(matrix)
    centre_in_a = _project(inverse, np.array([[b.width / 2, b.height / 2]], np.float64))[0]
    b_in_a = _project(inverse, _frame(b))
    clipped = _clip_to_frame(b_in_a, a.width, a.height)
    if len(clipped) < 3:
        return None
    overlap, b_area = _area(clipped), _area(b_in_a)
    if b_area <= a.width * a.height:  # b is the smaller: a's keypoints seen in b's frame
        smaller, inliers, other = b, inliers_b, _project(matrix, a.points)
    else:
        smaller, inliers, other = a, inliers_a, _project(inverse, b.points)
    angle, lambdas = _decompose(_jacobian(matrix, centre_in_a))
    xs, ys = clipped[:, 0], clipped[:, 1]
    return Verified(
        model=fit.model,
        inliers=fit.inliers,
        matches=matches,
        score=fit.inliers / min(len(a), len(b)),
        matrix=matrix[:2] if fit.model is Model.SIMILARITY else matrix,
        scale=math.sqrt(lambdas[0] * lambdas[1]),
        angle_deg=angle,
        lambdas=lambdas,
        translation=(float(matrix[0, 2] / matrix[2, 2]), float(matrix[1, 2] / matrix[2, 2])),
        box_in_a=(float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())),
        kept_area=overlap / (a.width * a.height),
        contained=overlap / max(1e-9, min(a.width * a.height, b_area)),
        coverage=max(coverage(smaller, inliers), coverage(smaller, inliers, other)),
    )


def coverage(
    f: Features,
    inliers: Points | Floats,
    points: Points | Floats | None = None,
    cells: int = COVERAGE_CELLS,
) -> float:
    """The share of `points` (f's own keypoints by default; any points in f's coordinates)
    within f's frame that lie in a cell, of a cells x cells grid over f's frame, holding one of
    `inliers` (in f's coordinates too); 0 when no point lies in the frame."""
    seen = f.points if points is None else points
    with np.errstate(invalid="ignore"):  # NaN (behind the camera) compares False: outside
        x, y = seen[:, 0], seen[:, 1]
        inside: npt.NDArray[np.bool_] = (x >= 0) & (x < f.width) & (y >= 0) & (y < f.height)
    if not inside.any():
        return 0.0

    def cell(xy: Points | Floats) -> npt.NDArray[np.intp]:
        x = np.clip((xy[:, 0] * (cells / f.width)).astype(np.intp), 0, cells - 1)
        y = np.clip((xy[:, 1] * (cells / f.height)).astype(np.intp), 0, cells - 1)
        return np.asarray(y * cells + x, np.intp)

    agreed = np.zeros(cells * cells, np.bool_)
    agreed[cell(inliers)] = True
    where = cell(seen[inside])
    observed = float(np.mean(agreed[where]))
    # What len(inliers) points drawn like `seen` would cover: Σ p_c (1 − (1 − p_c)^n).
    share = np.bincount(where, minlength=cells * cells) / len(where)
    expected = float(np.sum(share * (1 - (1 - share) ** len(inliers))))
    return min(1.0, observed / expected) if expected > 0 else 0.0


def _frame(f: Features) -> Floats:
    """The four corners of a picture, clockwise from the top left."""
    return np.array([[0, 0], [f.width, 0], [f.width, f.height], [0, f.height]], np.float64)


def _folds(matrix: Floats, b: Features) -> bool:
    """True when b's frame, mapped back into a, passes behind the camera, mirrors or is not a
    convex quadrilateral: no real copy looks like that."""
    inverse = _inverse(matrix)
    quad = _project(inverse, _frame(b))
    if not np.all(np.isfinite(quad)):
        return True
    centre_in_a = _project(inverse, np.array([[b.width / 2, b.height / 2]], np.float64))[0]
    return bool(np.linalg.det(_jacobian(matrix, centre_in_a)) <= 0) or not _convex(quad)


def _project(matrix: Floats, points: Points | Floats) -> Floats:
    """Points through a projective matrix; those that pass behind the camera become NaN."""
    homogeneous = np.column_stack([np.asarray(points, np.float64), np.ones(len(points))])
    mapped = homogeneous @ matrix.T
    w = np.where(mapped[:, 2:3] > 1e-9, mapped[:, 2:3], np.nan)
    return np.asarray(mapped[:, :2] / w, np.float64)


def _inverse(matrix: Floats) -> Floats:
    """The inverse of a non-singular 3×3 matrix (`_as_matrix` refuses singular ones)."""
    return np.asarray(np.linalg.inv(matrix), np.float64)


def _jacobian(matrix: Floats, point: Floats) -> Floats:
    """The 2×2 linear part of a projective matrix at a point (the matrix itself if affine)."""
    mapped = matrix @ np.array([point[0], point[1], 1.0])
    w = mapped[2]
    return np.asarray((matrix[:2, :2] - np.outer(mapped[:2] / w, matrix[2, :2])) / w, np.float64)


def _decompose(linear: Floats) -> tuple[float, tuple[float, float]]:
    """θ (degrees, counter-clockwise on screen) and λ1 ≥ λ2 of A = R(θ)R(−φ)diag(λ1,λ2)R(φ),
    by SVD: A = U·S·Vᵀ = (U·Vᵀ)(V·S·Vᵀ) (Hartley and Zisserman, p. 40)."""
    u, s, vt = np.linalg.svd(linear)
    rotation = u @ vt
    angle = math.degrees(math.atan2(rotation[0, 1], rotation[0, 0]))
    return angle, (float(s[0]), float(s[1]))


def _convex(quad: Floats) -> bool:
    """True when the four mapped corners still make a convex, same-orientation quadrilateral."""
    edges = np.roll(quad, -1, axis=0) - quad
    turns = (
        edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1]
        - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    )
    return bool(np.all(turns > 0) or np.all(turns < 0))


def _clip_to_frame(polygon: Floats, width: int, height: int) -> Floats:
    """Sutherland–Hodgman: the part of a convex polygon inside [0, width] × [0, height]."""
    for axis, limit, keep_below in (
        (0, 0.0, False),
        (0, width, True),
        (1, 0.0, False),
        (1, height, True),
    ):
        if len(polygon) == 0:
            break
        polygon = _clip_edge(polygon, axis, float(limit), keep_below)
    return polygon


def _clip_edge(polygon: Floats, axis: int, limit: float, keep_below: bool) -> Floats:
    """One Sutherland–Hodgman pass against the line coordinate[axis] = limit."""
    inside = (polygon[:, axis] <= limit) if keep_below else (polygon[:, axis] >= limit)
    out: list[Floats] = []
    for i in range(len(polygon)):
        prev, cur = polygon[i - 1], polygon[i]
        if inside[i] != inside[i - 1]:
            t = (limit - prev[axis]) / (cur[axis] - prev[axis])
            out.append(prev + t * (cur - prev))
        if inside[i]:
            out.append(cur)
    return np.array(out, np.float64).reshape(-1, 2)


def _area(polygon: Floats) -> float:
    """Shoelace area of a simple polygon."""
    x, y = polygon[:, 0], polygon[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)
