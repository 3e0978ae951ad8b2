"""Image quality of the benchmark's resized Originals: PSNR against a float LANCZOS reference.

The reference is the original bytes fully decoded (EXIF orientation applied), resized in 32-bit
float per channel with LANCZOS to exactly the size the tool stored, then rounded. Framed photos
are left out: harvest crops the frame and img2dataset keeps it, so their pixels differ by design.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

from bench.pipeline_corpus import Photo

Pixels = npt.NDArray[np.float64]


@dataclass
class QualityReport:
    """Mean PSNR per tool over the same Originals, and what could not be compared."""

    compared: int = 0
    mean_psnr: dict[str, float] = field(default_factory=dict)
    min_psnr: dict[str, float] = field(default_factory=dict)
    size_mismatch: dict[str, int] = field(default_factory=dict)  # stored size != expected
    missing: dict[str, int] = field(default_factory=dict)


def reference(original: bytes, size: tuple[int, int]) -> Pixels:
    """Full decode, then float LANCZOS per channel to `size` (w, h), rounded to 0..255."""
    img = ImageOps.exif_transpose(Image.open(io.BytesIO(original))).convert("RGB")
    channels = [
        np.asarray(
            Image.fromarray(np.asarray(ch, dtype=np.float32), "F").resize(
                size, Image.Resampling.LANCZOS
            )
        )
        for ch in img.split()
    ]
    stacked: Pixels = np.clip(np.rint(np.stack(channels, axis=-1)), 0, 255).astype(np.float64)
    return stacked


def psnr(a: Pixels, b: Pixels) -> float:
    """Peak signal-to-noise ratio of two equal-shape 8-bit images, in dB."""
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _decode(path: str) -> Pixels:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.float64)


def expected_size(width: int, height: int, max_side: int = 1024) -> tuple[int, int]:
    """The long-side-1024 size of an unframed original (either tool may round differently)."""
    scale = max_side / max(width, height)
    return round(width * scale), round(height * scale)


def compare_quality(
    photos: Sequence[Photo],
    outputs: Mapping[str, Mapping[str, str]],
    fetch: Callable[[str], bytes],
    sample: int,
) -> QualityReport:
    """PSNR of each tool's stored image (outputs: tool -> photo id -> path) for unframed Originals
    stored by every tool, up to `sample` of them."""
    report = QualityReport()
    scores: dict[str, list[float]] = {tool: [] for tool in outputs}
    candidates = [p for p in photos if p.is_original and not p.framed]
    for tool, stored in outputs.items():
        report.missing[tool] = sum(1 for p in candidates if p.record.id not in stored)
        report.size_mismatch[tool] = 0
    both = [p for p in candidates if all(p.record.id in stored for stored in outputs.values())]
    for photo in both[:sample]:
        original = fetch(photo.choice.url)
        refs: dict[tuple[int, int], Pixels] = {}  # both tools usually store the same size
        for tool, stored in outputs.items():
            got = _decode(stored[photo.record.id])
            size = (got.shape[1], got.shape[0])
            if (
                photo.choice.width
                and abs(size[0] - expected_size(photo.choice.width, photo.choice.height)[0]) > 1
            ):
                report.size_mismatch[tool] += 1
            if size not in refs:
                refs[size] = reference(original, size)
            scores[tool].append(psnr(got, refs[size]))
        report.compared += 1
    for tool, values in scores.items():
        if values:
            report.mean_psnr[tool] = float(np.mean(values))
            report.min_psnr[tool] = float(np.min(values))
    return report
