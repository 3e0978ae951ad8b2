"""Quality and per-kind imaging cost for the pipeline benchmark.

PSNR: each tool's stored image against a reference made from the downloaded bytes: fully
decoded (EXIF orientation applied) and, for a downscaled image, resized in 32-bit float per
channel with LANCZOS to exactly the size that tool stored, then rounded. Two groups:

- ``original``: unframed Originals, which both tools downscale (the headline figure);
- ``large``: unframed Larges, which harvest keeps bit for bit (infinite PSNR, reported as such)
  and img2dataset decodes and re-encodes.

Framed photos are left out: harvest crops the frame and img2dataset keeps it.
"""

from __future__ import annotations

import functools
import io
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import simplejpeg
from PIL import Image, ImageOps

from bench.pipeline_corpus import Photo
from harvester.config import ImagePolicy
from harvester.images.process import ProcessedImage, output_size, process_image
from harvester.images.provenance import Provenance

Pixels = npt.NDArray[np.float64]
Fetch = Callable[[str], bytes]


def reference(original: bytes, size: tuple[int, int]) -> Pixels:
    """Full decode, then float LANCZOS per channel to `size` (w, h), rounded to 0..255."""
    img = ImageOps.exif_transpose(Image.open(io.BytesIO(original))).convert("RGB")
    if img.size == size:
        return np.asarray(img, dtype=np.float64)
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


def spread(items: Sequence[Photo], k: int) -> list[Photo]:
    """Up to `k` items evenly spaced over the sequence (ids grow with upload time)."""
    if len(items) <= k:
        return list(items)
    step = len(items) / k
    return [items[int(i * step)] for i in range(k)]


def _scores(photo: Photo, outputs: Mapping[str, Mapping[str, str]], fetch: Fetch) -> dict[str, Any]:
    """PSNR of every tool's file for one photo, and whether each stored the expected size."""
    source = fetch(photo.choice.url)
    refs: dict[tuple[int, int], Pixels] = {}  # both tools usually store the same size
    out: dict[str, Any] = {}
    for tool, stored in outputs.items():
        got = _decode(stored[photo.record.id])
        size = (got.shape[1], got.shape[0])
        if size not in refs:
            refs[size] = reference(source, size)
        out[tool] = psnr(got, refs[size])
    return out


def compare_quality(
    photos: Sequence[Photo],
    outputs: Mapping[str, Mapping[str, str]],
    fetch: Fetch,
    sample: int,
) -> dict[str, Any]:
    """PSNR per tool over the same unframed photos of each group, stored by every tool."""
    report: dict[str, Any] = {"method": "mean PSNR vs float LANCZOS reference, dB"}
    for kind in ("original", "large"):
        candidates = [p for p in photos if p.kind == kind]
        both = [p for p in candidates if all(p.record.id in s for s in outputs.values())]
        chosen = spread(both, sample)
        with ThreadPoolExecutor(2) as pool:
            rows = list(pool.map(lambda p: _scores(p, outputs, fetch), chosen))
        group: dict[str, Any] = {"compared": len(rows), "missing": {}}
        for tool, stored in outputs.items():
            values = [r[tool] for r in rows]
            group["missing"][tool] = sum(1 for p in candidates if p.record.id not in stored)
            finite = [v for v in values if math.isfinite(v)]
            group[tool] = {
                "mean_psnr": float(np.mean(finite)) if finite else math.inf,
                "min_psnr": float(np.min(values)) if values else None,
                "identical": len(values) - len(finite),
            }
        report[kind] = group
    return report


def imaging_costs(photos: Sequence[Photo], fetch: Fetch, sample: int) -> dict[str, Any]:
    """CPU ms of harvest's `process_image` per kind (one thread, in this process, on an even
    spread of `sample` photos of each kind), and the Originals' floors (original_floors)."""
    policy = ImagePolicy()
    kinds = Counter(p.kind for p in photos)
    costs: dict[str, Any] = {"rejected": []}
    for kind in sorted(kinds):
        spent: list[float] = []
        for photo in spread([p for p in photos if p.kind == kind], sample):
            data = fetch(photo.choice.url)
            spent.append(_cpu_ms(functools.partial(_process, data, photo, policy, costs)))
        costs[kind] = float(np.mean(spent)) if spent else None
    total = sum(kinds.values())
    costs["mix_mean"] = sum(costs[k] * n for k, n in kinds.items() if costs[k]) / total
    originals = [p for p in photos if p.is_original]
    return costs | original_floors(originals, fetch, policy.max_side, jpeg_sample=5 * sample)


def original_floors(
    originals: Sequence[Photo], fetch: Fetch, max_side: int, jpeg_sample: int
) -> dict[str, Any]:
    """Two floors under any tool's cost per Original of the mix, format by format (every PNG
    and GIF, an even spread of `jpeg_sample` JPEGs), weighted by the formats' shares:

    - ``original_floor``: what no sound path avoids: a decode just large enough to cover the
      output (for a JPEG the cheapest DCT scale n/8 that does, for PNG/GIF a whole decode)
      and one encode of the output (q90 4:2:0, the cheapest). Resampling, frames and metadata
      free.
    - ``harvest_ms`` per format: harvest's `process_image` on the same files (one thread),
      to set against the format's floor (issue 16: within 1.25x).
    - ``original_huffman_floor``: the same with a strict 1/8 greyscale decode in place of the
      JPEGs' decode, little more than their entropy (Huffman) decoding; below the sound floor,
      as a 1/8 decode is too small to store.
    """
    by_format: dict[str, list[Photo]] = {}
    for photo in originals:
        by_format.setdefault(photo.choice.url.rsplit(".", 1)[-1].lower(), []).append(photo)
    formats: dict[str, Any] = {}
    policy = ImagePolicy()
    costs: dict[str, Any] = {"rejected": []}
    for fmt, group in sorted(by_format.items()):
        chosen = spread(group, jpeg_sample) if fmt == "jpg" else group
        rows, harvest = [], []
        for photo in chosen:
            data = fetch(photo.choice.url)
            rows.append(floor_ms(data, max_side))
            harvest.append(_cpu_ms(functools.partial(_process, data, photo, policy, costs)))
        formats[fmt] = {
            "count": len(group),
            "measured": len(rows),
            "mb": float(np.mean([r[2] for r in rows])),
            "floor_ms": float(np.mean([r[0] for r in rows])),
            "huffman_ms": float(np.mean([r[1] for r in rows])),
            # harvest's process_image on the same files, one thread: its cost over the floor
            "harvest_ms": float(np.mean(harvest)),
        }
    total = sum(f["count"] for f in formats.values()) or 1
    return {
        "original_formats": formats,
        "original_floor": sum(f["floor_ms"] * f["count"] for f in formats.values()) / total,
        "original_huffman_floor": sum(f["huffman_ms"] * f["count"] for f in formats.values())
        / total,
    }


def floor_ms(data: bytes, max_side: int) -> tuple[float, float, float]:
    """(sound floor ms, Huffman floor ms, MB) of one Original stored at `max_side`: the
    cheapest decode covering the output plus one encode of the real output pixels."""
    if data[:2] == b"\xff\xd8":
        height, width = simplejpeg.decode_jpeg_header(data)[:2]
        out = output_size(width, height, max_side)
        scales = [n / 8 for n in range(1, 9) if math.ceil(width * n / 8) >= out[0]]
        scales = [s for s in scales if math.ceil(height * s) >= out[1]]
        decode = min(  # 5/8-7/8 have no SIMD code: any covering scale may be the cheapest
            _cpu_ms(functools.partial(_scaled, data, width, height, s), repeat=2) for s in scales
        )
        image = Image.fromarray(_scaled(data, width, height, scales[0]))
        huffman = _cpu_ms(functools.partial(_eighth, data), repeat=2)
    else:
        decode = _cpu_ms(functools.partial(_pil_load, data))
        with Image.open(io.BytesIO(data)) as img:
            image = img.convert("RGB")
        out = output_size(image.width, image.height, max_side)
        huffman = decode
    pixels = np.asarray(image.resize(out, Image.Resampling.BICUBIC), dtype=np.uint8)
    encode = _cpu_ms(functools.partial(_encode, pixels), repeat=2)
    return decode + encode, huffman + encode, len(data) / 1e6


def _scaled(data: bytes, width: int, height: int, scale: float) -> npt.NDArray[np.uint8]:
    return simplejpeg.decode_jpeg(  # type: ignore[no-any-return]
        data,
        colorspace="RGB",
        min_width=math.ceil(width * scale),
        min_height=math.ceil(height * scale),
    )


def _pil_load(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as img:
        img.load()


def _encode(pixels: npt.NDArray[np.uint8]) -> None:
    simplejpeg.encode_jpeg(pixels, quality=90, colorspace="RGB", colorsubsampling="420")


def _cpu_ms(work: Callable[[], object], repeat: int = 1) -> float:
    """Thread CPU ms of `work`, the least of `repeat` runs."""
    best = math.inf
    for _ in range(repeat):
        start = time.thread_time()
        work()
        best = min(best, time.thread_time() - start)
    return 1000 * best


def provenance(photo: Photo) -> Provenance:
    """What harvest would stamp into a benchmark photo's file (keyword "bench", now)."""
    return Provenance.from_record(
        photo.record,
        keywords=("bench",),
        size_label=photo.choice.label,
        source_url=photo.choice.url,
        harvested_at=datetime.now(UTC),
    )


def _process(data: bytes, photo: Photo, policy: ImagePolicy, costs: dict[str, Any]) -> None:
    result = process_image(data, provenance(photo), policy)
    if not isinstance(result, ProcessedImage):
        costs["rejected"].append(f"{photo.record.id}: {result.reason}")


def _eighth(data: bytes) -> None:
    width = simplejpeg.decode_jpeg_header(data)[1]
    simplejpeg.decode_jpeg(data, colorspace="GRAY", min_width=-(-width // 8), min_height=1)
