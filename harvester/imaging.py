"""The process stage: bytes in, a finished JPEG (as writev parts) or a typed rejection out.

Pure and thread-safe: simplejpeg and Pillow release the GIL, so the engine runs this in a thread
pool. Every image is decoded once, as small as the work allows (header first, for size and bomb
checks):

- a JPEG that already fits (a Flickr Large) gets a strict 1/8-scale greyscale decode, which
  both proves the file whole and is the frame detector's input; without a frame the downloaded
  bytes are kept and only metadata segments are spliced in;
- anything else (an Original, a PNG, a rotated or framed photo) gets one DCT-scaled RGB decode,
  the frame is looked for on that decode itself, then crop, resample and one encode.

reference/image-costs.md has the per-step costs; bench/README.md (pipeline) how they add up.
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
    refine_borders,
)
from harvester.provenance import ImageFacts, Provenance, build_metadata
from harvester.records import PhotoStatus

log = logging.getLogger(__name__)

FrameMethod = Literal["harvest", "hays", "none"]
RGB = npt.NDArray[np.uint8]
_PIL_FORMATS = ("JPEG", "PNG", "GIF")
#: DCT scalings (n/8) libjpeg-turbo does with SIMD code: 5/8-7/8 cost more than a full decode.
_FAST_EIGHTHS = (1, 2, 3, 4, 8)


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
    # A DCT-scaled decode keeps each 8x8 block's low frequencies only: a blocky low-pass. Left
    # this much larger than the output, the resampling filter smooths the blocks away (1.25
    # over 1.0: +0.7 dB PSNR on the benchmark's Originals for +10 % of their CPU).
    decode_headroom: float = 1.25
    resample: Image.Resampling = Image.Resampling.BICUBIC  # LANCZOS: +0.02 dB for +7 % CPU
    reducing_gap: float = 1.5  # box-reduce first when shrinking by 3x or more (PNG, GIF)
    # Encode downscaled images 4:4:4 when the source has colour detail at the output size
    # (a 4:2:0 JPEG shrunk by 2x or more): +0.9 dB PSNR for +3 % CPU and +16-20 % bytes on
    # those files; decoding larger buys as much for about +45 % CPU. libvips too drops chroma
    # subsampling at Q >= 90.
    keep_chroma: bool = True


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
    chroma_step: tuple[int, int] = (1, 1)  # luma samples per chroma sample (x, y)


@dataclass(frozen=True, slots=True)
class _Decoded:
    """Upright RGB pixels (a Pillow image) and the ICC profile to carry over."""

    image: Image.Image
    icc: bytes | None
    pixels: RGB | None = None  # the decoder's RGBX array when `image` maps it (no copy)


@dataclass(frozen=True, slots=True)
class _Coarse:
    """A frame decided on a ~1/8-scale greyscale image of `shape` (h, w)."""

    borders: Borders
    shape: tuple[int, int]


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
    method = policy.frame_method if policy.strip_frames else "none"
    if method == "hays":
        return _hays(src, prov, policy)
    if _keeps_pixels(src, policy):
        return _fitting(src, prov, policy, detect=method == "harvest")
    decoded = _decode(src, _decode_scale(src, src.width, src.height, policy), policy)
    src = _upright(src, decoded.image)
    coarse = _coarse_on(decoded.image, src, policy) if method == "harvest" else None
    return _reencoded(src, prov, policy, decoded, coarse)


# --- the header -------------------------------------------------------------------------------


def _open(data: bytes, policy: ImagePolicy) -> _Source:
    """Header only: dimensions, orientation, bomb check."""
    if jpegmeta.is_jpeg(data):
        info = jpegmeta.parse_jpeg(data)
        _check_pixels(info.width, info.height, policy)
        width, height = _display_size(info.width, info.height, info.orientation)
        usable = info.is_ycbcr or info.components == 1  # CMYK and friends go through Pillow
        step = info.chroma_step if usable else (1, 1)
        return _Source(data, width, height, info if usable else None, step)
    image = _pil_open(data)
    _check_pixels(image.width, image.height, policy)
    # Stored size: a PNG's Exif may follow its pixels, and Pillow's getexif() would decode
    # them all to find it. Only min(width, height) matters here; _upright() fixes the rest.
    return _Source(data, image.width, image.height, None)


def _pil_open(data: bytes) -> Image.Image:
    """Lazy Pillow open (header only); our own max_pixels check replaces Pillow's warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data), formats=_PIL_FORMATS)


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


def _keeps_pixels(src: _Source, policy: ImagePolicy) -> bool:
    """True when the downloaded JPEG can be stored as is (unless a frame is found)."""
    info = src.jpeg
    return (
        info is not None
        and info.is_ycbcr
        and info.orientation == 1
        and max(src.width, src.height) <= policy.max_side
    )


# --- decoding ---------------------------------------------------------------------------------


def _decode_scale(src: _Source, width: int, height: int, policy: ImagePolicy) -> float:
    """The cheapest decode scale leaving `decode_headroom` x the output size of a
    `width` x `height` (source pixels) content to resample; 1.0 for a full decode."""
    wanted = min(1.0, policy.decode_headroom * policy.max_side / max(width, height))
    if src.jpeg is None:
        return wanted  # Pillow's draft (CMYK JPEGs) picks its own; PNG and GIF decode whole
    return fast_dct_scale(wanted)


def fast_dct_scale(wanted: float) -> float:
    """The smallest DCT scaling n/8 >= `wanted` that libjpeg-turbo does fast (1, 2, 3, 4, 8)."""
    return next((n / 8 for n in _FAST_EIGHTHS if n / 8 >= wanted - 1e-9), 1.0)


def _decode(src: _Source, scale: float, policy: ImagePolicy) -> _Decoded:
    """One RGB decode in display orientation, DCT-scaled to at least `scale`."""
    if src.jpeg is None:
        return _decode_other(src.data, scale)
    info = src.jpeg
    # Pillow wraps an RGBX array without copying it but resamples all four of its bands:
    # RGBX when nothing will be resampled (a framed or turned Large), else RGB.
    fits = max(src.width, src.height) <= policy.max_side
    pixels = simplejpeg.decode_jpeg(
        src.data,
        colorspace="RGBX" if fits else "RGB",
        min_width=math.ceil(info.width * scale),
        min_height=math.ceil(info.height * scale),
    )
    pixels = np.ascontiguousarray(orient(pixels, info.orientation))
    icc = jpegmeta.extract_icc(src.data, info) if info.components == 3 else None
    if not fits:
        return _Decoded(Image.fromarray(pixels), icc)
    height, width = pixels.shape[:2]
    image = Image.frombuffer("RGBX", (width, height), pixels, "raw", "RGBX", 0, 1)
    return _Decoded(image, icc, pixels)


def _upright(src: _Source, image: Image.Image) -> _Source:
    """`src` with the display size of its decoded image (a PNG's late Exif may turn it)."""
    if src.jpeg is not None or (image.width > image.height) == (src.width > src.height):
        return src
    return _Source(src.data, src.height, src.width, None, src.chroma_step)


def _decode_other(data: bytes, scale: float = 1.0) -> _Decoded:
    """Pillow decode of PNG, GIF and non-YCbCr JPEG (CMYK, ...) to upright RGB on white."""
    image = _pil_open(data)
    if image.format == "JPEG":
        image.draft("RGB", (math.ceil(image.width * scale), math.ceil(image.height * scale)))
    image.load()
    icc = image.info.get("icc_profile") if image.mode in ("RGB", "RGBA", "P") else None
    ImageOps.exif_transpose(image, in_place=True)  # not a copy when there is nothing to turn
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    return _Decoded(image if image.mode == "RGB" else image.convert("RGB"), icc or None)


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


def _eighth_gray(src: _Source) -> npt.NDArray[np.uint8]:
    """Strict 1/8-scale greyscale decode of a JPEG: each pixel is one 8x8 block's mean.

    Strict: libjpeg's warnings (truncated or corrupt data) raise, so a file kept as
    downloaded is known to be whole.
    """
    assert src.jpeg is not None
    info = src.jpeg
    pixels: npt.NDArray[np.uint8] = simplejpeg.decode_jpeg(
        src.data,
        colorspace="GRAY",
        min_width=-(-info.width // 8),
        min_height=-(-info.height // 8),
    )
    return pixels[:, :, 0]


# --- frames -----------------------------------------------------------------------------------


def _coarse_on(image: Image.Image, src: _Source, policy: ImagePolicy) -> _Coarse | None:
    """The frame decision on the working image itself, box-reduced to about 1/8 of the source.

    A DCT decode at n/8 reduced by n gives each source 8x8 block's mean, exactly what the
    detector was tuned on (a 1/8 decode), without a second decode of the file.
    """
    factor = max(1, round(8 * image.width / src.width))
    small = np.asarray(image.convert("L").reduce(factor), dtype=np.uint8)
    found = coarse_borders(small, policy.frame_params)
    return _Coarse(found, (small.shape[0], small.shape[1])) if found else None


def _fitting(
    src: _Source, prov: Provenance, policy: ImagePolicy, *, detect: bool
) -> ProcessedImage | Rejected:
    """A JPEG that fits: keep its bytes unless the 1/8 decode shows a frame."""
    gray = _eighth_gray(src)
    found = coarse_borders(gray, policy.frame_params) if detect else None
    if found is None:
        return _spliced(src, prov)
    coarse = _Coarse(found, (gray.shape[0], gray.shape[1]))
    rough = _scaled_box(found, coarse.shape, (src.height, src.width))
    if (small := _too_small(rough.width, rough.height, policy, " after frame")) is not None:
        return small
    return _reencoded(src, prov, policy, _decode(src, 1.0, policy), coarse)


def _hays(src: _Source, prov: Provenance, policy: ImagePolicy) -> ProcessedImage | Rejected:
    """The Berg/Hays baseline: its ring test on a full-resolution greyscale decode."""
    if src.jpeg is None:
        gray = np.asarray(_decode_other(src.data).image.convert("L"), dtype=np.uint8)
    else:
        full = simplejpeg.decode_jpeg(src.data, colorspace="GRAY")
        gray = orient(full[:, :, 0], src.jpeg.orientation)
    found = hays_borders(gray)
    coarse = _Coarse(found, (gray.shape[0], gray.shape[1])) if found else None
    if coarse is None and _keeps_pixels(src, policy):
        return _spliced(src, prov)
    decoded = _decode(src, _decode_scale(src, src.width, src.height, policy), policy)
    return _reencoded(src, prov, policy, decoded, coarse, refine=False)


def _working_box(
    image: Image.Image, coarse: _Coarse, policy: ImagePolicy, *, refine: bool
) -> CropBox:
    """The crop in working-image pixels: refined to the exact line, or the coarse one scaled."""
    if not refine:
        return _scaled_box(coarse.borders, coarse.shape, (image.height, image.width))
    gray = np.asarray(image.convert("L"), dtype=np.uint8)
    fine = refine_borders(gray, coarse.borders, coarse.shape, policy.frame_params)
    return fine.box(image.height, image.width)


def _scaled_box(borders: Borders, shape: tuple[int, int], to: tuple[int, int]) -> CropBox:
    """Borders measured on an array of `shape` as a box on an image of size `to` (h, w)."""
    sy, sx = to[0] / shape[0], to[1] / shape[1]
    return CropBox(
        round(borders.left * sx),
        round(borders.top * sy),
        to[1] - round(borders.right * sx),
        to[0] - round(borders.bottom * sy),
    )


def _rescale(box: CropBox, scale_x: float, scale_y: float) -> CropBox:
    return CropBox(
        round(box.left * scale_x),
        round(box.top * scale_y),
        round(box.right * scale_x),
        round(box.bottom * scale_y),
    )


# --- output -----------------------------------------------------------------------------------


def _spliced(src: _Source, prov: Provenance) -> ProcessedImage:
    assert src.jpeg is not None
    facts = ImageFacts(src.width, src.height, src.width, src.height, None, reencoded=False)
    meta = build_metadata(prov, facts)
    parts = jpegmeta.embed_parts(src.data, src.jpeg, meta.app1, meta.com)
    return _result(parts, facts, None, meta.record_json)


def _reencoded(
    src: _Source,
    prov: Provenance,
    policy: ImagePolicy,
    decoded: _Decoded,
    coarse: _Coarse | None,
    *,
    refine: bool = True,
) -> ProcessedImage | Rejected:
    """Crop the frame (if any), shrink to fit, encode once, stamp."""
    image = decoded.image
    work = CropBox(0, 0, image.width, image.height)
    box = None
    if coarse is not None:
        work = _working_box(image, coarse, policy, refine=refine)
        box = _rescale(work, src.width / image.width, src.height / image.height)
        if (small := _too_small(box.width, box.height, policy, " after frame")) is not None:
            return small
    content = box or CropBox(0, 0, src.width, src.height)
    size = _target(content.width, content.height, policy.max_side)
    if (work.width < size[0] or work.height < size[1]) and image.width < src.width:
        # The frame took more than the decode's headroom: decode again, larger (rare).
        decoded = _decode(src, _decode_scale(src, content.width, content.height, policy), policy)
        image = decoded.image
        work = _rescale(box or content, image.width / src.width, image.height / src.height)
    pixels = _resize(decoded, work, size, policy)
    encoded = simplejpeg.encode_jpeg(
        pixels,
        quality=policy.jpeg_quality,
        colorspace="RGBX" if pixels.shape[2] == 4 else "RGB",
        colorsubsampling=_subsampling(src, content, size, policy),
    )
    crop = box.as_tuple() if box else None
    facts = ImageFacts(src.width, src.height, size[0], size[1], crop, reencoded=True)
    meta = build_metadata(prov, facts)
    icc = jpegmeta.icc_segments(decoded.icc) if decoded.icc else []
    parts = jpegmeta.assemble([meta.app1, *icc, meta.com], encoded)
    return _result(parts, facts, box, meta.record_json)


def _target(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Output (width, height): the content's source size, shrunk so the long side fits."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _subsampling(src: _Source, content: CropBox, size: tuple[int, int], policy: ImagePolicy) -> str:
    """4:4:4 when the source's chroma is at least as sharp as the output needs, else 4:2:0."""
    step_x, step_y = src.chroma_step
    sharp = content.width >= step_x * size[0] and content.height >= step_y * size[1]
    return "444" if policy.keep_chroma and sharp else "420"


def _resize(decoded: _Decoded, box: CropBox, size: tuple[int, int], policy: ImagePolicy) -> RGB:
    """The `box` of the decoded image at `size`, as a contiguous RGB or RGBX array."""
    image = decoded.image
    if (box.width, box.height) != size:
        out = image.resize(
            size, policy.resample, box=box.as_tuple(), reducing_gap=policy.reducing_gap
        )
        return np.asarray(out, dtype=np.uint8)
    if decoded.pixels is not None:
        return np.ascontiguousarray(decoded.pixels[box.top : box.bottom, box.left : box.right])
    whole = box.width == image.width and box.height == image.height
    return np.asarray(image if whole else image.crop(box.as_tuple()), dtype=np.uint8)


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
