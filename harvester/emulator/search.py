"""flickr.photos.search semantics over the corpus: parse the parameters, match rows, sort them.

Matching is exact (the ground truth): Flickr's quirks (cap, floor, fuzzy edges) are applied on
top by the REST layer. Text is a case-insensitive whole-word match over title, description and
tags (every word must match, `-word` excludes); `tags` matches the tag list (any/all, `-tag`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from harvester.emulator.corpus import Corpus

Rows = npt.NDArray[np.int64]

SORTS = (
    "date-posted-asc",
    "date-posted-desc",
    "date-taken-asc",
    "date-taken-desc",
    "interestingness-desc",
    "interestingness-asc",
    "relevance",
)
#: Parameters that make a search non-parameterless (Flickr's code 3 otherwise).
LIMITING = (
    "text",
    "tags",
    "user_id",
    "min_upload_date",
    "max_upload_date",
    "min_taken_date",
    "max_taken_date",
    "bbox",
    "has_geo",
    "license",
    "lat",
    "lon",
    "machine_tags",
    "group_id",
)
PARAMETERLESS = (
    "Parameterless searches have been disabled. Please use flickr.photos.getRecent instead."
)
_WORD = re.compile(r"-?[0-9a-z]+")


class SearchError(Exception):
    """A search the API rejects with a stat=fail code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Filters:
    """A parsed search: word lists, inclusive date bounds (unix / local-naive seconds), facets."""

    text_all: tuple[str, ...] = ()
    text_none: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    tags_none: tuple[str, ...] = ()
    tag_all: bool = False
    min_upload: int | None = None
    max_upload: int | None = None
    min_taken: int | None = None
    max_taken: int | None = None
    licenses: tuple[int, ...] | None = None
    bbox: tuple[float, float, float, float] | None = None
    has_geo: bool | None = None
    accuracy: int | None = None
    owner: int | None = None
    photos_media: bool = True
    pool: npt.NDArray[np.int32] | None = None  # a group pool, sorted rows (list_methods.py)

    def widened(self, floor_s: int, fuzz_s: int) -> Filters:
        """The same filters with date bounds snapped outward to `floor_s` and widened by fuzz."""
        return replace(
            self,
            min_upload=_lower(self.min_upload, floor_s, fuzz_s),
            max_upload=_upper(self.max_upload, floor_s, fuzz_s),
            min_taken=_lower(self.min_taken, floor_s, 0),
            max_taken=_upper(self.max_taken, floor_s, 0),
        )


def _lower(t: int | None, floor_s: int, fuzz_s: int) -> int | None:
    if t is None:
        return None
    return (t // floor_s * floor_s if floor_s else t) - fuzz_s


def _upper(t: int | None, floor_s: int, fuzz_s: int) -> int | None:
    if t is None:
        return None
    return ((t // floor_s + 1) * floor_s - 1 if floor_s else t) + fuzz_s


def parse_date(value: str) -> int:
    """Unix seconds (int or float text) or a MySQL datetime (read as UTC) to unix seconds."""
    v = value.strip()
    try:
        return int(float(v))
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(v)
    except ValueError as exc:
        raise SearchError(18, "Illogical arguments") from exc
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp())


def _words(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    found = _WORD.findall(text.lower())
    return tuple(w for w in found if w[0] != "-"), tuple(w[1:] for w in found if w[0] == "-")


def _tags(raw: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    norm = [re.sub(r"[^0-9a-z-]", "", t.lower()) for t in raw.split(",")]
    norm = [t for t in norm if t.strip("-")]
    return tuple(t for t in norm if t[0] != "-"), tuple(t[1:] for t in norm if t[0] == "-")


def _opt_date(params: Mapping[str, str], key: str) -> int | None:
    v = params.get(key, "").strip()
    return parse_date(v) if v else None


def parse_filters(corpus: Corpus, params: Mapping[str, str], owners: Mapping[str, int]) -> Filters:
    """Filters from search parameters; raises SearchError for the API's rejections."""
    if not any(params.get(k, "").strip() for k in LIMITING):
        raise SearchError(3, PARAMETERLESS)
    text_all, text_none = _words(params.get("text", ""))
    tags, tags_none = _tags(params.get("tags", ""))
    tag_all = params.get("tag_mode", "any").lower() == "all"
    if tag_all and len(tags) > 20:
        raise SearchError(1, "Too many tags in ALL query")
    owner = None
    if uid := params.get("user_id", "").strip():
        if uid not in owners:
            raise SearchError(2, "Unknown user")
        owner = owners[uid]
    return Filters(
        text_all=text_all,
        text_none=text_none,
        tags=tags,
        tags_none=tags_none,
        tag_all=tag_all,
        min_upload=_opt_date(params, "min_upload_date"),
        max_upload=_opt_date(params, "max_upload_date"),
        min_taken=_opt_date(params, "min_taken_date"),
        max_taken=_opt_date(params, "max_taken_date"),
        licenses=_licenses(params.get("license", "")),
        bbox=_bbox(params.get("bbox", "")),
        has_geo=_has_geo(params.get("has_geo")),
        accuracy=int(params["accuracy"]) if params.get("accuracy", "").isdigit() else None,
        owner=owner,
        photos_media=params.get("media", "all").lower() != "videos",
    )


def _licenses(raw: str) -> tuple[int, ...] | None:
    ids = tuple(int(x) for x in raw.split(",") if x.strip().isdigit())
    return ids or None


def _bbox(raw: str) -> tuple[float, float, float, float] | None:
    parts = raw.split(",")
    if len(parts) != 4:
        return None
    try:
        a, b, c, d = (float(p) for p in parts)
    except ValueError as exc:
        raise SearchError(18, "Illogical arguments") from exc
    return (a, b, c, d)


def _has_geo(raw: str | None) -> bool | None:
    if raw is None or raw == "":
        return None
    return raw.strip() != "0"


def _member(cand: Rows, sorted_rows: npt.NDArray[np.int32]) -> npt.NDArray[np.bool_]:
    if sorted_rows.size == 0:
        return np.zeros(cand.size, bool)
    pos = np.minimum(np.searchsorted(sorted_rows, cand), sorted_rows.size - 1)
    return np.asarray(sorted_rows[pos] == cand)


def _window(corpus: Corpus, f: Filters) -> tuple[int, int]:
    up = corpus.cols["upload"]
    lo = 0 if f.min_upload is None else int(np.searchsorted(up, f.min_upload, "left"))
    hi = corpus.size if f.max_upload is None else int(np.searchsorted(up, f.max_upload, "right"))
    return lo, max(lo, hi)


def _slice(rows: npt.NDArray[np.int32], lo: int, hi: int) -> Rows:
    a, b = np.searchsorted(rows, lo), np.searchsorted(rows, hi)
    return rows[a:b].astype(np.int64)


def _keyword_rows(corpus: Corpus, f: Filters, lo: int, hi: int) -> Rows:
    required = [corpus.text_rows(w) for w in f.text_all]
    if f.tag_all:
        required += [corpus.tag_rows(t) for t in f.tags]
    required.sort(key=lambda r: r.size)
    if f.tags and not f.tag_all:
        cand = np.unique(np.concatenate([_slice(corpus.tag_rows(t), lo, hi) for t in f.tags]))
    elif required:
        cand = _slice(required.pop(0), lo, hi)
    else:
        cand = np.arange(lo, hi, dtype=np.int64)
    for rows in required:
        cand = cand[_member(cand, rows)]
    for w in f.text_none:
        cand = cand[~_member(cand, corpus.text_rows(w))]
    for t in f.tags_none:
        cand = cand[~_member(cand, corpus.tag_rows(t))]
    return cand


def match(corpus: Corpus, f: Filters) -> Rows:
    """Rows matching every filter, in upload order (exact; no quirks)."""
    if not f.photos_media:
        return np.empty(0, np.int64)
    lo, hi = _window(corpus, f)
    cand = _keyword_rows(corpus, f, lo, hi)
    c = corpus.cols
    keep = np.ones(cand.size, bool)
    if f.min_taken is not None:
        keep &= c["taken"][cand] >= f.min_taken
    if f.max_taken is not None:
        keep &= c["taken"][cand] <= f.max_taken
    if f.licenses is not None:
        keep &= np.isin(c["license"][cand], np.array(f.licenses))
    if f.owner is not None:
        keep &= c["owner"][cand] == f.owner
    if f.pool is not None:
        keep &= _member(cand, f.pool)
    keep &= _geo_mask(corpus, cand, f)
    return cand[keep]


def _geo_mask(corpus: Corpus, cand: Rows, f: Filters) -> npt.NDArray[np.bool_]:
    c = corpus.cols
    keep = np.ones(cand.size, bool)
    if f.has_geo is not None:
        keep &= c["has_geo"][cand] == f.has_geo
    if f.bbox is not None:
        lon0, lat0, lon1, lat1 = f.bbox
        lat, lon = c["lat"][cand], c["lon"][cand]
        keep &= c["has_geo"][cand] & (lat >= lat0) & (lat <= lat1) & (lon >= lon0) & (lon <= lon1)
    if f.accuracy is not None:
        keep &= c["has_geo"][cand] & (c["accuracy"][cand] >= f.accuracy)
    return keep


def order(corpus: Corpus, rows: Rows, sort: str) -> Rows:
    """Rows in the requested sort order (ties broken by row, so the order is stable)."""
    if sort == "date-posted-asc":
        return rows
    if sort in ("date-posted-desc", ""):
        return rows[::-1]
    if sort.startswith("date-taken"):
        key = corpus.cols["taken"][rows]
        idx = np.argsort(key, kind="stable")
        return rows[idx if sort.endswith("asc") else idx[::-1]]
    key = corpus.cols["interest"][rows]
    if sort == "relevance":
        key = key + (corpus.cols["look"][rows] % 97).astype(np.float32) / 50
    idx = np.argsort(key, kind="stable")
    return rows[idx if sort.endswith("asc") else idx[::-1]]
