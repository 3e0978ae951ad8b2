"""JPEG segment parsing and splicing: compressed data untouched, metadata readable everywhere."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import piexif
import pytest
from PIL import Image, ImageOps

from harvester.exceptions import ImageError
from harvester.images import jpegmeta
from harvester.images.decoding import orient
from tests.harness import requires_recordings
from tests.imagesets import FLICKR_JPEG, flickr_jpeg, jpeg, photograph

FIELDS = jpegmeta.ExifFields(
    artist="Zoë (123@N01)",
    copyright="CC BY 2.0 (https://creativecommons.org/licenses/by/2.0/)",
    description="Café 東京",
    user_comment=jpegmeta.user_comment_ascii(json.dumps({"title": "Café 東京"})),
    datetime_original="2024:02:03 10:11:12",
    gps=(-33.8568, 151.2153),
)


def _spliced(data: bytes) -> bytes:
    info = jpegmeta.parse_jpeg(data)
    com = jpegmeta.com_segment('{"a":"é"}'.encode())
    return b"".join(jpegmeta.embed_parts(data, info, jpegmeta.exif_segment(FIELDS), com))


@requires_recordings(FLICKR_JPEG)
def test_parse_real_flickr_jpeg_header() -> None:
    info = jpegmeta.parse_jpeg(flickr_jpeg())
    assert (info.width, info.height, info.components) == (799, 533, 3)
    assert not info.progressive
    assert info.is_ycbcr
    assert info.orientation == 1


@requires_recordings(FLICKR_JPEG)
def test_splice_keeps_compressed_data_and_pixels_identical() -> None:
    data = flickr_jpeg()
    out = _spliced(data)
    assert bytes(jpegmeta.image_data(out)) == bytes(jpegmeta.image_data(data))
    assert np.array_equal(
        np.asarray(Image.open(io.BytesIO(out))), np.asarray(Image.open(io.BytesIO(data)))
    )
    assert Image.open(io.BytesIO(out)).info["comment"] == '{"a":"é"}'.encode()


@requires_recordings(FLICKR_JPEG)
def test_resplicing_replaces_old_exif_and_comment() -> None:
    twice = _spliced(_spliced(flickr_jpeg()))
    info = jpegmeta.parse_jpeg(twice)
    markers = [s.marker for s in info.segments]
    assert markers.count(jpegmeta.APP1) == 1
    assert markers.count(jpegmeta.COM) == 1
    assert jpegmeta.APP2 in markers  # the ICC profile survives


@requires_recordings(FLICKR_JPEG)
def test_piexif_reads_what_we_wrote() -> None:
    exif = piexif.load(_spliced(flickr_jpeg()))
    assert exif["0th"][piexif.ImageIFD.Artist].decode() == FIELDS.artist
    assert exif["0th"][piexif.ImageIFD.ImageDescription].decode() == "Café 東京"
    assert exif["GPS"][piexif.GPSIFD.GPSLatitudeRef] == b"S"
    comment = exif["Exif"][piexif.ExifIFD.UserComment]
    assert json.loads(comment[8:]) == {"title": "Café 東京"}
    assert piexif.ImageIFD.Orientation not in exif["0th"]


@requires_recordings(FLICKR_JPEG)
@pytest.mark.skipif(
    shutil.which("exiftool") is None, reason="exiftool not installed (libimage-exiftool-perl)"
)
def test_exiftool_reads_gps_as_degrees(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(_spliced(flickr_jpeg()))
    out = subprocess.run(
        ["exiftool", "-j", "-n", "-GPSLatitude", "-GPSLongitude", str(path)],
        capture_output=True,
        check=True,
        text=True,
    )
    tags = json.loads(out.stdout)[0]
    assert tags["GPSLatitude"] == pytest.approx(-33.8568, abs=1e-5)
    assert tags["GPSLongitude"] == pytest.approx(151.2153, abs=1e-5)


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"\xff\xd8\xff",
        b"\xff\xd8\xff\xe0\x00\x10JFIF",
        b"GIF89a",
        b"\xff\xd8\xff\xe0\xff\xff" + b"x" * 10,
    ],
)
def test_malformed_headers_raise_image_error(bad: bytes) -> None:
    with pytest.raises(ImageError):
        jpegmeta.parse_jpeg(bad)


def test_oversized_segment_is_refused() -> None:
    with pytest.raises(ImageError, match="exceeds"):
        jpegmeta.com_segment(b"x" * 65534)
    assert len(jpegmeta.com_segment(b"x" * 65533)) == 65537


@requires_recordings(FLICKR_JPEG)
def test_icc_profile_round_trips_through_chunks() -> None:
    profile = bytes(range(256)) * 600  # 153,600 bytes: three APP2 chunks
    segments = jpegmeta.icc_segments(profile)
    assert len(segments) == 3
    data = jpeg(photograph("flickr")[:64, :64].copy())
    info = jpegmeta.parse_jpeg(data)
    spliced = b"".join(
        jpegmeta.embed_parts(data, info, jpegmeta.exif_segment(FIELDS), b"".join(segments))
    )
    assert jpegmeta.extract_icc(spliced, jpegmeta.parse_jpeg(spliced)) == profile


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_matches_pillow_exif_transpose(orientation: int) -> None:
    pixels = np.random.default_rng(orientation).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, "PNG", exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(buffer)))
    assert np.array_equal(orient(pixels, orientation), expected)


@requires_recordings(FLICKR_JPEG)
def test_exif_orientation_is_read_from_the_header() -> None:
    image = Image.fromarray(photograph("flickr"))
    exif = image.getexif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes())
    assert jpegmeta.parse_jpeg(buffer.getvalue()).orientation == 6


@requires_recordings(FLICKR_JPEG)
@pytest.mark.parametrize(("subsampling", "step"), [(2, (2, 2)), (1, (2, 1)), (0, (1, 1))])
def test_chroma_subsampling_is_read_from_the_frame_header(
    subsampling: int, step: tuple[int, int]
) -> None:
    buffer = io.BytesIO()
    Image.fromarray(photograph("flickr")).save(buffer, "JPEG", subsampling=subsampling)
    assert jpegmeta.parse_jpeg(buffer.getvalue()).chroma_step == step
    gray = io.BytesIO()
    Image.fromarray(photograph("flickr")).convert("L").save(gray, "JPEG")
    assert jpegmeta.parse_jpeg(gray.getvalue()).chroma_step == (1, 1)
