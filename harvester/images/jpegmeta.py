"""JPEG marker parsing and metadata splicing: EXIF (piexif) and COM segments without re-encoding.

The compressed image data (DQT/SOF/DHT/SOS ... EOI) is never touched: `embed_parts` returns
zero-copy slices of the input around freshly built APP1/COM segments, ready for `os.writev`.
Existing Exif/XMP APP1 and COM segments are dropped (see `embed_parts`); everything else stays.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import piexif

from harvester.exceptions import ImageError

SOI = b"\xff\xd8"
EOI = b"\xff\xd9"
MAX_PAYLOAD = 65533  # a segment's 2-byte length counts itself: 65535 - 2
EXIF_HEADER = b"Exif\x00\x00"
ICC_HEADER = b"ICC_PROFILE\x00"
_ICC_CHUNK = MAX_PAYLOAD - len(ICC_HEADER) - 2
APP0, APP1, APP2, APP14, COM, SOS = 0xE0, 0xE1, 0xE2, 0xEE, 0xFE, 0xDA
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE})
_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RSTn: no length field

Buffer = bytes | memoryview


@dataclass(frozen=True, slots=True, kw_only=True)
class Segment:
    """One marker segment before the scan: marker byte and [start, end) offsets incl. FFxx."""

    marker: int
    start: int
    end: int

    def payload(self, data: bytes) -> bytes:
        """The bytes after the marker and its length field."""
        return data[self.start + 4 : self.end]


@dataclass(frozen=True, slots=True, kw_only=True)
class JpegInfo:
    """What the header says: dimensions, components, coding, and where each segment lies."""

    width: int
    height: int
    components: int
    sof_marker: int
    segments: tuple[Segment, ...]
    data_start: int  # first segment that is neither APPn nor COM: the image data starts here
    orientation: int  # EXIF Orientation, 1 when absent or unreadable
    adobe_transform: int | None  # APP14 transform flag when present
    chroma_step: tuple[int, int] = (1, 1)  # luma samples per chroma sample (x, y): 4:2:0 is 2, 2

    @property
    def progressive(self) -> bool:
        """True for progressive (SOF2-style) coding."""
        return self.sof_marker in _PROGRESSIVE

    @property
    def is_ycbcr(self) -> bool:
        """True for an ordinary 3-component colour JPEG (not RGB-coded, CMYK or grey)."""
        return self.components == 3 and self.adobe_transform != 0


def is_jpeg(data: bytes) -> bool:
    """True when the bytes start like a JPEG file."""
    return data[:3] == b"\xff\xd8\xff"


def parse_jpeg(data: bytes) -> JpegInfo:
    """Parse the header segments up to SOS; raise ImageError on anything malformed."""
    if not is_jpeg(data):
        raise ImageError("not a JPEG (no SOI marker)")
    segments = _read_segments(data)
    sofs = [s for s in segments if s.marker in _SOF_MARKERS]
    if not sofs:
        raise ImageError("JPEG without a frame header (SOF)")
    sof = sofs[0]
    if sof.end - sof.start < 10:
        raise ImageError("JPEG frame header too short")
    height, width = struct.unpack(">HH", data[sof.start + 5 : sof.start + 9])
    components = data[sof.start + 9]
    if width == 0 or height == 0 or components == 0:
        raise ImageError(f"JPEG with invalid dimensions {width}x{height}x{components}")
    data_start = next(s.start for s in segments if not _is_metadata(s.marker))
    return JpegInfo(
        width=width,
        height=height,
        components=components,
        sof_marker=sof.marker,
        segments=tuple(segments),
        data_start=data_start,
        orientation=_orientation(data, segments),
        adobe_transform=_adobe_transform(data, segments),
        chroma_step=_chroma_step(data[sof.start + 10 : sof.end], components),
    )


def _chroma_step(specs: bytes, components: int) -> tuple[int, int]:
    """Luma samples per chroma sample (x, y) from the SOF component specs: (2, 2) for 4:2:0."""
    if components < 3 or len(specs) < 6:
        return 1, 1
    luma, chroma = specs[1], specs[4]  # sampling factors: high nibble horizontal, low vertical
    return max(1, (luma >> 4) // max(1, chroma >> 4)), max(1, (luma & 15) // max(1, chroma & 15))


def _read_segments(data: bytes) -> list[Segment]:
    """Walk the marker segments from SOI to SOS (inclusive)."""
    segments: list[Segment] = []
    pos, size = 2, len(data)
    while True:
        while pos < size and data[pos] == 0xFF and pos + 1 < size and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 2 > size or data[pos] != 0xFF:
            raise ImageError(f"JPEG marker expected at offset {pos}")
        marker = data[pos + 1]
        if marker in _STANDALONE:
            pos += 2
            continue
        if pos + 4 > size:
            raise ImageError("JPEG truncated inside a segment header")
        end = pos + 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if end > size:
            raise ImageError("JPEG truncated inside a header segment")
        segments.append(Segment(marker=marker, start=pos, end=end))
        if marker == SOS:
            return segments
        pos = end


def _is_metadata(marker: int) -> bool:
    return 0xE0 <= marker <= 0xEF or marker == COM


def _orientation(data: bytes, segments: Sequence[Segment]) -> int:
    """EXIF Orientation from the first Exif APP1 (1 if absent or unreadable)."""
    for seg in segments:
        if seg.marker == APP1 and data[seg.start + 4 : seg.start + 10] == EXIF_HEADER:
            return _tiff_orientation(seg.payload(data)[6:])
    return 1


def _tiff_orientation(tiff: bytes) -> int:
    """Read tag 0x0112 from IFD0 of a TIFF blob; tolerant of garbage (returns 1)."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1
    order = "<" if tiff[:2] == b"II" else ">"
    ifd = struct.unpack(order + "I", tiff[4:8])[0]
    if ifd + 2 > len(tiff):
        return 1
    count = struct.unpack(order + "H", tiff[ifd : ifd + 2])[0]
    for i in range(count):
        entry = ifd + 2 + 12 * i
        if entry + 12 > len(tiff):
            return 1
        tag, _type, _n = struct.unpack(order + "HHI", tiff[entry : entry + 8])
        if tag == 0x0112:
            value = int(struct.unpack(order + "H", tiff[entry + 8 : entry + 10])[0])
            return value if 1 <= value <= 8 else 1
    return 1


def _adobe_transform(data: bytes, segments: Sequence[Segment]) -> int | None:
    for seg in segments:
        payload = data[seg.start + 4 : seg.end]
        if seg.marker == APP14 and payload.startswith(b"Adobe") and len(payload) >= 12:
            return payload[11]
    return None


def image_data(data: bytes, info: JpegInfo | None = None) -> memoryview:
    """The compressed image (tables, frame header, scans, EOI): what splicing must preserve."""
    info = info or parse_jpeg(data)
    return memoryview(data)[info.data_start :]


def segment(marker: int, payload: bytes) -> bytes:
    """A complete marker segment; ImageError if the payload exceeds 65,533 bytes."""
    if len(payload) > MAX_PAYLOAD:
        raise ImageError(f"segment payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def com_segment(text: bytes) -> bytes:
    """A COM segment holding `text` (UTF-8 by convention)."""
    return segment(COM, text)


def extract_icc(data: bytes, info: JpegInfo) -> bytes | None:
    """The ICC profile reassembled from its APP2 chunks, or None."""
    chunks: list[tuple[int, bytes]] = []
    for seg in info.segments:
        payload = seg.payload(data)
        if seg.marker == APP2 and payload.startswith(ICC_HEADER) and len(payload) > 14:
            chunks.append((payload[12], payload[14:]))
    return b"".join(chunk for _, chunk in sorted(chunks)) or None


def icc_segments(profile: bytes) -> list[bytes]:
    """An ICC profile split into APP2 segments (ICC.1 Annex B.4)."""
    pieces = [profile[i : i + _ICC_CHUNK] for i in range(0, len(profile), _ICC_CHUNK)]
    if len(pieces) > 255:
        return []  # cannot be represented; colour falls back to sRGB
    total = len(pieces)
    return [segment(APP2, ICC_HEADER + bytes((n, total)) + p) for n, p in enumerate(pieces, 1)]


def _dropped(seg: Segment) -> bool:
    """Old Exif/XMP (APP1) and comments go: ours replace them, and stale tags would lie."""
    return seg.marker in (APP1, COM)


def embed_parts(data: bytes, info: JpegInfo, app1: bytes, com: bytes) -> list[Buffer]:
    """Buffers for SOI, JFIF APP0, our APP1, other kept APPn, our COM, then the image data.

    The camera's Exif is replaced, not merged: after orientation and crops it would be wrong,
    and it may carry a location the owner chose to hide on Flickr.
    """
    view = memoryview(data)
    head = [s for s in info.segments if s.end <= info.data_start]
    app0 = [view[s.start : s.end] for s in head if s.marker == APP0]
    kept = [view[s.start : s.end] for s in head if s.marker != APP0 and not _dropped(s)]
    return [view[:2], *app0, app1, *kept, com, view[info.data_start :]]


def assemble(extra: Sequence[bytes], encoded: bytes) -> list[Buffer]:
    """Insert metadata segments after SOI/APP0 of a freshly encoded JPEG (ours, no old tags)."""
    info = parse_jpeg(encoded)
    view = memoryview(encoded)
    head = [view[s.start : s.end] for s in info.segments if s.marker == APP0]
    return [view[:2], *head, *extra, view[info.data_start :]]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExifFields:
    """The tags harvest writes; text is stored UTF-8 (readable by exiftool and piexif)."""

    artist: str
    copyright: str
    description: str
    user_comment: bytes  # including its 8-byte character-code prefix
    datetime_original: str | None = None  # "YYYY:MM:DD HH:MM:SS"
    gps: tuple[float, float] | None = None  # latitude, longitude in degrees
    software: str = "harvest"


def user_comment_ascii(text: str) -> bytes:
    """EXIF UserComment bytes with the ASCII character code; text must be ASCII."""
    return b"ASCII\x00\x00\x00" + text.encode("ascii")


def exif_segment(fields: ExifFields) -> bytes:
    """A complete Exif APP1 segment built with piexif.dump (no Orientation: pixels are upright)."""
    zeroth: dict[int, object] = {
        piexif.ImageIFD.Artist: fields.artist.encode(),
        piexif.ImageIFD.Copyright: fields.copyright.encode(),
        piexif.ImageIFD.ImageDescription: fields.description.encode(),
        piexif.ImageIFD.Software: fields.software.encode(),
    }
    exif: dict[int, object] = {piexif.ExifIFD.UserComment: fields.user_comment}
    if fields.datetime_original:
        exif[piexif.ExifIFD.DateTimeOriginal] = fields.datetime_original.encode()
    gps = _gps_ifd(*fields.gps) if fields.gps else {}
    blob: bytes = piexif.dump({"0th": zeroth, "Exif": exif, "GPS": gps})
    return segment(APP1, blob)


def _gps_ifd(lat: float, lon: float) -> dict[int, object]:
    return {
        piexif.GPSIFD.GPSVersionID: (2, 3, 0, 0),
        piexif.GPSIFD.GPSLatitudeRef: b"N" if lat >= 0 else b"S",
        piexif.GPSIFD.GPSLatitude: _dms(abs(lat)),
        piexif.GPSIFD.GPSLongitudeRef: b"E" if lon >= 0 else b"W",
        piexif.GPSIFD.GPSLongitude: _dms(abs(lon)),
    }


def _dms(value: float) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Degrees as EXIF rationals (d, m, s) with s to 1/10000 second."""
    total = round(value * 3600 * 10000)
    degrees, rest = divmod(total, 3600 * 10000)
    minutes, seconds = divmod(rest, 60 * 10000)
    return (degrees, 1), (minutes, 1), (seconds, 10000)
