"""The labelled copy set of the duplicates benchmark, built at run time from real photographs.

Sources (distinct pictures, none containing another): scikit-image's bundled photos, whole for
the small ones and as disjoint 2x2 tiles for the large ones (hubble_deep_field, the central
1000 px of retina, both views of stereo_motorcycle); the emulator's scenes (harvester.emulator);
the recorded Flickr JPEG when the shared fixtures are there ($HARVEST_FIXTURES, else
shared/fixtures beside the checkout or beside its worktrees' folder). Each source is scaled to a
Flickr Large (long side 1024; the Flickr JPEG is kept as downloaded) and stored as a JPEG, then
copied in every kind (`KINDS`). Hard negatives are one image each, never a source: for every tiled
photo the tile centred on its tiles' junction (25 % overlap with each of four sources); for every
emulator scene the same scene's other side (33 % overlap); and similar-looking pictures: the
left and right views of the stereo pair (tile i of one against tile i of the other).

A pair is a duplicate exactly when its two images share a source (a copy of a copy too).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import piexif
from PIL import Image
from skimage import data as skdata

from bench.common import ROOT

Pixels = npt.NDArray[np.uint8]

LARGE = 1024  # long side of a source, as a Flickr Large
SOURCE_QUALITY = 88  # the emulator's (and Flickr's usual) JPEG quality
COPY_QUALITY = 85  # edits other than recompression are saved at this quality
EMULATOR_SCENES = 48
FLICKR_JPEG = Path("flickr") / "cassettes" / "test_download_photo.yml"

#: Whole photos (small ones); `cat` is `chelsea`, and `page` and `text` (scans of print, 2.3 and
#: 2.6:1) are left out: their quarter-size copies are under 16 px tall at the 1/8 decode.
WHOLE = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "moon",
    "coins",
    "brick",
    "grass",
    "gravel",
    "immunohistochemistry",
    "clock",
    "cell",
    "colorwheel",
)

#: The kinds of copy, each (kind, parameter) once per source.
KINDS: tuple[tuple[str, str], ...] = (
    ("identical-bytes", ""),
    ("identical-pixels", "exif"),
    ("identical-pixels", "comment"),
    ("recompressed", "60"),
    ("recompressed", "75"),
    ("recompressed", "90"),
    ("resized", "0.25"),
    ("resized", "0.5"),
    ("resized", "0.75"),
    ("resized", "0.9"),
    ("rotated", "90"),
    ("rotated", "180"),
    ("rotated", "270"),
    ("flipped", "h"),
    ("flipped", "v"),
    ("tinted", "sepia"),
    ("tinted", "sepia0.6"),
    ("darkened", "0.3"),
    ("darkened", "0.45"),
    ("darkened", "0.6"),
    ("cropped", "sym0.02"),
    ("cropped", "sym0.05"),
    ("cropped", "sym0.08"),
    ("cropped", "sym0.10"),
    ("cropped", "asym-a"),
    ("cropped", "asym-b"),
)

SEPIA = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])


@dataclass(frozen=True, slots=True)
class Item:
    """One image file of the set and its truth."""

    id: int
    path: str  # relative to the set's folder
    role: str  # "source", "copy" or "negative"
    source: int  # the source's id (a copy's source; a source's own id; -1 for a negative)
    kind: str  # the copy's kind ("" for sources and negatives)
    param: str  # the copy's exact parameter (crop: "l,t,r,b" fractions cut from each side)
    origin: str  # which photograph it came from
    variant: str = ""  # the copy's entry in KINDS ("sym0.05", "asym-a", "0.25", ...)


@dataclass(frozen=True, slots=True)
class TruthSet:
    """The set: its folder, its items, and the pairs that must not be matched."""

    folder: Path
    items: list[Item]
    hard_negatives: list[tuple[int, int]]  # (negative or look-alike source id, source id)

    def by_id(self) -> dict[int, Item]:
        """Items by id."""
        return {item.id: item for item in self.items}


# --- pictures ---------------------------------------------------------------------------------


def _rgb(pixels: npt.NDArray[np.generic]) -> Pixels:
    arr = np.asarray(pixels)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return np.ascontiguousarray(arr[..., :3])


def _large(pixels: Pixels) -> Pixels:
    """Scaled so its long side is LARGE (up or down), as a Flickr Large."""
    h, w = pixels.shape[:2]
    f = LARGE / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS))


def _tiles(pixels: Pixels) -> tuple[list[Pixels], list[Pixels]]:
    """Disjoint 2x2 tiles (sources) and the tile centred on their junction (a hard negative)."""
    h, w = pixels.shape[:2]
    th, tw = h // 2, w // 2
    tiles = [pixels[y : y + th, x : x + tw] for y in (0, th) for x in (0, tw)]
    centre = pixels[th // 2 : th // 2 + th, tw // 2 : tw // 2 + tw]
    return tiles, [centre]


def _fixture_jpeg() -> bytes | None:
    """The real 799x533 Flickr JPEG of the recorded download, if the fixtures are present."""
    configured = os.environ.get("HARVEST_FIXTURES")
    beside = [ROOT.parent / "shared" / "fixtures", ROOT.parent.parent / "shared" / "fixtures"]
    found = [b / FLICKR_JPEG for b in ([Path(configured)] if configured else beside)]
    path = next((p for p in found if p.is_file()), None)
    if path is None:
        return None
    try:
        import yaml
    except ImportError:
        return None
    cassette = yaml.safe_load(path.read_text())
    body = cassette["interactions"][0]["response"]["body"]["string"]
    return body if isinstance(body, bytes) and body[:2] == b"\xff\xd8" else None


@dataclass(frozen=True, slots=True)
class _Picture:
    origin: str
    pixels: Pixels
    jpeg: bytes | None = None  # kept as is (the real Flickr file)


def other_side(scene: int) -> int:
    """The emulator look showing 60 % of `scene` from its right edge (the look `scene` shows
    60 % from the left): they share 33 % of each picture, and neither holds the other.

    The emulator reads the crop's size as (look >> 12) % 1000 and its left edge as
    (look >> 22) % 1000, in thousandths: the two overlap, so the field is padded to keep the
    size at 60 % (an earlier `999 << 22` read as 99 %: a zoomed-out copy holding the source).
    """
    field = 999 << 10  # x0 = 999 thousandths, as seen from bit 12
    field += -field % 1000  # and (look >> 12) % 1000 == 0: the crop's size stays 60 %
    look = scene | field << 12
    assert (look >> 12) % 1000 == 0, look
    assert (look >> 22) % 1000 == 999, look
    assert look >> 32 == 0, look
    return look


def _pictures(scenes: int) -> tuple[list[_Picture], list[_Picture], list[tuple[int, int]]]:
    """Sources, hard negatives, and look-alike pairs (indexes into the sources)."""
    sources: list[_Picture] = []
    negatives: list[_Picture] = []
    lookalike: list[tuple[int, int]] = []
    for name in WHOLE:
        sources.append(_Picture(name, _large(_rgb(getattr(skdata, name)()))))
    retina = _rgb(skdata.retina())
    c = retina.shape[0] // 2
    left, right, _disparity = skdata.stereo_motorcycle()
    tiled = {
        "hubble_deep_field": _rgb(skdata.hubble_deep_field()),
        "retina": retina[c - 500 : c + 500, c - 500 : c + 500],
        "stereo_left": _rgb(left),
        "stereo_right": _rgb(right),
    }
    first_tile: dict[str, int] = {}
    for name, pixels in tiled.items():
        tiles, centres = _tiles(pixels)
        first_tile[name] = len(sources)
        for k, tile in enumerate(tiles):
            sources.append(_Picture(f"{name}/tile{k}", _large(tile)))
        for centre in centres:
            negatives.append(_Picture(f"{name}/junction", _large(centre)))
    for k in range(4):
        lookalike.append((first_tile["stereo_left"] + k, first_tile["stereo_right"] + k))
    from harvester.emulator.images import RenderSpec, render

    for k in range(scenes):
        # look = scene k, 60 % of the scene from its left edge; the other side: x0 at the right
        # edge, 33 % overlap (see `other_side`).
        for look, role in ((k, "source"), (other_side(k), "negative")):
            spec = RenderSpec(
                look=look,
                width=LARGE,
                height=768,
                frame_permille=(0, 0, 0, 0),
                frame_color=0,
                grain_phase=0,
            )
            pic = _Picture(
                f"emulator/scene{k}" + ("/other-side" if look != k else ""),
                np.asarray(render(7, spec), dtype=np.uint8),
            )
            (sources if role == "source" else negatives).append(pic)
    flickr = _fixture_jpeg()
    if flickr is not None:
        with Image.open(io.BytesIO(flickr)) as image:
            pixels = np.asarray(image.convert("RGB"))
        sources.append(_Picture("flickr/test_download_photo", pixels, flickr))
    return sources, negatives, lookalike


# --- copies -----------------------------------------------------------------------------------


def encode(pixels: Pixels, quality: int) -> bytes:
    """Baseline JPEG, 4:2:0, no metadata."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality, subsampling=2)
    return buf.getvalue()


def _with_segment(jpeg: bytes, marker: int, payload: bytes) -> bytes:
    """`jpeg` with one more metadata segment right after SOI (entropy-coded data unchanged)."""
    segment = bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload
    return jpeg[:2] + segment + jpeg[2:]


def _exif(seed: int) -> bytes:
    zeroth = {piexif.ImageIFD.Make: b"Bench", piexif.ImageIFD.Model: f"copy {seed}".encode()}
    exif = {piexif.ExifIFD.DateTimeOriginal: b"2019:05:04 12:00:00"}
    raw: bytes = piexif.dump({"0th": zeroth, "Exif": exif})
    return raw


def crop_fractions(param: str, rng: random.Random) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) fractions cut: symmetric, or asymmetric up to 10 % a side."""
    if param.startswith("sym"):
        f = float(param[3:])
        return (f, f, f, f)
    sides = [rng.uniform(0.0, 0.10) for _ in range(4)]
    sides[rng.randrange(4)] = rng.uniform(0.07, 0.10)  # at least one side cut well
    sides[rng.randrange(4)] = 0.0  # and one left whole
    return (sides[0], sides[1], sides[2], sides[3])


def _identical_pixels(src_jpeg: bytes, param: str, rng: random.Random) -> bytes:
    if param == "exif":
        return _with_segment(src_jpeg, 0xE1, b"Exif\0\0" + _exif(rng.randrange(1000)))
    return _with_segment(src_jpeg, 0xFE, f"bench copy {rng.random()}".encode())


def _resized(pixels: Pixels, param: str) -> tuple[bytes, str]:
    h, w = pixels.shape[:2]
    f = float(param)
    size = (round(w * f), round(h * f))
    resized = Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS)
    return encode(np.asarray(resized), COPY_QUALITY), f"{size[0] / w:.4f}"


def _recoloured(pixels: Pixels, kind: str, param: str) -> Pixels:
    x = pixels.astype(np.float32)
    if kind == "darkened":
        return np.round(x * float(param)).astype(np.uint8)
    s = 1.0 if param == "sepia" else float(param.removeprefix("sepia"))
    x = (1 - s) * x + s * (x @ SEPIA.T.astype(np.float32))
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _cropped(pixels: Pixels, param: str, rng: random.Random) -> tuple[bytes, str]:
    h, w = pixels.shape[:2]
    fl, ft, fr, fb = crop_fractions(param, rng)
    box = (round(fl * w), round(ft * h), w - round(fr * w), h - round(fb * h))
    cut = pixels[box[1] : box[3], box[0] : box[2]]
    exact = ",".join(f"{v:.4f}" for v in (box[0] / w, box[1] / h, 1 - box[2] / w, 1 - box[3] / h))
    return encode(np.ascontiguousarray(cut), COPY_QUALITY), exact


def make_copy(
    src_jpeg: bytes, pixels: Pixels, kind: str, param: str, rng: random.Random
) -> tuple[bytes, str]:
    """The copy's bytes and its exact parameter (a crop's: l,t,r,b fractions cut)."""
    if kind == "identical-bytes":
        return src_jpeg, param
    if kind == "identical-pixels":
        return _identical_pixels(src_jpeg, param, rng), param
    if kind == "recompressed":
        return encode(pixels, int(param)), param
    if kind == "resized":
        return _resized(pixels, param)
    if kind == "cropped":
        return _cropped(pixels, param, rng)
    if kind == "rotated":
        edited = np.rot90(pixels, k=-int(param) // 90)  # clockwise, as the emulator turns
    elif kind == "flipped":
        edited = pixels[:, ::-1] if param == "h" else pixels[::-1]
    elif kind in ("tinted", "darkened"):
        edited = _recoloured(pixels, kind, param)
    else:
        raise ValueError(f"unknown kind {kind}")
    return encode(np.ascontiguousarray(edited), COPY_QUALITY), param


# --- the set ----------------------------------------------------------------------------------


def build(folder: Path, *, scenes: int = EMULATOR_SCENES, seed: int = 11) -> TruthSet:
    """Write every image of the set as `folder`/img/NNNNN.jpg and the truth as truth.csv."""
    rng = random.Random(seed)
    images = folder / "img"
    images.mkdir(parents=True, exist_ok=True)
    sources, negatives, lookalike = _pictures(scenes)
    items: list[Item] = []
    ids: Iterator[int] = iter(range(1, 10**9))
    source_ids: list[int] = []

    def put(
        data: bytes, role: str, source: int, kind: str, param: str, origin: str, variant: str = ""
    ) -> int:
        i = next(ids)
        rel = f"img/{i:05d}.jpg"
        (folder / rel).write_bytes(data)
        items.append(Item(i, rel, role, source if source else i, kind, param, origin, variant))
        return i

    for pic in sources:
        src_jpeg = pic.jpeg or encode(pic.pixels, SOURCE_QUALITY)
        sid = put(src_jpeg, "source", 0, "", "", pic.origin)
        source_ids.append(sid)
        with Image.open(io.BytesIO(src_jpeg)) as image:
            decoded = np.asarray(image.convert("RGB"))
        for kind, param in KINDS:
            data, exact = make_copy(src_jpeg, decoded, kind, param, rng)
            put(data, "copy", sid, kind, exact, pic.origin, param)
    hard: list[tuple[int, int]] = []
    for pic in negatives:
        nid = put(encode(pic.pixels, SOURCE_QUALITY), "negative", -1, "", "", pic.origin)
        stem = pic.origin.rsplit("/", 1)[0]
        for sid, src in zip(source_ids, sources, strict=True):
            if src.origin.rsplit("/", 1)[0] == stem or src.origin == stem:
                hard.append((nid, sid))
    for x, y in lookalike:
        hard.append((source_ids[x], source_ids[y]))
    with (folder / "truth.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        header = ["id", "path", "role", "source", "kind", "param", "origin", "variant", "sha256"]
        writer.writerow(header)
        for item in items:
            digest = hashlib.sha256((folder / item.path).read_bytes()).hexdigest()
            writer.writerow([*_fields(item), digest])
    return TruthSet(folder, items, hard)


def _fields(item: Item) -> list[object]:
    return [
        item.id,
        item.path,
        item.role,
        item.source,
        item.kind,
        item.param,
        item.origin,
        item.variant,
    ]
