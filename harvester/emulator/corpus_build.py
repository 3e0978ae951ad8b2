"""Vectorised generators for the corpus columns (upload times, sizes, geo, frames, duplicates).

DUP_GROUP_SHARE (re-exported from copies.py): near-duplicate groups per photo.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from harvester.emulator import copies
from harvester.emulator.copies import DUP_GROUP_SHARE as DUP_GROUP_SHARE
from harvester.emulator.vocabulary import VOCABULARY, Kind

Cols = dict[str, npt.NDArray[Any]]
Occ = tuple[npt.NDArray[np.int32], npt.NDArray[np.int16], npt.NDArray[np.uint8]]

START_TS = 1_076_371_200  # 2004-02-10, Flickr's launch
DAY = 86_400
YEAR = 365.25 * DAY
LARGE_POLICY_TS = 1_274_745_600  # 2010-05-25: before it, Large only for big originals
BIG_SIZES_TS = 1_330_560_000  # 2012-03-01: c, h, k exist only for later uploads
#: Licence weights for ids 0..16 (mostly All Rights Reserved, as on Flickr).
LICENSE_WEIGHTS = np.array(
    [60, 5, 6, 4, 6, 3, 1, 0.5, 0.3, 1.5, 1.5, 2, 1.5, 0.7, 1.5, 1.5, 1.0], dtype=np.float64
)
ASPECTS = np.array([1.5, 4 / 3, 16 / 9, 1.0, 2.0, 1.25])
ASPECT_WEIGHTS = np.array([0.45, 0.30, 0.08, 0.07, 0.03, 0.07])
FRAME_SHARE = 0.10
BURST_RATE_SPAN_S = 30 * DAY  # a burst's factor is over the word's rate in this span around it


def offsets(sorted_keys: npt.NDArray[np.integer], n: int) -> npt.NDArray[np.int64]:
    """CSR offsets (length n+1) for sorted keys in [0, n)."""
    counts = np.bincount(sorted_keys, minlength=n)
    out = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def upload_times(rng: np.random.Generator, n: int, end_ts: int) -> npt.NDArray[np.int64]:
    """Sorted upload times: growth over the years, weekly rhythm, and bursts of many uploads."""
    days = max(1, (end_ts - START_TS) // DAY)
    d = np.arange(days, dtype=np.float64)
    weights = (1.0 - np.exp(-d / (2.5 * 365))) ** 2 + 0.02  # fast growth, then a plateau
    weights *= np.where(d % 7 >= 5, 1.3, 1.0) * rng.lognormal(0.0, 0.35, days)
    weights /= weights.sum()
    day_of = rng.choice(days, size=n, p=weights)
    secs = rng.integers(0, DAY, n)
    bursty = rng.random(n) < 0.35
    nb = max(1, n // 60)
    centres = rng.choice(days, size=nb, p=weights) * DAY + rng.integers(0, DAY, nb)
    pick = rng.integers(0, nb, n)
    burst_t = centres[pick] + rng.exponential(90.0, n).astype(np.int64)
    t = np.where(bursty, burst_t, day_of * DAY + secs) + START_TS
    t = np.minimum(t, end_ts - 1)
    t.sort()
    return np.asarray(t, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Burst:
    """A bulk upload: `word` at `factor` times its usual rate for `span_s` seconds from `at`.

    An event, an institution's or a camera club's import: photos move into the span from the
    rest of the corpus (the corpus keeps its size), and every one of them carries `word`.
    """

    word: str
    at: int
    span_s: int
    factor: float

    @property
    def end(self) -> int:
        """The first second after the burst."""
        return self.at + self.span_s


def burst_uploads(
    t: npt.NDArray[np.int64], burst: Burst, share: float, seed: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Upload times with `burst` added (sorted again), and which rows are its uploads.

    Its size is `factor` x the word's rate (its `share` of the uploads in the month around
    the burst) x the span. A separate generator keeps every other column as without it.
    """
    rng = np.random.default_rng([seed, t.size, 0xB0257])
    half = BURST_RATE_SPAN_S // 2
    around = np.searchsorted(t, burst.at + half) - np.searchsorted(t, burst.at - half)
    size = round(burst.factor * share * int(around) * burst.span_s / BURST_RATE_SPAN_S)
    outside = np.flatnonzero((t < burst.at) | (t >= burst.end))
    moved = rng.choice(outside, size=min(size, outside.size), replace=False)
    t = t.copy()
    t[moved] = burst.at + rng.integers(0, burst.span_s, moved.size)
    order = np.argsort(t, kind="stable")
    flag = np.zeros(t.size, bool)
    flag[moved] = True
    return np.asarray(t[order], dtype=np.int64), flag[order]


def with_burst_word(occ: Occ, burst_rows: npt.NDArray[np.bool_], word: int) -> Occ:
    """Keyword occurrences with `word` in the tags of every burst row that lacks it."""
    occ_row, occ_kw, occ_mask = occ
    a, b = np.searchsorted(occ_kw, word, "left"), np.searchsorted(occ_kw, word, "right")
    has = np.zeros(burst_rows.size, bool)
    has[occ_row[a:b]] = True
    new = np.flatnonzero(burst_rows & ~has).astype(np.int32)
    rows = np.concatenate([occ_row[a:b], new])
    masks = np.concatenate([occ_mask[a:b], np.full(new.size, 2, np.uint8)])
    order = np.argsort(rows, kind="stable")
    return (
        np.concatenate([occ_row[:a], rows[order], occ_row[b:]]),
        np.concatenate([occ_kw[:a], np.full(rows.size, word, occ_kw.dtype), occ_kw[b:]]),
        np.concatenate([occ_mask[:a], masks[order], occ_mask[b:]]),
    )


def _ids(rng: np.random.Generator, n: int) -> npt.NDArray[np.int64]:
    mean_gap = max(2, int(54e9 / n))
    gaps = rng.integers(1, 2 * mean_gap, n)
    return np.asarray(np.cumsum(gaps, dtype=np.int64) + 1_000_000, dtype=np.int64)


def _dims(
    rng: np.random.Generator, n: int, upload: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
    years = (upload - START_TS) / YEAR
    centre = np.log(1200.0) + np.minimum(years, 14.0) * 0.09  # originals grow over the years
    long_side = np.exp(rng.normal(centre, 0.45, n))
    tiny = rng.random(n) < 0.015
    long_side = np.where(tiny, rng.integers(160, 500, n), long_side)
    long_side = np.clip(long_side, 160, 6000).astype(np.int32)
    aspect = ASPECTS[rng.choice(len(ASPECTS), n, p=ASPECT_WEIGHTS)]
    short = np.maximum(1, np.round(long_side / aspect)).astype(np.int32)
    portrait = rng.random(n) < 0.25
    return np.where(portrait, short, long_side), np.where(portrait, long_side, short)


def _taken(rng: np.random.Generator, n: int, upload: npt.NDArray[np.int64]) -> Cols:
    lag = rng.exponential(20 * DAY, n).astype(np.int64)
    lag = np.where(rng.random(n) < 0.08, rng.integers(0, int(8 * YEAR), n), lag)
    tz = rng.integers(-11, 13, n) * 3600
    unknown = rng.random(n) < 0.05
    taken = np.where(unknown, upload - 6 * 3600, np.maximum(upload - lag + tz, 0))
    gran = rng.choice(np.array([0, 4, 6, 8], np.uint8), n, p=[0.93, 0.03, 0.03, 0.01])
    return {"taken": taken.astype(np.int64), "taken_gran": gran, "taken_unknown": unknown}


def photo_columns(
    rng: np.random.Generator, n: int, end_ts: int, burst: Burst | None = None, seed: int = 0
) -> Cols:
    """Every per-photo column except geo (filled by place_geotags) and frames/duplicates.

    With a `burst`, the column `burst` marks its uploads.
    """
    upload = upload_times(rng, n, end_ts)
    flag = None
    if burst is not None:
        share = next(kw.share for kw in VOCABULARY if kw.word == burst.word)
        upload, flag = burst_uploads(upload, burst, share, seed)
    o_w, o_h = _dims(rng, n, upload)
    fmt = rng.choice(np.array([0, 1, 2], np.uint8), n, p=[0.955, 0.04, 0.005])
    views = np.minimum(rng.pareto(1.1, n) * 20, 2e9).astype(np.int64)
    server = np.where(upload > 1_500_000_000, 65535, 1 + (upload - START_TS) // (4 * DAY))
    cols: Cols = {
        "id": _ids(rng, n),
        "upload": upload,
        "secret": rng.integers(0, 1 << 40, n, dtype=np.uint64),
        "osecret": rng.integers(0, 1 << 40, n, dtype=np.uint64),
        "hsecret": rng.integers(0, 1 << 40, n, dtype=np.uint64),
        "server": server.astype(np.int32),
        "owner": np.minimum(rng.pareto(1.0, n) * 3, max(1, n // 25) - 1).astype(np.int32),
        "license": rng.choice(17, n, p=LICENSE_WEIGHTS / LICENSE_WEIGHTS.sum()).astype(np.uint8),
        "views": views,
        "interest": (np.log1p(views) + rng.normal(0, 1.0, n)).astype(np.float32),
        "o_w": o_w,
        "o_h": o_h,
        "o_fmt": fmt,
        "orig_visible": rng.random(n) < 0.35,
        "large_allowed": rng.random(n) < 0.9,
        "has_odims": rng.random(n) < 0.97,
        "loose": rng.integers(0, 256, n, dtype=np.uint8),
        "look": rng.integers(0, 1 << 62, n, dtype=np.uint64),
        "has_geo": np.zeros(n, bool),
        "lat": np.zeros(n, np.float32),
        "lon": np.zeros(n, np.float32),
        "accuracy": np.zeros(n, np.uint8),
    }
    cols.update(_taken(rng, n, upload))
    if flag is not None:
        cols["burst"] = flag
    return cols


def _sorted_sample(rng: np.random.Generator, n: int, share: float) -> npt.NDArray[np.int32]:
    """Sorted distinct rows, each row in with probability `share` (geometric skips)."""
    p = min(max(share, 1e-9), 1.0)
    out: list[npt.NDArray[np.int64]] = []
    pos = -1
    while pos < n - 1:
        want = int(n * p * 1.1 + 4 * np.sqrt(n * p + 1) + 16)
        rows = pos + np.cumsum(rng.geometric(p, want))
        out.append(rows[rows < n])
        pos = int(rows[-1])
    return np.concatenate(out).astype(np.int32) if out else np.empty(0, np.int32)


def keyword_occurrences(
    rng: np.random.Generator, n: int
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int16], npt.NDArray[np.uint8]]:
    """(row, keyword, field mask) per occurrence, grouped by keyword, rows sorted within."""
    rows, kws, masks = [], [], []
    for k, kw in enumerate(VOCABULARY):
        r = _sorted_sample(rng, n, kw.share)
        title_p = 0.5 if kw.kind == Kind.PLACE else 0.3
        m = (rng.random(r.size) < title_p).astype(np.uint8)  # title
        m |= (rng.random(r.size) < 0.8).astype(np.uint8) << 1  # tags
        m |= (rng.random(r.size) < 0.25).astype(np.uint8) << 2  # description
        m[m == 0] = 2
        rows.append(r)
        kws.append(np.full(r.size, k, np.int16))
        masks.append(m)
    return np.concatenate(rows), np.concatenate(kws), np.concatenate(masks)


def place_geotags(
    rng: np.random.Generator,
    cols: Cols,
    occ_row: npt.NDArray[np.int32],
    occ_kw: npt.NDArray[np.int16],
) -> None:
    """Geotag ~25 % of photos; a photo naming a place is put near that place."""
    n = cols["upload"].size
    lat = rng.uniform(-55, 70, n)
    lon = rng.uniform(-180, 180, n)
    place_lat = np.array([kw.lat for kw in VOCABULARY])
    place_lon = np.array([kw.lon for kw in VOCABULARY])
    is_place = np.array([kw.kind == Kind.PLACE for kw in VOCABULARY])[occ_kw]
    pr, pk = occ_row[is_place], occ_kw[is_place]
    lat[pr] = place_lat[pk] + rng.normal(0, 0.15, pr.size)
    lon[pr] = place_lon[pk] + rng.normal(0, 0.15, pr.size)
    geo = rng.random(n) < 0.25
    cols["has_geo"] = geo
    cols["lat"] = np.where(geo, np.clip(lat, -90, 90), 0).astype(np.float32)
    cols["lon"] = np.where(geo, np.clip(lon, -180, 180), 0).astype(np.float32)
    acc = rng.choice(np.arange(1, 17), n, p=_accuracy_weights())
    cols["accuracy"] = np.where(geo, acc, 0).astype(np.uint8)


def _accuracy_weights() -> npt.NDArray[np.float64]:
    w = np.linspace(0.2, 3.0, 16) ** 2
    return np.asarray(w / w.sum(), dtype=np.float64)


def frames_and_duplicates(rng: np.random.Generator, cols: Cols) -> None:
    """Frames on ~10 % of photos; near-duplicate groups of a source and its copies (copies.py)."""
    n = cols["upload"].size
    framed = rng.random(n) < FRAME_SHARE
    width = rng.integers(20, 81, (n, 4)).astype(np.uint8)  # permille of the side
    same = rng.random(n) < 0.6
    width[same] = width[same, :1]
    letterbox = ~same & (rng.random(n) < 0.2)
    width[letterbox, 1] = 0  # right
    width[letterbox, 3] = 0  # left: top/bottom bars only
    cols["frame"] = framed
    cols["frame_w"] = np.where(framed[:, None], width, 0).astype(np.uint8)  # top,right,bottom,left
    cols["frame_color"] = rng.integers(0, 8, n).astype(np.uint8)
    copies.groups(rng, cols)
