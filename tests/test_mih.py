"""Multi-index hashing: self and cross joins equal brute force; edges, heavy buckets, order."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from harvester.dataset import mih
from harvester.dataset.mih import MultiIndex, Pairs, brute_pairs

Codes = np.ndarray


def random_codes(rng: np.random.Generator, n: int) -> Codes:
    """Uniform random 256-bit codes."""
    return rng.integers(0, 256, (n, 32), dtype=np.uint8)


def flip(code: Codes, bits: list[int] | np.ndarray) -> Codes:
    """`code` with the given bit positions (0 = top bit of byte 0) inverted."""
    unpacked = np.unpackbits(code)
    unpacked[np.asarray(bits, dtype=np.int64)] ^= 1
    return np.packbits(unpacked)


def spread_flips(rng: np.random.Generator, distance: int) -> list[int]:
    """`distance` bit positions spread as evenly as possible over the 16 slots (worst case)."""
    per_slot = [distance // 16 + (1 if s < distance % 16 else 0) for s in range(16)]
    order = rng.permutation(16)
    return [
        int(slot) * 16 + int(b)
        for slot, n in zip(order, per_slot, strict=True)
        for b in rng.choice(16, n, replace=False)
    ]


def planted(
    rng: np.random.Generator, n: int, radius: int
) -> tuple[Codes, dict[int, tuple[int, int]]]:
    """Random codes with a planted pair at every distance 0..radius+1, flips spread over slots."""
    codes = random_codes(rng, n)
    pairs = {}
    for d in range(radius + 2):
        src, dst = 2 * d, 2 * d + 1
        codes[dst] = flip(codes[src], spread_flips(rng, d))
        pairs[d] = (src, dst)
    for _ in range(n // 20):  # random extra near-duplicates, some chained
        src, dst = rng.integers(2 * radius + 4, n, 2)
        codes[dst] = flip(codes[src], rng.choice(256, rng.integers(0, radius + 1), replace=False))
    return codes, pairs


def as_set(pairs: Pairs) -> set[tuple[int, int, int]]:
    return set(zip(pairs.a.tolist(), pairs.b.tolist(), pairs.distance.tolist(), strict=True))


def assert_same(got: Pairs, want: Pairs) -> None:
    assert np.array_equal(got.a, want.a)
    assert np.array_equal(got.b, want.b)
    assert np.array_equal(got.distance, want.distance)


@pytest.mark.parametrize("radius", [15, 31])
def test_self_join_equals_brute_force(radius: int) -> None:
    codes, planted_pairs = planted(np.random.default_rng(radius), 3000, radius)
    got = MultiIndex(codes).self_join(radius)
    assert_same(got, brute_pairs(codes, None, radius))
    found = {(a, b): d for a, b, d in as_set(got)}
    for d, pair in planted_pairs.items():
        assert found.get(pair) == (d if d <= radius else None)


def test_self_join_two_flips_per_slot() -> None:
    codes, _ = planted(np.random.default_rng(47), 1500, 47)
    assert_same(MultiIndex(codes).self_join(47), brute_pairs(codes, None, 47))


def test_small_chunks_and_threads_give_the_same_pairs() -> None:
    codes, _ = planted(np.random.default_rng(5), 2000, 31)
    want = brute_pairs(codes, None, 31)
    assert_same(MultiIndex(codes, chunk_candidates=500).self_join(31), want)
    assert_same(MultiIndex(codes).self_join(31, workers=2), want)


@pytest.mark.parametrize(("radius", "flips"), [(15, 0), (15, 1), (31, 1)])
def test_cross_join_equals_brute_force(radius: int, flips: int) -> None:
    rng = np.random.default_rng(radius + flips)
    codes, _ = planted(rng, 2000, radius)
    queries = random_codes(rng, 600)
    for q in range(300):  # near copies of indexed codes, at every distance up to radius + 1
        queries[q] = flip(codes[q], spread_flips(rng, q % (radius + 2)))
    got = MultiIndex(codes).cross_join(queries, radius, flips_per_slot=flips)
    assert_same(got, brute_pairs(queries, codes, radius))


def test_cross_join_drops_self_matches_only() -> None:
    rng = np.random.default_rng(3)
    codes, _ = planted(rng, 1000, 15)
    queries = codes.copy()
    queries[::7] = random_codes(rng, len(queries[::7]))
    index = MultiIndex(codes)
    everything = as_set(brute_pairs(queries, codes, 15))
    got = index.cross_join(queries, 15, self_ids=np.arange(len(queries)), workers=2)
    assert as_set(got) == {p for p in everything if p[0] != p[1]}
    assert len(got) < len(everything)


def test_empty_and_single_inputs() -> None:
    empty = np.zeros((0, 32), dtype=np.uint8)
    one = random_codes(np.random.default_rng(0), 1)
    for codes in (empty, one):
        index = MultiIndex(codes)
        assert len(index.self_join(31)) == 0
        assert len(index.cross_join(empty, 15)) == 0
        assert len(brute_pairs(codes, None, 31)) == 0
        hist = index.bucket_histogram()
        assert (hist.pool, hist.max_size, sum(hist.buckets)) == (0, len(codes), 16 * len(codes))
    assert as_set(MultiIndex(one).cross_join(one, 0)) == {(0, 0, 0)}
    assert len(MultiIndex(empty).cross_join(one, 31)) == 0
    assert len(brute_pairs(empty, one, 31)) == 0


def reachable(codes: Codes, pairs: Pairs, radius: int, max_bucket: int) -> np.ndarray:
    """Test-side rule: neither code pooled (heavy in >= 4 slots), and some slot within the
    flips where both buckets, counted without the pool, are at most max_bucket."""
    keys = codes.view(">u2").astype(np.int64)  # (N, 16)
    slots = np.arange(16)

    def sizes(rows: np.ndarray) -> np.ndarray:
        return np.stack([np.bincount(keys[rows, s], minlength=1 << 16) for s in slots])

    pooled = (sizes(np.arange(len(codes)))[slots, keys] > max_bucket).sum(axis=1) >= 4
    heavy = sizes(np.flatnonzero(~pooled)) > max_bucket
    ka, kb = keys[pairs.a], keys[pairs.b]
    within = np.bitwise_count(ka ^ kb) <= radius // 16
    light = ~heavy[slots, ka] & ~heavy[slots, kb]
    found: npt.NDArray[np.bool_] = (
        (within & light).any(axis=1) & ~pooled[pairs.a] & ~pooled[pairs.b]
    )
    return found


def test_heavy_buckets_pool_piles_and_skip_one_slot_skew() -> None:
    """A pile of identical codes is pooled; codes alike in one slot are skipped there only."""
    rng = np.random.default_rng(11)
    codes, _ = planted(rng, 2500, 31)
    dark = random_codes(rng, 1)[0]
    codes[1000:1300] = dark  # 300 identical "dark" codes: heavy in all 16 slots
    codes[1300] = flip(dark, [16 * s for s in range(15)])  # heavy in slot 15 only: not pooled
    codes[1301] = flip(dark, [16 * s for s in range(12)])  # heavy in 4 slots: pooled
    shared = codes[1400:1550]
    shared[:, 0:2] = 0  # 150 distinct codes alike in slot 0 only: skipped there
    codes[1551] = flip(codes[1400], spread_flips(rng, 31))  # found through another slot
    codes[1402] = flip(codes[1401], [16 * s + b for s in range(1, 16) for b in (3, 9)])  # lost
    index = MultiIndex(codes, max_bucket=100)

    truth = brute_pairs(codes, None, 31)
    keep = reachable(codes, truth, 31, max_bucket=100)
    got = index.self_join(31)
    assert_same(got, Pairs.of(truth.a[keep], truth.b[keep], truth.distance[keep]))
    assert (1400, 1551, 31) in as_set(got)
    assert (1401, 1402, 30) in as_set(truth) - as_set(got)  # its one qualifying slot is skipped
    assert index.pool.tolist() == [*range(1000, 1300), 1301]
    assert index.self_join_candidates(31) < MultiIndex(codes).self_join_candidates(31)

    hist = index.bucket_histogram()
    assert (hist.max_size, hist.pool, len(hist.heavy)) == (302, 301, 17)
    assert [(h.slot, h.key, h.size) for h in hist.skipped] == [(0, 0, 150)]

    exact = index.pool_join(radius=0)
    assert (exact.searched, exact.pool_size, len(exact.pairs)) == (True, 301, 300 * 299 // 2)
    assert (1000, 1301, 12) in as_set(index.pool_join(radius=15).pairs)
    skipped = index.pool_join(radius=0, max_pool=100)
    assert (skipped.searched, len(skipped.pairs), skipped.pool_size) == (False, 0, 301)
    outside = index.cross_join(codes[index.pool], 15)  # the pool's matches among the rest
    assert set(outside.b.tolist()) == {1300}
    assert len(outside) == 301


def test_output_is_sorted_and_deterministic() -> None:
    codes, _ = planted(np.random.default_rng(8), 2000, 31)
    first = MultiIndex(codes).self_join(31, workers=2)
    assert len(first) > 50
    assert_same(first, MultiIndex(codes.copy()).self_join(31))
    assert (first.a < first.b).all()
    order = np.lexsort((first.b, first.a))
    assert np.array_equal(order, np.arange(len(first)))
    assert not first.a.flags.writeable
    parts = [first, first]
    assert_same(Pairs.union(parts), first)  # each pair once
    assert len(parts) == 2


def test_slot_keys_are_big_endian_byte_pairs() -> None:
    code = np.zeros((1, 32), dtype=np.uint8)
    code[0, 0], code[0, 1], code[0, 31] = 0x12, 0x34, 0x01
    keys = mih.slot_keys(code)
    assert keys.shape == (16, 1)
    assert (keys[0, 0], keys[15, 0]) == (0x1234, 0x0001)
    assert mih.slot_keys(flip(code[0], [0])[None, :])[0, 0] == 0x9234  # bit 0 = slot 0's top bit


def test_lookup_table_popcount_matches_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    words = rng.integers(0, 2**63, 1000, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    assert np.array_equal(mih.popcount_lut(words), np.bitwise_count(words))
    keys = rng.integers(0, 1 << 16, (16, 50), dtype=np.uint16)
    assert np.array_equal(mih.popcount_lut(keys), np.bitwise_count(keys))
    codes, _ = planted(rng, 800, 31)
    want = brute_pairs(codes, None, 31)
    monkeypatch.setattr(mih, "_popcount", mih.popcount_lut)
    assert_same(brute_pairs(codes, None, 31), want)
    assert_same(MultiIndex(codes).self_join(31), want)


def test_candidate_count_and_radius_limits() -> None:
    codes = np.repeat(random_codes(np.random.default_rng(4), 1), 10, axis=0)
    index = MultiIndex(codes)
    assert index.self_join_candidates(15) == 16 * 45  # one bucket of 10 per slot
    assert len(index.self_join(0)) == 45
    assert [mih.flips_for(r) for r in (0, 15, 16, 31, 32, 47)] == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="radius"):
        index.self_join(48)
    with pytest.raises(ValueError, match="flips_per_slot"):
        index.cross_join(codes, 31, flips_per_slot=0)
    with pytest.raises(ValueError, match="uint8"):
        MultiIndex(np.zeros((3, 16), dtype=np.uint8))


@pytest.mark.parametrize("radius", [15, 31, 47])
def test_lookup_is_cross_join_for_a_few_queries(radius: int) -> None:
    """The single-image path gives exactly cross_join's pairs, heavy buckets and pool included."""
    rng = np.random.default_rng(radius)
    codes, _ = planted(rng, 3000, radius)
    codes[2000:2300] = codes[2000]  # a pile: pooled
    codes[2400:2550, 0:2] = 0  # alike in slot 0 only: that bucket is skipped
    index = MultiIndex(codes, max_bucket=100)
    queries = np.stack(
        [flip(codes[q], spread_flips(rng, q % (radius + 2))) for q in (1, 5, 2001, 2401, 2999)]
        + [random_codes(rng, 1)[0]]
    )
    got = index.lookup(queries, radius)
    assert_same(got, index.cross_join(queries, radius))
    assert len(got) >= 3
    assert len(index.lookup(queries[:0], radius)) == 0
