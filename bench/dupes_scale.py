"""Duplicate-search scale benchmark: multi-index hashing all-pairs over 100k and 1M fingerprints.

    python -m bench.dupes_scale                              # 100k and 1M, uniform and clustered
    python -m bench.dupes_scale --sizes 100000               # the quick half (about a minute)
    python -m bench.dupes_scale --kinds clustered --workers 1

Takes 7-15 minutes on the shared 2-core machine (by its load), most of it the 1M cases (half a
minute of each generating the codes). Each case runs in a child process (`--case KIND:N`, with
OPENBLAS_NUM_THREADS=1) measured as a process tree by bench/common.py (wall, CPU, peak RSS).
The child generates 256-bit codes and their six dihedral variants (untimed), then times the
index build, the canonical self-join at r <= 31 (s = 1) and the dihedral pass (rot90, rot180,
flip_h, flip_v, transpose, anti_transpose at r <= 15, s = 0), each over `--workers` threads;
it reports the bucket-size histogram, the pool, and the recall of the planted pairs.

Codes are made like pHash-256: 256 "DCT coefficients" as a 16 x 16 grid, bit = coefficient >
the image's median, rows packed so that slot k is grid row k. Variants are the exact DCT
identities (sign flips of odd rows/columns, transposes), hashed again.
- uniform: i.i.d. Gaussian coefficients.
- clustered: coefficients = H z (16-dim latent z, random hyperplanes H, energy falling with
  frequency) + noise; z from n/100 scene clusters of log-normal sizes; each photo in a random
  orientation (70 % upright, 20 % mirrored, 10 % the rest). Unrelated pairs are 127 +- 17 bits
  apart (uniform: 128 +- 8); Thorn's phash threshold of 51 for FPR < 1 % implies about 17.
  Plus two piles of near-identical codes (0-3 bits apart): "dark" (6 %: over the 50k bucket
  cap at 1M, so pooled; under it at 100k, so all its pairs are listed) and "flat" (0.5 %).
Both kinds get 1 % planted near-duplicates (coefficient noise, 0-30 bits) and 0.1 % rotated or
flipped copies. Writes bench/results/dupes_scale.json (the per-case logs beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bench import common
from harvester.dataset.mih import MultiIndex, Pairs

F32 = NDArray[np.float32]
U8 = NDArray[np.uint8]
I64 = NDArray[np.int64]

CHUNK = 1 << 16
LATENT = 16
NEAR_SHARE, TURNED_SHARE = 0.01, 0.001
PILES = {"dark": 0.06, "flat": 0.005}  # clustered only
SLOTS_CANDIDATES = 16 * 17  # slots x probes: uniform-code candidates are this x N^2 / 65536 / 2
SIGNS_U = np.where(np.arange(16) % 2, -1.0, 1.0).astype(np.float32)[:, None]  # (-1)^u, rows
SIGNS_V = SIGNS_U.T  # (-1)^v, columns


def _grid(c: F32) -> F32:
    return c.reshape(-1, 16, 16)


def _t(c: F32) -> F32:
    return _grid(c).transpose(0, 2, 1)


# The DCT of a turned or mirrored image, from the original's coefficients (u rows, v columns).
VARIANTS: dict[str, Callable[[F32], F32]] = {
    "rot90": lambda c: _t(c) * SIGNS_V,
    "rot180": lambda c: _grid(c) * SIGNS_U * SIGNS_V,
    "flip_h": lambda c: _grid(c) * SIGNS_V,
    "flip_v": lambda c: _grid(c) * SIGNS_U,
    "transpose": _t,
    "anti_transpose": lambda c: _t(c) * SIGNS_U * SIGNS_V,
}


def hash_bits(c: F32) -> U8:
    """pHash-style codes: bit = coefficient above the row's median; the 16 x 16 grid row-major."""
    flat = c.reshape(len(c), 256)
    return np.packbits(flat > np.median(flat, axis=1, keepdims=True), axis=1)


@dataclass
class Latent:
    """The clustered model: hyperplanes, per-frequency energy, scene centres and their weights."""

    planes: F32
    energy: F32
    centres: F32
    weights: NDArray[np.float64]
    piles: dict[str, F32]

    @classmethod
    def make(cls, rng: np.random.Generator, n: int) -> Latent:
        uv = np.add.outer(np.arange(16), np.arange(16)).ravel()
        clusters = max(1, n // 100)
        weights = rng.lognormal(0.0, 1.0, clusters)
        planes = rng.standard_normal((256, LATENT)).astype(np.float32)
        energy = (1.0 / (1.0 + uv / 4.0)).astype(np.float32)
        piles = {k: (planes @ rng.standard_normal(LATENT)).astype(np.float32) for k in PILES}
        return cls(
            planes,
            energy,
            rng.standard_normal((clusters, LATENT)).astype(np.float32),
            weights / weights.sum(),
            {k: v * energy for k, v in piles.items()},
        )

    def coefficients(self, rng: np.random.Generator, n: int) -> F32:
        """n photos: a scene, a spread around it, texture noise, a random orientation."""
        scene = rng.choice(len(self.centres), n, p=self.weights)
        z = self.centres[scene] + rng.standard_normal((n, LATENT)).astype(np.float32)
        c = (z @ self.planes.T) * self.energy
        c += 0.5 * rng.standard_normal(c.shape).astype(np.float32)
        turn = rng.choice(len(VARIANTS) + 1, n, p=[0.7, 0.02, 0.02, 0.2, 0.02, 0.02, 0.02])
        for v, fn in enumerate(VARIANTS.values(), start=1):
            c[turn == v] = fn(c[turn == v]).reshape(-1, 256)
        return c


@dataclass
class Case:
    """Codes, their six variants, and the planted pairs (global row ids)."""

    codes: U8
    variants: dict[str, U8]
    near: list[I64] = field(default_factory=list)  # (src, dst) rows
    turned: dict[str, list[I64]] = field(default_factory=dict)  # variant -> (src, dst) rows


def generate(kind: str, n: int, seed: int) -> Case:
    """`n` codes of `kind` (uniform or clustered), generated in chunks to bound memory."""
    rng = np.random.default_rng(seed)
    latent = Latent.make(rng, n) if kind == "clustered" else None
    case = Case(np.empty((n, 32), np.uint8), {v: np.empty((n, 32), np.uint8) for v in VARIANTS})
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        c = (
            latent.coefficients(rng, hi - lo)
            if latent is not None
            else rng.standard_normal((hi - lo, 256)).astype(np.float32)
        )
        _plant(rng, c, lo, case, latent)
        case.codes[lo:hi] = hash_bits(c)
        for name, fn in VARIANTS.items():
            case.variants[name][lo:hi] = hash_bits(fn(c))
    return case


def _plant(rng: np.random.Generator, c: F32, lo: int, case: Case, latent: Latent | None) -> None:
    """Piles, near-duplicates and turned copies inside one chunk (rows offset by `lo`)."""
    rows = rng.permutation(len(c))
    taken = 0
    if latent is not None:
        for name, share in PILES.items():
            pile = rows[taken : taken + int(share * len(c))]
            taken += len(pile)
            c[pile] = latent.piles[name] + 0.01 * rng.standard_normal((len(pile), 256))
    near, turned = int(NEAR_SHARE * len(c)), int(TURNED_SHARE * len(c))
    src = rows[taken : taken + near + turned]
    dst = rows[taken + near + turned : taken + 2 * (near + turned)]
    scale = float(c.std())
    noise = rng.uniform(0.0, 0.25 * scale, (near, 1)).astype(np.float32)
    c[dst[:near]] = c[src[:near]] + noise * rng.standard_normal((near, 256))
    case.near.append(np.stack([src[:near], dst[:near]], axis=1) + lo)
    names = list(VARIANTS)
    for k, (s, d) in enumerate(zip(src[near:], dst[near:], strict=True)):
        name = names[k % len(names)]
        turn = VARIANTS[name](c[s : s + 1]).reshape(256)
        c[d] = turn + 0.02 * scale * rng.standard_normal(256)
        case.turned.setdefault(name, []).append(np.array([[s + lo, d + lo]]))


def _distance(a: U8, b: U8) -> I64:
    bits: I64 = np.unpackbits(a ^ b, axis=1).sum(axis=1, dtype=np.int64)
    return bits


def recall(pairs: Pairs, planted: I64, codes_a: U8, codes_b: U8, radius: int) -> dict[str, int]:
    """Planted pairs truly within `radius` (variant of a vs b) and how many the join reported."""
    within = planted[_distance(codes_a[planted[:, 0]], codes_b[planted[:, 1]]) <= radius]
    found = _pair_keys(pairs.a, pairs.b)  # sorted, as Pairs are sorted by (a, b)
    hits = _contains(found, _pair_keys(within[:, 0], within[:, 1]))
    hits |= _contains(found, _pair_keys(within[:, 1], within[:, 0]))
    return {"planted": len(planted), "within_radius": len(within), "found": int(hits.sum())}


def _pair_keys(a: NDArray[Any], b: NDArray[Any]) -> I64:
    keys = a.astype(np.int64)
    keys <<= 32
    keys |= b
    return keys


def _contains(sorted_keys: I64, keys: I64) -> NDArray[np.bool_]:
    at = np.minimum(np.searchsorted(sorted_keys, keys), max(0, len(sorted_keys) - 1))
    return sorted_keys[at] == keys if len(sorted_keys) else np.zeros(len(keys), dtype=bool)


@contextmanager
def phase(into: dict[str, Any], name: str) -> Iterator[None]:
    """Wall and process CPU seconds (all threads) of a block, recorded under `name`."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    into[name] = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
    print(f"{name}: {into[name]['wall_s']:.1f} s wall, {into[name]['cpu_s']:.1f} s CPU", flush=True)


def histogram(index: MultiIndex) -> dict[str, Any]:
    """The bucket-size figures the issue asks for."""
    h = index.bucket_histogram()
    return {
        "max": h.max_size,
        "p99": h.p99_size,
        "p99_code_weighted": h.p99_code_size,
        "over_cap": len(h.heavy),
        "cap": h.max_bucket,
        "pool": h.pool,
        "skipped": [(b.slot, b.size) for b in h.skipped],
        "log2_bins": dict(zip(h.bin_lows, h.buckets, strict=True)),
    }


def run_case(kind: str, n: int, workers: int, seed: int) -> dict[str, Any]:
    """Generate, then time build, self-join and dihedral pass of one case."""
    out: dict[str, Any] = {"kind": kind, "n": n, "workers": workers}
    with phase(out, "generate"):
        case = generate(kind, n, seed)
    sampler = common.TreeSampler(os.getpid())
    sampler.start()
    with phase(out, "build"):
        index = MultiIndex(case.codes)
    out["index_bytes"] = index.memory_bytes
    out["histogram"] = histogram(index)
    uniform = SLOTS_CANDIDATES * n * n / 65536 / 2
    out["self_candidates"] = index.self_join_candidates(31)
    out["self_candidates_vs_uniform"] = out["self_candidates"] / uniform if n else 0.0
    with phase(out, "self_join"):
        pairs = index.self_join(31, workers=workers)
    out["self_pairs"] = len(pairs)
    out["self_recall"] = recall(pairs, np.concatenate(case.near), case.codes, case.codes, 31)
    del pairs
    out["cross"] = {}
    for name, queries in case.variants.items():
        with phase(out["cross"], name):
            found = index.cross_join(
                queries, 15, flips_per_slot=0, self_ids=np.arange(n), workers=workers
            )
        out["cross"][name]["pairs"] = len(found)
        turned = case.turned.get(name, [])
        if turned:
            out["cross"][name]["recall"] = recall(
                found, np.concatenate(turned), queries, case.codes, 15
            )
    with phase(out, "pool_join"):
        pool = index.pool_join()
    out["pool_join"] = {"pool": pool.pool_size, "searched": pool.searched, "pairs": len(pool.pairs)}
    out["join_peak_rss_mb"] = sampler.stop().peak_rss_bytes / 2**20
    return out


def measure(kind: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """Run one case in a child process and add its tree's wall, CPU and peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "case.json"
        cmd = [sys.executable, "-m", "bench.dupes_scale", "--case", f"{kind}:{n}"]
        cmd += ["--workers", str(args.workers), "--seed", str(args.seed), "--result", str(result)]
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        common.RESULTS.mkdir(parents=True, exist_ok=True)
        log = common.RESULTS / f"dupes_scale-{kind}-{n}.log"
        load = os.getloadavg()
        code, usage = common.run_measured(cmd, cwd=common.ROOT, env=env, log_path=log)
        if code != 0:
            raise RuntimeError(f"case {kind}:{n} exited {code}; see {log}")
        out: dict[str, Any] = json.loads(result.read_text())
    out["command"] = " ".join(["OPENBLAS_NUM_THREADS=1", *cmd[:-2]])
    out["tree"] = {
        "wall_s": usage.wall_s,
        "cpu_s": usage.cpu_s,
        "peak_rss_mb": usage.peak_rss_bytes / 2**20,
        "processes": usage.peak_processes,
        "load_avg_before": load,
    }
    joins = ["build", "self_join"]
    out["join_wall_s"] = sum(out[p]["wall_s"] for p in joins) + _cross(out, "wall_s")
    out["join_cpu_s"] = sum(out[p]["cpu_s"] for p in joins) + _cross(out, "cpu_s")
    return out


def _cross(out: dict[str, Any], key: str) -> float:
    return float(sum(v[key] for v in out["cross"].values()))


def table(results: list[dict[str, Any]]) -> None:
    """The headline table: timings, memory, pairs and bucket sizes per case."""
    rows = []
    for r in results:
        h = r["histogram"]
        rec = r["self_recall"]
        rows.append(
            [
                f"{r['kind']} {r['n']:,}",
                r["build"]["wall_s"],
                f"{r['self_join']['wall_s']:.1f}/{r['self_join']['cpu_s']:.1f}",
                f"{_cross(r, 'wall_s'):.1f}/{_cross(r, 'cpu_s'):.1f}",
                f"{r['join_wall_s']:.1f}/{r['join_cpu_s']:.1f}",
                f"{r['join_peak_rss_mb']:.0f}/{r['tree']['peak_rss_mb']:.0f}",
                f"{r['self_candidates'] / 1e6:,.0f}M ({r['self_candidates_vs_uniform']:.1f}x)",
                r["self_pairs"],
                sum(v["pairs"] for v in r["cross"].values()),
                f"{rec['found']}/{rec['within_radius']}",
                f"{h['max']}/{h['p99']}/{h['p99_code_weighted']}",
                f"{h['over_cap']}/{h['pool']}/{len(h['skipped'])}",
            ]
        )
    headers = [
        "case", "build s", "self s wall/cpu", "6 variants s", "join s wall/cpu", "RSS MB join/tree",
        "self candidates", "self pairs", "variant pairs", "planted found", "bucket max/p99/p99c",
        ">50k/pool/skipped",
    ]  # fmt: skip
    common.print_table(headers, rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument(
        "--kinds", nargs="+", choices=("uniform", "clustered"), default=["uniform", "clustered"]
    )
    p.add_argument(
        "--workers", type=int, default=2, help="threads per join (default 2, both cores)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--case", help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the cases (or, with --case, one of them in this process) and write the results."""
    args = parse_args(argv)
    if args.case:
        kind, n = args.case.split(":")
        args.result.write_text(json.dumps(run_case(kind, int(n), args.workers, args.seed)))
        return 0
    results = [measure(kind, n, args) for n in args.sizes for kind in args.kinds]
    table(results)
    payload = {
        "command": " ".join(["python -m bench.dupes_scale", *(argv or sys.argv[1:])]),
        "machine": common.machine(),
        "results": results,
    }
    print(f"\nwrote {common.write_result('dupes_scale', payload)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
