"""Content fingerprints of a photo: DCT and difference hashes of its pixels, digests of its bytes.

Input: the upright greyscale content box (the 1/8-scale decode frame detection already makes,
cropped to the frame's inside), a uint8 array of at least 16 px a side. Signals, SIG_VERSION 1:

- ph256: area-resize to 64x64, 2-D DCT-II, the 16x16 AC block (rows and columns 1..16),
  bit = coefficient > 0. Packed row-major (u, then v), first bit = most significant of byte 0.
- c80: the same hash of the central 80% x 80%, for copies whose borders were cropped. It
  catches symmetric crops of about 9.5-10.5% a side, and ph256 those under about 2%
  (python -m bench.fingerprint): a DCT sign hash does not tolerate a few percent of zoom.
- quality: PDQ's gradient score, 0-100, on the 64x64 grid (flat or dark images score low).
- dh64: the 64-bit difference hash (9x8 means, bit = right neighbour brighter).
- src_sha256, scan_sha256: digests of the downloaded bytes and of the JPEG without metadata.

Sign bits, not PDQ's median: mirroring a picture negates the DCT coefficients of odd frequency
across the mirror axis and transposing it transposes them, so with a sign threshold the hashes of
its 8 rotations and reflections are bit operations on the 256 stored bits (`dihedral`); a median
threshold would need the coefficients, which are not kept.

Exact arithmetic: area weights are integers (in 1/n-pixel units), the DCT rows are rounded to
12 bits, and every sum stays an integer below 2**52 (2**24 in float32), so no result depends on
summation order and a derived variant equals the hash of the turned array bit for bit, at any
size. The exception: a coefficient that is exactly 0 (flat content, or a picture mirror-symmetric
to the grey level) gives bit 0 however the picture is turned, while its derived bit inverts.

BLAS: the resize is banded gathers, not a matmul, and the DCT's two products (16x64x64) are
below OpenBLAS's threading threshold, so the cost is the same with OPENBLAS_NUM_THREADS unset.
A process that also runs large matmuls should still pin it to 1: their idle threads spin.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, Final, TypeVar

import numpy as np
import numpy.typing as npt

from harvester.exceptions import ImageError, StoreError

SIG_VERSION: Final = 1
HASH_BYTES: Final = 32  # ph256 and c80
MIN_SIDE: Final = 16  # px; the 64x64 grid of a smaller box would be mostly interpolation
_GRID = 64
_BLOCK = 16
_LEVEL = 256  # grid values are means in 1/256 grey levels: integers <= 255 * 256 < 2**16
_DCT_BITS = 12  # 2**12 * 2**16 * 64 * 64 * 2**12 = 2**52: the DCT stays exact in float64
_U64 = (1 << 64) - 1
_T = TypeVar("_T", bound=np.generic)

Gray = npt.NDArray[np.uint8]
Grid = npt.NDArray[np.float64]  # integer values: 64x64 means in 1/256 grey levels
Row = tuple[int, bytes, bytes, int, int, bytes, bytes | None, int, int]
#: Column names of `Fingerprint.to_row()`, in order.
ROW_COLUMNS: Final = (
    "sig_version",
    "ph256",
    "ph256_c80",
    "dh64",
    "quality",
    "src_sha256",
    "scan_sha256",
    "gray_w",
    "gray_h",
)

# --- rotations and reflections -----------------------------------------------------------------


class Dihedral(IntEnum):
    """The 8 ways to turn or mirror a picture, in the row order of `dihedral`; angles clockwise."""

    IDENTITY = 0
    ROT90 = 1  # 90 degrees clockwise, np.rot90(x, -1)
    ROT180 = 2
    ROT270 = 3  # 270 degrees clockwise = 90 counter-clockwise, np.rot90(x)
    FLIP_H = 4  # mirrored left-right, about the vertical axis: np.fliplr(x)
    FLIP_V = 5  # mirrored top-bottom: np.flipud(x)
    TRANSPOSE = 6  # about the main diagonal (top-left to bottom-right): x.T
    ANTI_TRANSPOSE = 7  # about the other diagonal: np.rot90(x, 2).T


class Kind(StrEnum):
    """Whether a variant turns the picture or mirrors it."""

    ROTATION = "rotation"
    REFLECTION = "reflection"


@dataclass(frozen=True, slots=True, kw_only=True)
class Transform:
    """One variant: its kind and angle or axis, its inverse, and how it acts on pixels.

    On pixels: transpose first (if `transpose`), then mirror left-right (`flip_lr`) and
    top-bottom (`flip_ud`). On the DCT block the same steps swap u and v, then negate the
    coefficients of odd column frequency v, then those of odd row frequency u.
    """

    kind: Kind
    angle: int  # degrees clockwise; 0 for reflections
    axis: str | None  # reflections: "h" (left-right), "v" (top-bottom), "transpose", ...
    inverse: Dihedral
    transpose: bool = False
    flip_lr: bool = False
    flip_ud: bool = False


_R, _M = Kind.ROTATION, Kind.REFLECTION
#: Indexed by Dihedral. ROT90 = fliplr(x.T), ROT270 = flipud(x.T), ANTI = rot180(x).T.
TRANSFORMS: Final = (
    Transform(kind=_R, angle=0, axis=None, inverse=Dihedral.IDENTITY),
    Transform(kind=_R, angle=90, axis=None, inverse=Dihedral.ROT270, transpose=True, flip_lr=True),
    Transform(kind=_R, angle=180, axis=None, inverse=Dihedral.ROT180, flip_lr=True, flip_ud=True),
    Transform(kind=_R, angle=270, axis=None, inverse=Dihedral.ROT90, transpose=True, flip_ud=True),
    Transform(kind=_M, angle=0, axis="h", inverse=Dihedral.FLIP_H, flip_lr=True),
    Transform(kind=_M, angle=0, axis="v", inverse=Dihedral.FLIP_V, flip_ud=True),
    Transform(kind=_M, angle=0, axis="transpose", inverse=Dihedral.TRANSPOSE, transpose=True),
    Transform(
        kind=_M,
        angle=0,
        axis="antitranspose",
        inverse=Dihedral.ANTI_TRANSPOSE,
        transpose=True,
        flip_lr=True,
        flip_ud=True,
    ),
)


def turn(image: npt.NDArray[_T], g: Dihedral) -> npt.NDArray[_T]:
    """`image` (H x W, or H x W x C) as variant `g` shows it: a view, not a copy."""
    t = TRANSFORMS[g]
    if t.transpose:
        image = np.swapaxes(image, 0, 1)
    if t.flip_lr:
        image = image[:, ::-1]
    return image[::-1] if t.flip_ud else image


def _sign_masks() -> npt.NDArray[np.uint8]:
    """(8, 16, 16): the bits each variant inverts, i.e. its coefficients of odd frequency."""
    odd = (np.arange(1, _BLOCK + 1) % 2 == 1).astype(np.uint8)
    shape = (_BLOCK, _BLOCK)
    rows, cols = np.broadcast_to(odd[:, None], shape), np.broadcast_to(odd, shape)
    return np.stack([rows * t.flip_ud ^ cols * t.flip_lr for t in TRANSFORMS])


_MASKS = _sign_masks()
_TRANSPOSED = np.array([t.transpose for t in TRANSFORMS])[:, None, None]


def dihedral(h: bytes) -> npt.NDArray[np.uint8]:
    """(8, 32): the ph256 (or c80) of each variant of the picture, in Dihedral order."""
    variants: npt.NDArray[np.uint8] = dihedral_many(np.frombuffer(h, np.uint8)[None])[0]
    return variants


def dihedral_many(codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """(N, 8, 32) variants of (N, 32) hashes, in Dihedral order."""
    bits = np.unpackbits(codes, axis=-1).reshape(-1, 1, _BLOCK, _BLOCK)
    turned = np.where(_TRANSPOSED, bits.transpose(0, 1, 3, 2), bits) ^ _MASKS
    return np.packbits(turned.reshape(-1, len(TRANSFORMS), _BLOCK * _BLOCK), axis=-1)


# --- area resize, exact ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Band:
    """Area weights of equal cells over a span of pixels: (taps, cells) indices and weights."""

    index: npt.NDArray[np.intp]
    weight: npt.NDArray[np.int64]
    total: int  # every cell's weights sum to this


@functools.lru_cache(maxsize=1024)
def _band(length: int, cells: int, margin: int) -> _Band:
    """`cells` cells over `length` pixels less `margin` tenths of them at each end.

    In units of 1/(scale*cells) pixel, cell i spans [lo_i, lo_i + step) and pixel j spans
    [j*px, (j+1)*px): every overlap is an integer, margins to a fraction of a pixel included,
    so the weights are exact and mirror-symmetric.
    """
    scale = 10 if margin else 1
    step, px = (scale - 2 * margin) * length, scale * cells
    lo = margin * length * cells + np.arange(cells) * step
    first = lo // px
    taps = int(((lo + step - 1) // px - first).max()) + 1
    index = first + np.arange(taps)[:, None]
    weight = np.minimum(lo + step, (index + 1) * px) - np.maximum(lo, index * px)
    index, weight = np.minimum(index, length - 1), np.maximum(weight, 0)
    index.setflags(write=False)
    weight.setflags(write=False)  # cached: shared by every call
    return _Band(index, weight, step)


def _exact_dtype(biggest: int) -> np.dtype[Any]:
    """The cheapest dtype in which integers up to `biggest` add up exactly, in any order."""
    if biggest < 2**24:
        return np.dtype(np.float32)
    return np.dtype(np.int32 if biggest < 2**31 else np.float64)


def _resize_axis0(x: npt.NDArray[Any], band: _Band) -> npt.NDArray[Any]:
    """Weighted sums of the rows of `x` into band's cells (scaled by band.total)."""
    weight = band.weight.astype(x.dtype)
    out: npt.NDArray[Any] = weight[0, :, None] * x[band.index[0]]
    for tap in range(1, len(weight)):  # a few row gathers: cheaper than a matmul, and no BLAS
        out += weight[tap, :, None] * x[band.index[tap]]
    return out


def _area_means(gray: Gray, cells: int, margin: int = 0) -> Grid:
    """Means of `gray` on a cells x cells grid, in 1/256 grey levels, floored (float64).

    `margin`: tenths of the height and width left out on each side (1 for the central 80%).
    """
    rows, cols = _band(gray.shape[0], cells, margin), _band(gray.shape[1], cells, margin)
    area = rows.total * cols.total
    half = _resize_axis0(gray.astype(_exact_dtype(255 * area)), rows)
    sums = _resize_axis0(np.ascontiguousarray(half.T), cols).T.astype(np.float64)
    # The floor is exact: the division is correctly rounded, and a quotient that is not an
    # integer is at least 1/area away from one.
    means: Grid = np.floor(sums * _LEVEL / area)
    return means


# --- hashes ------------------------------------------------------------------------------------


def _dct_rows() -> npt.NDArray[np.float64]:
    """DCT-II rows u = 1..16 over 64 samples, in 12-bit integers, exactly (anti)symmetric."""
    n = np.arange(_GRID // 2)
    u = np.arange(1, _BLOCK + 1)[:, None]
    half = np.round(np.cos(np.pi * (2 * n + 1) * u / (2 * _GRID)) * 2**_DCT_BITS)
    # Built from one half so that D[u, 63 - n] == (-1)**u * D[u, n] holds to the last bit.
    return np.hstack([half, np.where(u % 2 == 1, -1.0, 1.0) * half[:, ::-1]])


_DCT = _dct_rows()
_DCT.setflags(write=False)


def _sign_hash(grid: Grid) -> bytes:
    """The 256 sign bits of the grid's 16x16 AC block (exact integers held in float64)."""
    block = _DCT @ grid @ _DCT.T
    return np.packbits(block > 0).tobytes()


def _quality(grid: Grid) -> int:
    """PDQ's score: neighbour differences in whole percent of full scale, summed, / 90, <= 100."""
    full = 255 * _LEVEL  # floors exact, as in _area_means: integer numerators
    down = np.floor(np.abs(np.diff(grid, axis=0)) * 100 / full).sum()
    across = np.floor(np.abs(np.diff(grid, axis=1)) * 100 / full).sum()
    return min(100, int(down + across) // 90)


def _dh_columns() -> Grid:
    """(64, 9) integer area weights taking the grid's 64 columns to dHash's 9."""
    band = _band(_GRID, 9, 0)
    dense = np.zeros((_GRID, 9))
    np.add.at(dense, (band.index, np.arange(9)), band.weight)
    return dense


_DH_COLUMNS = _dh_columns()


def _dhash(grid: Grid) -> int:
    """9x8 area means of the grid; bit = right neighbour brighter; row-major, MSB first."""
    rows = grid.reshape(8, _GRID // 8, _GRID).sum(axis=1)  # 8 grid rows per hash row
    cells = rows @ _DH_COLUMNS  # integers below 2**26 (and 8x64x9, far below BLAS threading)
    return int.from_bytes(np.packbits(cells[:, 1:] > cells[:, :-1]).tobytes(), "big")


def _checked(gray: Gray) -> Gray:
    """`gray` if it is a 2-D uint8 array of at least MIN_SIDE px a side."""
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"expected a 2-D uint8 array, got {gray.dtype} {gray.shape}")
    if min(gray.shape) < MIN_SIDE:
        raise ImageError(f"content box {gray.shape[1]}x{gray.shape[0]} < {MIN_SIDE} px a side")
    return gray


def _grid(gray: Gray, margin: int = 0) -> Grid:
    return _area_means(gray, _GRID, margin)


def ph256(gray: Gray) -> bytes:
    """The 256-bit DCT sign hash of an upright greyscale content box."""
    return _sign_hash(_grid(_checked(gray)))


def c80(gray: Gray) -> bytes:
    """ph256 of the central 80% x 80% of the content box (margins to a fraction of a pixel)."""
    return _sign_hash(_grid(_checked(gray), margin=1))


def dh64(gray: Gray) -> int:
    """The 64-bit difference hash (unsigned) of the content box."""
    return _dhash(_grid(_checked(gray)))


def quality(gray: Gray) -> int:
    """PDQ-style quality 0-100 of the content box: below 50, do not trust its hashes."""
    return _quality(_grid(_checked(gray)))


# --- distances ---------------------------------------------------------------------------------

_POPCOUNT8 = np.array([i.bit_count() for i in range(256)], np.uint8)
# numpy >= 2.0 counts bits in C; numpy 1.26 (still allowed by pyproject) uses the table.
_BITWISE_COUNT: Callable[..., Any] | None = getattr(np, "bitwise_count", None)


def hamming(a: bytes, b: bytes) -> int:
    """Bits that differ between two hashes of equal length."""
    if len(a) != len(b):
        raise ValueError(f"hashes of {len(a)} and {len(b)} bytes")
    return (int.from_bytes(a) ^ int.from_bytes(b)).bit_count()


def hamming64(a: int, b: int) -> int:
    """Bits that differ between two dh64 values, signed (as stored) or not."""
    return ((a ^ b) & _U64).bit_count()


def hamming_many(codes: npt.NDArray[np.uint8], q: npt.NDArray[np.uint8]) -> npt.NDArray[np.intp]:
    """(N,) distances from (N, B) packed codes to one (B,) code."""
    diff = np.bitwise_xor(codes, q)  # a new C-contiguous array, so it can be viewed as words
    if _BITWISE_COUNT is None:
        table: npt.NDArray[np.intp] = _POPCOUNT8[diff].sum(axis=1, dtype=np.intp)
        return table
    words = diff.view(np.uint64) if diff.shape[1] % 8 == 0 else diff
    counts: npt.NDArray[np.intp] = _BITWISE_COUNT(words).sum(axis=1, dtype=np.intp)
    return counts


# --- digests -----------------------------------------------------------------------------------

_EOI, _SOS = 0xD9, 0xDA
_NO_LENGTH = frozenset({0x01, _EOI, *range(0xD0, 0xD8)})  # TEM, EOI, RSTn: no length field
_FILL = re.compile(rb"\xff+")  # a marker may be preceded by any number of 0xFF fill bytes
_AFTER_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # not stuffing, RSTn or fill: a marker


def src_sha256(data: bytes) -> bytes:
    """SHA-256 of the bytes as downloaded (identical files under different photo ids)."""
    return hashlib.sha256(data).digest()


def scan_sha256(jpeg: bytes) -> bytes | None:
    """SHA-256 of `without_metadata(jpeg)`, without the copy; None unless a whole JPEG.

    Equal digests mean equal coded samples. APPn segments are metadata here even where they
    change how the samples are shown: EXIF Orientation (APP1), the ICC profile (APP2, colours),
    Adobe's colour transform (APP14); compare those separately where it matters.
    """
    ranges = _image_ranges(jpeg)
    if ranges is None:
        return None
    digest, view = hashlib.sha256(), memoryview(jpeg)
    for start, end in ranges:
        digest.update(view[start:end])
    return digest.digest()


def without_metadata(jpeg: bytes) -> bytes | None:
    """The JPEG with every APPn and COM segment dropped and nothing after its EOI, or None.

    None for anything but a whole JPEG: no SOI, a malformed or truncated segment, a scan
    without its EOI. Never raises on bad bytes.
    """
    ranges = _image_ranges(jpeg)
    return None if ranges is None else b"".join(jpeg[start:end] for start, end in ranges)


def _image_ranges(data: bytes) -> list[tuple[int, int]] | None:
    """[start, end) ranges of `data` that are not APPn/COM, SOI through the final EOI."""
    if data[:2] != b"\xff\xd8":
        return None
    ranges, pos, scans = [(0, 2)], 2, 0
    while (found := _segment_at(data, pos)) is not None:
        start, marker, pos = found
        if not (0xE0 <= marker <= 0xEF or marker == 0xFE):
            _extend(ranges, start, pos)
        if marker == _EOI:
            return ranges if scans else None
        if marker == _SOS:  # entropy-coded data follows, up to the next real marker
            if (after := _AFTER_SCAN.search(data, pos)) is None:
                return None
            _extend(ranges, pos, after.start())
            pos, scans = after.start(), scans + 1
    return None


def _segment_at(data: bytes, pos: int) -> tuple[int, int, int] | None:
    """(start, marker, end) of the marker segment at `pos`, or None where there is none."""
    fill = _FILL.match(data, pos)
    if fill is None or fill.end() >= len(data):
        return None
    start, marker = fill.end() - 1, data[fill.end()]
    if marker in _NO_LENGTH:
        return start, marker, start + 2
    end = start + 2 + int.from_bytes(data[start + 2 : start + 4], "big")
    if marker in (0x00, 0xD8) or not start + 4 <= end <= len(data):
        return None  # stuffing or SOI out of place, a length below 2, or a truncated segment
    return start, marker, end


def _extend(ranges: list[tuple[int, int]], start: int, end: int) -> None:
    """Append [start, end), merged into the last range when they touch (fewer hash updates)."""
    if ranges[-1][1] == start:
        ranges[-1] = (ranges[-1][0], end)
    else:
        ranges.append((start, end))


# --- the record --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Fingerprint:
    """Every signal of one photo, as its photo_signal row holds them (see ROW_COLUMNS)."""

    version: int  # SIG_VERSION it was computed with: another value means recompute
    ph256: bytes  # 32 bytes
    c80: bytes  # 32 bytes
    dh64: int  # unsigned, 0 <= dh64 < 2**64 (stored signed: SQLite integers are int64)
    quality: int  # 0-100
    src_sha256: bytes  # 32 bytes
    scan_sha256: bytes | None  # 32 bytes; None unless the file was a whole JPEG
    gray_w: int  # size of the greyscale content box the hashes were computed on, in its pixels
    gray_h: int

    def to_row(self) -> Row:
        """BLOBs and int64s in ROW_COLUMNS order."""
        signed = self.dh64 - (1 << 64) if self.dh64 >= 1 << 63 else self.dh64
        return (
            self.version,
            self.ph256,
            self.c80,
            signed,
            self.quality,
            self.src_sha256,
            self.scan_sha256,
            self.gray_w,
            self.gray_h,
        )

    @classmethod
    def from_row(cls, row: Sequence[object]) -> Fingerprint:
        """The record back from a row in ROW_COLUMNS order (a tuple or an sqlite3.Row)."""
        if len(row) != len(ROW_COLUMNS):
            raise StoreError(f"fingerprint row of {len(row)} columns, not {len(ROW_COLUMNS)}")
        version, ph, central, dh, score, src, scan, width, height = row
        return cls(
            version=_integer(version),
            ph256=_blob(ph, HASH_BYTES),
            c80=_blob(central, HASH_BYTES),
            dh64=_integer(dh) & _U64,
            quality=_integer(score),
            src_sha256=_blob(src, 32),
            scan_sha256=None if scan is None else _blob(scan, 32),
            gray_w=_integer(width),
            gray_h=_integer(height),
        )


def _blob(value: object, size: int) -> bytes:
    if not isinstance(value, bytes) or len(value) != size:
        raise StoreError(f"fingerprint column: expected {size} bytes, got {value!r:.40}")
    return value


def _integer(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise StoreError(f"fingerprint column: expected an integer, got {value!r:.40}")
    return value


def fingerprint(gray: Gray, *, src: bytes, scan: bytes | None = None) -> Fingerprint:
    """All signals of a photo from its content box and its bytes.

    `src`: the downloaded file. `scan`: the stored JPEG when the caller has it (a kept file
    carries the source's scan unchanged, a re-encoded one its own); else `src` is digested.
    """
    grid = _grid(_checked(gray))
    return Fingerprint(
        version=SIG_VERSION,
        ph256=_sign_hash(grid),
        c80=_sign_hash(_grid(gray, margin=1)),
        dh64=_dhash(grid),
        quality=_quality(grid),
        src_sha256=src_sha256(src),
        scan_sha256=scan_sha256(src if scan is None else scan),
        gray_w=gray.shape[1],
        gray_h=gray.shape[0],
    )
