"""Frame (uniform border) detection: harvest's per-side detector and the Berg/Hays ring baseline.

Pure numpy on greyscale arrays. `coarse_borders` runs on a 1/8-scale decode (cheap) and decides;
`refine_borders` then moves each edge to the exact line on the working-resolution image.
Guards against false positives (studio white, night sky, sky at the top): a side counts only if
whole edge lines are uniform *and* the first line past them is mostly different (a straight,
sharp step to content), and at least `min_sides` sides must qualify.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from harvester.config import FrameParams

Gray = npt.NDArray[np.uint8]
_SIDES = ("top", "bottom", "left", "right")


@dataclass(frozen=True, slots=True, kw_only=True)
class CropBox:
    """A crop rectangle in pixels: left/top inclusive, right/bottom exclusive."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        """Width of the box."""
        return self.right - self.left

    @property
    def height(self) -> int:
        """Height of the box."""
        return self.bottom - self.top

    def as_tuple(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom)."""
        return self.left, self.top, self.right, self.bottom


@dataclass(frozen=True, slots=True, kw_only=True)
class Borders:
    """Border width per side, in pixels of the array they were measured on, and its grey level."""

    top: int
    bottom: int
    left: int
    right: int
    level: tuple[int, int, int, int] = (0, 0, 0, 0)  # grey level per side, same order

    def box(self, height: int, width: int) -> CropBox:
        """The content rectangle inside these borders for an image of this size."""
        return CropBox(
            left=self.left, top=self.top, right=width - self.right, bottom=height - self.bottom
        )

    def widths(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right)."""
        return self.top, self.bottom, self.left, self.right


def luma(rgb: npt.NDArray[np.uint8]) -> Gray:
    """ITU-R 601 luma of an RGB array (what a GRAY JPEG decode gives)."""
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    out: Gray = np.clip(rgb.astype(np.float32) @ weights + 0.5, 0, 255).astype(np.uint8)
    return out


def _side_lines(gray: Gray, side: str, depth: int) -> Gray:
    """The first `depth` lines from one side, as rows (outermost first)."""
    if side == "top":
        return gray[:depth]
    if side == "bottom":
        return gray[::-1][:depth]
    if side == "left":
        return gray[:, :depth].T
    return gray[:, ::-1][:, :depth].T


def _uniform_share(lines: Gray, level: int, tolerance: float) -> npt.NDArray[np.float64]:
    diff = np.abs(lines.astype(np.int16) - level)
    return np.asarray((diff <= tolerance).mean(axis=1), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class _Side:
    width: int  # uniform lines from the edge (0: none)
    level: int  # grey level of the edge line
    step: float  # share of the first content lines that differs from the level


def _may_start_border(gray: Gray, side: str, tolerance: int) -> bool:
    """Whether the side's corners agree with its edge line's level, as `_side` requires of a
    border. Their difference is looked at first: more than twice the tolerance, and no level
    is within the tolerance of both (no median needed, the usual answer on a photo)."""
    edge = _side_lines(gray, side, 1)[0]
    first, last = int(edge[0]), int(edge[-1])
    if abs(first - last) > 2 * tolerance:
        return False
    level = int(np.median(edge))
    return max(abs(first - level), abs(last - level)) <= tolerance


def _side(gray: Gray, side: str, params: FrameParams) -> _Side:
    """Measure one side; width 0 when its edge is not a uniform band ending in a step."""
    span = gray.shape[0] if side in ("top", "bottom") else gray.shape[1]
    lines = _side_lines(gray, side, max(2, int(span * params.max_depth)) + 2)
    edge = lines[0].astype(np.int16)
    level = int(np.median(edge))
    if max(abs(int(edge[0]) - level), abs(int(edge[-1]) - level)) > params.tolerance:
        return _Side(0, level, 0.0)  # early exit: the corners disagree with the edge's level
    share = _uniform_share(lines, level, params.tolerance)
    width = int(np.argmin(share >= params.min_uniform)) if share.min() < params.min_uniform else 0
    if width == 0 or width + 1 >= len(lines) - 1:
        return _Side(0, level, 0.0)  # not uniform at all, or uniform deeper than any frame
    return _Side(width, level, 1.0 - float(share[width : width + 2].min()))


def coarse_borders(gray: Gray, params: FrameParams | None = None) -> Borders | None:
    """Detect a frame on a small (e.g. 1/8-scale) greyscale image; None when there is none.

    At least `min_sides` sides need a sharp step to content; a side with a weaker step (content
    of nearly the frame's colour along it) joins them when its level matches theirs.
    """
    params = params or FrameParams()
    if min(gray.shape) < 8:
        return None
    # Only a side whose corners match its edge can be a border: with fewer of them than a
    # frame needs, the answer is None whatever the rest would measure (most photos, cheaply).
    if sum(_may_start_border(gray, s, params.tolerance) for s in _SIDES) < params.min_sides:
        return None
    sides = [_side(gray, side, params) for side in _SIDES]
    strong = [s for s in sides if s.width and s.step >= params.min_step]
    if len(strong) < params.min_sides:
        return None
    levels = {s.level for s in strong}

    def keep(s: _Side) -> bool:
        if not s.width or s.step < params.min_weak_step:
            return False
        return s.step >= params.min_step or any(
            abs(s.level - v) <= params.tolerance for v in levels
        )

    top, bottom, left, right = (s.width if keep(s) else 0 for s in sides)
    return Borders(
        top=top,
        bottom=bottom,
        left=left,
        right=right,
        level=(sides[0].level, sides[1].level, sides[2].level, sides[3].level),
    )


def refine_borders(
    gray: Gray, coarse: Borders, coarse_shape: tuple[int, int], params: FrameParams | None = None
) -> Borders:
    """Move each coarse edge to the exact line on `gray` (a larger decode of the same image)."""
    params = params or FrameParams()
    scale_y = gray.shape[0] / coarse_shape[0]
    scale_x = gray.shape[1] / coarse_shape[1]
    out = []
    for side, width, level in zip(_SIDES, coarse.widths(), coarse.level, strict=True):
        scale = scale_y if side in ("top", "bottom") else scale_x
        out.append(_refine_side(gray, side, (width, level), scale, params) if width else 0)
    return Borders(top=out[0], bottom=out[1], left=out[2], right=out[3], level=coarse.level)


def _refine_side(
    gray: Gray, side: str, coarse: tuple[int, int], scale: float, params: FrameParams
) -> int:
    """First non-border line in a window around the coarse edge (coarse block = `scale` lines)."""
    width, level = coarse
    start = max(0, int(width * scale - scale))
    stop = int((width + 1) * scale + scale) + 1
    lines = _side_lines(gray, side, stop)
    # The border's noise (robust sigma): a strided sample of its lines is plenty, and the
    # medians of whole bands were a third of a framed Large's processing time.
    outer = lines[: max(2, start) : 2, ::3].astype(np.int16)
    sigma = 1.4826 * float(np.median(np.abs(outer - np.median(outer))))
    share = _uniform_share(lines[start:], level, max(params.tolerance, 3.0 * sigma))
    bad = np.flatnonzero(share < params.refine_uniform)
    if len(bad) == 0 or bad[0] == 0:
        return round(width * scale)  # the window says nothing better than the coarse estimate
    return start + int(bad[0])


def hays_borders(gray: Gray) -> Borders | None:
    """Berg/Hays remove_frame.m: deepest 1-px ring with std*min(mean,1-mean) < .005, plus 12.

    Symmetric on all four sides, as the original; `gray` is 0-255 (the original works in 0-1).
    """
    height, width = gray.shape
    image = gray.astype(np.float64) / 255.0
    deepest = 0
    for k in range(1, round(max(height, width) / 8) + 1):
        if 2 * k >= min(height, width):
            break
        ring = np.concatenate(
            (image[k - 1, :], image[height - k, :], image[:, k - 1], image[:, width - k])
        )
        mean = float(ring.mean())
        if float(ring.std(ddof=1)) * min(mean, 1.0 - mean) < 0.005:
            deepest = k
    if deepest == 0:
        return None
    trim = min(deepest + 12, (min(height, width) - 1) // 2)
    return Borders(top=trim, bottom=trim, left=trim, right=trim)
