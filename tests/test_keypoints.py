"""The crop channel's pair counting on synthetic descriptors (dataset/keypoints.py)."""

from __future__ import annotations

import numpy as np
import pytest

from harvester.dataset.keypoints import from_blob, shared_pairs, to_blob


def _codes(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32), dtype=np.uint8)


def _near(codes: np.ndarray, bits: int, seed: int) -> np.ndarray:
    """Each code with `bits` of its 256 bits flipped (a descriptor seen again)."""
    out = codes.copy()
    rng = np.random.default_rng(seed)
    for row in out:
        for bit in rng.choice(256, bits, replace=False):
            row[bit // 8] ^= np.uint8(0x80 >> (bit % 8))
    return out


BASE = _codes(1, 6)
# photo 0: six descriptors; photo 1 shares three of them (10 bits off); photo 2 shares two;
# photo 3 shares three but 40 bits off (beyond the radius); photo 4 is unrelated.
PHOTOS = [
    BASE,
    np.concatenate([_near(BASE[:3], 10, 2), _codes(3, 3)]),
    np.concatenate([_near(BASE[3:5], 10, 4), _codes(5, 4)]),
    np.concatenate([_near(BASE[:3], 40, 6), _codes(7, 3)]),
    _codes(8, 6),
]
CODES = np.ascontiguousarray(np.concatenate(PHOTOS))
OWNERS = np.concatenate([np.full(len(p), k, np.int64) for k, p in enumerate(PHOTOS)])


@pytest.mark.parametrize(
    ("new", "min_shared", "expected"),
    [
        ([0, 1, 2, 3, 4], 3, [(0, 1)]),  # the first run: one self-join
        ([0, 1, 2, 3, 4], 2, [(0, 1), (0, 2)]),
        ([1], 3, [(0, 1)]),  # only photo 1 is new: found from its side
        ([0], 3, [(0, 1)]),  # only photo 0 is new: found from the other side
        ([2, 3, 4], 3, []),
        ([0, 1], 4, []),  # two new photos: their three matches are counted once, not twice
        ([0, 1], 3, [(0, 1)]),
    ],
)
def test_photos_sharing_enough_descriptors_are_paired(
    new: list[int], min_shared: int, expected: list[tuple[int, int]]
) -> None:
    is_new = np.zeros(len(PHOTOS), np.bool_)
    is_new[new] = True
    found = shared_pairs(CODES, OWNERS, is_new, radius=31, min_shared=min_shared)
    assert sorted((a, b) for a, b, _n in found.tolist()) == expected


def test_pairs_say_how_many_descriptors_they_share() -> None:
    found = shared_pairs(CODES, OWNERS, np.ones(len(PHOTOS), np.bool_), min_shared=1)
    shared = {(a, b): n for a, b, n in found.tolist()}
    assert shared[(0, 1)] == 3
    assert shared[(0, 2)] == 2


def test_no_descriptors_no_pairs() -> None:
    empty = np.empty((0, 32), np.uint8)
    found = shared_pairs(empty, np.empty(0, np.int64), np.ones(3, np.bool_))
    assert found.shape == (0, 3)


def test_blobs_round_trip_and_reject_a_torn_one() -> None:
    assert np.array_equal(from_blob(to_blob(BASE)), BASE)
    assert from_blob(b"").shape == (0, 32)
    with pytest.raises(ValueError, match="multiple of 32"):
        from_blob(b"x" * 33)
