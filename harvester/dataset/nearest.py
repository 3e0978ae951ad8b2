"""The stored fingerprints nearest to a few query hashes, by brute force over packed words.

`harvest similar` wants a ranking, not a radius: the copy of a tinted print photographed at an
angle sits 60-100 bits from its photo, beyond any radius multi-index hashing can probe cheaply,
yet still nearer than almost every other photo (random pairs centre on 128 of 256 bits, and the
nearest of a million unrelated ones on about 90). So every stored hash is compared with every
query: four 64-bit words each, XOR and a popcount per word, accumulated one word at a time over
chunks of rows (a (rows, queries) array per word stays in cache; the all-at-once broadcast is 3x
slower). 16 queries (8 turns of 2 readings) against 1M hashes: 0.34 s on one core here, split
over `workers` threads (numpy releases the GIL in the ufuncs).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]

CHUNK = 32768  # rows per step: a (CHUNK, 16) uint16 accumulator is 1 MB
WORDS = 4  # 256 bits


@dataclass(frozen=True, slots=True)
class Nearest:
    """The nearest rows, ascending by distance (then row): which query each was nearest to."""

    rows: I64
    distances: I64
    queries: I64

    def __len__(self) -> int:
        return len(self.rows)


def packed(codes: U8) -> U64:
    """(N, 32) uint8 hashes as (N, 4) uint64 words (a view when already contiguous)."""
    if codes.ndim != 2 or codes.shape[1] != 8 * WORDS:
        raise ValueError(f"codes must be (N, 32) uint8, got {codes.shape}")
    return np.ascontiguousarray(codes, dtype=np.uint8).view(np.uint64)


def nearest(words: U64, queries: U64, n: int, *, workers: int = 2) -> Nearest:
    """The `n` rows of `words` with the smallest distance to any of `queries` (both (·, 4))."""
    total = len(words)
    if total == 0 or len(queries) == 0 or n <= 0:
        empty = np.empty(0, np.int64)
        return Nearest(empty, empty, empty)
    best = np.empty(total, np.uint16)
    which = np.empty(total, np.uint8 if len(queries) <= 255 else np.int64)
    starts = range(0, total, CHUNK)

    def run(start: int) -> None:
        chunk = words[start : start + CHUNK]
        acc = np.bitwise_count(chunk[:, 0, None] ^ queries[None, :, 0]).astype(np.uint16)
        for w in range(1, WORDS):
            acc += np.bitwise_count(chunk[:, w, None] ^ queries[None, :, w])
        which[start : start + len(chunk)] = acc.argmin(axis=1)
        best[start : start + len(chunk)] = acc.min(axis=1)

    if workers > 1 and total > CHUNK:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(run, starts))
    else:
        for start in starts:
            run(start)
    n = min(n, total)
    kth = np.partition(best, n - 1)[n - 1] if n < total else best.max()
    keep = np.flatnonzero(best <= kth)  # ties at the n-th all in, then the lowest rows of them
    rows = keep[np.lexsort((keep, best[keep]))][:n].astype(np.int64)
    return Nearest(rows, best[rows].astype(np.int64), which[rows].astype(np.int64))
