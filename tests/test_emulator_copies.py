"""Near-duplicate copies in the emulator: kinds, parameters, sizes, pixels, text and truth.

Pixels are fetched through the static host of an in-process emulator and compared with the
source's as downscaled grey arrays (mean absolute error on 0-255), each time also against a wrong
transform, so a copy drawn another way fails.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from harvester.emulator import RunningEmulator
from harvester.emulator import copies as cp
from harvester.emulator.control import photo_truth
from harvester.emulator.corpus import IN_DESC, IN_TAGS, IN_TITLE, Corpus, build_corpus
from harvester.emulator.corpus_text import description, title
from harvester.emulator.images import produce
from harvester.emulator.photojson import geom, image_url
from harvester.emulator.sizes import BY_EXTRA, available
from harvester.emulator.static import job_for
from tests.harness import EmulatorFactory

F64 = npt.NDArray[np.float64]
PHOTOS = 10_000


@pytest.fixture
async def em(emulator_factory: EmulatorFactory) -> RunningEmulator:
    """An ideal emulator over a 10k corpus (every kind occurs in it many times)."""
    return await emulator_factory(photos=PHOTOS, seed=0, profile="ideal")


def _copies(
    corpus: Corpus, kind: int, where: Callable[[int, int], bool] | None = None
) -> list[int]:
    """Rows of copies of `kind` (optionally filtered on (copy row, source row))."""
    c = corpus.cols
    rows = [int(r) for r in np.flatnonzero(c["copy_kind"] == kind)]
    return [r for r in rows if where is None or where(r, int(c["copy_of"][r]))]


def _mid_sized(corpus: Corpus) -> Callable[[int, int], bool]:
    """Sources with a Small 320 and an original small enough to render quickly."""
    c = corpus.cols
    return lambda r, s: 400 <= max(int(c["o_w"][s]), int(c["o_h"][s])) <= 2500


async def _get(session: aiohttp.ClientSession, url: str) -> bytes:
    async with session.get(url) as r:
        assert r.status == 200, url
        return await r.read()


async def _pair(em: RunningEmulator, row: int, extra: str = "n") -> tuple[F64, F64]:
    """RGB float pixels of (source, copy) at one size label, through the static host."""
    src = int(em.corpus.cols["copy_of"][row])
    async with aiohttp.ClientSession() as s:
        a = await _get(s, image_url(em.base_url, em.corpus, src, BY_EXTRA[extra]))
        b = await _get(s, image_url(em.base_url, em.corpus, row, BY_EXTRA[extra]))
    return _rgb(a), _rgb(b)


def _rgb(data: bytes) -> F64:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float64)


def _small(arr: F64, side: int = 48) -> F64:
    """Grey, downscaled to side x side (JPEG noise and grain average out)."""
    grey = arr @ np.array([0.299, 0.587, 0.114]) if arr.ndim == 3 else arr
    img = Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8))
    return np.asarray(img.resize((side, side), Image.Resampling.BOX), dtype=np.float64)


def _mae(a: F64, b: F64) -> float:
    return float(np.abs(_small(a) - _small(b)).mean())


def _truth_of(row: int, em: RunningEmulator) -> str:
    return f"{em.base_url}/_emulator/photo/{em.corpus.photo_id(row)}"


# --- the corpus columns ---------------------------------------------------------------------


def test_every_kind_occurs_in_a_10k_corpus_and_groups_are_stars() -> None:
    c = build_corpus(0, PHOTOS)
    kind, copy_of, group = c.cols["copy_kind"], c.cols["copy_of"], c.cols["dup_group"]
    counts = np.bincount(kind, minlength=len(cp.KINDS))
    assert all(counts[k] >= 10 for k in range(1, len(cp.KINDS))), counts
    assert 0.02 < (group >= 0).mean() < 0.04  # as before: 1 % of photos head a group of 2-4
    for g in np.unique(group[group >= 0])[:300]:
        members = np.flatnonzero(group == g)
        assert int(members.min()) == int(g)  # the source is the oldest upload
        assert copy_of[g] == -1
        assert kind[g] == cp.NONE
        copies = members[members != g]
        assert 1 <= copies.size <= 3
        assert (copy_of[copies] == g).all()
        assert (kind[copies] > 0).all()
    assert (kind[group < 0] == 0).all()
    assert (copy_of[group < 0] == -1).all()


def test_corpus_copies_are_deterministic_by_seed() -> None:
    a, b, other = build_corpus(9, 5000), build_corpus(9, 5000), build_corpus(10, 5000)
    for name in ("dup_group", "copy_of", "copy_kind", "copy_param", "o_w", "frame_w"):
        assert np.array_equal(a.cols[name], b.cols[name]), name
    assert np.array_equal(a.ph_kw, b.ph_kw)
    assert not np.array_equal(a.cols["copy_kind"], other.cols["copy_kind"])
    row = _copies(a, cp.TINTED)[0]
    job_a, job_b = job_for(a, row, BY_EXTRA["t"]), job_for(b, row, BY_EXTRA["t"])
    assert produce(9, job_a) == produce(9, job_b)


def test_size_ladders_follow_the_transform() -> None:
    c = build_corpus(0, PHOTOS)
    w, h, fw, p = c.cols["o_w"], c.cols["o_h"], c.cols["frame_w"], c.cols["copy_param"]
    for r in np.flatnonzero(c.cols["copy_kind"] > 0).tolist():
        s, k = int(c.cols["copy_of"][r]), int(c.cols["copy_kind"][r])
        src, dst = (int(w[s]), int(h[s])), (int(w[r]), int(h[r]))
        if k == cp.ROTATED and int(p[r, 0]) in (90, 270):
            assert dst == src[::-1]
        elif k == cp.RESIZED:
            assert dst == (
                max(16, round(src[0] * float(p[r, 0]))),
                max(16, round(src[1] * float(p[r, 0]))),
            )
        elif k == cp.CROPPED:
            t, rr, b, left = (
                round(int(fw[s, i]) * side / 1000) for i, side in enumerate(src[::-1] * 2)
            )
            cw, ch = src[0] - left - rr, src[1] - t - b
            box = p[r].astype(np.float64)
            assert abs(dst[0] - (box[2] - box[0]) * cw) <= 1
            assert abs(dst[1] - (box[3] - box[1]) * ch) <= 1
            assert dst[0] < src[0]
            assert dst[1] < src[1]
        else:
            assert dst == src
        if k == cp.IDENTICAL:
            assert c.cols["o_fmt"][r] == c.cols["o_fmt"][s]
        mine = {sz.extra: (ww, hh) for sz, ww, hh in available(geom(c, r))}
        theirs = {sz.extra: (ww, hh) for sz, ww, hh in available(geom(c, s))}
        for extra in set(mine) & set(theirs) - {"sq", "q"}:
            if k == cp.ROTATED and int(p[r, 0]) in (90, 270):
                assert mine[extra] == theirs[extra][::-1]
            elif k in (cp.IDENTICAL, cp.RECOMPRESSED, cp.FLIPPED, cp.TINTED, cp.DARKENED):
                assert mine[extra] == theirs[extra]


# --- titles and tags ------------------------------------------------------------------------


def test_copies_keep_title_description_and_most_tags() -> None:
    c = build_corpus(0, PHOTOS)
    suffixed = 0
    for r in np.flatnonzero(c.cols["copy_kind"] > 0).tolist():
        s = int(c.cols["copy_of"][r])
        assert title(c, r) in (title(c, s), title(c, s) + " (2)")
        suffixed += title(c, r) != title(c, s)
        assert description(c, r) == description(c, s)
        theirs, mine = set(c.keywords_of(s, IN_TAGS)), set(c.keywords_of(r, IN_TAGS))
        assert len(theirs & mine) >= 0.7 * len(theirs)
        assert set(c.keywords_of(r, IN_TITLE)) == set(c.keywords_of(s, IN_TITLE))
        assert set(c.keywords_of(r, IN_DESC)) == set(c.keywords_of(s, IN_DESC))
    assert suffixed > 10  # some re-uploads are titled "... (2)"


async def test_one_keyword_harvest_holds_whole_groups(em: RunningEmulator) -> None:
    """For a keyword of a group's source, the search (exact truth) finds every member."""
    c = em.corpus
    group = c.cols["dup_group"]
    sources = np.unique(group[group >= 0])
    whole = pairs = groups_whole = with_words = 0
    for g in sources:
        members = set(np.flatnonzero(group == g).tolist())
        hits = [members <= set(c.text_rows(w).tolist()) for w in c.keywords_of(int(g))]
        whole += sum(hits)
        pairs += len(hits)
        groups_whole += bool(hits) and all(hits)
        with_words += bool(hits)
    assert pairs > 100
    assert whole / pairs > 0.9  # a keyword of a source finds its whole group
    assert groups_whole / with_words > 0.85  # and for most groups every keyword does
    # Through the search itself, for one keyword (a tag) of a group with three or more members.
    for g in sources:
        rows = np.flatnonzero(group == g)
        words = [w for w in c.keywords_of(int(g), IN_TAGS) if w != "photo"]
        if rows.size >= 3 and words:
            found = set(await em.truth(text=words[0]))
            assert {c.photo_id(int(m)) for m in rows} <= found
            break
    else:
        pytest.fail("no group of three with a tag")


# --- truth ----------------------------------------------------------------------------------


_PARAM_KEYS = {
    cp.IDENTICAL: set(),
    cp.RECOMPRESSED: {"quality"},
    cp.RESIZED: {"scale"},
    cp.ROTATED: {"angle"},
    cp.FLIPPED: {"axis"},
    cp.DARKENED: {"factor"},
    cp.CROPPED: {"box", "kept"},
}


def _check_param(kind: int, param: dict[str, Any]) -> None:
    if kind == cp.TINTED:
        assert param["tint"] in ("sepia", "cast")
        assert set(param) == (
            {"tint", "strength"} if param["tint"] == "sepia" else {"tint", "gains"}
        )
        return
    assert set(param) == _PARAM_KEYS[kind]
    if kind == cp.RECOMPRESSED:
        assert 60 <= param["quality"] <= 85
    elif kind == cp.ROTATED:
        assert param["angle"] in (90, 180, 270)
    elif kind == cp.FLIPPED:
        assert param["axis"] in ("h", "v")
    elif kind == cp.DARKENED:
        assert 0.3 <= param["factor"] <= 0.6
    elif kind == cp.CROPPED:
        left, top, right, bottom = param["box"]
        assert all(0.03 <= x <= 0.15 for x in (left, top, 1 - right, 1 - bottom))
        assert param["kept"] == pytest.approx((right - left) * (bottom - top), abs=1e-3)


async def test_truth_names_each_copys_kind_and_param(em: RunningEmulator) -> None:
    c = em.corpus
    async with aiohttp.ClientSession() as s:
        for kind in range(1, len(cp.KINDS)):
            for row in _copies(c, kind)[:3]:
                src = int(c.cols["copy_of"][row])
                async with s.get(_truth_of(row, em)) as r:
                    truth = await r.json()
                async with s.get(_truth_of(src, em)) as r:
                    source = await r.json()
                assert truth["copy_of"] == c.photo_id(src) == truth["duplicate_group"]
                assert truth["copy_kind"] == cp.KINDS[kind]
                _check_param(kind, truth["copy_param"])
                assert truth["duplicates"] == source["duplicates"]
                assert {truth["id"], source["id"]} <= set(truth["duplicates"])
                assert source["copy_of"] is None
                assert source["copy_kind"] is None
                assert source["copy_param"] is None
                assert truth["rotated"] == (kind == cp.ROTATED)
                assert "keywords" in truth
                assert "sizes" in truth


def test_frames_of_copies() -> None:
    """A copy carries its source's frame turned or mirrored with the picture; a crop drops it."""
    c = build_corpus(0, 50_000)
    framed, kind = c.cols["frame"], c.cols["copy_kind"]
    sides = ("top", "right", "bottom", "left")
    seen = {"turned": 0, "mirrored": 0, "dropped": 0}
    for row in np.flatnonzero((kind > 0) & framed[np.maximum(c.cols["copy_of"], 0)]):
        truth = photo_truth(c, int(row))
        src = photo_truth(c, int(c.cols["copy_of"][row]))
        a = [src["frame"]["permille"][k] for k in sides]
        param = truth["copy_param"]
        if truth["copy_kind"] == "cropped":
            assert truth["frame"] is None
            assert truth["copy_frame"] == "dropped"
            seen["dropped"] += 1
            continue
        assert truth["copy_frame"] == "kept"
        b = [truth["frame"]["permille"][k] for k in sides]
        if truth["copy_kind"] == "rotated":
            turns = param["angle"] // 90  # clockwise: the left band comes to the top
            assert b == a[-turns:] + a[:-turns]
            seen["turned"] += len(set(a)) > 1
        elif truth["copy_kind"] == "flipped":
            assert b == (
                [a[0], a[3], a[2], a[1]] if param["axis"] == "h" else [a[2], a[1], a[0], a[3]]
            )
            seen["mirrored"] += len(set(a)) > 1
        else:
            assert b == a
    assert all(seen.values()), seen


# --- pixels ---------------------------------------------------------------------------------


async def test_identical_copies_are_byte_identical_at_every_size(em: RunningEmulator) -> None:
    c = em.corpus
    rows = _copies(em.corpus, cp.IDENTICAL, _mid_sized(c))[:3]
    assert rows
    checked = 0
    async with aiohttp.ClientSession() as s:
        for row in rows:
            src = int(c.cols["copy_of"][row])
            assert c.photo_id(row) != c.photo_id(src)
            mine = {sz.extra for sz, _, _ in available(geom(c, row))}
            for size, _, _ in available(geom(c, src)):
                if size.extra not in mine:
                    continue
                a = await _get(s, image_url(em.base_url, c, src, size))
                b = await _get(s, image_url(em.base_url, c, row, size))
                assert a == b, (row, size.extra)
                # Not only the shared cache: the copy's own job draws the same bytes.
                assert produce(em.config.seed, job_for(c, row, size)) == a
                checked += 1
    assert checked >= 10


async def test_recompressed_copy_is_the_same_pixels_at_a_lower_quality(em: RunningEmulator) -> None:
    row = _copies(em.corpus, cp.RECOMPRESSED, _mid_sized(em.corpus))[0]
    src = int(em.corpus.cols["copy_of"][row])
    async with aiohttp.ClientSession() as s:
        a = await _get(s, image_url(em.base_url, em.corpus, src, BY_EXTRA["n"]))
        b = await _get(s, image_url(em.base_url, em.corpus, row, BY_EXTRA["n"]))
    assert a != b
    qa, qb = (Image.open(io.BytesIO(x)).quantization for x in (a, b))  # type: ignore[attr-defined]
    assert sum(qb[0]) > sum(qa[0])  # coarser luminance table: a lower quality
    assert _mae(_rgb(a), _rgb(b)) < 1.5


@pytest.mark.parametrize("angle", [90, 180, 270])
async def test_rotated_copy_is_the_source_turned(em: RunningEmulator, angle: int) -> None:
    c = em.corpus
    row = _copies(c, cp.ROTATED, lambda r, s: c.cols["copy_param"][r, 0] == angle)[0]
    src, copy = await _pair(em, row)
    turned = np.rot90(src, k=-angle // 90)  # the truth's angle is clockwise
    assert copy.shape == turned.shape
    right = _mae(copy, turned)
    wrong = _mae(copy, np.rot90(src, k=angle // 90)) if angle != 180 else _mae(copy, src[::-1])
    assert right < 2.0
    assert wrong > 4 * right
    assert wrong > 5.0


@pytest.mark.parametrize("axis", ["h", "v"])
async def test_flipped_copy_is_the_source_mirrored(em: RunningEmulator, axis: str) -> None:
    c = em.corpus
    row = _copies(c, cp.FLIPPED, lambda r, s: c.cols["copy_param"][r, 0] == (axis == "v"))[0]
    src, copy = await _pair(em, row)
    mirrored, other = (src[:, ::-1], src[::-1]) if axis == "h" else (src[::-1], src[:, ::-1])
    right, wrong = _mae(copy, mirrored), _mae(copy, other)
    assert right < 2.0
    assert wrong > 4 * right
    assert wrong > 5.0


async def test_cropped_copy_is_the_box_of_the_source(em: RunningEmulator) -> None:
    c = em.corpus
    framed = c.cols["frame"]
    rows = _copies(c, cp.CROPPED, lambda r, s: bool(framed[s]) and _mid_sized(c)(r, s))
    rows += _copies(c, cp.CROPPED, lambda r, s: not framed[s] and _mid_sized(c)(r, s))[:2]
    assert len(rows) >= 3
    async with aiohttp.ClientSession() as s:
        for row in rows[:4]:
            async with s.get(_truth_of(row, em)) as r:
                box = (await r.json())["copy_param"]["box"]
            async with s.get(_truth_of(int(c.cols["copy_of"][row]), em)) as r:
                frame = (await r.json())["frame"]
            src, copy = await _pair(em, row, "z")
            pm = frame["permille"] if frame else {"top": 0, "right": 0, "bottom": 0, "left": 0}
            right = _mae(_region(src, pm, box, copy.shape), copy)
            whole = _mae(_region(src, pm, [0.0, 0.0, 1.0, 1.0], copy.shape), copy)
            assert right < 2.5, row
            assert whole > 2 * right, row
            assert not frame or _mae(_frame_kept(src, copy), copy) > 2 * right


def _region(src: F64, permille: dict[str, int], box: list[float], shape: tuple[int, ...]) -> F64:
    """The box (fractions of the content inside the frame) of `src`, resized to `shape`."""
    h, w = src.shape[:2]
    t, r, b, left = (
        round(permille[k] * side / 1000)
        for k, side in zip(("top", "right", "bottom", "left"), (h, w, h, w), strict=True)
    )
    cw, ch = w - left - r, h - t - b
    x0, y0 = left + box[0] * cw, t + box[1] * ch
    x1, y1 = left + box[2] * cw, t + box[3] * ch
    img = Image.fromarray(src.astype(np.uint8)).resize(
        (shape[1], shape[0]), Image.Resampling.BILINEAR, box=(x0, y0, x1, y1)
    )
    return np.asarray(img, dtype=np.float64)


def _frame_kept(src: F64, copy: F64) -> F64:
    """The wrong answer of a crop that kept the frame: the whole source resized."""
    img = Image.fromarray(src.astype(np.uint8)).resize((copy.shape[1], copy.shape[0]))
    return np.asarray(img, dtype=np.float64)


async def test_darkened_copy_has_the_factor_of_the_brightness(em: RunningEmulator) -> None:
    c = em.corpus
    for row in _copies(c, cp.DARKENED, _mid_sized(c))[:3]:
        src, copy = await _pair(em, row)
        factor = float(c.cols["copy_param"][row, 0])
        assert copy.mean() / src.mean() == pytest.approx(factor, abs=0.03)
        assert _mae(copy, src * factor) < 2.0


async def test_tinted_copy_is_the_source_tinted(em: RunningEmulator) -> None:
    c = em.corpus
    seen = set()
    for row in _copies(c, cp.TINTED, _mid_sized(c))[:6]:
        p = c.cols["copy_param"][row].astype(np.float64)
        src, copy = await _pair(em, row)
        if p[0] == 0:
            sepia = (
                src
                @ np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]]).T
            )
            want = np.clip((1 - p[1]) * src + p[1] * sepia, 0, 255)
        else:
            want = np.clip(src * p[1:], 0, 255)
        channel_err = np.abs(copy.mean(axis=(0, 1)) - want.mean(axis=(0, 1)))
        assert channel_err.max() < 3.0, (row, p)
        plain = np.abs(copy.mean(axis=(0, 1)) - src.mean(axis=(0, 1)))
        assert plain.max() > 3 * channel_err.max()
        seen.add(int(p[0]))
    assert seen == {0, 1}  # sepia and a colour cast both occur


async def test_resized_copy_is_the_picture_at_another_size(em: RunningEmulator) -> None:
    c = em.corpus
    row = _copies(c, cp.RESIZED, lambda r, s: min(c.cols["o_w"][r], c.cols["o_h"][r]) >= 320)[0]
    src, copy = await _pair(em, row)
    scale = float(c.cols["copy_param"][row, 0])
    assert c.cols["o_w"][row] == max(
        16, round(int(c.cols["o_w"][int(c.cols["copy_of"][row])]) * scale)
    )
    right, wrong = _mae(copy, src), _mae(copy, src[:, ::-1])
    assert right < 2.5
    assert wrong > 3 * right
