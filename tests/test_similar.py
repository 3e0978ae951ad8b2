"""`harvest similar OUT IMAGE`: a harvest of the emulator (keypoint signatures stored by `harvest
dupes --crops on`), queried with its own photos changed every way a collection's copy is —
re-encoded, resized, turned, mirrored, tinted, cropped off-centre, photographed at an angle and
off a screen — each must come back at rank 1 with the right kind; plus the brute-force ranking
and the keypoint votes on their own, the JSON, refresh, and every bad input.
"""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageFilter, ImageOps

from harvester.config import ImagePolicy
from harvester.dataset import keypoints
from harvester.dataset.fingerprint import dihedral_many, hamming_many
from harvester.dataset.nearest import nearest, packed
from harvester.exceptions import ConfigError, ImageError
from harvester.exit_codes import EXIT_OK, EXIT_USAGE
from harvester.similar import MatchKind, SimilarIndex
from tests.harness import ThreadedEmulator, harvest, harvest_keywords, threaded_emulator
from tests.onnx_models import conv_model

SEED, PHOTOS = 3, 4000
KEYWORDS = ("nature", "sky", "london")

# --- the pure parts ----------------------------------------------------------------------------


@pytest.mark.parametrize(("rows", "queries", "n"), [(1, 1, 1), (100, 3, 7), (70_000, 16, 40)])
def test_nearest_is_the_brute_force_ranking(rows: int, queries: int, n: int) -> None:
    rng = np.random.default_rng(rows)
    codes = rng.integers(0, 256, (rows, 32), dtype=np.uint8)
    q = rng.integers(0, 256, (queries, 32), dtype=np.uint8)
    q[0] = codes[rows // 2] ^ np.eye(32, dtype=np.uint8)[0]  # one bit from a stored code
    found = nearest(packed(codes), packed(q), n, workers=2)
    every = np.stack([hamming_many(codes, x) for x in q])  # (queries, rows)
    best, which = every.min(axis=0), every.argmin(axis=0)
    expected = sorted(range(rows), key=lambda r: (best[r], r))[: min(n, rows)]
    assert found.rows.tolist() == expected
    assert found.distances.tolist() == best[expected].tolist()
    assert found.queries.tolist() == which[expected].tolist()
    assert found.rows[0] == rows // 2
    assert found.distances[0] == 1


def test_nearest_of_nothing_is_empty() -> None:
    codes = np.zeros((5, 32), np.uint8)
    assert len(nearest(packed(codes), packed(np.zeros((0, 32), np.uint8)), 3)) == 0
    assert len(nearest(packed(codes[:0]), packed(codes[:1]), 3)) == 0
    with pytest.raises(ValueError, match=r"\(N, 32\)"):
        packed(np.zeros((3, 16), np.uint8))


def _noisy(codes: np.ndarray, bits: int, rng: np.random.Generator) -> np.ndarray:
    out = codes.copy()
    for row in out:
        for bit in rng.choice(256, bits, replace=False):
            row[bit // 8] ^= np.uint8(1 << (bit % 8))
    return out


def test_votes_find_the_photo_a_few_noisy_descriptors_come_from() -> None:
    rng = np.random.default_rng(5)
    photos = [rng.integers(0, 256, (64, 32), dtype=np.uint8) for _ in range(300)]
    chunks = [keypoints.stacked([(row, d) for row, d in enumerate(photos)])]
    index = keypoints.VoteIndex(chunks, tables=4)
    assert (index.photos, index.descriptors) == (300, 300 * 64)
    assert index.memory_bytes == 4 * 300 * 64 * 8
    # A third of photo 17's descriptors, each 12 bits off, among unrelated ones.
    query = np.concatenate([_noisy(photos[17][:20], 12, rng), rng.integers(0, 256, (200, 32))])
    votes = index.votes(query.astype(np.uint8), 5, min_votes=3)
    assert votes[0][0] == 17
    assert votes[0][1] >= 5
    assert all(count < 3 for row, count in index.votes(query.astype(np.uint8), 5, min_votes=1)[1:])
    assert index.votes(np.empty((0, 32), np.uint8), 5) == []


def test_votes_skip_buckets_of_repeated_texture() -> None:
    flat = np.zeros((keypoints.MAX_BUCKET + 1, 32), np.uint8)  # one key, every table
    index = keypoints.VoteIndex([keypoints.stacked([(0, flat[:100]), (1, flat[100:])])], tables=2)
    assert index.votes(flat[:10], 5, min_votes=1) == []
    with pytest.raises(ValueError, match="tables"):
        keypoints.VoteIndex([], tables=0)


# --- the harvest -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emu() -> Iterator[ThreadedEmulator]:
    with threaded_emulator(photos=PHOTOS, seed=SEED, profile="ideal") as running:
        yield running


@pytest.fixture(scope="module")
def plain(emu: ThreadedEmulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A harvest as `harvest run` leaves it: fingerprints, no keypoint signatures."""
    return harvest_keywords(emu, tmp_path_factory.mktemp("similar"), KEYWORDS)


@pytest.fixture(scope="module")
def out(plain: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same harvest after `harvest dupes --crops on` stored its keypoint signatures."""
    keyed = tmp_path_factory.mktemp("keyed") / "out"
    shutil.copytree(plain, keyed)
    assert harvest("dupes", keyed, "--crops", "on") == EXIT_OK
    return keyed


@pytest.fixture(scope="module")
def index(out: Path) -> SimilarIndex:
    return SimilarIndex.load(out)


def _db(out: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(out / "harvest.sqlite") as db:
        return db.execute(sql).fetchall()


@pytest.fixture(scope="module")
def lonely(out: Path) -> list[tuple[int, Path, float]]:
    """(photo id, file) of photos with no copy in the harvest and no hash near theirs in any
    turn: whatever comes back for a copy of one of them must be that photo."""
    rows = _db(
        out,
        "SELECT s.photo_id, p.path, s.ph256, 1.0 * p.width / s.content_w"
        " FROM photo_signal s JOIN photos p ON p.id = s.photo_id"
        " WHERE p.status = 'done' AND s.quality >= 50 AND s.photo_id NOT IN"
        " (SELECT a FROM dup_pair UNION SELECT b FROM dup_pair) ORDER BY s.photo_id",
    )
    codes = np.frombuffer(b"".join(bytes(r[2]) for r in rows), np.uint8).reshape(-1, 32)
    turns = dihedral_many(codes)
    chosen = []
    for i, (photo_id, path, _code, stored) in enumerate(rows):
        others = min(
            int(hamming_many(np.delete(turns[:, g], i, axis=0), codes[i]).min()) for g in range(8)
        )
        if others >= 64 and hamming_many(turns[i, 1:], codes[i]).min() >= 40:
            chosen.append((int(photo_id), out / str(path), float(stored)))
    assert len(chosen) >= 12, f"only {len(chosen)} lonely photos"
    return chosen


def _rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def _jpeg(image: Image.Image, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _warp(image: Image.Image, corners: list[tuple[float, float]], fill: int) -> Image.Image:
    """The picture as a plane seen at an angle: its corners moved to `corners` (fractions)."""
    w, h = image.size
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    dst = np.array([[x * w, y * h] for x, y in corners], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    pixels = cv2.warpPerspective(np.asarray(image), matrix, (w, h), borderValue=(fill,) * 3)
    return Image.fromarray(pixels)


def _off_a_screen(image: Image.Image) -> Image.Image:
    """A phone's photo of the picture on a monitor: at an angle, in a dark bezel, soft,
    brighter mid-tones, a blue cast, a scan-line pattern, and smaller."""
    warped = _warp(image, [(0.08, 0.1), (0.93, 0.04), (0.97, 0.92), (0.05, 0.96)], 18)
    soft = warped.filter(ImageFilter.GaussianBlur(1.2))
    pixels = 255 * (np.asarray(soft, np.float64) / 255) ** 0.8
    pixels *= np.array([0.92, 0.97, 1.08])
    pixels[::3] *= 0.93  # the screen's rows
    out = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return out.resize((out.width * 3 // 4, out.height * 3 // 4))


def _crop(image: Image.Image) -> Image.Image:
    w, h = image.size
    return image.crop((int(0.07 * w), int(0.02 * h), int(0.97 * w), int(0.88 * h)))


def _scale(detail: str) -> float:
    """The query's size over the photo's as downloaded (a stored file may be a shrunk Original)."""
    if detail == "recompressed":
        return 1.0
    return float(detail.split()[1]) if detail.startswith("resized ") else 0.0


def _sized(times: float) -> Callable[[str, float], bool]:
    return lambda detail, stored: abs(_scale(detail) - times * stored) < 0.01


def _says(text: str) -> Callable[[str, float], bool]:
    return lambda detail, _stored: detail == text


def _anything(_detail: str, _stored: float) -> bool:
    return True


#: name → (make the query from the stored file's pixels, kinds allowed at rank 1, what the detail
#: must say given the stored file's size over the download's)
Copy = tuple[Callable[[Image.Image], bytes], set[MatchKind], Callable[[str, float], bool]]
COPIES: dict[str, Copy] = {
    "recompressed": (lambda im: _jpeg(im, 60), {MatchKind.SAME}, _sized(1.0)),
    "half size": (
        lambda im: _jpeg(im.resize((im.width // 2, im.height // 2))),
        {MatchKind.SAME},
        _sized(0.5),
    ),
    # PIL turns counter-clockwise; harvest reports clockwise angles, as `harvest dupes` does.
    "turned": (
        lambda im: _jpeg(im.rotate(90, expand=True)),
        {MatchKind.SAME},
        _says("rotated 270"),
    ),
    "mirrored": (lambda im: _jpeg(ImageOps.mirror(im)), {MatchKind.SAME}, _says("flipped h")),
    "tinted": (
        lambda im: _jpeg(ImageOps.colorize(ImageOps.grayscale(im), "#3b2a14", "#f5e6c8")),
        {MatchKind.SAME, MatchKind.TRANSFORMED},
        _anything,
    ),
    "cropped off-centre": (lambda im: _jpeg(_crop(im)), {MatchKind.TRANSFORMED}, _says("cropped")),
    "at an angle": (
        lambda im: _jpeg(_warp(im, [(0.1, 0.05), (0.85, 0.12), (0.95, 0.9), (0.02, 0.97)], 40)),
        {MatchKind.TRANSFORMED},
        _says("perspective"),
    ),
    "off a screen": (lambda im: _jpeg(_off_a_screen(im), 75), {MatchKind.TRANSFORMED}, _anything),
}


@pytest.mark.parametrize("name", list(COPIES))
def test_each_kind_of_copy_finds_its_photo_at_rank_1(
    name: str, index: SimilarIndex, lonely: list[tuple[int, Path, float]]
) -> None:
    make, kinds, detail = COPIES[name]
    misses = []
    for photo_id, path, stored in lonely[:4]:
        result = index.search(make(_rgb(path)), k=5)
        top = result.hits[0]
        if (top.photo_id, top.kind in kinds, detail(top.detail, stored)) != (
            photo_id,
            True,
            True,
        ):
            misses.append((photo_id, [(h.photo_id, h.kind.value, h.detail) for h in result.hits]))
    assert not misses, f"{name}: {misses}"


def test_the_stored_file_itself_is_identical_bytes(
    index: SimilarIndex, lonely: list[tuple[int, Path, float]], out: Path
) -> None:
    photo_id, path, _stored = lonely[0]
    by_path, by_bytes = index.search(path, k=3), index.search(path.read_bytes(), k=3)
    top = by_path.hits[0]
    assert (top.photo_id, top.kind, top.detail, top.score) == (
        photo_id,
        MatchKind.SAME,
        "identical-pixels",  # the file holds harvest's metadata: the download's bytes differ
        1.0,
    )
    assert [h.as_json() for h in by_path.hits] == [h.as_json() for h in by_bytes.hits]
    record = _db(
        out, f"SELECT json_extract(record, '$.title'), source FROM photos WHERE id = {photo_id}"
    )
    assert (top.title, top.source) == record[0]
    assert top.url.endswith(f"/{photo_id}/")
    assert top.url.startswith("https://www.flickr.com/photos/")
    assert top.license
    assert top.path == str(path.relative_to(out))
    ranks = [h.rank for h in by_path.hits]
    assert ranks == list(range(1, len(ranks) + 1))
    assert [h.score for h in by_path.hits] == sorted((h.score for h in by_path.hits), reverse=True)


def test_an_unrelated_picture_is_only_a_look_alike(index: SimilarIndex) -> None:
    for name in ("astronaut", "coffee", "rocket"):
        result = index.search(_jpeg(Image.fromarray(getattr(skimage.data, name)())), k=10)
        assert len(result.hits) == 10
        assert {h.kind for h in result.hits} == {MatchKind.LOOKS_ALIKE}, name
        assert all(0 <= h.score <= 0.5 for h in result.hits)


def test_without_keypoint_signatures_hash_copies_are_still_found(
    plain: Path, lonely: list[tuple[int, Path, float]], out: Path
) -> None:
    bare = SimilarIndex.load(plain)
    photo_id, path, _stored = lonely[1]
    image = _rgb(plain / path.relative_to(out))
    top = bare.search(_jpeg(image.rotate(90, expand=True)), k=3).hits[0]
    assert (top.photo_id, top.kind) == (photo_id, MatchKind.SAME)


def test_json_is_the_documented_shape(
    index: SimilarIndex, lonely: list[tuple[int, Path, float]]
) -> None:
    result = index.search(lonely[0][1], k=2)
    doc = json.loads(json.dumps(result.as_json()))
    assert set(doc) == {"query", "elapsed_s", "indexed", "hits"}
    assert doc["indexed"] == len(index)
    assert set(doc["query"]) == {"width", "height"}
    assert set(doc["hits"][0]) == {
        "rank", "photo_id", "score", "kind", "detail", "distance", "path", "url", "title",
        "owner", "license", "source",
    }  # fmt: skip


def test_bad_queries_are_image_errors(
    index: SimilarIndex, lonely: list[tuple[int, Path, float]]
) -> None:
    good = lonely[0][1].read_bytes()
    for data in (b"", b"not a picture", good[:300]):
        with pytest.raises(ImageError):
            index.search(data)
    small = SimilarIndex.load(index.out, policy=ImagePolicy(max_pixels=1000))
    with pytest.raises(ImageError, match="decompression bomb"):
        small.search(good)


def test_refresh_follows_the_store(out: Path, tmp_path: Path) -> None:
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    index = SimilarIndex.load(copy)
    before = len(index)
    assert index.refresh() is False
    with sqlite3.connect(copy / "harvest.sqlite") as db:  # as if fingerprinted only now
        db.execute("DELETE FROM photo_signal WHERE photo_id = (SELECT min(id) FROM photos)")
    assert index.refresh() is True
    assert len(index) == before - 1
    assert index.refresh() is False


def test_a_harvest_without_fingerprints_says_what_to_run(out: Path, tmp_path: Path) -> None:
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    with sqlite3.connect(copy / "harvest.sqlite") as db:
        db.execute("DELETE FROM photo_signal")
    with pytest.raises(ConfigError, match="harvest dupes"):
        SimilarIndex.load(copy)
    with pytest.raises(ConfigError, match="no harvest"):
        SimilarIndex.load(tmp_path / "nowhere")


def test_cli(
    out: Path,
    lonely: list[tuple[int, Path, float]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    photo_id, path, _stored = lonely[2]
    query = tmp_path / "q.jpg"
    query.write_bytes(_jpeg(_rgb(path).rotate(90, expand=True)))
    assert harvest("similar", out, query, "-k", "3", "--json") == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["hits"][0]["photo_id"] == photo_id
    assert len(doc["hits"]) == 3
    assert harvest("similar", out, query, "-k", "1") == EXIT_OK
    text = capsys.readouterr().out
    assert str(photo_id) in text
    assert "same picture" in text
    (tmp_path / "fake.png").write_text("not a picture\n")
    for bad in (tmp_path / "fake.png", tmp_path / "missing.jpg"):
        assert harvest("similar", out, bad) == EXIT_USAGE
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert str(bad.name) in err[0], err
    assert harvest("similar", tmp_path, query) == EXIT_USAGE
    assert "no harvest" in capsys.readouterr().err


def test_harvest_index_adds_the_keypoint_channel(
    plain: Path, lonely: list[tuple[int, Path, float]], out: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "out"
    shutil.copytree(plain, copy)
    photo_id, path, _stored = lonely[3]
    query = _jpeg(_warp(_rgb(path), [(0.1, 0.05), (0.85, 0.12), (0.95, 0.9), (0.02, 0.97)], 40))
    before = SimilarIndex.load(copy).search(query, k=3).hits[0]
    assert before.kind is MatchKind.LOOKS_ALIKE  # no hash sees through the angle
    assert harvest("index", copy) == EXIT_OK
    signed = _db(copy, "SELECT count(*) FROM photo_keypoints")[0][0]
    assert signed == _db(copy, "SELECT count(*) FROM photos WHERE status = 'done'")[0][0]
    after = SimilarIndex.load(copy).search(query, k=3).hits[0]
    assert (after.photo_id, after.kind, after.detail) == (
        photo_id,
        MatchKind.TRANSFORMED,
        "perspective",
    )
    assert harvest("index", copy) == EXIT_OK  # nothing left to do: it says so and exits 0
    assert _db(copy, "SELECT count(*) FROM photo_keypoints")[0][0] == signed


def test_an_embedder_adds_its_neighbours(
    out: Path,
    lonely: list[tuple[int, Path, float]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    model = conv_model(tmp_path / "model.onnx")
    photo_id, path, _stored = lonely[0]
    query = tmp_path / "q.jpg"
    query.write_bytes(_jpeg(ImageOps.mirror(_rgb(path))))
    assert harvest("similar", copy, query, "--embedder", model) == EXIT_USAGE  # no index yet
    assert "harvest index" in capsys.readouterr().err
    assert harvest("index", copy, "--embedder", model, "--plain") == EXIT_OK
    capsys.readouterr()
    assert harvest("similar", copy, query, "-k", "40", "--json", "--embedder", model) == EXIT_OK
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert hits[0]["photo_id"] == photo_id
    by_embedding = [h for h in hits if h["detail"] == "embedding"]
    assert by_embedding, "no candidate came from the embedding index alone"
    assert all(h["kind"] == MatchKind.LOOKS_ALIKE.value for h in by_embedding)
    assert all(h["distance"] is None for h in by_embedding)
