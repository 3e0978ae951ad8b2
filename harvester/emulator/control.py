"""Test endpoints under /_emulator/ (not Flickr's): ground truth, statistics, vocabulary, photos."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from harvester.emulator import copies as cp
from harvester.emulator import list_methods
from harvester.emulator.corpus import IN_DESC, IN_TAGS, IN_TITLE, Corpus
from harvester.emulator.faults import Stats
from harvester.emulator.images import FRAME_COLORS, frame_box
from harvester.emulator.methods import MethodContext
from harvester.emulator.photojson import geom, original_format
from harvester.emulator.search import SearchError, match, parse_filters
from harvester.emulator.sizes import available
from harvester.emulator.static import spec_for
from harvester.emulator.vocabulary import VOCABULARY

Json = dict[str, Any]


def truth_ids(ctx: MethodContext, params: Mapping[str, str]) -> list[str]:
    """Ids of every photo matching the search filters exactly (no paging, cap, floor or fuzz),
    or of a list: `photoset_id=`, `gallery_id=` (in list order), `commons=1`; `group_id=` is a
    search filter like `user_id=`."""
    listed = list_methods.list_truth(ctx, params)  # photoset_id, gallery_id, commons=1
    if listed is not None:
        return listed
    filters = parse_filters(ctx.corpus, params, ctx.owners())
    rows = match(ctx.corpus, list_methods.with_pool(ctx, filters, params))
    ids = ctx.corpus.cols["id"][rows]
    return [str(i) for i in ids.tolist()]


def vocabulary(corpus: Corpus) -> list[Json]:
    """Every keyword with its exact text-match and tag-match counts."""
    return [
        {
            "word": kw.word,
            "kind": kw.kind.name.lower(),
            "text_count": int(corpus.kw_offsets[k + 1] - corpus.kw_offsets[k]),
            "tag_count": int(corpus.tag_offsets[k + 1] - corpus.tag_offsets[k]),
        }
        for k, kw in enumerate(VOCABULARY)
    ]


def photo_truth(corpus: Corpus, row: int) -> Json:
    """Ground truth of one photo: sizes, original, frame per side, duplicate group and what the
    photo is a copy of (`copy_truth`), keywords, geotag."""
    c = corpus.cols
    sizes = {s.extra: {"width": w, "height": h} for s, w, h in available(geom(corpus, row))}
    group = int(c["dup_group"][row])
    return {
        "id": corpus.photo_id(row),
        "upload": int(c["upload"][row]),
        "owner": corpus.owner_nsid[int(c["owner"][row])],
        "license": int(c["license"][row]),
        "original": {
            "width": int(c["o_w"][row]),
            "height": int(c["o_h"][row]),
            "format": original_format(corpus, row),
            "visible": bool(c["orig_visible"][row]),
        },
        "sizes": sizes,
        "frame": _frame(corpus, row),
        "duplicate_group": corpus.photo_id(group) if group >= 0 else None,
        "duplicates": [corpus.photo_id(r) for r in corpus.dup_rows(row)] if group >= 0 else [],
        "rotated": bool(c["dup_rot"][row]),
        **copy_truth(corpus, row),
        "keywords": {
            "title": corpus.keywords_of(row, IN_TITLE),
            "tags": corpus.keywords_of(row, IN_TAGS),
            "description": corpus.keywords_of(row, IN_DESC),
        },
        "geo": {
            "latitude": float(c["lat"][row]),
            "longitude": float(c["lon"][row]),
            "accuracy": int(c["accuracy"][row]),
        }
        if bool(c["has_geo"][row])
        else None,
    }


def copy_truth(corpus: Corpus, row: int) -> Json:
    """What a photo is a copy of, how it was made, and what became of its source's frame.

    `copy_param` by kind (copies.py): identical {}, recompressed {"quality"}, resized {"scale"},
    rotated {"angle"} (degrees clockwise), flipped {"axis": "h" left-right | "v" top-bottom},
    tinted {"tint": "sepia", "strength"} or {"tint": "cast", "gains": [r, g, b]}, darkened
    {"factor"}, cropped {"box": [left, top, right, bottom], "kept"}: the box as fractions of the
    source's content (its picture inside any frame), `kept` its share of that area. Every edit
    relates content to content; `copy_frame` says what became of a framed source's frame:
    "kept" (carried, turned, mirrored or scaled with the picture) or "dropped" (cropped away).
    """
    c = corpus.cols
    src = int(c["copy_of"][row])
    if src < 0:
        return {"copy_of": None, "copy_kind": None, "copy_param": None, "copy_frame": None}
    kind = int(c["copy_kind"][row])
    framed = bool(c["frame"][src])
    return {
        "copy_of": corpus.photo_id(src),
        "copy_kind": cp.KINDS[kind],
        "copy_param": cp.param_json(kind, c["copy_param"][row]),
        "copy_frame": ("dropped" if kind == cp.CROPPED else "kept") if framed else None,
    }


def _frame(corpus: Corpus, row: int) -> Json | None:
    if not bool(corpus.cols["frame"][row]):
        return None
    from harvester.emulator.sizes import BY_EXTRA

    spec = spec_for(corpus, row, BY_EXTRA["o"])
    t, r, b, left = spec.frame_permille
    pt, pr, pb, pl = frame_box(spec)
    return {
        "permille": {"top": t, "right": r, "bottom": b, "left": left},
        "original_px": {"top": pt, "right": pr, "bottom": pb, "left": pl},
        "color": list(FRAME_COLORS[spec.frame_color % len(FRAME_COLORS)]),
    }


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


class Control:
    """aiohttp handlers for /_emulator/*."""

    def __init__(self, ctx: MethodContext, stats: Stats) -> None:
        self.ctx, self.stats = ctx, stats

    async def truth(self, request: web.Request) -> web.Response:
        """GET /_emulator/truth?<search params> → {"count", "ids"}."""
        try:
            ids = truth_ids(self.ctx, dict(request.query))
        except SearchError as err:
            return _json({"code": err.code, "message": err.message}, status=400)
        return _json({"count": len(ids), "ids": ids})

    async def stats_view(self, request: web.Request) -> web.Response:
        """GET /_emulator/stats."""
        return _json(self.stats.as_dict())

    async def vocabulary_view(self, request: web.Request) -> web.Response:
        """GET /_emulator/vocabulary."""
        return _json({"photos": self.ctx.corpus.size, "keywords": vocabulary(self.ctx.corpus)})

    async def photo(self, request: web.Request) -> web.Response:
        """GET /_emulator/photo/{id}."""
        raw = request.match_info["photo_id"]
        row = self.ctx.corpus.row_of_id(int(raw)) if raw.isdigit() else None
        if row is None:
            return _json({"message": "Photo not found"}, status=404)
        return _json(photo_truth(self.ctx.corpus, row))
