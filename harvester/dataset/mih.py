"""Multi-index hashing over 256-bit codes: exact Hamming-radius self- and cross-joins in numpy.

A code is 32 bytes (row i of an (N, 32) uint8 array is photo i) cut into 16 slots of 16 bits.
Slot k is bytes 2k and 2k+1 read big-endian, so the code's first bit (the top bit of byte 0, as
`np.packbits` writes it) is the top bit of slot 0 on every machine.

Pigeonhole: two codes d bits apart differ in at most d // 16 bits in some slot. Probing every
bucket within s bits of a slot key therefore finds every pair at d <= 16(s+1) - 1: s = 0 covers
r <= 15 (1 probe per slot), s = 1 covers r <= 31 (17 probes), s = 2 covers r <= 47 (137 probes).
Candidates are verified on their first 128 bits, survivors on all 256.

Memory: per slot the bucket-sorted ids (int32) and per code its 16 slot keys (uint16), that is
N x 16 x (4 + 2) bytes, plus the codes as four uint64 words (32 B) and bucket tables (25 MB):
128 B per code, 148 MB at 1M codes. A join works in chunks of `chunk_candidates`
candidates (about 40 B each) per thread; what grows with the data is only the pairs found.

Each unordered pair is reported once: a pair within s bits in several slots is kept only from
the first slot where it qualifies, decided on the verified pairs, so candidates are never
gathered across slots.

Skew: a bucket of more than `max_bucket` codes costs the square of its size. Two cases:
- A pile of near-identical codes (dark or flat images) is in such buckets in most slots, and its
  n^2/2 pairs would swamp the output. Codes heavy in at least `pool_slots` slots form the *pool*
  and are left out of the joins: `pool_join` brute-forces them at a stricter radius (or reports
  their number above `max_pool`); `cross_join(codes[index.pool], r)` finds their matches among
  the other codes.
- A bucket still over the cap without the pool (codes alike in one slot only) is skipped in
  that slot; its pairs are found through any other slot where they qualify with both buckets
  light. Only pairs whose every qualifying slot is such a bucket are lost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from itertools import chain, combinations, pairwise
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

CODE_BYTES = 32
SLOTS = 16
SLOT_BITS = 16
KEYS = 1 << SLOT_BITS
MAX_FLIPS = 2
MAX_RADIUS = SLOTS * (MAX_FLIPS + 1) - 1
DEFAULT_MAX_BUCKET = 50_000
DEFAULT_POOL_SLOTS = 4
CHUNK_CANDIDATES = 1 << 21
_BLOCK = 1 << 15  # sources whose probes are counted at once: (block, probes) int64 arrays

U8 = NDArray[np.uint8]
U16 = NDArray[np.uint16]
U64 = NDArray[np.uint64]
I32 = NDArray[np.int32]
I64 = NDArray[np.int64]
T = TypeVar("T")

_LUT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount_lut(x: NDArray[Any]) -> U8:
    """Bits set per element of an unsigned integer array, by a byte table (numpy < 2.0)."""
    flat = np.ascontiguousarray(x)
    per_byte = _LUT[flat.view(np.uint8)].reshape(*flat.shape, flat.dtype.itemsize)
    counts: U8 = per_byte.sum(axis=-1, dtype=np.uint8)
    return counts


_popcount: Callable[[NDArray[Any]], U8] = getattr(np, "bitwise_count", popcount_lut)


def check_codes(codes: NDArray[Any], name: str = "codes") -> U8:
    """`codes` as a C-contiguous (N, 32) uint8 array (N < 2**31), or ValueError."""
    arr = np.ascontiguousarray(codes)
    if arr.dtype != np.uint8 or arr.ndim != 2 or arr.shape[1] != CODE_BYTES or len(arr) >= 2**31:
        raise ValueError(f"{name} must be an (N, 32) uint8 array, got {arr.dtype} {arr.shape}")
    return arr


def slot_keys(codes: U8) -> U16:
    """The (16, N) slot keys of (N, 32) codes: slot k is bytes 2k, 2k+1 read big-endian."""
    return check_codes(codes).view(">u2").astype(np.uint16).T.copy()


def code_words(codes: U8) -> U64:
    """The (4, N) uint64 words of (N, 32) codes, one row per word (popcounts ignore byte order)."""
    return check_codes(codes).view(np.uint64).T.copy()


def flips_for(radius: int) -> int:
    """Flips per slot that make a radius search exact: r <= 15 -> 0, r <= 31 -> 1, r <= 47 -> 2."""
    if not 0 <= radius <= MAX_RADIUS:
        raise ValueError(f"radius must be in 0..{MAX_RADIUS} (brute_pairs beyond), not {radius}")
    return radius // SLOTS


def probe_masks(flips: int, *, with_zero: bool) -> I64:
    """XOR masks of 16-bit keys with 1..flips bits set (and 0 first when `with_zero`)."""
    return np.array(
        [
            sum(1 << bit for bit in bits)
            for n in range(0 if with_zero else 1, flips + 1)
            for bits in combinations(range(SLOT_BITS), n)
        ],
        dtype=np.int64,
    )


@dataclass(frozen=True, slots=True, eq=False)
class Pairs:
    """Pairs (a[i], b[i]) at Hamming distance distance[i]: int32 rows, uint16 distances.

    Built by `of` (or `union`): sorted by (a, b), each pair once, arrays read-only.
    """

    a: I32
    b: I32
    distance: U16

    def __post_init__(self) -> None:
        if not len(self.a) == len(self.b) == len(self.distance):
            raise ValueError("a, b and distance must have the same length")

    def __len__(self) -> int:
        return len(self.a)

    def __repr__(self) -> str:
        return f"Pairs(n={len(self)})"

    @classmethod
    def of(cls, a: NDArray[Any], b: NDArray[Any], distance: NDArray[Any]) -> Pairs:
        """Pairs from parallel arrays: cast, sorted by (a, b), duplicates dropped, read-only."""
        a32, b32 = np.asarray(a, np.int32), np.asarray(b, np.int32)
        order = np.lexsort((b32, a32))
        a32, b32, d16 = a32[order], b32[order], np.asarray(distance, np.uint16)[order]
        if len(a32) > 1:
            new = np.ones(len(a32), dtype=bool)
            new[1:] = (a32[1:] != a32[:-1]) | (b32[1:] != b32[:-1])
            if not new.all():
                a32, b32, d16 = a32[new], b32[new], d16[new]
        for x in (a32, b32, d16):
            x.setflags(write=False)
        return cls(a32, b32, d16)

    @classmethod
    def empty(cls) -> Pairs:
        """No pairs."""
        return cls.of(np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0, np.uint16))

    @classmethod
    def union(cls, parts: Iterable[Pairs]) -> Pairs:
        """All pairs of `parts`, each (a, b) once, sorted by (a, b)."""
        return cls._merge(list(parts))

    @classmethod
    def _merge(cls, parts: list[Pairs]) -> Pairs:
        """`union` that empties `parts` once concatenated, freeing the pieces before the sort."""
        fields = [
            np.concatenate([getattr(p, f) for p in parts] or [np.empty(0)])
            for f in ("a", "b", "distance")
        ]
        parts.clear()
        return cls.of(*fields)


@dataclass(frozen=True, slots=True)
class HeavyBucket:
    """A bucket of more than `max_bucket` codes."""

    slot: int
    key: int
    size: int


@dataclass(frozen=True, slots=True)
class BucketHistogram:
    """Bucket sizes over the 16 slots (all codes), for reports; the pool and skipped buckets."""

    bin_lows: tuple[int, ...]  # bin i counts non-empty buckets of size in [2**i, 2**(i+1))
    buckets: tuple[int, ...]
    max_size: int
    p99_size: int  # over non-empty buckets
    p99_code_size: int  # bucket size around the 99th-percentile code: what the cost sees
    max_bucket: int
    heavy: tuple[HeavyBucket, ...]  # over the cap, all codes counted
    pool: int  # codes heavy in at least `pool_slots` slots, left out of the joins
    skipped: tuple[HeavyBucket, ...]  # still over the cap without the pool: skipped in the slot


@dataclass(frozen=True, slots=True)
class PoolJoin:
    """The pool pass: its pairs, or only its size when it was larger than `max_pool`."""

    pairs: Pairs
    pool_size: int
    searched: bool


def _bucket_sizes(keys: U16) -> I64:
    return np.stack([np.bincount(k, minlength=KEYS) for k in keys]).astype(np.int64)


def _heavy_list(sizes: I64, cap: int) -> tuple[HeavyBucket, ...]:
    slots, keys = np.nonzero(sizes > cap)
    return tuple(
        HeavyBucket(int(s), int(k), int(sizes[s, k])) for s, k in zip(slots, keys, strict=True)
    )


class MultiIndex:
    """Per-slot CSR buckets (argsort + bincount offsets) over (N, 32) codes, for exact joins."""

    def __init__(
        self,
        codes: U8,
        *,
        max_bucket: int = DEFAULT_MAX_BUCKET,
        pool_slots: int = DEFAULT_POOL_SLOTS,
        chunk_candidates: int = CHUNK_CANDIDATES,
    ) -> None:
        checked = check_codes(codes)
        self.max_bucket, self.pool_slots = max_bucket, pool_slots
        self.chunk_candidates = chunk_candidates
        self._words = code_words(checked)
        self._keys = slot_keys(checked)
        self._all_sizes = _bucket_sizes(self._keys)
        heavy_slots = np.zeros(len(checked), dtype=np.int64)
        for s in range(SLOTS):
            heavy_slots += self._all_sizes[s][self._keys[s]] > max_bucket
        self._pooled = heavy_slots >= pool_slots
        members = np.flatnonzero(~self._pooled)
        keys = self._keys[:, members]
        self._sizes = _bucket_sizes(keys)
        self._offsets = np.zeros((SLOTS, KEYS + 1), dtype=np.int64)
        np.cumsum(self._sizes, axis=1, out=self._offsets[:, 1:])
        self._ids = np.stack([members[np.argsort(k, kind="stable")] for k in keys]).astype(np.int32)
        self._heavy = self._sizes > max_bucket

    def __len__(self) -> int:
        return int(self._keys.shape[1])

    def __repr__(self) -> str:
        return f"MultiIndex(n={len(self)}, pool={len(self.pool)}, bytes={self.memory_bytes})"

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the index arrays."""
        held = (self._words, self._keys, self._all_sizes, self._sizes, self._offsets, self._ids)
        return sum(a.nbytes for a in held) + self._heavy.nbytes + self._pooled.nbytes

    @property
    def pool(self) -> I32:
        """Codes heavy in at least `pool_slots` slots (left out of the joins), ascending."""
        return np.flatnonzero(self._pooled).astype(np.int32)

    def bucket_histogram(self) -> BucketHistogram:
        """Sizes of the non-empty buckets over all slots, the pool and the skipped buckets."""
        ordered = np.sort(self._all_sizes[self._all_sizes > 0])
        if not len(ordered):
            return BucketHistogram((), (), 0, 0, 0, self.max_bucket, (), 0, ())
        bins = np.bincount(np.log2(ordered).astype(np.int64))
        weight = np.cumsum(ordered)
        return BucketHistogram(
            bin_lows=tuple(1 << i for i in range(len(bins))),
            buckets=tuple(int(b) for b in bins),
            max_size=int(ordered[-1]),
            p99_size=int(np.quantile(ordered, 0.99, method="higher")),
            p99_code_size=int(ordered[np.searchsorted(weight, 0.99 * weight[-1])]),
            max_bucket=self.max_bucket,
            heavy=_heavy_list(self._all_sizes, self.max_bucket),
            pool=int(self._pooled.sum()),
            skipped=_heavy_list(self._sizes, self.max_bucket),
        )

    def self_join_candidates(self, radius: int = 31) -> int:
        """Candidates `self_join(radius)` will verify: bucket pairs within the flips, light only."""
        light = np.where(self._heavy, 0, self._sizes)
        total = int((light * (light - 1) // 2).sum())
        keys = np.arange(KEYS, dtype=np.int64)
        for mask in probe_masks(flips_for(radius), with_zero=False):
            upper = keys < (keys ^ mask)
            total += int((light[:, upper] * light[:, keys[upper] ^ mask]).sum())
        return total

    def self_join(self, radius: int = 31, *, workers: int = 1) -> Pairs:
        """Every pair i < j within `radius`, exactly, outside the pool and skipped buckets.

        `workers` threads share the slots (numpy releases the GIL for most of the work; not in
        np.repeat, which is still faster single-threaded than GIL-free cumsum expansions).
        """
        flips = flips_for(radius)
        masks = probe_masks(flips, with_zero=False)
        run = partial(self._self_slot, radius=radius, flips=flips, masks=masks)
        return Pairs._merge(list(chain.from_iterable(_map(run, SLOTS, workers))))

    def cross_join(
        self,
        queries: U8,
        radius: int,
        *,
        flips_per_slot: int | None = None,
        self_ids: NDArray[Any] | None = None,
        workers: int = 1,
    ) -> Pairs:
        """Every (query row a, code b) within `radius`, exactly (b outside pool, skipped buckets).

        `flips_per_slot` defaults to radius // 16, the least that is exact (0 for the dihedral
        pass at r <= 15). `self_ids[q]` names the code query q derives from (a rotation or flip
        of it): that match is dropped.
        """
        needed = flips_for(radius)
        flips = needed if flips_per_slot is None else flips_per_slot
        if not needed <= flips <= MAX_FLIPS:
            raise ValueError(f"flips_per_slot must be in {needed}..{MAX_FLIPS} for radius {radius}")
        q = _Queries.of(check_codes(queries, "queries"), self_ids)
        masks = probe_masks(flips, with_zero=True)
        run = partial(self._cross_slot, q=q, radius=radius, flips=flips, masks=masks)
        return Pairs._merge(list(chain.from_iterable(_map(run, SLOTS, workers))))

    def lookup(self, queries: U8, radius: int) -> Pairs:
        """`cross_join` for a few queries (one image's turns): the same pairs, found by reading
        the probed buckets' members straight from the slot's id list, where `cross_join` first
        lays every slot out in bucket order (O(N) a slot: 0.14 s a call at 100k codes)."""
        checked = check_codes(queries, "queries")
        masks = probe_masks(flips_for(radius), with_zero=True)
        keys, words = slot_keys(checked), code_words(checked)
        found_q, found_ids = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
        for slot in range(SLOTS):
            other = keys[slot].astype(np.int64)[:, None] ^ masks[None, :]
            count = np.where(self._heavy[slot][other], 0, self._sizes[slot][other])
            at = _ragged_arange(self._offsets[slot][other].ravel(), count.ravel())
            found_ids.append(self._ids[slot].take(at).astype(np.int64))
            found_q.append(np.repeat(np.arange(len(checked), dtype=np.int64), count.sum(axis=1)))
        pair = np.unique(np.concatenate(found_q) << 32 | np.concatenate(found_ids))
        a, b = pair >> 32, pair & 0xFFFFFFFF
        dist = _distance(words, a, self._words, b)
        near = dist <= radius
        return Pairs.of(a[near], b[near], dist[near])

    def pool_join(self, radius: int = 8, *, max_pool: int = 20_000) -> PoolJoin:
        """Brute force inside the pool at a (stricter) radius; skipped above `max_pool` codes."""
        pool = self.pool
        if len(pool) > max_pool:
            return PoolJoin(Pairs.empty(), len(pool), searched=False)
        found = _brute_words(self._words[:, pool], None, radius, self.chunk_candidates)
        return PoolJoin(Pairs.of(pool[found.a], pool[found.b], found.distance), len(pool), True)

    def _self_slot(self, slot: int, radius: int, flips: int, masks: I64) -> list[Pairs]:
        """Pairs first found in `slot`: codes vs later ones of their bucket and upper neighbours."""
        table = _SlotTable.of(self, slot)
        parts = []
        for lo in range(0, len(table.ids), _BLOCK):
            hi = min(len(table.ids), lo + _BLOCK)
            start, count = self._self_probes(slot, table, lo, hi, masks)
            words = table.words[:, lo:hi]
            for rows, pos in _scan(words, start, count, table.words, radius, self.chunk_candidates):
                i, j = table.ids[rows + lo], table.ids[pos]
                parts.append(self._verified(slot, i, j, self._words, self._keys, radius, flips))
        return parts

    def _self_probes(
        self, slot: int, table: _SlotTable, lo: int, hi: int, masks: I64
    ) -> tuple[I64, I64]:
        """(start, count) per probe of sorted positions lo..hi: rest of own bucket, upper ones."""
        offsets, sizes, heavy = self._offsets[slot], self._sizes[slot], self._heavy[slot]
        pos = np.arange(lo, hi, dtype=np.int64)
        key = table.keys[lo:hi].astype(np.int64)
        other = key[:, None] ^ masks[None, :]
        upper = np.where((other > key[:, None]) & ~heavy[other], sizes[other], 0)
        start = np.concatenate([(pos + 1)[:, None], offsets[other]], axis=1)
        count = np.concatenate([(offsets[key + 1] - pos - 1)[:, None], upper], axis=1)
        count[heavy[key]] = 0
        return start, count

    def _cross_slot(
        self, slot: int, q: _Queries, radius: int, flips: int, masks: I64
    ) -> list[Pairs]:
        """(query, code) pairs first found in `slot`."""
        table = _SlotTable.of(self, slot)
        offsets, sizes, heavy = self._offsets[slot], self._sizes[slot], self._heavy[slot]
        parts = []
        for lo in range(0, len(q.keys[slot]), _BLOCK):
            other = q.keys[slot, lo : lo + _BLOCK].astype(np.int64)[:, None] ^ masks[None, :]
            count = np.where(heavy[other], 0, sizes[other])
            words = q.words[:, lo : lo + _BLOCK]
            budget = self.chunk_candidates
            for rows, pos in _scan(words, offsets[other], count, table.words, radius, budget):
                qi, j = rows + lo, table.ids[pos]
                if q.self_ids is not None:
                    other_code = q.self_ids[qi] != j
                    qi, j = qi[other_code], j[other_code]
                parts.append(
                    self._verified(slot, qi, j, q.words, q.keys, radius, flips, indexed_a=False)
                )
        return parts

    def _verified(
        self,
        slot: int,
        a: I64,
        b: I64,
        words_a: U64,
        keys_a: U16,
        radius: int,
        flips: int,
        *,
        indexed_a: bool = True,
    ) -> Pairs:
        """Candidates a-b first qualifying in `slot` and within `radius` on all 256 bits.

        Side a is indexed codes (self join: its buckets must be light too) or queries.
        """
        first = self._first_here(slot, a, b, keys_a, flips, indexed_a=indexed_a)
        a, b = a[first], b[first]
        dist = _distance(words_a, a, self._words, b)
        near = np.flatnonzero(dist <= radius)
        a, b, dist = a[near], b[near], dist[near]
        if indexed_a:
            a, b = np.minimum(a, b), np.maximum(a, b)
        return Pairs.of(a, b, dist)

    def _first_here(
        self, slot: int, a: I64, b: I64, keys_a: U16, flips: int, *, indexed_a: bool
    ) -> I64:
        """Rows of the pairs no earlier slot finds (within `flips` there, both buckets light)."""
        rows = np.arange(len(a))
        for s in range(slot):
            key_a, key_b = keys_a[s].take(a[rows]), self._keys[s].take(b[rows])
            found = (_popcount(key_a ^ key_b) <= flips) & ~self._heavy[s].take(key_b)
            if indexed_a:
                found &= ~self._heavy[s].take(key_a)
            rows = rows[~found]  # shrinks fast: most pairs of a cluster go at the first slot
        return rows


@dataclass(frozen=True, slots=True)
class _SlotTable:
    """One slot's indexed codes in bucket order: ids, keys, first two words (the prefilter)."""

    ids: NDArray[np.intp]
    keys: U16
    words: U64

    @classmethod
    def of(cls, index: MultiIndex, slot: int) -> _SlotTable:
        ids = index._ids[slot].astype(np.intp)
        keys = np.repeat(np.arange(KEYS, dtype=np.uint16), index._sizes[slot])
        return cls(ids, keys, np.stack([index._words[w].take(ids) for w in range(2)]))


@dataclass(frozen=True, slots=True)
class _Queries:
    """Query codes as words and slot keys, with the code each derives from (or None)."""

    words: U64
    keys: U16
    self_ids: I64 | None

    @classmethod
    def of(cls, codes: U8, self_ids: NDArray[Any] | None) -> _Queries:
        ids = None if self_ids is None else np.asarray(self_ids, dtype=np.int64)
        if ids is not None and ids.shape != (len(codes),):
            raise ValueError("self_ids must have one entry per query")
        return cls(code_words(codes), slot_keys(codes), ids)


def _scan(
    src: U64, start: I64, count: I64, table: U64, radius: int, budget: int
) -> Iterator[tuple[I64, I64]]:
    """Per chunk of about `budget` candidates: (source row, table position) of those within
    `radius` on their first 128 bits."""
    per_src = count.sum(axis=1)
    for lo, hi in _chunk_bounds(per_src, budget):
        cand = _ragged_arange(start[lo:hi].ravel(), count[lo:hi].ravel())
        reps = per_src[lo:hi]
        dist = _popcount(np.repeat(src[0, lo:hi], reps) ^ table[0].take(cand))
        dist += _popcount(np.repeat(src[1, lo:hi], reps) ^ table[1].take(cand))
        hit = np.flatnonzero(dist <= radius)
        yield np.searchsorted(np.cumsum(reps), hit, side="right") + lo, cand[hit]


def _chunk_bounds(per_src: I64, budget: int) -> list[tuple[int, int]]:
    """Runs of sources of about `budget` candidates each (one source may exceed it alone)."""
    cum = np.cumsum(per_src)
    if len(cum) == 0 or cum[-1] == 0:
        return []
    cuts = np.searchsorted(cum, np.arange(budget, int(cum[-1]), budget), side="right")
    bounds = np.unique(np.concatenate([[0], cuts, [len(cum)]]))
    return [(int(lo), int(hi)) for lo, hi in pairwise(bounds)]


def _ragged_arange(start: I64, count: I64) -> I64:
    """start[0], start[0]+1, … (count[0] values), then start[1], … : concatenated ranges."""
    ends = np.cumsum(count)
    out = np.repeat(start - (ends - count), count)
    out += np.arange(len(out), dtype=np.int64)
    return out


def _distance(words_a: U64, a: I64, words_b: U64, b: I64) -> U16:
    """Full 256-bit Hamming distances between columns a of words_a and b of words_b."""
    dist = np.zeros(len(a), dtype=np.uint16)
    for w in range(len(words_a)):
        dist += _popcount(words_a[w].take(a) ^ words_b[w].take(b))
    return dist


def brute_pairs(codes_a: U8, codes_b: U8 | None = None, radius: int = 31) -> Pairs:
    """Every pair within `radius` by chunked xor + popcount: (i, j) in a x b, or i < j within a."""
    words_a = code_words(check_codes(codes_a, "codes_a"))
    words_b = None if codes_b is None else code_words(check_codes(codes_b, "codes_b"))
    return _brute_words(words_a, words_b, radius, CHUNK_CANDIDATES)


def _brute_words(words_a: U64, words_b: U64 | None, radius: int, budget: int) -> Pairs:
    """`brute_pairs` on (4, N) words; words_b None is the self-join of words_a."""
    other = words_a if words_b is None else words_b
    rows = max(1, budget // max(1, other.shape[1]))
    parts = []
    for lo in range(0, words_a.shape[1], rows):
        hi = min(words_a.shape[1], lo + rows)
        first = lo + 1 if words_b is None else 0  # self-join: only columns after the row
        dist = np.zeros((hi - lo, other.shape[1] - first), dtype=np.uint16)
        for w in range(len(words_a)):
            dist += _popcount(words_a[w, lo:hi, None] ^ other[w, None, first:])
        hit = dist <= radius
        if words_b is None:
            hit &= np.arange(first, other.shape[1])[None, :] > np.arange(lo, hi)[:, None]
        i, j = np.nonzero(hit)
        parts.append(Pairs.of(i + lo, j + first, dist[i, j]))
    return Pairs._merge(parts)


def _map(fn: Callable[[int], T], n: int, workers: int) -> list[T]:
    """fn(0), …, fn(n - 1), in `workers` threads when more than one."""
    if workers <= 1:
        return [fn(i) for i in range(n)]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mih") as pool:
        return list(pool.map(fn, range(n)))
