"""Originals: the resample filter, decode headroom and chroma setting, for cost and PSNR together.

Run: python -m bench.originals [--photos 400] [--originals 40]
(~2 min; writes bench/results/originals.json and .md)

The Originals of bench.pipeline's selection (same corpus builder and seed, unframed, JPEG and
PNG as they come) go through harvest's own `process_image` once per ImagePolicy variant, one
thread, in this process: thread CPU ms (the least of two runs) and the PSNR of the stored file
against bench.pipeline's reference (full decode, float LANCZOS per channel to the stored size).
The defaults are the first row; every other row changes one setting, so each difference is that
setting's. Also, outside harvest, OpenCV's resize of the same decode (INTER_AREA, the cheapest
antialiased filter there is here), stored as harvest would store it: the price of a faster
library filter in PSNR.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import simplejpeg
from PIL import Image

from bench import common
from bench.pipeline_corpus import Photo, corpus_size, fetch_bytes, select_photos
from bench.pipeline_quality import Pixels, provenance, psnr, reference
from harvester.config import ImagePolicy
from harvester.images.process import ProcessedImage, output_size, process_image

DEFAULT = ImagePolicy()
R = Image.Resampling
VARIANTS: dict[str, ImagePolicy] = {
    "defaults (BICUBIC, headroom 1.25, 4:4:4 where sharp)": DEFAULT,
    "resample BILINEAR": replace(DEFAULT, resample=R.BILINEAR),
    "resample HAMMING": replace(DEFAULT, resample=R.HAMMING),
    "resample LANCZOS": replace(DEFAULT, resample=R.LANCZOS),
    "decode headroom 1.0": replace(DEFAULT, decode_headroom=1.0),
    "decode headroom 1.5": replace(DEFAULT, decode_headroom=1.5),
    "reducing gap 1.0": replace(DEFAULT, reducing_gap=1.0),
    "reducing gap 3.0": replace(DEFAULT, reducing_gap=3.0),
    "always 4:2:0": replace(DEFAULT, keep_chroma=False),
}


def _cpu_ms(work: Callable[[], object], repeat: int = 2) -> tuple[object, float]:
    best, result = math.inf, None
    for _ in range(repeat):
        start = time.thread_time()
        result = work()
        best = min(best, time.thread_time() - start)
    return result, 1000 * best


def _stored(result: object) -> Pixels:
    if not isinstance(result, ProcessedImage):
        raise RuntimeError(f"rejected: {result}")
    pixels: Pixels = simplejpeg.decode_jpeg(result.to_bytes(), colorspace="RGB").astype(np.float64)
    return pixels


def _opencv(data: bytes) -> tuple[Pixels, float] | None:
    """OpenCV INTER_AREA from harvest's own decode scale, encoded as harvest encodes."""
    import cv2  # the optional comparison only

    cv2.setNumThreads(1)
    if data[:2] != b"\xff\xd8":
        return None
    height, width = simplejpeg.decode_jpeg_header(data)[:2]
    size = output_size(width, height, DEFAULT.max_side)
    scale = min(1.0, DEFAULT.decode_headroom * DEFAULT.max_side / max(width, height))

    def run() -> bytes:
        pixels = simplejpeg.decode_jpeg(
            data,
            colorspace="RGB",
            min_width=math.ceil(width * scale),
            min_height=math.ceil(height * scale),
        )
        small = np.ascontiguousarray(cv2.resize(pixels, size, interpolation=cv2.INTER_AREA))
        encoded: bytes = simplejpeg.encode_jpeg(
            small, quality=DEFAULT.jpeg_quality, colorspace="RGB", colorsubsampling="444"
        )
        return encoded

    encoded, ms = _cpu_ms(run)
    assert isinstance(encoded, bytes)
    return simplejpeg.decode_jpeg(encoded, colorspace="RGB").astype(np.float64), ms


def measure(photos: Sequence[Photo]) -> dict[str, Any]:
    """Mean CPU ms and PSNR per variant, JPEG and PNG apart, over the same Originals."""
    rows: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for photo in photos:
        data = fetch_bytes(photo.choice.url)
        fmt = "jpeg" if data[:2] == b"\xff\xd8" else "png"
        prov = provenance(photo)
        refs: dict[tuple[int, int], Pixels] = {}
        for name, policy in VARIANTS.items():
            result, ms = _cpu_ms(functools.partial(process_image, data, prov, policy))
            got = _stored(result)
            size = (got.shape[1], got.shape[0])
            if size not in refs:
                refs[size] = reference(data, size)
            rows.setdefault(name, {}).setdefault(fmt, []).append((ms, psnr(got, refs[size])))
        if (cv := _opencv(data)) is not None:
            got, ms = cv
            size = (got.shape[1], got.shape[0])
            ref = refs.get(size)
            if ref is None:
                ref = refs[size] = reference(data, size)
            rows.setdefault("OpenCV INTER_AREA (not harvest)", {}).setdefault(fmt, []).append(
                (ms, psnr(got, ref))
            )
    table: dict[str, Any] = {}
    for name, by_format in rows.items():
        table[name] = {
            fmt: {
                "n": len(values),
                "cpu_ms": float(np.mean([v[0] for v in values])),
                "psnr_db": float(np.mean([v[1] for v in values if math.isfinite(v[1])])),
            }
            for fmt, values in sorted(by_format.items())
        }
    return table


def report(table: dict[str, Any]) -> str:
    """The markdown table: per variant and format, CPU ms and PSNR, and the change."""
    base = table[next(iter(VARIANTS))]
    lines = [
        "| variant | JPEG CPU ms | JPEG PSNR dB | PNG CPU ms | PNG PSNR dB |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, by_format in table.items():
        cells = []
        for fmt in ("jpeg", "png"):
            row, ref = by_format.get(fmt), base.get(fmt)
            if row is None or ref is None:
                cells += ["-", "-"]
                continue
            cpu = f"{row['cpu_ms']:.1f} ({row['cpu_ms'] / ref['cpu_ms'] - 1:+.0%})"
            cells += [cpu, f"{row['psnr_db']:.2f} ({row['psnr_db'] - ref['psnr_db']:+.2f})"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.originals", description=__doc__)
    p.add_argument("--photos", type=int, default=400, help="bench.pipeline selection size")
    p.add_argument("--originals", type=int, default=40, help="unframed Originals measured")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure every variant and write bench/results/originals.{json,md}."""
    args = parse_args(argv)
    with common.emulator_process(corpus_size(args.photos), seed=args.seed) as emu:
        chosen = select_photos(emu.base_url, args.photos, seed=args.seed)
        originals = [p for p in chosen if p.kind == "original"][: args.originals]
        table = measure(originals)
    text = report(table)
    print(text)
    payload = {
        "benchmark": "originals",
        "command": " ".join(["python", "-m", "bench.originals", *sys.argv[1:]]),
        "machine": common.machine(),
        "originals": len(originals),
        "table": table,
    }
    print(f"\nwrote {common.write_result('originals', payload)}")
    (common.RESULTS / "originals.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
