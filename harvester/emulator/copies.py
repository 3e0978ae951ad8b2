"""Near-duplicate groups: one source photo and 1-3 copies, each of one kind with one parameter.

A group's source is its oldest member (the first upload); every other member is a copy of it,
never a copy of a copy. Columns (all vectorised, drawn from the corpus seed):

- ``dup_group``: the source's row for every member of a group, -1 elsewhere;
- ``copy_of``: the source's row for a copy, -1 for a source or an ungrouped photo;
- ``copy_kind``: an index into KINDS (0 for a non-copy);
- ``copy_param``: four float32 numbers whose meaning depends on the kind (see `param_json`);
- ``dup_rot``: clockwise quarter turns of a rotated copy (1 = 90°, as before), else 0.

What a copy is, relative to its source's picture (its content box, inside any frame):

=============  ==========================================================================
identical      the same file at every size (byte-identical JPEGs, same original format)
recompressed   the same pixels re-encoded as JPEG at quality 60-85
resized        the picture at another original size (scale 0.35-0.9, or 1.15-1.6 up)
rotated        turned 90, 180 or 270 degrees clockwise (90 and 270 swap width and height)
flipped        mirrored: axis "h" left-right, "v" top-bottom
tinted         sepia (strength 0.5-1) or a warm/cool colour cast (per-channel gains)
darkened       every channel multiplied by a factor 0.3-0.6
cropped        a kept box of the content, 3-15 % off each side (independently)
=============  ==========================================================================

Frames: a copy is made from the source's whole file, so it carries the source's frame, turned,
mirrored or scaled with the picture, except a cropped copy, whose box lies inside the content
and so has no frame. Every parameter (the crop box included) relates content to content.

Copies keep their source's title keywords and description, at least 70 % of its tags, its look,
taken date and geotag, and gain a few generic tags of their own now and then.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from harvester.emulator.vocabulary import VOCABULARY, Kind

Cols = dict[str, npt.NDArray[Any]]
Occ = tuple[npt.NDArray[np.int32], npt.NDArray[np.int16], npt.NDArray[np.uint8]]

DUP_GROUP_SHARE = 0.01  # groups per photo; each group has a source and 1-3 copies
KINDS = (
    "none",
    "identical",
    "recompressed",
    "resized",
    "rotated",
    "flipped",
    "tinted",
    "darkened",
    "cropped",
)
(NONE, IDENTICAL, RECOMPRESSED, RESIZED, ROTATED, FLIPPED, TINTED, DARKENED, CROPPED) = range(9)
KIND_WEIGHTS = np.array([0.16, 0.12, 0.16, 0.12, 0.10, 0.10, 0.10, 0.14])  # identical..cropped
MAX_SIDE = 6000
_IN_TITLE, _IN_TAGS = 1, 2
TAG_DROP_P = 0.2  # each inherited tag is dropped with this probability...
TAG_DROP_MAX = 0.3  # ...but never more than this share of the source's tags
OWN_TAG_P = 0.1  # a copy keeps each of its own generic keywords as a tag with this probability


def groups(rng: np.random.Generator, cols: Cols) -> None:
    """Draw the groups, each copy's kind and parameter, and apply them to the copy's columns."""
    n = cols["upload"].size
    cols["dup_group"] = np.full(n, -1, np.int32)
    cols["copy_of"] = np.full(n, -1, np.int32)
    cols["copy_kind"] = np.zeros(n, np.uint8)
    cols["copy_param"] = np.zeros((n, 4), np.float32)
    cols["dup_rot"] = np.zeros(n, np.uint8)
    count = int(n * DUP_GROUP_SHARE)
    sizes = rng.integers(2, 5, count)
    if count == 0 or sizes.sum() > n:
        return
    members = rng.permutation(n)[: int(sizes.sum())]
    gid = np.repeat(np.arange(count), sizes)
    first = np.full(count, n, np.int64)
    np.minimum.at(first, gid, members)
    is_copy = members != first[gid]
    copies, src = members[is_copy], first[gid][is_copy]
    cols["dup_group"][members] = first[gid].astype(np.int32)
    cols["copy_of"][copies] = src.astype(np.int32)
    kind = 1 + rng.choice(len(KIND_WEIGHTS), copies.size, p=KIND_WEIGHTS / KIND_WEIGHTS.sum())
    cols["copy_kind"][copies] = kind.astype(np.uint8)
    cols["copy_param"][copies] = _params(rng, kind, cols["o_w"][src], cols["o_h"][src])
    _apply(cols, copies, src, kind)


def _params(
    rng: np.random.Generator,
    kind: npt.NDArray[np.int64],
    o_w: npt.NDArray[np.int32],
    o_h: npt.NDArray[np.int32],
) -> npt.NDArray[np.float32]:
    """(copies, 4) parameters; every kind's draws are made for every copy (fixed rng use)."""
    m = kind.size
    out = np.zeros((m, 4), np.float64)
    quality = rng.integers(60, 86, m)
    down, up = rng.uniform(0.35, 0.9, m), rng.uniform(1.15, 1.6, m)
    scale = np.where(rng.random(m) < 0.8, down, up)
    scale = np.where(np.maximum(o_w, o_h) * scale > MAX_SIDE, down, scale)
    scale = np.maximum(scale, 16 / np.minimum(o_w, o_h))  # never below 16 px a side
    angle = rng.choice(np.array([90, 180, 270]), m, p=[0.45, 0.2, 0.35])
    axis = (rng.random(m) < 0.3).astype(np.float64)  # 0 h (left-right), 1 v (top-bottom)
    sepia = rng.random(m) < 0.5
    strength = rng.uniform(0.5, 1.0, m)
    cast = rng.uniform(0.1, 0.25, m) * np.where(rng.random(m) < 0.5, 1.0, -1.0)  # warm / cool
    green = rng.uniform(-0.05, 0.05, m)
    factor = rng.uniform(0.3, 0.6, m)
    box = rng.uniform(0.03, 0.15, (m, 4))
    box[:, 2:] = 1.0 - box[:, 2:]  # l, t, r, b as fractions of the content box
    tint = np.where(
        sepia[:, None],
        _first(np.round(strength, 3), lead=0.0),
        np.stack([np.ones(m), 1 + cast, 1 + green, 1 - cast], 1).round(3),
    )
    for k, values in (
        (RECOMPRESSED, _first(quality)),
        (RESIZED, _first(np.round(scale, 3))),
        (ROTATED, _first(angle)),
        (FLIPPED, _first(axis)),
        (TINTED, tint),
        (DARKENED, _first(np.round(factor, 3))),
        (CROPPED, np.round(box, 3)),
    ):
        out[kind == k] = values[kind == k]
    return out.astype(np.float32)


def _first(x: npt.NDArray[Any], lead: float | None = None) -> npt.NDArray[np.float64]:
    """(m, 4) rows holding x in column 0 (or, with `lead`, lead then x), zeros elsewhere."""
    out = np.zeros((x.size, 4), np.float64)
    if lead is None:
        out[:, 0] = x
    else:
        out[:, 0], out[:, 1] = lead, x
    return out


def content_box(
    o_w: npt.NDArray[np.integer], o_h: npt.NDArray[np.integer], fw: npt.NDArray[np.uint8]
) -> tuple[npt.NDArray[np.int64], ...]:
    """(left, top, width, height) in pixels of the picture inside the frame (images.frame_box)."""
    w, h = o_w.astype(np.int64), o_h.astype(np.int64)
    t, r, b, left = (
        np.round(fw[:, i].astype(np.int64) * s / 1000) for i, s in enumerate((h, w) * 2)
    )
    return tuple(np.asarray(x, np.int64) for x in (left, t, w - left - r, h - t - b))


def _apply(
    cols: Cols,
    copies: npt.NDArray[np.int64],
    src: npt.NDArray[np.int64],
    kind: npt.NDArray[np.int64],
) -> None:
    """Sizes, frame, format, look, taken date and geotag of each copy, from its source."""
    p = cols["copy_param"][copies].astype(np.float64)
    sw, sh = cols["o_w"][src].astype(np.int64), cols["o_h"][src].astype(np.int64)
    w, h = sw.copy(), sh.copy()
    resized = kind == RESIZED
    w[resized] = np.maximum(16, np.round(sw * p[:, 0]))[resized]
    h[resized] = np.maximum(16, np.round(sh * p[:, 0]))[resized]
    turns = np.where(kind == ROTATED, p[:, 0] // 90, 0).astype(np.int64)
    w, h = np.where(turns % 2 == 1, h, w), np.where(turns % 2 == 1, w, h)
    cropped = kind == CROPPED
    fw = cols["frame_w"][src]
    _, _, cw, ch = content_box(sw, sh, fw)
    w[cropped] = np.maximum(16, np.round((p[:, 2] - p[:, 0]) * cw))[cropped]
    h[cropped] = np.maximum(16, np.round((p[:, 3] - p[:, 1]) * ch))[cropped]
    cols["o_w"][copies], cols["o_h"][copies] = w.astype(np.int32), h.astype(np.int32)
    cols["dup_rot"][copies] = turns.astype(np.uint8)
    # A 90° clockwise turn moves the left band to the top: (t, r, b, l) -> (l, t, r, b).
    new_fw = np.take_along_axis(fw, (np.arange(4)[None, :] - turns[:, None]) % 4, axis=1)
    flip = kind == FLIPPED
    mirror = np.where((p[:, 0] == 0)[:, None], [0, 3, 2, 1], [2, 1, 0, 3])
    new_fw[flip] = np.take_along_axis(fw, mirror, axis=1)[flip]
    new_fw[cropped] = 0
    cols["frame_w"][copies] = new_fw
    cols["frame"][copies] = cols["frame"][src] & ~cropped
    fmt = cols["o_fmt"][src].copy()
    fmt[kind == RECOMPRESSED] = 0  # jpg
    cols["o_fmt"][copies] = fmt
    for name in ("look", "frame_color", "taken", "taken_gran", "taken_unknown"):
        cols[name][copies] = cols[name][src]
    for name in ("has_geo", "lat", "lon", "accuracy"):
        cols[name][copies] = cols[name][src]


def text(rng: np.random.Generator, cols: Cols, occ: Occ) -> Occ:
    """Keyword occurrences with each copy's replaced by its source's (see the module docstring).

    `occ` is (row, keyword, field mask), grouped by keyword with rows sorted within; so is the
    result.
    """
    occ_row, occ_kw, occ_mask = occ
    n = cols["upload"].size
    copies = np.flatnonzero(cols["copy_of"] >= 0)
    if copies.size == 0:
        return occ
    src = cols["copy_of"][copies].astype(np.int64)
    new_row, new_kw, new_mask = _inherited(rng, occ, n, copies, src)
    is_copy = np.zeros(n, bool)
    is_copy[copies] = True
    own = np.flatnonzero(is_copy[occ_row])
    generic = np.array([kw.kind == Kind.GENERIC for kw in VOCABULARY])
    keep_own = own[(rng.random(own.size) < OWN_TAG_P) & generic[occ_kw[own]]]
    new_keys = new_kw.astype(np.int64) * n + new_row
    own_keys = occ_kw[keep_own].astype(np.int64) * n + occ_row[keep_own]
    keep_own = keep_own[~np.isin(own_keys, new_keys)]
    keep = ~is_copy[occ_row]
    keep[keep_own] = True
    mask = occ_mask.copy()
    mask[keep_own] = _IN_TAGS
    old_row, old_kw, old_mask = occ_row[keep], occ_kw[keep], mask[keep]
    order = np.argsort(new_keys, kind="stable")
    at = np.searchsorted(old_kw.astype(np.int64) * n + old_row, new_keys[order])
    return (
        np.insert(old_row, at, new_row[order].astype(np.int32)),
        np.insert(old_kw, at, new_kw[order]),
        np.insert(old_mask, at, new_mask[order]),
    )


def _inherited(
    rng: np.random.Generator,
    occ: Occ,
    n: int,
    copies: npt.NDArray[np.int64],
    src: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int16], npt.NDArray[np.uint8]]:
    """Each copy's share of its source's occurrences: all but a few tags (never over 30 %)."""
    occ_row, occ_kw, occ_mask = occ
    is_src = np.zeros(n, bool)
    is_src[src] = True
    sidx = np.flatnonzero(is_src[occ_row])
    sidx = sidx[np.argsort(occ_row[sidx], kind="stable")]
    srows = occ_row[sidx]
    start = np.searchsorted(srows, src, "left")
    count = np.searchsorted(srows, src, "right") - start
    rep = np.repeat(np.arange(copies.size), count)
    within = np.arange(rep.size) - np.repeat(np.cumsum(count) - count, count)
    pick = sidx[start[rep] + within]
    row, kw, mask = copies[rep], occ_kw[pick], occ_mask[pick].copy()
    tagged = (mask & _IN_TAGS) != 0
    u = rng.random(rep.size) + np.where(tagged, 0.0, 2.0)  # untagged sort last
    order = np.lexsort((u, rep))
    rank = np.empty(rep.size, np.int64)
    rank[order] = np.arange(rep.size) - np.repeat(np.cumsum(count) - count, count)
    tags = np.bincount(rep[tagged], minlength=copies.size)
    drop = tagged & (u < TAG_DROP_P) & (rank < np.floor(TAG_DROP_MAX * tags[rep] + 1e-9))
    mask[drop] &= ~np.uint8(_IN_TAGS)
    live = mask != 0
    return row[live], kw[live], mask[live]


def param_json(kind: int, p: npt.NDArray[np.float32]) -> dict[str, Any] | None:
    """The truth's `copy_param` for a copy of `kind` with stored parameters `p`."""
    v = [round(float(x), 4) for x in p]
    match kind:
        case 1:
            return {}
        case 2:
            return {"quality": int(v[0])}
        case 3:
            return {"scale": v[0]}
        case 4:
            return {"angle": int(v[0])}
        case 5:
            return {"axis": "v" if v[0] else "h"}
        case 6:
            if v[0] == 0:
                return {"tint": "sepia", "strength": v[1]}
            return {"tint": "cast", "gains": v[1:]}
        case 7:
            return {"factor": v[0]}
        case 8:
            kept = (v[2] - v[0]) * (v[3] - v[1])
            return {"box": v, "kept": round(kept, 4)}
    return None
