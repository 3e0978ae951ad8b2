"""Keypoint signatures: the crop channel's candidates, a few local features per photo.

A DCT sign hash does not survive a crop that moves the picture's centre: at 1 % of the width
of misalignment 13 % of ph256's bits flip, at 2 % 22 %, and random pairs of these photographs
sit at 38-43 % (python -m bench.dupes's set; coarser hashes tolerate more and tell less). A
crop up to 10 % a side, asymmetric, is a shift of up to 5 % and a zoom of up to 25 %. So crops
are proposed by what they keep: local features.

A signature is the POINTS strongest ORB keypoints' 256-bit descriptors of a SIDE-px greyscale
version of the stored file (OpenCV, through geometry.py). Two descriptors are compared when
they agree on the three bytes one of TABLES hash tables is keyed on (bit-sampling locality-
sensitive hashing: a descriptor seen again 15 bits off meets its twin in at least one table 98
% of the time, 20 bits off 89 %, 30 bits off 51 %; two unrelated ones almost never) and match
within RADIUS bits; two photos that share at least MIN_SHARED descriptors are a candidate pair,
which geometry.verify then confirms or rejects on its 512-px features as every crop is. Multi-
index hashing at radius 31 (mih.py) finds the same pairs but costs the square of the
descriptors: 46 s of CPU for 10,000 synthetic photos against 1.3 s here.

Cost (bench/README.md, dupes): 6-9 ms of CPU per photo once (a 1/4-scale decode and ORB),
2 KB per photo in the store; the join about 4 s of CPU and 0.25 GB for 20,000 photos, 64 s and
1 GB for 100,000 (synthetic descriptors with ORB's bit bias).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from harvester.dataset import geometry
from harvester.dataset.fingerprint import hamming_many

KP_VERSION: Final = 1  # another value in the store means recompute
SIDE: Final = 256  # px, long side of the grey picture the keypoints are found on
POINTS: Final = 64
RADIUS: Final = 36  # bits of 256 two descriptors may differ by and still match
MIN_SHARED: Final = 3  # descriptors two photos share to be a candidate
TABLES: Final = 16  # bit-sampling hash tables ...
KEY_BYTES: Final = 3  # ... keyed on this many bytes (24 bits) of the descriptor each
MAX_BUCKET: Final = 200  # descriptors with one key; more are a repeated texture: skipped
QUERY_MAX_BUCKET: Final = 64  # a query's keys held by more stored descriptors are not looked at
DESCRIPTOR_BYTES: Final = 32
#: The tables' keys: KEY_BYTES of the 32 bytes each, fixed (seeded) so a run compares exactly
#: what the last one did. ORB's tests are chosen to be uncorrelated, so three whole bytes are as
#: good a sample as 24 scattered bits, and far cheaper to gather.
_SUBSETS: Final = tuple(
    np.sort(np.random.default_rng(20261202 + t).choice(DESCRIPTOR_BYTES, KEY_BYTES, replace=False))
    for t in range(TABLES)
)

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]


def signature(gray: npt.NDArray[np.uint8]) -> U8:
    """(k, 32) descriptors, k <= POINTS (0 for a flat picture), of an upright grey picture."""
    found = geometry.features(gray, n=POINTS)
    return np.ascontiguousarray(found.descriptors, dtype=np.uint8).reshape(-1, DESCRIPTOR_BYTES)


def to_blob(descriptors: U8) -> bytes:
    """The descriptors as stored: k x 32 bytes, row after row."""
    return np.ascontiguousarray(descriptors, dtype=np.uint8).tobytes()


def from_blob(blob: bytes) -> U8:
    """The descriptors back from `to_blob`'s bytes."""
    if len(blob) % DESCRIPTOR_BYTES:
        raise ValueError(f"keypoint blob of {len(blob)} bytes is not a multiple of 32")
    return np.frombuffer(blob, dtype=np.uint8).reshape(-1, DESCRIPTOR_BYTES)


def stored_signatures(
    blobs: Mapping[int, bytes], row_of: Mapping[int, int]
) -> Iterator[tuple[int, U8]]:
    """(row, descriptors) of each stored signature whose photo id has a row; empty ones skipped."""
    for photo_id, blob in blobs.items():
        row = row_of.get(photo_id)
        if row is not None and blob:
            yield row, from_blob(blob)


def stacked(signatures: Iterable[tuple[int, U8]]) -> tuple[U8, I64]:
    """The descriptors of (owner, descriptors) pairs as one array, and each one's owner."""
    owners, parts = [], [np.empty((0, DESCRIPTOR_BYTES), np.uint8)]
    for owner, codes in signatures:
        owners.append(owner)
        parts.append(codes)
    sizes = [len(codes) for codes in parts[1:]]
    # One repeat for all the owners: an array per photo cost more than the descriptors did.
    return np.ascontiguousarray(np.concatenate(parts)), np.repeat(np.array(owners, np.int64), sizes)


def shared_pairs(
    codes: U8,
    owners: I64,
    new: npt.NDArray[np.bool_],
    *,
    radius: int = RADIUS,
    min_shared: int = MIN_SHARED,
) -> I64:
    """(m, 3) rows (a, b, shared): owner pairs a < b sharing `shared` >= `min_shared`
    descriptors within `radius`, at least one of them `new` (indexed by owner).

    `codes[i]` is a descriptor of photo `owners[i]`. Two descriptors are compared when they
    agree on KEY_BYTES fixed random bytes of one of TABLES tables (bit-sampling
    locality-sensitive hashing), then kept within `radius`; a pair of descriptors is counted
    once however many tables it meets in.
    """
    check = np.ascontiguousarray(codes, dtype=np.uint8)
    if check.ndim != 2 or check.shape[1] != DESCRIPTOR_BYTES or len(check) != len(owners):
        raise ValueError(f"descriptors of shape {check.shape} for {len(owners)} owners")
    found = [_table_pairs(check, owners, new, subset, radius) for subset in _SUBSETS]
    matches = np.unique(np.concatenate([np.empty((0, 2), np.int64), *found]), axis=0)
    return _counted(owners[matches[:, 0]], owners[matches[:, 1]], min_shared)


def _table_pairs(
    codes: U8, owners: I64, new: npt.NDArray[np.bool_], subset: npt.NDArray[np.intp], radius: int
) -> I64:
    """(k, 2) descriptor pairs (i < j) equal on `subset`, of two photos, one new, within radius."""
    keys = _keys(codes, subset)
    order = np.argsort(keys)  # the order within a bucket does not matter: pairs are sorted
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    sizes = np.diff(np.r_[starts, len(keys)])
    # Buckets of one code pair nothing; buckets over MAX_BUCKET are textures, not a picture.
    keep = np.repeat((sizes >= 2) & (sizes <= MAX_BUCKET), sizes)
    members, bucket = order[keep], np.repeat(np.arange(len(sizes)), sizes)[keep]
    pairs = []
    for offset in range(1, MAX_BUCKET):
        same = bucket[offset:] == bucket[:-offset]
        if not same.any():
            break
        a, b = members[:-offset][same], members[offset:][same]
        ok = (owners[a] != owners[b]) & (new[owners[a]] | new[owners[b]])
        a, b = a[ok], b[ok]
        ok = _distances(codes[a], codes[b]) <= radius
        pairs.append(np.stack([np.minimum(a, b)[ok], np.maximum(a, b)[ok]], axis=1))
    return np.concatenate(pairs) if pairs else np.empty((0, 2), np.int64)


def _distances(a: U8, b: U8) -> npt.NDArray[np.intp]:
    """Row-wise Hamming distances of two (k, 32) arrays."""
    return hamming_many(np.bitwise_xor(a, b), np.zeros(DESCRIPTOR_BYTES, np.uint8))


def _counted(a: npt.NDArray[Any], b: npt.NDArray[Any], min_shared: int) -> I64:
    """(a, b, times): distinct unordered pairs of different owners occurring at least
    `min_shared` times."""
    keep = a != b
    lo = np.minimum(a, b)[keep].astype(np.int64)
    hi = np.maximum(a, b)[keep].astype(np.int64)
    if len(lo) == 0:
        return np.empty((0, 3), np.int64)
    width = int(hi.max()) + 1
    unique, counts = np.unique(lo * width + hi, return_counts=True)
    chosen = counts >= min_shared
    pairs = unique[chosen]
    return np.stack([pairs // width, pairs % width, counts[chosen]], axis=1)


class VoteIndex:
    """An inverted file over stored signatures, for one query at a time (`harvest similar`).

    For each of the first `tables` key subsets, every stored descriptor's KEY_BYTES-byte key,
    sorted, beside the row of the photo it belongs to. A query descriptor votes for each photo
    holding a descriptor with its key in some table (once per photo, however many tables agree);
    buckets over MAX_BUCKET are repeated textures and do not vote. Unlike `shared_pairs` no
    Hamming distance is checked (that would keep every descriptor in memory): with 24-bit keys
    a bucket holds a handful of descriptors even at 64 M, so chance votes stay rare, and every
    candidate is verified by RANSAC anyway. Memory: 8 bytes per descriptor per table.
    """

    def __init__(self, chunks: Iterable[tuple[U8, I64]], *, tables: int = 4) -> None:
        if not 1 <= tables <= TABLES:
            raise ValueError(f"tables must be 1..{TABLES}, got {tables}")
        self._subsets = _SUBSETS[:tables]
        keys: list[list[npt.NDArray[np.int64]]] = [[] for _ in self._subsets]
        owners: list[npt.NDArray[np.int32]] = []
        for codes, rows in chunks:
            for t, subset in enumerate(self._subsets):
                keys[t].append(_keys(codes, subset).astype(np.int64))
            owners.append(rows.astype(np.int32))
        every = np.concatenate([np.empty(0, np.int32), *owners])
        self._keys: list[npt.NDArray[np.int32]] = []
        self._owners: list[npt.NDArray[np.int32]] = []
        for parts in keys:
            # One sort of key << 32 | owner (the order within a key does not matter): 3-4x
            # faster than a stable argsort and two gathers, at 8 bytes a descriptor transient.
            joined = np.concatenate([np.empty(0, np.int64), *parts]) << 32 | every
            parts.clear()
            joined.sort()
            self._keys.append((joined >> 32).astype(np.int32))
            self._owners.append((joined & 0xFFFFFFFF).astype(np.int32))
            del joined
        self.descriptors = len(every)
        self.photos = len(np.unique(every))

    @property
    def tables(self) -> int:
        """Key tables held."""
        return len(self._keys)

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the sorted keys and their owners."""
        return sum(k.nbytes + o.nbytes for k, o in zip(self._keys, self._owners, strict=True))

    def votes(
        self,
        query: U8,
        n: int,
        *,
        min_votes: int = MIN_SHARED,
        flipped_tables: int = 1,
        max_bucket: int = QUERY_MAX_BUCKET,
    ) -> list[tuple[int, int]]:
        """(row, votes) of at most `n` photos with at least `min_votes` query descriptors
        meeting one of theirs, most votes first (then lowest row).

        In the first `flipped_tables` tables each query key is also looked up with each of its
        24 bits flipped (multi-probe LSH: a descriptor 10 % of its bits off then meets its twin
        in a table 29 % of the time instead of 8 %). Keys held by more than `max_bucket` stored
        descriptors say little (ORB's bits are biased) and are not looked at.
        """
        if len(query) == 0 or self.descriptors == 0:
            return []
        bits = 8 * KEY_BYTES
        owners_hit, voters = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
        for t, (subset, keys, owners) in enumerate(
            zip(self._subsets, self._keys, self._owners, strict=True)
        ):
            flips = [1 << b for b in range(bits)] if t < flipped_tables else []
            masks = np.array([0, *flips], np.int32)
            wanted = (_keys(query, subset)[:, None] ^ masks[None, :]).ravel()
            lo = np.searchsorted(keys, wanted, side="left")
            sizes = np.searchsorted(keys, wanted, side="right") - lo
            ok = (sizes > 0) & (sizes <= max_bucket)
            starts, counts = lo[ok], sizes[ok]
            at = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
            owners_hit.append(owners[at].astype(np.int64))
            voters.append(np.repeat(np.flatnonzero(ok) // len(masks), counts).astype(np.int64))
        # One vote per (query descriptor, photo): sorted and deduplicated (np.unique's hashing
        # took 0.8 s a query at 64 M descriptors, the sort 0.1 s), then counted per photo.
        pairs = np.sort(np.concatenate(voters) << 32 | np.concatenate(owners_hit))
        if len(pairs) == 0:
            return []
        first = np.ones(len(pairs), np.bool_)
        first[1:] = pairs[1:] != pairs[:-1]
        tally = np.bincount(pairs[first] & 0xFFFFFFFF)
        rows = np.flatnonzero(tally >= min_votes)
        order = np.lexsort((rows, -tally[rows]))[:n]
        return [(int(r), int(tally[r])) for r in rows[order]]


def _keys(codes: U8, subset: npt.NDArray[np.intp]) -> npt.NDArray[np.int32]:
    """Each descriptor's key in one table: its KEY_BYTES bytes of `subset`, as one integer."""
    keys = np.zeros(len(codes), np.int32)
    for byte in subset.tolist():
        keys = (keys << 8) | codes[:, byte]
    return keys
