"""Labelled frame-detection set built from real photographs, and its scoring.

Sources: the real Flickr JPEG recorded in fixtures/flickr/cassettes/test_download_photo.yml
(`FLICKR_JPEG`, found by `tests.harness.recording`; tests that use it are marked
`@requires_recordings(FLICKR_JPEG)`) and scikit-image's natural colour photos (astronaut, coffee,
chelsea, rocket, hubble_deep_field), which are always there.
Positives: frames of many colours, widths (asymmetric and two-sided too), noise levels and JPEG
qualities. Negatives: the plain photos plus hard cases: night scenes (near-black, noisy top and
bottom with a ragged skyline), a studio-style object on pure white, a deep-space photo.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import yaml
from PIL import Image
from skimage import data as skdata

from harvester.images.frames import CropBox
from tests.harness import recording

FLICKR_JPEG = "cassettes/test_download_photo.yml"
Pixels = npt.NDArray[np.uint8]

# (top, bottom, left, right) widths in pixels
_WIDTHS: tuple[tuple[int, int, int, int], ...] = (
    (40, 40, 40, 40),
    (16, 16, 16, 16),
    (12, 30, 50, 25),
    (64, 64, 0, 0),
    (0, 0, 48, 48),
    (23, 37, 61, 11),
    (90, 33, 33, 33),
    (10, 10, 10, 10),
    (27, 27, 27, 27),
    (45, 70, 20, 20),
)
_COLOURS: tuple[tuple[int, int, int], ...] = (
    (255, 255, 255),
    (0, 0, 0),
    (128, 128, 128),
    (200, 30, 30),
    (20, 30, 90),
    (240, 230, 200),
    (220, 220, 220),
    (30, 120, 40),
)
_NOISE = (0.0, 2.0, 5.0)
_QUALITY = (95, 85, 75)


@dataclass(frozen=True, slots=True)
class LabelledImage:
    """One JPEG and its true content box (None when it has no frame)."""

    name: str
    data: bytes
    box: CropBox | None


@dataclass(frozen=True, slots=True)
class Scores:
    """Detection quality on a labelled set."""

    tp: int
    fp: int
    fn: int
    tn: int
    mae_px: float  # mean absolute error of the four box edges over true positives
    max_err_px: int

    @property
    def precision(self) -> float:
        """TP / (TP + FP)."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        """TP / (TP + FN)."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def flickr_jpeg() -> bytes:
    """The real 799x533 Flickr JPEG from the recorded download."""
    cassette = yaml.safe_load(recording(FLICKR_JPEG).read_text())
    body: bytes = cassette["interactions"][0]["response"]["body"]["string"]
    return body


def _upscale(pixels: Pixels, factor: float) -> Pixels:
    image = Image.fromarray(pixels)
    size = (round(image.width * factor), round(image.height * factor))
    return np.asarray(image.resize(size, Image.Resampling.LANCZOS))


@functools.cache
def photograph(name: str) -> Pixels:
    """One real photograph at a Large-like size: "flickr" (the recording, 799x533) or one of the
    scikit-image ones, upscaled: "astronaut" (768x768), "coffee" (900x600), "chelsea", "rocket"."""
    match name:
        case "flickr":
            return np.asarray(Image.open(io.BytesIO(flickr_jpeg())).convert("RGB"))
        case "astronaut":
            return _upscale(skdata.astronaut(), 1.5)
        case "coffee":
            return _upscale(skdata.coffee(), 1.5)
        case "chelsea":
            return _upscale(skdata.chelsea(), 2.0)
        case "rocket":
            return _upscale(skdata.rocket(), 1.5)
    raise KeyError(name)


def base_photos() -> tuple[tuple[str, Pixels], ...]:
    """Every photograph of the labelled set, by name (the recorded Flickr one first)."""
    return tuple(
        (name, photograph(name)) for name in ("flickr", "astronaut", "coffee", "chelsea", "rocket")
    )


def jpeg(pixels: Pixels, quality: int = 90) -> bytes:
    """Encode RGB pixels as a baseline 4:2:0 JPEG."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def add_frame(
    pixels: Pixels, widths: tuple[int, int, int, int], colour: tuple[int, int, int]
) -> tuple[Pixels, CropBox]:
    """Surround a photo with a solid border; returns the image and the content box."""
    top, bottom, left, right = widths
    height, width = pixels.shape[:2]
    out = np.empty((height + top + bottom, width + left + right, 3), np.uint8)
    out[:] = colour
    out[top : top + height, left : left + width] = pixels
    return out, CropBox(left=left, top=top, right=left + width, bottom=top + height)


def _noisy(pixels: Pixels, sigma: float, rng: np.random.Generator) -> Pixels:
    if sigma == 0:
        return pixels
    noise = rng.normal(0.0, sigma, pixels.shape)
    return np.clip(pixels + noise, 0, 255).astype(np.uint8)


def framed_set() -> list[LabelledImage]:
    """Every base photo under every frame geometry, colours/noise/quality cycling."""
    rng = np.random.default_rng(4)
    items = []
    for p, (name, photo) in enumerate(base_photos()):
        for i, widths in enumerate(_WIDTHS):
            colour = _COLOURS[(i + p) % len(_COLOURS)]
            sigma, quality = _NOISE[(i + 2 * p) % 3], _QUALITY[(i + p) % 3]
            framed, box = add_frame(photo, widths, colour)
            data = jpeg(_noisy(framed, sigma, rng), quality)
            if i % 4 == 3:
                data = jpeg(np.asarray(Image.open(io.BytesIO(data))), 90)  # second generation
            items.append(LabelledImage(f"{name}-frame{i}-{colour}-n{sigma}-q{quality}", data, box))
    return items


def _night(pixels: Pixels, rng: np.random.Generator) -> Pixels:
    """Near-black noisy sky above a ragged skyline and a dark foreground below one."""
    height, width = pixels.shape[:2]
    out = pixels.copy()
    sky = (height * 0.25 + np.cumsum(rng.normal(0, 2.0, width))).clip(5, height * 0.45)
    ground = (height * 0.8 + np.cumsum(rng.normal(0, 2.0, width))).clip(height * 0.6, height - 5)
    rows = np.arange(height)[:, None]
    dark = (rows < sky[None, :]) | (rows > ground[None, :])
    level = rng.normal(12.0, 4.0, (height, width, 1)).clip(0, 255)
    out[dark] = np.repeat(level, 3, axis=2)[dark].astype(np.uint8)
    return out


def _studio(pixels: Pixels) -> Pixels:
    """The photo cut to an ellipse standing on the bottom edge, on a pure white background."""
    height, width = pixels.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width]
    cy, cx, ry, rx = height * 0.6, width / 2, height * 0.42, width * 0.35
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    out = np.full_like(pixels, 255)
    out[inside] = pixels[inside]
    return out


def unframed_set() -> list[LabelledImage]:
    """Negatives: plain photos, night scenes, studio objects on white, deep space."""
    rng = np.random.default_rng(7)
    items = []
    for name, photo in base_photos():
        items.append(LabelledImage(f"{name}-plain", jpeg(photo, 90), None))
        items.append(LabelledImage(f"{name}-night", jpeg(_night(photo, rng), 85), None))
        items.append(LabelledImage(f"{name}-studio", jpeg(_studio(photo), 92), None))
    space = _upscale(skdata.hubble_deep_field(), 1.0)
    items.append(LabelledImage("hubble-deep-field", jpeg(space, 90), None))
    return items


@functools.cache
def labelled_set() -> tuple[LabelledImage, ...]:
    """Positives and negatives together (cached: building takes about a second)."""
    return (*framed_set(), *unframed_set())


def evaluate(predict: Callable[[bytes], CropBox | None], items: Sequence[LabelledImage]) -> Scores:
    """Score a detector: binary detection counts and box error on the true positives."""
    tp = fp = fn = tn = 0
    errors: list[int] = []
    for item in items:
        found = predict(item.data)
        if item.box is None:
            fp, tn = fp + (found is not None), tn + (found is None)
        elif found is None:
            fn += 1
        else:
            tp += 1
            errors += [
                abs(a - b) for a, b in zip(found.as_tuple(), item.box.as_tuple(), strict=True)
            ]
    mae = float(np.mean(errors)) if errors else 0.0
    return Scores(tp, fp, fn, tn, mae, max(errors, default=0))
