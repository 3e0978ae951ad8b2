"""Fingerprints: dihedral identities, robustness and distinctness on real photographs, dHash,
quality, the JPEG scan digest on good and hostile bytes, and the SQLite row.

Photographs are scikit-image's bundled samples, hashed the way the pipeline sees them: edited at
full size, then box-reduced like the 1/8 decode (1/4 or less when that would be under 64 px).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import itertools
import sqlite3
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image
from skimage import data as skdata

from harvester.dataset import fingerprint as fp
from harvester.dataset.fingerprint import Dihedral, Fingerprint, Kind
from harvester.exceptions import ImageError, StoreError
from harvester.images import jpegmeta

Gray = npt.NDArray[np.uint8]
Edit = Callable[[Image.Image], Image.Image]

COLOUR = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")
GREY = ("camera", "moon", "coins", "clock", "brick", "grass", "gravel", "cell", "page", "text")
PHOTOS = (*COLOUR, *GREY, "retina")  # retina: a 1411 px source
LOW_QUALITY = frozenset({"clock"})  # a studio shot on a plain backdrop: quality 31
TRUSTED = tuple(n for n in PHOTOS if n not in LOW_QUALITY)  # quality >= 50: hashes to trust


@functools.cache
def photos() -> dict[str, Image.Image]:
    """The sample photographs as RGB images."""
    return {n: Image.fromarray(getattr(skdata, n)()).convert("RGB") for n in PHOTOS}


def thumb(image: Image.Image) -> Gray:
    """The pipeline's greyscale view: the largest box reduction of 8, 4, 2 keeping 64 px."""
    gray = image.convert("L")
    factor = next((f for f in (8, 4, 2) if min(gray.size) // f >= 64), 1)
    return np.asarray(gray.reduce(factor))


@functools.cache
def thumbs() -> dict[str, Gray]:
    return {name: thumb(image) for name, image in photos().items()}


def noise(height: int, width: int, seed: int = 0) -> Gray:
    return np.random.default_rng(seed).integers(0, 256, (height, width), dtype=np.uint8)


def ramp(height: int, width: int) -> Gray:
    """A diagonal ramp plus a bright block: no symmetry."""
    y, x = np.mgrid[0:height, 0:width]
    out: Gray = (x * 160 // width + y * 60 // height).astype(np.uint8)
    out[height // 5 : height // 2, width // 7 : width // 3] = 250
    return out


def textured(height: int, width: int) -> Gray:
    """ramp() with faint noise: a plain ramp upsampled can have DCT coefficients of exactly 0."""
    return ramp(height, width) + noise(height, width, 9) // 32


# --- rotations and reflections -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("g", "kind", "angle", "axis", "inverse"),
    [
        (Dihedral.IDENTITY, Kind.ROTATION, 0, None, Dihedral.IDENTITY),
        (Dihedral.ROT90, Kind.ROTATION, 90, None, Dihedral.ROT270),
        (Dihedral.ROT180, Kind.ROTATION, 180, None, Dihedral.ROT180),
        (Dihedral.ROT270, Kind.ROTATION, 270, None, Dihedral.ROT90),
        (Dihedral.FLIP_H, Kind.REFLECTION, 0, "h", Dihedral.FLIP_H),
        (Dihedral.FLIP_V, Kind.REFLECTION, 0, "v", Dihedral.FLIP_V),
        (Dihedral.TRANSPOSE, Kind.REFLECTION, 0, "transpose", Dihedral.TRANSPOSE),
        (Dihedral.ANTI_TRANSPOSE, Kind.REFLECTION, 0, "antitranspose", Dihedral.ANTI_TRANSPOSE),
    ],
)
def test_transform_table(
    g: Dihedral, kind: Kind, angle: int, axis: str | None, inverse: Dihedral
) -> None:
    t = fp.TRANSFORMS[g]
    assert (t.kind, t.angle, t.axis, t.inverse) == (kind, angle, axis, inverse)
    image = ramp(20, 30)
    assert np.array_equal(fp.turn(fp.turn(image, g), inverse), image)


# Where the top-left pixel of a 2x3 (h x w) image lands, and the output's shape.
@pytest.mark.parametrize(
    ("g", "corner", "shape"),
    [
        (Dihedral.IDENTITY, (0, 0), (2, 3)),
        (Dihedral.ROT90, (0, 1), (3, 2)),  # clockwise: top-left goes to top-right
        (Dihedral.ROT180, (1, 2), (2, 3)),
        (Dihedral.ROT270, (2, 0), (3, 2)),  # counter-clockwise: to bottom-left
        (Dihedral.FLIP_H, (0, 2), (2, 3)),
        (Dihedral.FLIP_V, (1, 0), (2, 3)),
        (Dihedral.TRANSPOSE, (0, 0), (3, 2)),
        (Dihedral.ANTI_TRANSPOSE, (2, 1), (3, 2)),
    ],
)
def test_turn_directions(g: Dihedral, corner: tuple[int, int], shape: tuple[int, int]) -> None:
    image = np.zeros((2, 3), np.uint8)
    image[0, 0] = 1
    turned = fp.turn(image, g)
    assert turned.shape == shape
    assert tuple(np.argwhere(turned == 1)[0]) == corner


NUMPY_OPS: list[tuple[Dihedral, Callable[[Gray], Gray]]] = [
    (Dihedral.ROT90, lambda x: np.rot90(x, -1)),  # numpy turns counter-clockwise for k > 0
    (Dihedral.ROT180, lambda x: np.rot90(x, 2)),
    (Dihedral.ROT270, np.rot90),
    (Dihedral.FLIP_H, np.fliplr),
    (Dihedral.FLIP_V, np.flipud),
    (Dihedral.TRANSPOSE, np.transpose),
    (Dihedral.ANTI_TRANSPOSE, lambda x: np.rot90(x, 2).T),
]

# Real photos at their thumbnail sizes, plus odd and upsampled sizes of synthetic images.
IMAGES: list[tuple[str, Callable[[], Gray]]] = [
    *((n, lambda n=n: thumbs()[n]) for n in ("astronaut", "coffee", "retina", "page", "gravel")),
    ("noise 17x33", lambda: noise(17, 33)),
    ("noise 97x131", lambda: noise(97, 131, 1)),
    ("textured 40x30 (upsampled)", lambda: textured(40, 30)),
    ("textured 375x500", lambda: textured(375, 500)),
    ("noise 1000x999 (float64 sums)", lambda: noise(1000, 999, 2)),
]


@pytest.mark.parametrize(("name", "make"), IMAGES, ids=[n for n, _ in IMAGES])
def test_derived_variants_are_the_hashes_of_the_turned_image(
    name: str, make: Callable[[], Gray]
) -> None:
    """Exact, at every size: resize and DCT are integer arithmetic (see the module docstring)."""
    image = make()
    ph, central = fp.dihedral(fp.ph256(image)), fp.dihedral(fp.c80(image))
    for g, op in NUMPY_OPS:
        turned = np.ascontiguousarray(op(image))
        assert fp.ph256(turned) == ph[g].tobytes(), g.name
        assert fp.c80(turned) == central[g].tobytes(), g.name
        assert np.array_equal(turned, fp.turn(image, g))
    assert ph[Dihedral.IDENTITY].tobytes() == fp.ph256(image)


def test_a_mirror_inverts_exactly_half_the_bits() -> None:
    """FLIP_H negates the 128 coefficients of odd horizontal frequency: distance exactly 128."""
    for name in TRUSTED:
        gray = thumbs()[name]
        assert fp.hamming(fp.ph256(gray), fp.ph256(np.fliplr(gray).copy())) == 128, name


def test_symmetric_picture_is_the_documented_exception() -> None:
    """Zero coefficients give bit 0 both ways, so a derived mirror differs from the real one."""
    half = ramp(64, 32)
    symmetric = np.hstack([half, half[:, ::-1]])
    h = fp.ph256(symmetric)
    assert fp.ph256(symmetric[:, ::-1].copy()) == h
    assert fp.dihedral(h)[Dihedral.FLIP_H].tobytes() != h


def test_dihedral_many_is_dihedral_per_row() -> None:
    codes = np.stack([np.frombuffer(fp.ph256(thumbs()[n]), np.uint8) for n in COLOUR])
    many = fp.dihedral_many(codes)
    assert many.shape == (len(COLOUR), 8, 32)
    for row, code in zip(many, codes, strict=True):
        assert np.array_equal(row, fp.dihedral(code.tobytes()))


# --- robustness and distinctness on photographs ------------------------------------------------


def _jpeg(quality: int) -> Edit:
    def edit(image: Image.Image) -> Image.Image:
        out = io.BytesIO()
        image.save(out, "JPEG", quality=quality)
        return Image.open(io.BytesIO(out.getvalue())).convert("RGB")

    return edit


def _resize(scale: float) -> Edit:
    def edit(image: Image.Image) -> Image.Image:
        size = (round(image.width * scale), round(image.height * scale))
        return image.resize(size, Image.Resampling.LANCZOS)

    return edit


def _tone(curve: Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]) -> Edit:
    def edit(image: Image.Image) -> Image.Image:
        level = np.asarray(image, np.float64) / 255
        return Image.fromarray(np.clip(np.round(curve(level) * 255), 0, 255).astype(np.uint8))

    return edit


_SEPIA = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])

# (edit, recall needed at radius 31, worst distance allowed) for ph256 and c80.
# Targets as in issue 11: recompressed and resized >= 0.99, tinted and darkened >= 0.95.
# Measured worst over the 16 trusted photos (ph256 / c80; python -m bench.fingerprint):
# jpeg 4/5, resize 19/26, gamma 0.5 29/23, gamma 2 35/33 (moon / cell: the one miss of 16
# that its recall of 0.9 allows), darken 11/9, sepia 10/11.
EDITS: list[tuple[str, Edit, float, int]] = [
    ("jpeg q60", _jpeg(60), 1.0, 20),
    ("jpeg q75", _jpeg(75), 1.0, 20),
    ("jpeg q95", _jpeg(95), 1.0, 20),
    ("resize x0.25", _resize(0.25), 1.0, 31),
    ("resize x0.5", _resize(0.5), 1.0, 31),
    ("resize x0.9", _resize(0.9), 1.0, 31),
    ("gamma 0.5", _tone(lambda v: v**0.5), 1.0, 31),
    ("gamma 2", _tone(lambda v: v**2.0), 0.9, 45),
    ("darken x0.25", _tone(lambda v: v * 0.25), 1.0, 20),
    ("sepia", _tone(lambda v: v @ _SEPIA.T), 1.0, 20),
]


@pytest.mark.parametrize(("name", "edit", "recall", "worst"), EDITS, ids=[e[0] for e in EDITS])
def test_edits_stay_within_radius(name: str, edit: Edit, recall: float, worst: int) -> None:
    for signal in (fp.ph256, fp.c80):
        dists = [fp.hamming(signal(thumb(edit(photos()[n]))), signal(thumbs()[n])) for n in TRUSTED]
        assert np.mean(np.array(dists) <= 31) >= recall, (signal.__name__, dists)
        assert max(dists) <= worst, (signal.__name__, dists)


def test_darkening_lowers_quality() -> None:
    """Measured: x0.25 takes 6 of 16 trusted photos below 50 (cell 9, moon 10, rocket 20,
    retina 29, hubble 39, text 47); astronaut, grass and gravel stay at 100."""
    dark = _tone(lambda v: v * 0.25)
    before = {n: fp.quality(thumbs()[n]) for n in TRUSTED}
    after = {n: fp.quality(thumb(dark(photos()[n]))) for n in TRUSTED}
    assert all(after[n] <= before[n] for n in TRUSTED)
    assert sum(q < 50 for q in after.values()) >= 3


def _min_distance(codes: dict[str, bytes], *, variants: bool = False) -> int:
    def dist(a: bytes, b: bytes) -> int:
        if not variants:
            return fp.hamming(a, b)
        return int(fp.hamming_many(fp.dihedral(a), np.frombuffer(b, np.uint8)).min())

    return min(dist(codes[a], codes[b]) for a, b in itertools.combinations(codes, 2))


def test_different_photos_are_far_apart() -> None:
    """Measured over 136 pairs: ph256 min 107 (mean 127.5), best of 8 variants 103, c80 103."""
    for signal in (fp.ph256, fp.c80):
        codes = {n: signal(g) for n, g in thumbs().items()}
        assert _min_distance(codes) >= 90
        assert _min_distance(codes, variants=True) >= 90


def test_tiles_of_one_photo_are_far_apart() -> None:
    """3x3 tiles, same photo: measured minimum 105/256."""
    for name in ("astronaut", "coffee", "hubble_deep_field", "retina", "camera", "gravel"):
        image = photos()[name].convert("L")
        w, h = image.size
        cells = itertools.product(range(3), range(3))
        boxes = [(j * w // 3, i * h // 3, (j + 1) * w // 3, (i + 1) * h // 3) for i, j in cells]
        tiles = {str(box): fp.ph256(np.asarray(image.crop(box))) for box in boxes}
        assert _min_distance(tiles) >= 90, name


def test_two_views_of_one_scene_are_apart() -> None:
    """The stereo pair (a shifted viewpoint, like a burst): 80/256, the closest unrelated pair."""
    left, right, _ = skdata.stereo_motorcycle()
    a, b = (thumb(Image.fromarray(x)) for x in (left, right))
    assert fp.hamming(fp.ph256(a), fp.ph256(b)) >= 64


def test_central80_matches_a_ten_percent_crop() -> None:
    """c80 of the original ~ ph256 of a copy cropped 10% a side (measured: max 32, mean 8)."""
    dists = []
    for name in TRUSTED:
        image = photos()[name]
        dx, dy = round(image.width * 0.1), round(image.height * 0.1)
        cropped = image.crop((dx, dy, image.width - dx, image.height - dy))
        dists.append(fp.hamming(fp.ph256(thumb(cropped)), fp.c80(thumbs()[name])))
    assert np.mean(np.array(dists) <= 31) >= 0.9, dists


# --- quality and dHash -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "make", "low"),
    [
        ("flat grey", lambda: np.full((96, 128), 128, np.uint8), True),
        ("black", lambda: np.zeros((96, 128), np.uint8), True),
        ("smooth ramp", lambda: np.tile(np.arange(128, dtype=np.uint8), (96, 1)), True),
        ("dark photo", lambda: (thumbs()["camera"] // 8).astype(np.uint8), True),
        ("noise", lambda: noise(96, 128), False),
        *((n, lambda n=n: thumbs()[n], False) for n in TRUSTED),
    ],
)
def test_quality(name: str, make: Callable[[], Gray], low: bool) -> None:
    score = fp.quality(make())
    assert 0 <= score <= 100
    assert (score < 50) == low, score


def test_quality_of_the_low_quality_photo() -> None:
    assert fp.quality(thumbs()["clock"]) < 50


def _rows_up_to(height: int, rising: int) -> Gray:
    """`rising` rows brightening to the right over a black rest: dHash bits in those rows only."""
    image = np.zeros((height, 90), np.uint8)
    image[:rising] = np.arange(90, dtype=np.uint8)
    return image


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        ("brighter rightwards", lambda: np.tile(np.arange(90, dtype=np.uint8), (80, 1)), 2**64 - 1),
        ("darker rightwards", lambda: np.tile(np.arange(90, 0, -1, dtype=np.uint8), (80, 1)), 0),
        ("flat: ties are not brighter", lambda: np.full((80, 90), 7, np.uint8), 0),
        ("first row is the top byte", lambda: _rows_up_to(80, 10), 0xFF << 56),
        ("first two rows", lambda: _rows_up_to(80, 20), 0xFFFF << 48),
    ],
)
def test_dhash_bits(name: str, make: Callable[[], Gray], expected: int) -> None:
    assert fp.dh64(make()) == expected


def test_dhash_on_photos() -> None:
    """Edits stay under SLNSW's threshold of ~13 (measured max 6); unrelated photos sit near
    32 but come as close as 13 (rocket vs retina): 64 bits are for constrained matching only.
    Not mirror-invariant: a left-right flip moves it 16-64 bits."""
    for name in TRUSTED:
        base = fp.dh64(thumbs()[name])
        for _, edit, _, _ in EDITS:
            assert fp.hamming64(fp.dh64(thumb(edit(photos()[name]))), base) <= 10, name
    codes = [fp.dh64(g) for g in thumbs().values()]
    unrelated = [fp.hamming64(a, b) for a, b in itertools.combinations(codes, 2)]
    assert 26 <= np.mean(unrelated) <= 38
    assert min(unrelated) >= 8


# --- distances ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (bytes(32), bytes(32), 0),
        (bytes(32), b"\xff" * 32, 256),
        (b"\x80" + bytes(31), bytes(32), 1),
        (bytes(31) + b"\x01", bytes(32), 1),
        (b"\x0f" * 32, b"\xf0" * 32, 256),
        (b"\x01\x02", b"\x03\x02", 1),
    ],
)
def test_hamming(a: bytes, b: bytes, expected: int) -> None:
    assert fp.hamming(a, b) == expected
    assert (
        fp.hamming_many(np.frombuffer(a, np.uint8)[None], np.frombuffer(b, np.uint8))[0] == expected
    )


def test_hamming_rejects_unequal_lengths() -> None:
    with pytest.raises(ValueError, match="hashes of 32 and 31 bytes"):
        fp.hamming(bytes(32), bytes(31))


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [(0, 0, 0), (0, 2**64 - 1, 64), (-1, 2**64 - 1, 0), (-1, 0, 64), (1 << 63, -(1 << 63), 0)],
)
def test_hamming64_signed_or_not(a: int, b: int, expected: int) -> None:
    assert fp.hamming64(a, b) == expected


@pytest.mark.parametrize("width", [32, 8, 5])
def test_hamming_many_with_and_without_bitwise_count(
    monkeypatch: pytest.MonkeyPatch, width: int
) -> None:
    codes = noise(1000, width, 3)
    query = noise(1, width, 4)[0]
    expected = [fp.hamming(c.tobytes(), query.tobytes()) for c in codes]
    assert fp.hamming_many(codes, query).tolist() == expected
    monkeypatch.setattr(fp, "_BITWISE_COUNT", None)  # numpy < 2: the lookup table
    assert fp.hamming_many(codes, query).tolist() == expected


# --- digests -----------------------------------------------------------------------------------


def _encode(quality: int = 90, **options: object) -> bytes:
    out = io.BytesIO()
    photos()["coffee"].resize((150, 100)).save(out, "JPEG", quality=quality, **options)
    return out.getvalue()


def _exif() -> bytes:
    exif = Image.Exif()
    exif[0x010E] = "a description"  # ImageDescription
    exif[0x0112] = 6  # Orientation: shown turned, same samples
    return exif.tobytes()


def _icc() -> bytes:
    return bytes(range(256)) * 4  # any payload: APP2 is skipped whatever it holds


def _insert_after(jpeg: bytes, marker: int, segment: bytes) -> bytes:
    """`segment` inserted after the first segment with `marker` (a metadata segment late)."""
    info = jpegmeta.parse_jpeg(jpeg)
    seg = next(s for s in info.segments if s.marker == marker)
    return jpeg[: seg.end] + segment + jpeg[seg.end :]


def _stamped(jpeg: bytes) -> bytes:
    """What harvest stores for a kept file: its own Exif and COM around the same image data."""
    fields = jpegmeta.ExifFields(
        artist="a", copyright="c", description="d", user_comment=jpegmeta.user_comment_ascii("u")
    )
    parts = jpegmeta.embed_parts(
        jpeg,
        jpegmeta.parse_jpeg(jpeg),
        jpegmeta.exif_segment(fields),
        jpegmeta.com_segment(b"harvest"),
    )
    return b"".join(parts)


SAME_SCAN: list[tuple[str, Callable[[], bytes]]] = [
    ("exif", lambda: _encode(exif=_exif())),
    ("comment", lambda: _encode(comment=b"hello")),
    ("icc profile", lambda: _encode(icc_profile=_icc())),
    ("all three", lambda: _encode(exif=_exif(), comment=b"x", icc_profile=_icc())),
    ("trailing bytes", lambda: _encode() + b"\x00garbage after EOI"),
    ("second image after EOI", lambda: _encode() + _encode(50)),
    ("comment after DQT", lambda: _insert_after(_encode(), 0xDB, jpegmeta.com_segment(b"late"))),
    ("fill bytes before a marker", lambda: _encode().replace(b"\xff\xc0", b"\xff\xff\xff\xc0", 1)),
    ("harvest's stamp", lambda: _stamped(_encode())),
]


@pytest.mark.parametrize(("name", "make"), SAME_SCAN, ids=[n for n, _ in SAME_SCAN])
def test_scan_digest_ignores_metadata(name: str, make: Callable[[], bytes]) -> None:
    plain, other = _encode(), make()
    assert fp.src_sha256(plain) != fp.src_sha256(other)
    assert fp.scan_sha256(other) == fp.scan_sha256(plain) is not None


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("another quality", lambda: _encode(80)),
        ("progressive", lambda: _encode(progressive=True)),
        ("other subsampling", lambda: _encode(subsampling=0)),
        ("re-encoded", lambda: _jpeg_bytes(Image.open(io.BytesIO(_encode())))),
    ],
)
def test_scan_digest_changes_with_the_pixels_coding(name: str, make: Callable[[], bytes]) -> None:
    assert fp.scan_sha256(make()) != fp.scan_sha256(_encode())


def _jpeg_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def test_progressive_scans_are_walked() -> None:
    plain = _encode(progressive=True)
    assert fp.scan_sha256(_encode(progressive=True, exif=_exif())) == fp.scan_sha256(plain)


def test_without_metadata_is_the_same_picture_with_no_metadata() -> None:
    data = _encode(exif=_exif(), comment=b"x", icc_profile=_icc()) + b"tail"
    stripped = fp.without_metadata(data)
    assert stripped is not None
    markers = {s.marker for s in jpegmeta.parse_jpeg(stripped).segments}
    assert not markers & {*range(0xE0, 0xF0), 0xFE}
    assert stripped.endswith(b"\xff\xd9")
    assert fp.scan_sha256(data) == hashlib.sha256(stripped).digest()
    before, after = (np.asarray(Image.open(io.BytesIO(d)).convert("RGB")) for d in (data, stripped))
    assert np.array_equal(before, after)


def test_scan_digest_is_jpegmeta_image_data_behind_soi() -> None:
    """For a file with nothing after EOI: SOI + jpegmeta.image_data, as duplicates.md puts it."""
    data = _encode(exif=_exif())
    expected = hashlib.sha256(b"\xff\xd8" + bytes(jpegmeta.image_data(data))).digest()
    assert fp.scan_sha256(data) == expected


def _segment(marker: int, length: int, payload: bytes = b"") -> bytes:
    return bytes((0xFF, marker)) + length.to_bytes(2, "big") + payload


# SOI, a scan header and two bytes of entropy-coded data (one stuffed 0xFF), EOI.
_MINIMAL = b"\xff\xd8" + _segment(0xDA, 2) + b"\x12\xff\x00\xff\xd9"

HOSTILE: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("one byte", b"\xff"),
    ("SOI only", b"\xff\xd8"),
    ("SOI and a marker byte", b"\xff\xd8\xff"),
    ("PNG", b"\x89PNG\r\n\x1a\n" + bytes(100)),
    ("no scan", b"\xff\xd8\xff\xd9"),
    ("zero length", b"\xff\xd8" + _segment(0xDB, 0) + b"\xff\xd9"),
    ("length one", b"\xff\xd8" + _segment(0xDB, 1) + b"\xff\xd9"),
    ("length past the end", b"\xff\xd8" + _segment(0xDB, 60000, bytes(10))),
    ("SOI inside", b"\xff\xd8\xff\xd8\xff\xd9"),
    ("stuffing as a marker", b"\xff\xd8\xff\x00\xff\xd9"),
    ("not a marker", b"\xff\xd8\x00\x01\x02"),
    ("scan without EOI", b"\xff\xd8" + _segment(0xDA, 2) + b"\x12\x34\xff\x00"),
    ("stuffing as a segment", b"\xff\xd8" + _segment(0x00, 2) + _MINIMAL[2:]),
    ("SOI as a segment", b"\xff\xd8" + _segment(0xD8, 2) + _MINIMAL[2:]),
    ("only fill bytes", b"\xff\xd8" + b"\xff" * 100_000),
    ("many tiny comments", b"\xff\xd8" + _segment(0xFE, 2) * 50_000),
]


@pytest.mark.parametrize(("name", "data"), HOSTILE, ids=[n for n, _ in HOSTILE])
def test_hostile_bytes_give_none(name: str, data: bytes) -> None:
    assert fp.scan_sha256(data) is None
    assert fp.without_metadata(data) is None


def test_the_smallest_walkable_file() -> None:
    """The hostile cases above fail for their fault alone: this skeleton walks."""
    assert fp.without_metadata(_MINIMAL + b"tail") == _MINIMAL


def test_every_truncation_gives_none() -> None:
    data = _encode(exif=_exif())
    assert fp.scan_sha256(data) is not None
    for end in range(len(data) - 1):
        assert fp.scan_sha256(data[:end]) is None, end


def test_mutated_jpegs_never_raise() -> None:
    data = _encode(progressive=True)
    rng = np.random.default_rng(5)
    outcomes = set()
    for _ in range(1500):
        mutated = bytearray(data)
        for pos in rng.integers(0, len(data), rng.integers(1, 4)):
            mutated[pos] = int(rng.integers(0, 256))
        digest = fp.scan_sha256(bytes(mutated))
        assert digest is None or len(digest) == 32
        outcomes.add(digest is None)
    assert outcomes == {True, False}


# --- the record --------------------------------------------------------------------------------


def test_fingerprint_fields() -> None:
    gray, src = thumbs()["coffee"], _encode(exif=_exif())
    record = fp.fingerprint(gray, src=src)
    assert record.version == fp.SIG_VERSION == 1
    assert (record.ph256, record.c80) == (fp.ph256(gray), fp.c80(gray))
    assert (record.dh64, record.quality) == (fp.dh64(gray), fp.quality(gray))
    assert record.src_sha256 == hashlib.sha256(src).digest()
    assert record.scan_sha256 == fp.scan_sha256(src)
    assert (record.gray_w, record.gray_h) == (gray.shape[1], gray.shape[0])
    stored = _stamped(src)
    assert fp.fingerprint(gray, src=src, scan=stored).scan_sha256 == fp.scan_sha256(src)
    assert fp.fingerprint(gray, src=b"GIF89a...").scan_sha256 is None


def test_fingerprint_is_a_frozen_keyword_record() -> None:
    record = fp.fingerprint(thumbs()["camera"], src=b"x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.quality = 0  # type: ignore[misc]
    assert not hasattr(record, "__dict__")
    with pytest.raises(TypeError):
        Fingerprint(1, b"", b"", 0, 0, b"", None, 1, 1)  # type: ignore[call-arg]


@pytest.mark.parametrize("dh64", [0, 1, 2**63 - 1, 2**63, 2**64 - 1])
def test_row_round_trip_through_sqlite(dh64: int) -> None:
    record = dataclasses.replace(fp.fingerprint(thumbs()["rocket"], src=_encode()), dh64=dh64)
    columns = ", ".join(fp.ROW_COLUMNS)
    db = sqlite3.connect(":memory:")
    db.row_factory = sqlite3.Row
    db.execute(f"CREATE TABLE photo_signal (photo_id INTEGER PRIMARY KEY, {columns})")
    marks = ", ".join("?" * len(fp.ROW_COLUMNS))
    db.execute(f"INSERT INTO photo_signal VALUES (7, {marks})", record.to_row())
    row = db.execute(f"SELECT {columns} FROM photo_signal").fetchone()
    assert Fingerprint.from_row(row) == record
    assert db.execute("SELECT typeof(dh64), typeof(ph256) FROM photo_signal").fetchone()[:] == (
        "integer",
        "blob",
    )


def test_row_keeps_a_missing_scan() -> None:
    record = fp.fingerprint(thumbs()["rocket"], src=b"not a jpeg")
    assert Fingerprint.from_row(record.to_row()) == record


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("short row", lambda row: row[:-1]),
        ("short hash", lambda row: (row[0], row[1][:31], *row[2:])),
        ("text for a blob", lambda row: (row[0], row[1].hex(), *row[2:])),
        ("null version", lambda row: (None, *row[1:])),
        ("bool quality", lambda row: (*row[:4], True, *row[5:])),
    ],
)
def test_bad_rows_are_store_errors(
    name: str, change: Callable[[tuple[object, ...]], tuple[object, ...]]
) -> None:
    row = fp.fingerprint(thumbs()["rocket"], src=_encode()).to_row()
    with pytest.raises(StoreError, match="fingerprint"):
        Fingerprint.from_row(change(row))


# --- inputs and the resize ---------------------------------------------------------------------


def test_input_checks() -> None:
    fp.ph256(noise(fp.MIN_SIDE, fp.MIN_SIDE))
    with pytest.raises(ImageError, match="< 16 px"):
        fp.fingerprint(noise(15, 200), src=b"")
    with pytest.raises(ValueError, match="2-D uint8"):
        fp.ph256(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="2-D uint8"):
        fp.ph256(np.zeros((64, 64), np.float32))


def _reference_means(gray: Gray, cells: int, margin: int) -> npt.NDArray[np.float64]:
    """Dense exact area weights (Fractions-free: everything in 1/(10*cells*len) px units)."""

    def weights(length: int) -> npt.NDArray[np.int64]:
        unit = 10 * cells  # one pixel, in units
        lo = margin * length * cells + np.arange(cells)[:, None] * (10 - 2 * margin) * length
        hi = lo + (10 - 2 * margin) * length
        px = np.arange(length)[None, :] * unit
        overlap: npt.NDArray[np.int64] = np.clip(
            np.minimum(hi, px + unit) - np.maximum(lo, px), 0, None
        )
        return overlap

    rows, cols = weights(gray.shape[0]), weights(gray.shape[1])
    sums = rows @ gray.astype(np.int64) @ cols.T
    area = int(rows.sum(axis=1)[0] * cols.sum(axis=1)[0])
    return (sums * 256 // area).astype(np.float64)


@pytest.mark.parametrize("shape", [(64, 64), (128, 96), (97, 131), (40, 30), (16, 333), (375, 500)])
@pytest.mark.parametrize("margin", [0, 1])
def test_area_means_are_exact(shape: tuple[int, int], margin: int) -> None:
    gray = noise(*shape, seed=shape[0])
    assert np.array_equal(fp._area_means(gray, 64, margin), _reference_means(gray, 64, margin))


@pytest.mark.parametrize(
    "grid",
    [
        np.full((64, 64), 255 * 256),  # the largest grid values
        np.outer(fp._DCT[0] > 0, fp._DCT[0] > 0) * 255 * 256,  # aligned with a DCT row's signs
        noise(64, 64).astype(np.int64) * 256,
    ],
)
def test_dct_is_exact(grid: npt.NDArray[np.int64]) -> None:
    """The float64 products equal integer arithmetic: what makes the variants exact."""
    block = fp._DCT @ grid.astype(np.float64) @ fp._DCT.T
    dct = fp._DCT.astype(np.int64)
    assert np.array_equal(block, dct @ grid @ dct.T)


def test_area_means_of_exact_multiples_are_block_means() -> None:
    gray = noise(128, 192)
    blocks = gray.reshape(64, 2, 64, 3).astype(np.int64).sum(axis=(1, 3))
    assert np.array_equal(fp._area_means(gray, 64), blocks * 256 // 6)
    small = noise(32, 32)
    doubled = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1).astype(np.int64) * 256
    assert np.array_equal(fp._area_means(small, 64), doubled)
