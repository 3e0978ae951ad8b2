"""Decoding for the process stage: the header (size, orientation, bomb check), one DCT-scaled
RGB decode in display orientation, and the strict 1/8 greyscale decode that proves a JPEG whole.

simplejpeg (libjpeg-turbo) for YCbCr and greyscale JPEGs; Pillow for PNG, GIF and the rest.
All of it releases the GIL, so the engine's thread pool runs it in parallel.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import simplejpeg
from PIL import Image, ImageOps

from harvester.exceptions import ImageError
from harvester.images import jpegmeta

RGB = npt.NDArray[np.uint8]
_PIL_FORMATS = ("JPEG", "PNG", "GIF")
#: DCT scalings (n/8) libjpeg-turbo does with SIMD code: 5/8-7/8 cost more than a full decode.
_FAST_EIGHTHS = (1, 2, 3, 4, 8)


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """The downloaded image as seen through its header, in display orientation."""

    data: bytes
    width: int
    height: int
    jpeg: jpegmeta.JpegInfo | None  # None for PNG/GIF and JPEGs Pillow must decode
    chroma_step: tuple[int, int] = (1, 1)  # luma samples per chroma sample (x, y)


@dataclass(frozen=True, slots=True)
class Decoded:
    """Upright RGB pixels (a Pillow image) and the ICC profile to carry over."""

    image: Image.Image
    icc: bytes | None
    pixels: RGB | None = None  # the decoder's RGBX array when `image` maps it (no copy)


def open_source(data: bytes, max_pixels: int) -> Source:
    """Header only: dimensions, orientation, bomb check."""
    if jpegmeta.is_jpeg(data):
        info = jpegmeta.parse_jpeg(data)
        check_pixels(info.width, info.height, max_pixels)
        width, height = display_size(info.width, info.height, info.orientation)
        usable = info.is_ycbcr or info.components == 1  # CMYK and friends go through Pillow
        step = info.chroma_step if usable else (1, 1)
        return Source(
            data=data, width=width, height=height, jpeg=info if usable else None, chroma_step=step
        )
    image = pil_open(data)
    check_pixels(image.width, image.height, max_pixels)
    # Stored size: a PNG's Exif may follow its pixels, and Pillow's getexif() would decode
    # them all to find it. Only min(width, height) matters here; upright() fixes the rest.
    return Source(data=data, width=image.width, height=image.height, jpeg=None)


def pil_open(data: bytes) -> Image.Image:
    """Lazy Pillow open (header only); our own max_pixels check replaces Pillow's warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data), formats=_PIL_FORMATS)


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """Refuse a decompression bomb on its header, before any pixel is decoded."""
    if width * height > max_pixels:
        raise ImageError(
            f"decompression bomb: {width}x{height} = {width * height} px > {max_pixels}"
        )


def display_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    """(width, height) as shown: EXIF orientations 5-8 turn the image by 90 degrees."""
    return (height, width) if orientation >= 5 else (width, height)


def fast_dct_scale(wanted: float) -> float:
    """The smallest DCT scaling n/8 >= `wanted` that libjpeg-turbo does fast (1, 2, 3, 4, 8)."""
    return next((n / 8 for n in _FAST_EIGHTHS if n / 8 >= wanted - 1e-9), 1.0)


def decode(src: Source, scale: float, *, resampled: bool) -> Decoded:
    """One RGB decode in display orientation, DCT-scaled to at least `scale`.

    `resampled`: whether the image is larger than the output, so its pixels will be resized
    (decides RGB or RGBX, below).
    """
    if src.jpeg is None:
        return decode_other(src.data, scale)
    info = src.jpeg
    # Pillow wraps an RGBX array without copying it but resamples all four of its bands:
    # RGBX when nothing will be resampled (a framed or turned Large), else RGB.
    fits = not resampled
    pixels = simplejpeg.decode_jpeg(
        src.data,
        colorspace="RGBX" if fits else "RGB",
        min_width=math.ceil(info.width * scale),
        min_height=math.ceil(info.height * scale),
    )
    pixels = np.ascontiguousarray(orient(pixels, info.orientation))
    icc = jpegmeta.extract_icc(src.data, info) if info.components == 3 else None
    if not fits:
        return Decoded(Image.fromarray(pixels), icc)
    height, width = pixels.shape[:2]
    image = Image.frombuffer("RGBX", (width, height), pixels, "raw", "RGBX", 0, 1)
    return Decoded(image, icc, pixels)


def upright(src: Source, image: Image.Image) -> Source:
    """`src` with the display size of its decoded image (a PNG's late Exif may turn it)."""
    if src.jpeg is not None or (image.width > image.height) == (src.width > src.height):
        return src
    return Source(
        data=src.data, width=src.height, height=src.width, jpeg=None, chroma_step=src.chroma_step
    )


def decode_other(data: bytes, scale: float = 1.0) -> Decoded:
    """Pillow decode of PNG, GIF and non-YCbCr JPEG (CMYK, ...) to upright RGB on white."""
    image = pil_open(data)
    if image.format == "JPEG":
        image.draft("RGB", (math.ceil(image.width * scale), math.ceil(image.height * scale)))
    image.load()
    icc = image.info.get("icc_profile") if image.mode in ("RGB", "RGBA", "P") else None
    ImageOps.exif_transpose(image, in_place=True)  # not a copy when there is nothing to turn
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    return Decoded(image if image.mode == "RGB" else image.convert("RGB"), icc or None)


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


def eighth_gray(src: Source) -> npt.NDArray[np.uint8]:
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
