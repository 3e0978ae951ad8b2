"""Fingerprint benchmark: cost per image of the hashes and digests, and distance distributions.

Run: python -m bench.fingerprint [--calls N]   (prints tables; bench/results/fingerprint.json)

Costs are timed in child processes, once with OPENBLAS_NUM_THREADS=1 and once with it unset, on
128x96 (the 1/8 decode of a 1024x768 Large) and 500x375 (of a 4000x3000 original) inputs, as
5 repeats of N calls: CPU time of the process (all its threads, so spinning BLAS threads count;
on a shared machine wall time mostly measures the neighbours), best and median, and the best
wall time. The distances use the test suite's photographs and edits (tests/test_fingerprint.py),
so they are the figures its assertions are held to. Takes one to two minutes.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from bench import common
from harvester.dataset import fingerprint as fp

SIZES = ((128, 96), (500, 375))
CROPS = (0.03, 0.05, 0.08, 0.09, 0.095, 0.1, 0.105, 0.11, 0.12, 0.15)  # per side


def _time(call: Callable[[], object], calls: int) -> dict[str, float]:
    """Microseconds per call: CPU best and median of 5 repeats, and the best wall time."""
    cpu = timeit.repeat(call, number=calls, repeat=5, timer=time.process_time)
    wall = timeit.repeat(call, number=calls, repeat=5)
    return {
        "cpu_best_us": round(min(cpu) / calls * 1e6, 1),
        "cpu_median_us": round(statistics.median(cpu) / calls * 1e6, 1),
        "wall_best_us": round(min(wall) / calls * 1e6, 1),
    }


def _coffee() -> Image.Image:
    from skimage import data as skdata

    return Image.fromarray(skdata.coffee())


def _photo_gray(width: int, height: int) -> fp.Gray:
    image = _coffee().convert("L").resize((width, height), Image.Resampling.BOX)
    return np.asarray(image)


def _large_jpeg() -> bytes:
    out = io.BytesIO()
    _coffee().resize((1024, 683)).save(out, "JPEG", quality=90)
    return out.getvalue()


def _hashes_only(gray: fp.Gray) -> Callable[[], object]:
    return lambda: fp.fingerprint(gray, src=b"")


def _bound(f: Callable[[fp.Gray], object], gray: fp.Gray) -> Callable[[], object]:
    return lambda: f(gray)


def costs(calls: int) -> dict[str, Any]:
    """Per-call costs in this process (its OPENBLAS_NUM_THREADS as it was at start)."""
    result: dict[str, Any] = {}
    for width, height in SIZES:
        gray = _photo_gray(width, height)
        pieces: dict[str, Callable[[fp.Gray], object]] = {
            "ph256": fp.ph256,
            "c80": fp.c80,
            "dh64": fp.dh64,
            "quality": fp.quality,
        }
        result[f"{width}x{height}"] = {
            "hashes (fingerprint, no digests)": _time(_hashes_only(gray), calls),
            **{name: _time(_bound(f, gray), calls // 4) for name, f in pieces.items()},
        }
    jpeg = _large_jpeg()
    result[f"digests of a {len(jpeg) // 1000} kB 1024x683 JPEG"] = {
        "src_sha256": _time(lambda: fp.src_sha256(jpeg), calls // 4),
        "scan_sha256": _time(lambda: fp.scan_sha256(jpeg), calls // 4),
    }
    codes = np.random.default_rng(0).integers(0, 256, (1_000_000, 32), dtype=np.uint8)
    result["hamming_many, 1M codes"] = _time(lambda: fp.hamming_many(codes, codes[0]), 5)
    result["dihedral"] = _time(lambda: fp.dihedral(codes[0].tobytes()), calls)
    return result


def _child_costs(calls: int, threads: str | None) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if threads is not None:
        env["OPENBLAS_NUM_THREADS"] = threads
    cmd = [sys.executable, "-m", "bench.fingerprint", "--child", "--calls", str(calls)]
    out = subprocess.run(cmd, env=env, cwd=common.ROOT, check=True, capture_output=True)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def distances() -> dict[str, Any]:
    """Related (per edit), unrelated, tiles, the stereo pair and the c80 crop sweep."""
    from tests import test_fingerprint as t

    base = t.thumbs()
    related: dict[str, Any] = {}
    for name, edit, _, _ in t.EDITS:
        edited = {n: t.thumb(edit(t.photos()[n])) for n in t.TRUSTED}
        related[name] = {
            "ph256": _summary([fp.hamming(fp.ph256(edited[n]), fp.ph256(base[n])) for n in edited]),
            "c80": _summary([fp.hamming(fp.c80(edited[n]), fp.c80(base[n])) for n in edited]),
            "dh64": _summary([fp.hamming64(fp.dh64(edited[n]), fp.dh64(base[n])) for n in edited]),
            "quality_min": min(fp.quality(g) for g in edited.values()),
        }
    return {
        "photos": len(base),
        "trusted": len(t.TRUSTED),
        "related": related,
        "unrelated": _unrelated(base),
        "tiles_3x3_same_photo": _summary(_tile_distances(t.photos())),
        "crop_per_side_ph256_vs_c80": _crop_sweep(t),
        "quality": {n: fp.quality(g) for n, g in base.items()},
    }


def _summary(values: list[int]) -> dict[str, float]:
    array = np.array(values)
    return {
        "n": len(values),
        "min": int(array.min()),
        "p1": float(np.percentile(array, 1)),
        "mean": round(float(array.mean()), 1),
        "max": int(array.max()),
    }


def _unrelated(base: dict[str, np.ndarray[Any, np.dtype[np.uint8]]]) -> dict[str, Any]:
    pairs = list(itertools.combinations(base.values(), 2))
    ph = [(fp.ph256(a), fp.ph256(b)) for a, b in pairs]
    best_of_8 = [
        int(fp.hamming_many(fp.dihedral(a), np.frombuffer(b, np.uint8)).min()) for a, b in ph
    ]
    return {
        "ph256": _summary([fp.hamming(a, b) for a, b in ph]),
        "ph256_best_of_8": _summary(best_of_8),
        "c80": _summary([fp.hamming(fp.c80(a), fp.c80(b)) for a, b in pairs]),
        "dh64": _summary([fp.hamming64(fp.dh64(a), fp.dh64(b)) for a, b in pairs]),
    }


def _tile_distances(photos: dict[str, Image.Image]) -> list[int]:
    out: list[int] = []
    for image in (photos[n].convert("L") for n in ("astronaut", "coffee", "retina", "camera")):
        w, h = image.size
        cells = itertools.product(range(3), range(3))
        tiles = [
            np.asarray(image.crop((j * w // 3, i * h // 3, (j + 1) * w // 3, (i + 1) * h // 3)))
            for i, j in cells
        ]
        out += [fp.hamming(fp.ph256(a), fp.ph256(b)) for a, b in itertools.combinations(tiles, 2)]
    return out


def _crop_sweep(t: Any) -> dict[str, Any]:
    """ph256 of a copy cropped by `frac` a side against the original's c80 and ph256."""
    sweep: dict[str, Any] = {}
    for frac in CROPS:
        vs_c80, vs_full = [], []
        for name in t.TRUSTED:
            image = t.photos()[name]
            dx, dy = round(image.width * frac), round(image.height * frac)
            crop = t.thumb(image.crop((dx, dy, image.width - dx, image.height - dy)))
            vs_c80.append(fp.hamming(fp.ph256(crop), fp.c80(t.thumbs()[name])))
            vs_full.append(fp.hamming(fp.ph256(crop), fp.ph256(t.thumbs()[name])))
        sweep[f"{frac:.3f}"] = {
            "vs_c80": _summary(vs_c80),
            "vs_ph256": _summary(vs_full),
            "recall_31": round(float(np.mean(np.minimum(vs_c80, vs_full) <= np.array(31))), 3),
        }
    return sweep


def _print(result: dict[str, Any]) -> None:
    for threads, table in result["costs"].items():
        print(f"costs, OPENBLAS_NUM_THREADS={threads}: us per call, CPU best / median, wall best")
        for group, rows in table.items():
            if "cpu_best_us" in rows:
                print(f"  {group:44} {_row(rows)}")
                continue
            print(f"  {group}")
            for name, row in rows.items():
                print(f"    {name:42} {_row(row)}")
    dist = result["distances"]
    print(f"related, {dist['trusted']} trusted photos: max (mean) of ph256 | c80 | dh64, min q")
    for name, row in dist["related"].items():
        cols = " | ".join(
            f"{row[k]['max']:3} ({row[k]['mean']:5.1f})" for k in ("ph256", "c80", "dh64")
        )
        print(f"  {name:14} {cols}   q>={row['quality_min']}")
    print("unrelated pairs: min / p1 / mean")
    for name, row in {**dist["unrelated"], "tiles 3x3": dist["tiles_3x3_same_photo"]}.items():
        print(f"  {name:16} {row['min']:4} {row['p1']:6.1f} {row['mean']:6.1f}  (n={row['n']})")
    print("symmetric crop a side: ph256(crop) vs c80 / vs ph256 (max, mean), recall at 31")
    for frac, row in dist["crop_per_side_ph256_vs_c80"].items():
        a, b = row["vs_c80"], row["vs_ph256"]
        hit = row["recall_31"]
        print(f"  {frac}  {a['max']:4} {a['mean']:6.1f} | {b['max']:4} {b['mean']:6.1f}   {hit}")


def _row(row: dict[str, float]) -> str:
    return f"{row['cpu_best_us']:9.1f} {row['cpu_median_us']:9.1f} {row['wall_best_us']:9.1f}"


def main() -> None:
    """Costs in two child processes (threads pinned and not), then the distances here."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per timing repeat")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(costs(args.calls)))
        return
    result = {
        "machine": common.machine(),
        "numpy": np.__version__,
        "costs": {t or "unset": _child_costs(args.calls, t) for t in ("1", None)},
        "distances": distances(),
    }
    _print(result)
    print(f"wrote {common.write_result('fingerprint', result).relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
