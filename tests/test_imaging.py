"""process_image end to end on real photographs: splice, unframe, downscale, reject, stamp."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from harvester.config import ImagePolicy
from harvester.images import jpegmeta
from harvester.images.decoding import fast_dct_scale
from harvester.images.frames import CropBox
from harvester.images.process import ProcessedImage, Rejected, process_image
from harvester.images.provenance import Provenance, strip_query
from harvester.records import PhotoRecord, PhotoStatus
from tests.harness import requires_recordings
from tests.imagesets import FLICKR_JPEG, Pixels, add_frame, flickr_jpeg, jpeg, photograph

RECORD = PhotoRecord(
    id="53574198477",
    owner="12345678@N00",
    secret="fba34d20ca",
    server="65535",
    title="Café ☕ 東京 — Zoë's trip",
    description="<b>Long</b> day",
    owner_name="Zoë",
    tags=("paris", "café"),
    license=4,
    date_taken="2024-02-03 10:11:12",
    latitude=48.8584,
    longitude=-2.2945,
    accuracy=16,
    views=42,
)
PROV = Provenance.from_record(
    RECORD,
    keywords=("paris",),
    size_label="l",
    source_url="https://live.staticflickr.com/65535/53574198477_fba34d20ca_b.jpg?api_key=SECRETKEY",
    harvested_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
)
POLICY = ImagePolicy()


def _ok(data: bytes, policy: ImagePolicy = POLICY) -> ProcessedImage:
    result = process_image(data, PROV, policy)
    assert isinstance(result, ProcessedImage), result
    return result


@requires_recordings(FLICKR_JPEG)
def test_large_without_frame_is_spliced_not_reencoded() -> None:
    data = flickr_jpeg()
    result = _ok(data)
    out = result.to_bytes()
    assert not result.reencoded
    assert result.crop is None
    assert bytes(jpegmeta.image_data(out)) == bytes(jpegmeta.image_data(data))
    assert (result.width, result.height) == (799, 533)


@requires_recordings(FLICKR_JPEG)
def test_record_round_trips_through_com_and_user_comment() -> None:
    result = _ok(flickr_jpeg())
    image = Image.open(io.BytesIO(result.to_bytes()))
    record = json.loads(image.info["comment"])
    assert record == json.loads(result.record_json)
    assert record["title"] == RECORD.title
    assert record["license"]["name"] == "CC BY 2.0"
    assert record["stored"] == {"width": 799, "height": 533}
    assert record["keywords"] == ["paris"]
    assert "SECRETKEY" not in result.to_bytes().decode("latin-1")
    assert record["source_url"] == strip_query(PROV.source_url)


@requires_recordings(FLICKR_JPEG)
@pytest.mark.skipif(
    shutil.which("exiftool") is None, reason="exiftool not installed (libimage-exiftool-perl)"
)
def test_exiftool_reads_every_tag(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(_ok(flickr_jpeg()).to_bytes())
    tags = ["-Artist", "-Copyright", "-ImageDescription", "-DateTimeOriginal", "-UserComment"]
    gps = ["-GPSLatitude", "-GPSLongitude", "-GPSLatitudeRef", "-GPSLongitudeRef", "-Comment"]
    out = subprocess.run(
        ["exiftool", "-j", "-n", *tags, *gps, str(path)], capture_output=True, check=True, text=True
    )
    got = json.loads(out.stdout)[0]
    assert got["Artist"] == "Zoë (12345678@N00)"
    assert got["Copyright"] == "CC BY 2.0 (https://creativecommons.org/licenses/by/2.0/)"
    assert got["ImageDescription"] == RECORD.title
    assert got["DateTimeOriginal"] == "2024:02:03 10:11:12"
    assert got["GPSLatitude"] == pytest.approx(48.8584, abs=1e-5)
    assert got["GPSLongitude"] == pytest.approx(-2.2945, abs=1e-5)
    assert json.loads(got["UserComment"])["title"] == RECORD.title
    assert json.loads(got["Comment"])["tags"] == ["paris", "café"]
    assert json.loads(got["Comment"])["source"] == "flickr"


def _exif_taken(data: bytes) -> str | None:
    exif = Image.open(io.BytesIO(data)).getexif().get_ifd(0x8769)  # the Exif IFD
    value = exif.get(0x9003)  # DateTimeOriginal
    return None if value is None else str(value)


@pytest.mark.parametrize(
    ("unknown", "expected"),
    [(False, "2024:02:03 10:11:12"), (True, None)],
    ids=["known", "unknown"],
)
def test_an_unknown_date_taken_writes_no_date_time_original(
    unknown: bool, expected: str | None
) -> None:
    record = dataclasses.replace(RECORD, date_taken_unknown=unknown, source="nasa")
    prov = Provenance.from_record(
        record,
        keywords=("paris",),
        size_label="l",
        source_url=PROV.source_url,
        harvested_at=datetime(2026, 1, 2, tzinfo=UTC),
    )
    result = process_image(jpeg(photograph("astronaut"), 90), prov, POLICY)
    assert isinstance(result, ProcessedImage), result
    assert _exif_taken(result.to_bytes()) == expected
    saved = json.loads(result.record_json)
    assert saved["date_taken_unknown"] is unknown
    assert saved["date_taken"] == RECORD.date_taken  # Flickr's value, flagged, in the record
    assert saved["source"] == "nasa"
    assert saved["downloaded"] == {"width": result.source_width, "height": result.source_height}


@requires_recordings(FLICKR_JPEG)
def test_framed_image_comes_out_unframed() -> None:
    photo = photograph("flickr")
    framed, box = add_frame(photo, (37, 51, 23, 64), (255, 255, 255))
    result = _ok(jpeg(framed, 90))
    assert result.reencoded
    assert result.crop is not None
    assert all(abs(a - b) <= 2 for a, b in zip(result.crop.as_tuple(), box.as_tuple(), strict=True))
    assert abs(result.width - box.width) <= 2
    assert abs(result.height - box.height) <= 2
    assert json.loads(result.record_json)["crop"] == list(result.crop.as_tuple())
    out = np.asarray(Image.open(io.BytesIO(result.to_bytes())).convert("L"), dtype=np.int16)
    assert np.abs(out[0] - 255).mean() > 20  # the first row is content, not frame


def test_original_over_max_side_is_downscaled_with_long_side_1024() -> None:
    big = np.asarray(
        Image.fromarray(photograph("astronaut")).resize((2400, 1600), Image.Resampling.LANCZOS)
    )
    result = _ok(jpeg(big, 92))
    assert (result.width, result.height) == (1024, 683)
    assert (result.source_width, result.source_height) == (2400, 1600)
    assert Image.open(io.BytesIO(result.to_bytes())).size == (1024, 683)


@requires_recordings(FLICKR_JPEG)
def test_framed_original_is_unframed_and_downscaled() -> None:
    big = np.asarray(Image.fromarray(photograph("flickr")).resize((2000, 1334)))
    framed, box = add_frame(big, (100, 100, 80, 80), (0, 0, 0))
    result = _ok(jpeg(framed, 92))
    assert result.crop is not None
    assert all(abs(a - b) <= 3 for a, b in zip(result.crop.as_tuple(), box.as_tuple(), strict=True))
    assert result.width == 1024


def test_exif_orientation_is_applied_to_pixels_and_not_written_again() -> None:
    image = Image.fromarray(photograph("coffee"))  # 900x600
    exif = image.getexif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92, exif=exif.tobytes())
    result = _ok(buffer.getvalue())
    out = Image.open(io.BytesIO(result.to_bytes()))
    assert out.size == (600, 900)
    assert out.getexif().get(0x0112) in (None, 1)


@requires_recordings(FLICKR_JPEG)
def test_small_image_is_skipped_with_reason() -> None:
    small = jpeg(np.asarray(Image.fromarray(photograph("flickr")).resize((400, 300))))
    result = process_image(small, PROV, POLICY)
    assert result == Rejected(PhotoStatus.SKIPPED, "too small: 400x300 < 500")


@requires_recordings(FLICKR_JPEG)
def test_image_too_small_after_frame_removal_is_skipped() -> None:
    photo = np.asarray(Image.fromarray(photograph("flickr")).resize((600, 450)))
    framed, _ = add_frame(photo, (60, 60, 60, 60), (255, 255, 255))
    result = process_image(jpeg(framed), PROV, POLICY)
    assert isinstance(result, Rejected)
    assert result.status is PhotoStatus.SKIPPED
    assert "after frame" in result.reason


@requires_recordings(FLICKR_JPEG)
@pytest.mark.parametrize(
    ("name", "mangle"),
    [
        ("truncated", lambda d: d[: len(d) // 2]),
        ("corrupt", lambda d: d[:2000] + bytes(range(256)) * 40 + d[12240:]),
        ("non-image", lambda d: b"<html>429 Too Many Requests</html>"),
        ("empty", lambda d: b""),
        ("truncated png", lambda d: _png()[:500]),
    ],
)
def test_bad_input_is_a_failure_not_an_exception(
    name: str, mangle: Callable[[bytes], bytes]
) -> None:
    result = process_image(mangle(flickr_jpeg()), PROV, POLICY)
    assert isinstance(result, Rejected), name
    assert result.status is PhotoStatus.FAILED
    assert result.reason


@requires_recordings(FLICKR_JPEG)
def test_truncated_jpeg_fails_even_without_frame_detection() -> None:
    data = flickr_jpeg()
    result = process_image(data[: len(data) - 5000], PROV, ImagePolicy(strip_frames=False))
    assert isinstance(result, Rejected)
    assert result.status is PhotoStatus.FAILED


@requires_recordings(FLICKR_JPEG)
def test_decompression_bombs_fail_from_the_header() -> None:
    bomb = Image.new("L", (20000, 20000))  # 400 MP of zeros: a few hundred KB as PNG
    buffer = io.BytesIO()
    bomb.save(buffer, "PNG")
    result = process_image(buffer.getvalue(), PROV, POLICY)
    assert isinstance(result, Rejected)
    assert result.status is PhotoStatus.FAILED
    assert "bomb" in result.reason
    jpeg_bomb = process_image(flickr_jpeg(), PROV, ImagePolicy(max_pixels=100_000))
    assert isinstance(jpeg_bomb, Rejected)
    assert "bomb" in jpeg_bomb.reason


def _png(mode: str = "RGBA") -> bytes:
    image = Image.fromarray(photograph("flickr")).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@requires_recordings(FLICKR_JPEG)
@pytest.mark.parametrize("fmt", ["PNG-RGBA", "PNG-P", "GIF", "JPEG-CMYK", "JPEG-L"])
def test_other_formats_become_rgb_jpeg(fmt: str) -> None:
    kind, mode = fmt.split("-") if "-" in fmt else (fmt, "P")
    image = Image.fromarray(photograph("flickr")).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, kind)
    result = _ok(buffer.getvalue())
    out = Image.open(io.BytesIO(result.to_bytes()))
    assert (out.format, out.mode, out.size) == ("JPEG", "RGB", (799, 533))
    assert result.reencoded


@requires_recordings(FLICKR_JPEG)
def test_huge_description_is_truncated_deterministically() -> None:
    long = PhotoRecord(
        **{**{f: getattr(RECORD, f) for f in RECORD.__slots__}, "description": "日本" * 40000}
    )
    prov = Provenance.from_record(
        long, keywords=("x",), size_label="l", source_url="", harvested_at=datetime(2026, 1, 1)
    )
    first = process_image(flickr_jpeg(), prov, POLICY)
    again = process_image(flickr_jpeg(), prov, POLICY)
    assert isinstance(first, ProcessedImage)
    assert isinstance(again, ProcessedImage)
    record = json.loads(first.record_json)
    assert record["truncated"] is True
    assert 0 < len(record["description"]) < 80000
    assert first.sha256 == again.sha256
    assert json.loads(Image.open(io.BytesIO(first.to_bytes())).info["comment"]) == record


@requires_recordings(FLICKR_JPEG)
def test_hays_and_none_methods() -> None:
    framed, box = add_frame(photograph("flickr"), (40, 40, 40, 40), (255, 255, 255))
    data = jpeg(framed)
    assert _ok(data, ImagePolicy(frame_method="none")).crop is None
    hays = _ok(data, ImagePolicy(frame_method="hays")).crop
    assert hays is not None
    assert hays.left == hays.top
    assert hays != box
    assert isinstance(box, CropBox)


def _psnr(a: Pixels, b: Pixels) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float(10 * np.log10(255.0**2 / mse))


def _lanczos_reference(pixels: Pixels, size: tuple[int, int]) -> Pixels:
    """Float LANCZOS per channel, rounded (bench/pipeline_quality.py's reference)."""
    channels = [
        np.asarray(
            Image.fromarray(pixels[:, :, c].astype(np.float32), "F").resize(
                size, Image.Resampling.LANCZOS
            )
        )
        for c in range(3)
    ]
    out: Pixels = np.clip(np.rint(np.stack(channels, axis=-1)), 0, 255).astype(np.uint8)
    return out


def _big_noisy_original() -> tuple[bytes, Pixels]:
    """A 2400x1600 4:2:0 JPEG with sensor-like grain, and its decoded pixels."""
    photo = Image.fromarray(photograph("astronaut")).resize((2400, 1600), Image.Resampling.BICUBIC)
    grain = np.random.default_rng(7).normal(0, 6, (1600, 2400, 1))
    pixels = np.clip(np.asarray(photo, dtype=np.float64) + grain, 0, 255).astype(np.uint8)
    data = jpeg(pixels, 90)
    return data, np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _psnr_of(data: bytes, reference: Pixels, policy: ImagePolicy) -> float:
    out = Image.open(io.BytesIO(_ok(data, policy).to_bytes())).convert("RGB")
    return _psnr(np.asarray(out), reference)


def test_downscale_is_close_to_a_float_lanczos_reference() -> None:
    data, decoded = _big_noisy_original()
    reference = _lanczos_reference(decoded, (1024, 683))
    ours = _psnr_of(data, reference, POLICY)
    assert ours >= 39.5
    # What buys it (ImagePolicy): a decode larger than the output, and the chroma kept.
    assert ours > _psnr_of(data, reference, ImagePolicy(decode_headroom=1.0)) + 0.2
    assert ours > _psnr_of(data, reference, ImagePolicy(keep_chroma=False)) + 1.0


def _components(data: bytes) -> list[tuple[int, int, int, int]]:
    """A JPEG's components as Pillow reads them: (id, h, v, quantisation table)."""
    image = Image.open(io.BytesIO(data))
    assert isinstance(image, JpegImagePlugin.JpegImageFile)
    return image.layer


@requires_recordings(FLICKR_JPEG)
def test_chroma_is_kept_only_when_the_source_has_it_at_the_output_size() -> None:
    data, _ = _big_noisy_original()
    shrunk = _ok(data)  # 4:2:0 source shrunk 2.3x: its chroma is sharper than the output
    assert _components(shrunk.to_bytes())[1][1:3] == (1, 1)
    framed, _ = add_frame(photograph("flickr"), (37, 51, 23, 64), (255, 255, 255))
    cropped = _ok(jpeg(framed, 90))  # cropped only: 4:2:0 in, 4:2:0 out
    assert cropped.reencoded
    assert _components(cropped.to_bytes())[0][1:3] == (2, 2)


@pytest.mark.parametrize(
    ("wanted", "scale"),
    [
        (0.1, 1 / 8),
        (0.125, 1 / 8),
        (0.2, 2 / 8),
        (0.3, 3 / 8),
        (0.45, 4 / 8),
        (0.6, 1.0),
        (1.0, 1.0),
    ],
)
def test_decode_scale_uses_the_fast_dct_scalings(wanted: float, scale: float) -> None:
    assert fast_dct_scale(wanted) == scale  # 5/8-7/8 decode slower than a full decode


def test_png_with_exif_orientation_comes_out_upright() -> None:
    image = Image.fromarray(photograph("astronaut")).resize((1400, 600))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, "PNG", exif=exif.tobytes())
    result = _ok(buffer.getvalue())
    assert (result.width, result.height) == (439, 1024)
    assert Image.open(io.BytesIO(result.to_bytes())).size == (439, 1024)


def test_fingerprint_scan_digest_is_the_stored_files_when_re_encoded() -> None:
    """A kept file's scan digest is its download's; a re-encoded one's, its stored file's (an
    Original's own would be a second pass over megabytes)."""
    from harvester.batch import signal_row
    from harvester.dataset.fingerprint import scan_sha256, src_sha256
    from harvester.store.schema import SIGNAL_COLUMNS

    small = jpeg(photograph("astronaut"), 90)  # 512 px: kept as downloaded
    big = np.asarray(Image.fromarray(photograph("astronaut")).resize((2400, 2400)))
    large = jpeg(big, 90)  # over the policy's side: re-encoded
    for data, reencoded in ((small, False), (large, True)):
        result = process_image(data, PROV, POLICY)
        assert isinstance(result, ProcessedImage), result
        assert result.reencoded is reencoded
        row = signal_row(PROV, data, result)
        assert row is not None
        fields = dict(zip(SIGNAL_COLUMNS, row, strict=True))
        assert fields["src_sha256"] == src_sha256(data)
        stored = scan_sha256(result.to_bytes())
        assert fields["scan_sha256"] == (stored if reencoded else scan_sha256(data))
        assert stored == scan_sha256(data) or reencoded  # a kept file keeps its image data
