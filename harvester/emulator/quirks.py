"""Flickr's search quirks applied on top of exact matching: floor, fuzzy edges, cap, totals."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from harvester.emulator.config import EmulatorConfig
from harvester.emulator.corpus import Corpus
from harvester.emulator.faults import unit
from harvester.emulator.search import Filters, Rows, match

#: Parameters that do not change which photos a query matches.
_NOT_QUERY = frozenset(
    {"page", "per_page", "api_key", "format", "nojsoncallback", "jsoncallback", "extras"}
)


def query_hash(params: Mapping[str, str]) -> int:
    """A stable 64-bit hash of the query (paging and formatting excluded)."""
    items = sorted((k, v) for k, v in params.items() if k not in _NOT_QUERY)
    digest = hashlib.blake2b(repr(items).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def quirky_rows(corpus: Corpus, f: Filters, cfg: EmulatorConfig) -> Rows:
    """Matches as Flickr returns them: window snapped to the floor, edges bleeding by fuzz."""
    if not cfg.floor_s and not cfg.fuzz_s:
        return match(corpus, f)
    snapped = f.widened(cfg.floor_s, 0)
    rows = match(corpus, f.widened(cfg.floor_s, cfg.fuzz_s))
    if not cfg.fuzz_s or rows.size == 0:
        return rows
    up = corpus.cols["upload"][rows]
    outside = np.zeros(rows.size, bool)
    if snapped.min_upload is not None:
        outside |= up < snapped.min_upload
    if snapped.max_upload is not None:
        outside |= up > snapped.max_upload
    # Only about half the photos near the edge bleed in, a fixed half per photo.
    bleeds = (corpus.cols["look"][rows] >> np.uint64(7)) & np.uint64(1)
    return np.asarray(rows[~outside | (bleeds == 1)], dtype=np.int64)


def max_per_page(params: Mapping[str, str]) -> int:
    """500, or 250 for geo queries (bbox, lat/lon or has_geo)."""
    geo = any(params.get(k, "").strip() for k in ("bbox", "lat", "lon", "has_geo"))
    return 250 if geo else 500


def paging(params: Mapping[str, str]) -> tuple[int, int]:
    """(page, per_page) as Flickr reads them: page 0 is page 1, per_page clamped."""
    try:
        page = max(1, int(params.get("page", "1") or 1))
    except ValueError:
        page = 1
    try:
        per_page = int(params.get("per_page", "100") or 100)
    except ValueError:
        per_page = 100
    per_page = 100 if per_page < 1 else min(per_page, max_per_page(params))
    return page, per_page


@dataclass(frozen=True, slots=True)
class PageCut:
    """Which rows a page shows, and what it reports."""

    start: int
    end: int
    total: int  # as reported (possibly under-reported)
    pages: int


def cut_page(n: int, page: int, per_page: int, qhash: int, cfg: EmulatorConfig) -> PageCut:
    """The slice of the sorted matches for `page`, with the cap and reported totals applied."""
    total = reported_total(n, qhash, cfg)
    pages = math.ceil(total / per_page) if total else 0
    start = (page - 1) * per_page
    cap = cfg.cap
    if cap and start >= cap:
        start = ((cap - 1) // per_page) * per_page  # past the cap: the last in-cap page again
    end = min(start + per_page, n, cap) if cap else min(start + per_page, n)
    return PageCut(start=start, end=max(start, end), total=total, pages=pages)


def reported_total(n: int, qhash: int, cfg: EmulatorConfig) -> int:
    """The `total` Flickr reports: exact, or up to `total_underreport` low for large totals."""
    frac = float(cfg.total_underreport or 0.0)
    if n < 500 or frac <= 0:
        return n
    return int(n * (1.0 - frac * unit(cfg.seed, qhash, 3)))


def short_page(items: int, page: int, pages: int, seq: int, cfg: EmulatorConfig) -> int:
    """How many items to drop from this page (a rare transient short page)."""
    if page >= pages or items < 4 or unit(cfg.seed, seq, 5) >= float(cfg.short_page_rate or 0):
        return 0
    return 1 + int(unit(cfg.seed, seq, 6) * 3)
