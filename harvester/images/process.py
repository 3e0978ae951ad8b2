"""The process stage: bytes in, a finished JPEG (as writev parts) or a typed rejection out.

Pure and thread-safe: simplejpeg and Pillow release the GIL, so the engine runs this in a thread
pool. Every image is decoded once, as small as the work allows (header first, for size and bomb
checks):

- a JPEG that already fits (a Flickr Large) gets a strict 1/8-scale greyscale decode, which
  both proves the file whole and is the frame detector's input; without a frame the downloaded
  bytes are kept and only metadata segments are spliced in;
- anything else (an Original, a PNG, a rotated or framed photo) gets one DCT-scaled RGB decode,
  the frame is looked for on that decode itself, then crop, resample and one encode.

Decoding itself (header, scaled decode, orientation) is in decoding.py; frame detection in
frames.py. reference/image-costs.md has the per-step costs; bench/README.md (pipeline) how they
add up.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from harvester.config import ImagePolicy
from harvester.exceptions import ImageError
from harvester.images import jpegmeta
from harvester.images.decoding import (
    RGB,
    Decoded,
    Source,
    decode,
    decode_other,
    eighth_gray,
    fast_dct_scale,
    open_source,
    orient,
    upright,
)
from harvester.images.frames import (
    Borders,
    CropBox,
    Gray,
    coarse_borders,
    hays_borders,
    refine_borders,
)
from harvester.images.provenance import ImageFacts, Provenance, build_metadata
from harvester.records import PhotoStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A photo that will not be stored: SKIPPED by policy or FAILED as unusable, with why."""

    status: PhotoStatus
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
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
    # The content (frame stripped, upright) as a ~1/8-scale greyscale array: what frame
    # detection looked at, handed on for the fingerprints (dataset/fingerprint.py).
    thumb: Gray

    @property
    def size(self) -> int:
        """Total bytes of the file."""
        return sum(len(p) for p in self.parts)

    def to_bytes(self) -> bytes:
        """The whole file in one buffer (tests, small tools)."""
        return b"".join(self.parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Coarse:
    """The ~1/8-scale upright greyscale image, and a frame (if any) found on an array of
    `shape` (h, w): the small image itself, or a full-resolution one (the Hays baseline)."""

    small: Gray
    borders: Borders | None
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
    src = open_source(data, policy.max_pixels)
    if (small := _too_small(src.width, src.height, policy, "")) is not None:
        return small
    method = policy.frame_method if policy.strip_frames else "none"
    if method == "hays":
        return _hays(src, prov, policy)
    if _keeps_pixels(src, policy):
        return _fitting(src, prov, policy, detect=method == "harvest")
    decoded = _decode_for(src, _decode_scale(src, src.width, src.height, policy), policy)
    src = upright(src, decoded.image)
    coarse = _coarse_on(decoded.image, src, policy, detect=method == "harvest")
    return _reencoded(src, prov, policy, decoded, coarse)


# --- policy ----------------------------------------------------------------------------------


def _too_small(width: int, height: int, policy: ImagePolicy, when: str) -> Rejected | None:
    if min(width, height) >= policy.min_side:
        return None
    return Rejected(PhotoStatus.SKIPPED, f"too small{when}: {width}x{height} < {policy.min_side}")


def _keeps_pixels(src: Source, policy: ImagePolicy) -> bool:
    """True when the downloaded JPEG can be stored as is (unless a frame is found)."""
    info = src.jpeg
    return (
        info is not None
        and info.is_ycbcr
        and info.orientation == 1
        and max(src.width, src.height) <= policy.max_side
    )


def _decode_scale(src: Source, width: int, height: int, policy: ImagePolicy) -> float:
    """The cheapest decode scale leaving `decode_headroom` x the output size of a
    `width` x `height` (source pixels) content to resample; 1.0 for a full decode."""
    wanted = min(1.0, policy.decode_headroom * policy.max_side / max(width, height))
    if src.jpeg is None:
        return wanted  # Pillow's draft (CMYK JPEGs) picks its own; PNG and GIF decode whole
    return fast_dct_scale(wanted)


def _decode_for(src: Source, scale: float, policy: ImagePolicy) -> Decoded:
    """decode() at `scale`, RGBX (no copy) when the result will not be resampled."""
    return decode(src, scale, resampled=max(src.width, src.height) > policy.max_side)


# --- frames -----------------------------------------------------------------------------------


def _coarse_on(image: Image.Image, src: Source, policy: ImagePolicy, *, detect: bool) -> _Coarse:
    """The frame decision on the working image itself, box-reduced to about 1/8 of the source.

    A DCT decode at n/8 reduced by n gives each source 8x8 block's mean, exactly what the
    detector was tuned on (a 1/8 decode), without a second decode of the file.
    """
    small = _small_of(image, src)
    found = coarse_borders(small, policy.frame_params) if detect else None
    return _Coarse(small=small, borders=found, shape=(small.shape[0], small.shape[1]))


def _small_of(image: Image.Image, src: Source) -> Gray:
    """The working image box-reduced to about 1/8 of the source, in grey."""
    factor = max(1, round(8 * image.width / src.width))
    return np.asarray(image.convert("L").reduce(factor), dtype=np.uint8)


def _fitting(
    src: Source, prov: Provenance, policy: ImagePolicy, *, detect: bool
) -> ProcessedImage | Rejected:
    """A JPEG that fits: keep its bytes unless the 1/8 decode shows a frame."""
    gray = eighth_gray(src)
    found = coarse_borders(gray, policy.frame_params) if detect else None
    if found is None:
        return _spliced(src, prov, gray)
    coarse = _Coarse(small=gray, borders=found, shape=(gray.shape[0], gray.shape[1]))
    rough = _scaled_box(found, coarse.shape, (src.height, src.width))
    if (small := _too_small(rough.width, rough.height, policy, " after frame")) is not None:
        return small
    return _reencoded(src, prov, policy, _decode_for(src, 1.0, policy), coarse)


def _hays(src: Source, prov: Provenance, policy: ImagePolicy) -> ProcessedImage | Rejected:
    """The Berg/Hays baseline: its ring test on a full-resolution greyscale decode."""
    if src.jpeg is None:
        gray = np.asarray(decode_other(src.data).image.convert("L"), dtype=np.uint8)
    else:
        full = simplejpeg.decode_jpeg(src.data, colorspace="GRAY")
        gray = orient(full[:, :, 0], src.jpeg.orientation)
    found = hays_borders(gray)
    if found is None and _keeps_pixels(src, policy):
        return _spliced(src, prov, eighth_gray(src))
    decoded = _decode_for(src, _decode_scale(src, src.width, src.height, policy), policy)
    small = _small_of(decoded.image, upright(src, decoded.image))
    coarse = _Coarse(small=small, borders=found, shape=(gray.shape[0], gray.shape[1]))
    return _reencoded(src, prov, policy, decoded, coarse, refine=False)


def _working_box(
    image: Image.Image,
    borders: Borders,
    shape: tuple[int, int],
    policy: ImagePolicy,
    *,
    refine: bool,
) -> CropBox:
    """The crop in working-image pixels: refined to the exact line, or the coarse one scaled."""
    if not refine:
        return _scaled_box(borders, shape, (image.height, image.width))
    gray = np.asarray(image.convert("L"), dtype=np.uint8)
    fine = refine_borders(gray, borders, shape, policy.frame_params)
    return fine.box(image.height, image.width)


def _scaled_box(borders: Borders, shape: tuple[int, int], to: tuple[int, int]) -> CropBox:
    """Borders measured on an array of `shape` as a box on an image of size `to` (h, w)."""
    sy, sx = to[0] / shape[0], to[1] / shape[1]
    return CropBox(
        left=round(borders.left * sx),
        top=round(borders.top * sy),
        right=to[1] - round(borders.right * sx),
        bottom=to[0] - round(borders.bottom * sy),
    )


def _rescale(box: CropBox, scale_x: float, scale_y: float) -> CropBox:
    return CropBox(
        left=round(box.left * scale_x),
        top=round(box.top * scale_y),
        right=round(box.right * scale_x),
        bottom=round(box.bottom * scale_y),
    )


# --- output -----------------------------------------------------------------------------------


def _spliced(src: Source, prov: Provenance, thumb: Gray) -> ProcessedImage:
    assert src.jpeg is not None
    facts = ImageFacts(
        source_width=src.width,
        source_height=src.height,
        width=src.width,
        height=src.height,
        crop=None,
        reencoded=False,
    )
    meta = build_metadata(prov, facts)
    parts = jpegmeta.embed_parts(src.data, src.jpeg, meta.app1, meta.com)
    return _result(parts, facts, None, meta.record_json, thumb)


def _reencoded(
    src: Source,
    prov: Provenance,
    policy: ImagePolicy,
    decoded: Decoded,
    coarse: _Coarse,
    *,
    refine: bool = True,
) -> ProcessedImage | Rejected:
    """Crop the frame (if any), shrink to fit, encode once, stamp."""
    image = decoded.image
    work = CropBox(left=0, top=0, right=image.width, bottom=image.height)
    box = None
    if coarse.borders is not None:
        work = _working_box(image, coarse.borders, coarse.shape, policy, refine=refine)
        box = _rescale(work, src.width / image.width, src.height / image.height)
        if (small := _too_small(box.width, box.height, policy, " after frame")) is not None:
            return small
    content = box or CropBox(left=0, top=0, right=src.width, bottom=src.height)
    size = output_size(content.width, content.height, policy.max_side)
    if (work.width < size[0] or work.height < size[1]) and image.width < src.width:
        # The frame took more than the decode's headroom: decode again, larger (rare).
        decoded = _decode_for(
            src, _decode_scale(src, content.width, content.height, policy), policy
        )
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
    facts = ImageFacts(
        source_width=src.width,
        source_height=src.height,
        width=size[0],
        height=size[1],
        crop=crop,
        reencoded=True,
    )
    meta = build_metadata(prov, facts)
    icc = jpegmeta.icc_segments(decoded.icc) if decoded.icc else []
    parts = jpegmeta.assemble([meta.app1, *icc, meta.com], encoded)
    return _result(parts, facts, box, meta.record_json, _thumb(coarse.small, content, src))


def _thumb(small: Gray, content: CropBox, src: Source) -> Gray:
    """The content box's part of the ~1/8-scale image (`small` covers the whole source)."""
    sy, sx = small.shape[0] / src.height, small.shape[1] / src.width
    top, bottom = round(content.top * sy), max(round(content.bottom * sy), 1)
    left, right = round(content.left * sx), max(round(content.right * sx), 1)
    return small[top:bottom, left:right]


def output_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Output (width, height): the content's source size, shrunk so the long side fits."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _subsampling(src: Source, content: CropBox, size: tuple[int, int], policy: ImagePolicy) -> str:
    """4:4:4 when the source's chroma is at least as sharp as the output needs, else 4:2:0."""
    step_x, step_y = src.chroma_step
    sharp = content.width >= step_x * size[0] and content.height >= step_y * size[1]
    return "444" if policy.keep_chroma and sharp else "420"


def _resize(decoded: Decoded, box: CropBox, size: tuple[int, int], policy: ImagePolicy) -> RGB:
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
    parts: list[jpegmeta.Buffer],
    facts: ImageFacts,
    crop: CropBox | None,
    record: bytes,
    thumb: Gray,
) -> ProcessedImage:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return ProcessedImage(
        parts=tuple(parts),
        width=facts.width,
        height=facts.height,
        source_width=facts.source_width,
        source_height=facts.source_height,
        crop=crop,
        reencoded=facts.reencoded,
        sha256=digest.hexdigest(),
        record_json=record,
        thumb=thumb,
    )
