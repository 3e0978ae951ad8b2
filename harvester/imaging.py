"""The process stage: bytes in, a finished JPEG (as writev parts) or a typed rejection out.

Pure and thread-safe: simplejpeg and Pillow release the GIL, so the engine runs this in a thread
pool. Cheapest path first: header only for size and bomb checks; a 1/8-scale greyscale decode
to look for a frame; when nothing changes the pixels, the downloaded bytes are kept and only
metadata segments are spliced in. Otherwise one DCT-scaled decode, crop, LANCZOS, one encode.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import simplejpeg
from PIL import Image, ImageOps, UnidentifiedImageError

from harvester import jpegmeta
from harvester.exceptions import ImageError
from harvester.frames import (
    Borders,
    CropBox,
    FrameParams,
    coarse_borders,
    hays_borders,
    luma,
    refine_borders,
)
from harvester.provenance import ImageFacts, Provenance, build_metadata
from harvester.records import PhotoStatus

log = logging.getLogger(__name__)

FrameMethod = Literal["harvest", "hays", "none"]
RGB = npt.NDArray[np.uint8]
_Coarse = tuple[Borders, tuple[int, int]]  # borders and the (h, w) of the array measured on
_PIL_FORMATS = ("JPEG", "PNG", "GIF")


@dataclass(frozen=True, slots=True)
class ImagePolicy:
    """Every processing default in one place."""

    max_side: int = 1024
    min_side: int = 500
    jpeg_quality: int = 90
    strip_frames: bool = True
    frame_method: FrameMethod = "harvest"
    max_pixels: int = 120_000_000  # decompression-bomb limit, checked on the header
    max_bytes: int = 64 * 1024 * 1024
    frame_params: FrameParams = field(default_factory=FrameParams)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A photo that will not be stored: SKIPPED by policy or FAILED as unusable, with why."""

    status: PhotoStatus
    reason: str


@dataclass(frozen=True, slots=True)
class ProcessedImage:
    """A finished file as buffers for os.writev, its dimensions, and what was done to it."""

    parts: tuple[bytes | memoryview, ...]
    width: int
    height: int
    source_width: int
    source_height: int
    crop: CropBox | None
    reencoded: bool
    sha256: str
    record_json: bytes

    @property
    def size(self) -> int:
        """Total bytes of the file."""
        return sum(len(p) for p in self.parts)

    def to_bytes(self) -> bytes:
        """The whole file in one buffer (tests, small tools)."""
        return b"".join(self.parts)


@dataclass(frozen=True, slots=True)
class _Source:
    """The downloaded image as seen through its header, in display orientation."""

    data: bytes
    width: int
    height: int
    jpeg: jpegmeta.JpegInfo | None  # None for PNG/GIF and JPEGs Pillow must decode

    @property
    def orientation(self) -> int:
        return self.jpeg.orientation if self.jpeg else 1


def process_image(data: bytes, prov: Provenance, policy: ImagePolicy) -> ProcessedImage | Rejected:
    """Check, unframe, downscale and stamp one image; never raises for bad input."""
    try:
        return _process(data, prov, policy)
    except ImageError as exc:
        return Rejected(PhotoStatus.FAILED, str(exc))
    except UnidentifiedImageError:
        return Rejected(PhotoStatus.FAILED, "not an image: unrecognised format")
    except Image.DecompressionBombError as exc:
        return Rejected(PhotoStatus.FAILED, f"decompression bomb: {exc}")
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, MemoryError) as exc:
        return Rejected(PhotoStatus.FAILED, f"undecodable image: {type(exc).__name__}: {exc}")
    except Exception as exc:  # a library bug must cost one photo, not a worker
        log.warning("unexpected error processing photo %s", prov.id, exc_info=True)
        return Rejected(PhotoStatus.FAILED, f"internal error: {type(exc).__name__}: {exc}")


def _process(data: bytes, prov: Provenance, policy: ImagePolicy) -> ProcessedImage | Rejected:
    if len(data) > policy.max_bytes:
        raise ImageError(f"too large: {len(data)} bytes > {policy.max_bytes}")
    src = _open(data, policy)
    if (small := _too_small(src.width, src.height, policy, "")) is not None:
        return small
    coarse = _coarse_frame(src, policy)
    box = _estimate_box(src, coarse)
    if box is not None and (small := _too_small(box.width, box.height, policy, " after frame")):
        return small
    if box is None and _keeps_pixels(src, policy):
        return _spliced(src, prov, policy)
    return _reencoded(src, prov, policy, coarse)


def _open(data: bytes, policy: ImagePolicy) -> _Source:
    """Header only: dimensions, orientation, bomb check."""
    if jpegmeta.is_jpeg(data):
        info = jpegmeta.parse_jpeg(data)
        _check_pixels(info.width, info.height, policy)
        width, height = _display_size(info.width, info.height, info.orientation)
        usable = info.is_ycbcr or info.components == 1  # CMYK and friends go through Pillow
        return _Source(data, width, height, info if usable else None)
    image = _pil_open(data)
    _check_pixels(image.width, image.height, policy)
    orientation = image.getexif().get(0x0112, 1)
    width, height = _display_size(image.width, image.height, orientation)
    return _Source(data, width, height, None)


def _pil_open(data: bytes) -> Image.Image:
    """Lazy Pillow open (header only); our own max_pixels check replaces Pillow's warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data), formats=_PIL_FORMATS)


@dataclass(frozen=True, slots=True)
class _Decoded:
    """Upright RGB pixels and the ICC profile to carry over (RGB sources only)."""

    pixels: RGB
    icc: bytes | None


def _decode_other(data: bytes, scale: float = 1.0) -> _Decoded:
    """Pillow decode of PNG, GIF and non-YCbCr JPEG (CMYK, ...) to upright RGB on white."""
    image = _pil_open(data)
    if image.format == "JPEG":
        image.draft("RGB", (math.ceil(image.width * scale), math.ceil(image.height * scale)))
    image.load()
    icc = image.info.get("icc_profile") if image.mode in ("RGB", "RGBA", "P") else None
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    return _Decoded(np.asarray(image.convert("RGB"), dtype=np.uint8), icc or None)


def orient(pixels: npt.NDArray[np.uint8], orientation: int) -> npt.NDArray[np.uint8]:
    """Apply an EXIF orientation (1-8) to an array, as ImageOps.exif_transpose does."""
    if orientation in (5, 6, 7, 8):
        pixels = np.swapaxes(pixels, 0, 1)  # transpose first; then flips as for 1-4
        orientation = {5: 1, 6: 2, 7: 3, 8: 4}[orientation]
    if orientation in (2, 3):
        pixels = pixels[:, ::-1]
    if orientation in (3, 4):
        pixels = pixels[::-1]
    return pixels


def _check_pixels(width: int, height: int, policy: ImagePolicy) -> None:
    if width * height > policy.max_pixels:
        raise ImageError(
            f"decompression bomb: {width}x{height} = {width * height} px > {policy.max_pixels}"
        )


def _display_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    return (height, width) if orientation >= 5 else (width, height)


def _too_small(width: int, height: int, policy: ImagePolicy, when: str) -> Rejected | None:
    if min(width, height) >= policy.min_side:
        return None
    return Rejected(PhotoStatus.SKIPPED, f"too small{when}: {width}x{height} < {policy.min_side}")


def _coarse_frame(src: _Source, policy: ImagePolicy) -> _Coarse | None:
    """Frame decision on a 1/8 greyscale decode (harvest) or a full one (hays)."""
    if not policy.strip_frames or policy.frame_method == "none":
        return None
    full = policy.frame_method == "hays"
    gray = _gray(src, full=full)
    found = hays_borders(gray) if full else coarse_borders(gray, policy.frame_params)
    return (found, (gray.shape[0], gray.shape[1])) if found else None


def _gray(src: _Source, *, full: bool) -> npt.NDArray[np.uint8]:
    """Greyscale decode in display orientation: full size, or about 1/8."""
    if src.jpeg is None:
        gray = luma(_decode_other(src.data).pixels)
        return gray if full else np.asarray(Image.fromarray(gray).reduce(8), dtype=np.uint8)
    info = src.jpeg
    if full:
        pixels = simplejpeg.decode_jpeg(src.data, colorspace="GRAY")
    else:
        pixels = simplejpeg.decode_jpeg(
            src.data,
            colorspace="GRAY",
            min_width=-(-info.width // 8),
            min_height=-(-info.height // 8),
        )
    return orient(pixels[:, :, 0], info.orientation)


def _estimate_box(src: _Source, coarse: _Coarse | None) -> CropBox | None:
    """The content box in source pixels from the coarse detection (refined later)."""
    return _scaled_box(coarse[0], coarse[1], (src.height, src.width)) if coarse else None


def _keeps_pixels(src: _Source, policy: ImagePolicy) -> bool:
    """True when the downloaded JPEG can be stored as is (metadata spliced in)."""
    info = src.jpeg
    return (
        info is not None
        and info.is_ycbcr
        and info.orientation == 1
        and max(src.width, src.height) <= policy.max_side
    )


def _spliced(src: _Source, prov: Provenance, policy: ImagePolicy) -> ProcessedImage:
    assert src.jpeg is not None
    if not (policy.strip_frames and policy.frame_method != "none"):
        _gray(src, full=False)  # detection did not decode: a strict decode catches truncation
    facts = ImageFacts(src.width, src.height, src.width, src.height, None, reencoded=False)
    meta = build_metadata(prov, facts)
    parts = jpegmeta.embed_parts(src.data, src.jpeg, meta.app1, meta.com)
    return _result(parts, facts, None, meta.record_json)


def _reencoded(
    src: _Source, prov: Provenance, policy: ImagePolicy, coarse: _Coarse | None
) -> ProcessedImage | Rejected:
    rough = _estimate_box(src, coarse) or CropBox(0, 0, src.width, src.height)
    decoded = _decode_rgb(src, min(1.0, policy.max_side / max(rough.width, rough.height)))
    pixels = decoded.pixels
    work_box = _working_box(pixels, coarse, policy)
    box = None
    if work_box is not None:
        pixels = pixels[work_box.top : work_box.bottom, work_box.left : work_box.right]
        box = _to_source(work_box, decoded.pixels.shape, src)
        if (small := _too_small(box.width, box.height, policy, " after frame")) is not None:
            return small
    content = box or CropBox(0, 0, src.width, src.height)
    pixels = _resize(pixels, _target(content.width, content.height, policy.max_side))
    encoded = simplejpeg.encode_jpeg(
        np.ascontiguousarray(pixels), quality=policy.jpeg_quality, colorsubsampling="420"
    )
    height, width = pixels.shape[:2]
    crop = box.as_tuple() if box else None
    facts = ImageFacts(src.width, src.height, width, height, crop, reencoded=True)
    meta = build_metadata(prov, facts)
    icc = jpegmeta.icc_segments(decoded.icc) if decoded.icc else []
    parts = jpegmeta.assemble([meta.app1, *icc, meta.com], encoded)
    return _result(parts, facts, box, meta.record_json)


def _decode_rgb(src: _Source, scale: float) -> _Decoded:
    """One RGB decode, DCT-scaled to the smallest size still >= the target."""
    if src.jpeg is None:
        return _decode_other(src.data, scale)
    info = src.jpeg
    pixels = simplejpeg.decode_jpeg(
        src.data,
        colorspace="RGB",
        min_width=math.ceil(info.width * scale),
        min_height=math.ceil(info.height * scale),
    )
    icc = jpegmeta.extract_icc(src.data, info) if info.components == 3 else None
    return _Decoded(orient(pixels, info.orientation), icc)


def _working_box(pixels: RGB, coarse: _Coarse | None, policy: ImagePolicy) -> CropBox | None:
    """The crop in working-image pixels: refined to the exact line (harvest) or scaled (hays)."""
    if coarse is None:
        return None
    borders, shape = coarse
    height, width = pixels.shape[:2]
    if policy.frame_method == "harvest":
        return refine_borders(luma(pixels), borders, shape, policy.frame_params).box(height, width)
    return _scaled_box(borders, shape, (height, width))


def _scaled_box(borders: Borders, shape: tuple[int, int], to: tuple[int, int]) -> CropBox:
    """Borders measured on an array of `shape` as a box on an image of size `to` (h, w)."""
    sy, sx = to[0] / shape[0], to[1] / shape[1]
    return CropBox(
        round(borders.left * sx),
        round(borders.top * sy),
        to[1] - round(borders.right * sx),
        to[0] - round(borders.bottom * sy),
    )


def _to_source(box: CropBox, shape: tuple[int, ...], src: _Source) -> CropBox:
    """Map a working-image box to source (display) pixels."""
    sy, sx = src.height / shape[0], src.width / shape[1]
    return CropBox(
        round(box.left * sx), round(box.top * sy), round(box.right * sx), round(box.bottom * sy)
    )


def _target(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Output (width, height): the content's source size, shrunk so the long side fits."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _resize(pixels: RGB, size: tuple[int, int]) -> RGB:
    if (pixels.shape[1], pixels.shape[0]) == size:
        return pixels
    image = Image.fromarray(np.ascontiguousarray(pixels))
    return np.asarray(image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0))


def _result(
    parts: list[jpegmeta.Buffer], facts: ImageFacts, crop: CropBox | None, record: bytes
) -> ProcessedImage:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return ProcessedImage(
        tuple(parts),
        facts.width,
        facts.height,
        facts.source_width,
        facts.source_height,
        crop,
        facts.reencoded,
        digest.hexdigest(),
        record,
    )
