"""Photo-like pixels: a lazily rendered pool of scenes, cropped, framed and encoded per photo.

A scene is a sky gradient over a horizon, 1/f fractal textures and a few shapes. A photo is a
crop of one scene (chosen by its `look`), tinted and flipped, resized to the requested size,
sprinkled with film grain, then framed. A copy (copies.py) is its source's image at the size
asked for, then edited: turned, mirrored, tinted, darkened, cropped or re-encoded. All of it is a
pure function of (seed, photo), so the same seed gives the same bytes.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import simplejpeg
from PIL import Image, ImageDraw

from harvester.emulator import copies as cp

U8 = npt.NDArray[np.uint8]

SCENES = 96  # distinct base scenes, all kept once rendered (~120 MB)
SCENE_SIDE = 640
JPEG_QUALITY = 88
#: Bumped whenever the same (seed, corpus size) draws other pixels: names the disk cache.
RENDER_VERSION = 2
FRAME_COLORS: tuple[tuple[int, int, int], ...] = (
    (250, 250, 250),
    (8, 8, 8),
    (128, 128, 128),
    (205, 205, 205),
    (48, 48, 48),
    (240, 231, 212),
    (150, 32, 30),
    (22, 32, 84),
)


@dataclass(frozen=True, slots=True)
class RenderSpec:
    """Everything that decides one image's pixels."""

    look: int
    width: int
    height: int
    frame_permille: tuple[int, int, int, int]  # top, right, bottom, left
    frame_color: int
    grain_phase: int  # differs per photo: two renders of one scene are near, not exact, twins


@dataclass(frozen=True, slots=True)
class ImageJob:
    """One image file: a picture (a copy's source's), the copy's edit, and the encoding."""

    base: RenderSpec
    kind: int = cp.NONE  # copies.KINDS
    param: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # copies.py's copy_param
    width: int = 0  # output size (a crop is resized to it; other edits give it by themselves)
    height: int = 0
    fmt: str = "jpg"
    quality: int = JPEG_QUALITY
    base_fmt: str = "jpg"  # recompressed: what the source's file at this size is encoded as


def _fractal(rng: np.random.Generator, side: int, beta: float) -> npt.NDArray[np.float32]:
    fy = np.fft.fftfreq(side)[:, None]
    fx = np.fft.rfftfreq(side)[None, :]
    amp = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / side) ** (beta / 2)
    spec = amp * np.exp(2j * np.pi * rng.random(amp.shape))
    field = np.fft.irfft2(spec, s=(side, side)).astype(np.float32)
    field -= field.mean()
    return np.asarray(field / (np.abs(field).max() + 1e-6), dtype=np.float32)


@functools.lru_cache(maxsize=SCENES)
def scene(seed: int, k: int) -> U8:
    """Base scene k of this seed, SCENE_SIDE square, RGB."""
    rng = np.random.default_rng([seed, k, 0x5CE4E])
    s = SCENE_SIDE
    y = np.linspace(0.0, 1.0, s, dtype=np.float32)[:, None, None]
    horizon = rng.uniform(0.3, 0.65)
    sky_top, sky_low = rng.uniform(20, 120, 3), rng.uniform(150, 250, 3)
    ground = rng.uniform(30, 160, 3)
    sky = sky_top + (sky_low - sky_top) * np.clip(y / horizon, 0, 1)
    img = np.where(y < horizon, sky, ground * (0.7 + 0.6 * (y - horizon)))
    clouds = _fractal(rng, s, 2.4)[..., None]
    texture = _fractal(rng, s, 1.6)[..., None]
    tint = np.stack([_fractal(rng, s, 3.0) for _ in range(3)], axis=-1)
    img = img + np.where(y < horizon, 45 * clouds, 70 * texture) + 25 * tint
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    _shapes(rng, out, horizon)
    arr = np.asarray(out, dtype=np.float32) + 18 * texture
    return np.asarray(np.clip(arr, 0, 255), dtype=np.uint8)


def _shapes(rng: np.random.Generator, img: Image.Image, horizon: float) -> None:
    draw = ImageDraw.Draw(img)
    s = img.width
    base = int(horizon * s)
    for _ in range(int(rng.integers(3, 12))):
        x0 = int(rng.integers(0, s))
        w, h = int(rng.integers(s // 30, s // 6)), int(rng.integers(s // 20, s // 2))
        colour = tuple(int(c) for c in rng.integers(10, 240, 3))
        if rng.random() < 0.6:
            draw.rectangle((x0, base - h, x0 + w, base + 4), fill=colour)
        else:
            draw.ellipse((x0, base - h, x0 + w, base + h // 3), fill=colour)


_GRAIN_SIDE = 1031


@functools.lru_cache(maxsize=1)
def _grain() -> npt.NDArray[np.int16]:
    """Film grain, tiled wide enough that any row of a 6144 px image is one contiguous slice."""
    rng = np.random.default_rng(0x6A1)
    tile = np.round(rng.normal(0.0, 7.0, (_GRAIN_SIDE, _GRAIN_SIDE))).astype(np.int16)
    return np.tile(tile, (1, 8))


def _grain_rows(start: int, count: int, ox: int, w: int) -> npt.NDArray[np.int16]:
    g = _grain()
    rows = [(start + i) % _GRAIN_SIDE for i in (0, count - 1)]
    if rows[0] <= rows[1]:
        return g[rows[0] : rows[1] + 1, ox : ox + w]
    return np.concatenate([g[rows[0] :, ox : ox + w], g[: rows[1] + 1, ox : ox + w]])


def _add_grain(arr: U8, phase: int) -> U8:
    h, w = arr.shape[:2]
    oy, ox = phase % 997, (phase >> 10) % 997
    out = np.empty_like(arr)
    for y0 in range(0, h, 512):  # strips keep the int16 working set small for big originals
        n = min(512, h - y0)
        strip = arr[y0 : y0 + n].astype(np.int16) + _grain_rows(y0 + oy, n, ox, w)[..., None]
        np.clip(strip, 0, 255, out=strip)
        out[y0 : y0 + n] = strip
    return out


def _content(seed: int, look: int, w: int, h: int) -> Image.Image:
    src = scene(seed, look % SCENES)
    s = SCENE_SIDE
    frac = 0.6 + 0.4 * ((look >> 12) % 1000) / 1000
    aspect = w / h
    cw = s * frac if aspect >= 1 else s * frac * aspect
    ch = cw / aspect
    x0 = (s - cw) * ((look >> 22) % 1000) / 1000
    y0 = (s - ch) * ((look >> 32) % 1000) / 1000
    img = Image.fromarray(src).resize(
        (w, h), Image.Resampling.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch)
    )
    if (look >> 42) & 1:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    gains = [0.8 + 0.4 * ((look >> (44 + 5 * i)) % 32) / 31 for i in range(3)]
    lut = [min(255, int(v * gains[c])) for c in range(3) for v in range(256)]
    return img.point(lut)


def frame_box(spec: RenderSpec) -> tuple[int, int, int, int]:
    """Frame widths in pixels (top, right, bottom, left) for the spec's size."""
    t, r, b, left = spec.frame_permille
    w, h = spec.width, spec.height
    return (round(t * h / 1000), round(r * w / 1000), round(b * h / 1000), round(left * w / 1000))


def _paint_frame(arr: U8, spec: RenderSpec) -> None:
    t, r, b, left = frame_box(spec)
    h, w = arr.shape[:2]
    colour = np.array(FRAME_COLORS[spec.frame_color % len(FRAME_COLORS)], np.int16)
    for ys, xs in (
        (slice(0, t), slice(0, w)),
        (slice(h - b, h), slice(0, w)),
        (slice(0, h), slice(0, left)),
        (slice(0, h), slice(w - r, w)),
    ):
        if ys.start == ys.stop or xs.start == xs.stop:
            continue
        noise = _grain()[np.arange(ys.start, ys.stop) % _GRAIN_SIDE, xs] // 3  # slight noise
        arr[ys, xs] = np.clip(colour + noise[..., None], 0, 255).astype(np.uint8)


def render(seed: int, spec: RenderSpec) -> U8:
    """The RGB pixels of one image."""
    arr = np.asarray(_content(seed, spec.look, spec.width, spec.height))
    arr = _add_grain(arr, spec.grain_phase)
    if any(spec.frame_permille):
        _paint_frame(arr, spec)
    return arr


#: Sepia, as image editors apply it (rows give R, G, B from R, G, B).
SEPIA = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])


def edit(arr: U8, job: ImageJob) -> U8:
    """The copy's edit applied to its source's pixels `arr` (a no-op for other kinds)."""
    p = job.param
    if job.kind == cp.ROTATED:
        return np.ascontiguousarray(np.rot90(arr, k=-round(p[0] / 90)))  # clockwise
    if job.kind == cp.FLIPPED:
        return np.ascontiguousarray(arr[::-1] if p[0] else arr[:, ::-1])
    if job.kind == cp.TINTED:
        x = arr.astype(np.float32)
        if p[0] == 0:
            x = (1 - p[1]) * x + p[1] * (x @ SEPIA.T.astype(np.float32))
        else:
            x = x * np.array(p[1:], np.float32)
        return np.asarray(np.clip(np.round(x), 0, 255), np.uint8)
    if job.kind == cp.DARKENED:
        return np.asarray(np.round(arr.astype(np.float32) * p[0]), np.uint8)
    if job.kind == cp.CROPPED:
        return np.asarray(
            Image.fromarray(arr).resize(
                (job.width, job.height), Image.Resampling.BILINEAR, box=crop_box(job.base, p)
            )
        )
    if job.kind == cp.RECOMPRESSED and job.base_fmt == "jpg":
        return np.asarray(simplejpeg.decode_jpeg(encode(arr, "jpg")), np.uint8)
    return arr


def crop_box(spec: RenderSpec, box: tuple[float, ...]) -> tuple[float, float, float, float]:
    """A box given as fractions of the content (inside the frame) in pixels of `spec`'s image."""
    t, r, b, left = frame_box(spec)
    cw, ch = spec.width - left - r, spec.height - t - b
    return (left + box[0] * cw, t + box[1] * ch, left + box[2] * cw, t + box[3] * ch)


def produce(seed: int, job: ImageJob) -> bytes:
    """The encoded bytes of one image file."""
    return encode(edit(render(seed, job.base), job), job.fmt, job.quality)


def encode(arr: U8, fmt: str, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG (q88 unless told, 4:2:0 baseline, as Flickr serves), PNG or GIF bytes."""
    if fmt == "jpg":
        return bytes(
            simplejpeg.encode_jpeg(arr, quality=quality, colorspace="RGB", colorsubsampling="420")
        )
    buf = io.BytesIO()
    img = Image.fromarray(arr)
    if fmt == "png":
        img.save(buf, format="PNG", compress_level=1)
    else:
        img.quantize(colors=256).save(buf, format="GIF")
    return buf.getvalue()
