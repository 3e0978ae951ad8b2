"""`harvest dupes OUT`: every copy within a harvest, classified, grouped, stored and exported.

    fingerprints (store; backfilled from the files once for older harvests)
      ─► candidates: equal digests; multi-index hashing of the 256-bit hash, of its 7 other
         rotations/flips, and of the central 80 % (crops); photos sharing local features
         (dupes_keypoints.py: crops of any kind) — only pairs with a new photo
      ─► classify (dataset/classify.py) ─► crops and the rest confirmed by local features
         on the stored files (dataset/geometry.py)
      ─► dup_pair, then groups anew (dataset/groups.py) ─► dup_group, summary, CSV, SQLite

Incremental: a photo is compared once with everything fingerprinted before it; a second run
after more photos compares only the new ones. Nothing is ever deleted.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import orjson
from PIL import Image

from harvester.dataset import geometry  # OpenCV itself is imported on first use
from harvester.dataset.classify import (
    IDENTICAL_KINDS,
    MATCH_RADIUS,
    Kind,
    PairVerdict,
    Signal,
    classify,
    ordered,
)
from harvester.dataset.fingerprint import Dihedral, dihedral_many, fingerprint, turn
from harvester.dataset.groups import Membership, build_groups
from harvester.dataset.keypoints import KP_VERSION
from harvester.dataset.mih import MultiIndex, Pairs
from harvester.dupes_keypoints import CropMode, crop_candidates, update_signatures
from harvester.exceptions import ConfigError, HarvestError, ImageError
from harvester.images import jpegmeta
from harvester.images.provenance import downloaded_size
from harvester.store.dupes import DupesStore, PairRow, SignalTable
from harvester.store.sqlite import Store, existing_store

log = logging.getLogger(__name__)

#: Below this quality (flat, dark) a hash says little: such pairs must be much closer.
LOW_QUALITY = 20
LOW_QUALITY_RADIUS = 10
MAX_METADATA_SET = 12  # largest set sharing a title or a date taken whose pairs are checked
_COUNTER = re.compile(r"\s*\(\d+\)\s*$")
GEOMETRY_SIDE = 512  # decode side for local features (geometry.py measured its thresholds here)
_CHANNEL_DIGEST, _CHANNEL_HASH, CHANNEL_CROP = "digest", "hash", "crop"


@dataclass(frozen=True, slots=True, kw_only=True)
class DupesReport:
    """What one `harvest dupes` run did and found (pairs and groups over the whole harvest)."""

    photos: int
    compared: int
    backfilled: int
    unreadable: int
    keypointed: int = 0  # keypoint signatures computed by this run (the crop channel)
    crop_candidates: int = 0  # pairs the keypoints proposed (each costs a geometry check)
    crop_channel: bool = False
    pairs_by_kind: Counter[str] = field(default_factory=Counter)
    identical_sets: Counter[int] = field(default_factory=Counter)  # set size → sets
    groups: int = 0

    def render(self) -> str:
        """The archive's tables: sets of identical photos by size, then pairs by kind."""
        lines = [
            f"photos fingerprinted {self.photos:,} (newly compared {self.compared:,}, "
            f"fingerprinted from their files {self.backfilled:,}, unreadable {self.unreadable})",
            (
                f"crop channel: on (keypoint signatures computed {self.keypointed:,}, "
                f"pairs proposed {self.crop_candidates:,})"
                if self.crop_channel
                else "crop channel: off (harvest dupes --crops on to look for crops)"
            ),
            "identical sets by size:",
            *(f"  {size:>3}: {n:,}" for size, n in sorted(self.identical_sets.items())),
            "pairs by kind:",
            *(f"  {kind:<17} {self.pairs_by_kind.get(kind, 0):,}" for kind in Kind),
            f"groups: {self.groups:,}",
        ]
        return "\n".join(lines)


def run_dupes(
    out: Path, *, radius: int = MATCH_RADIUS, crops: CropMode = CropMode.AUTO
) -> DupesReport:
    """Fingerprint what lacks one, compare the new photos, store pairs and groups."""
    with Store.open(existing_store(out)) as store:
        ds = DupesStore(store)
        backfilled, unreadable = backfill_fingerprints(ds, out)
        table = ds.signals()
        new = np.flatnonzero(~table.compared)
        found = _candidates(table, new, radius)
        keypointed, proposed, crop_channel = 0, 0, crops.wanted(len(table))
        if crop_channel:
            keypointed = update_signatures(ds, out)
            crop_pairs = crop_candidates(ds.keypoints(KP_VERSION), table, new)
            proposed = len(crop_pairs)
            add_pairs(found, crop_pairs, CHANNEL_CROP)
        verdicts = _judged(table, found, out, radius)
        ds.save_pairs(_pair_row(v) for v in verdicts)
        ds.mark_compared(table.ids[new].tolist())
        pairs = [_verdict_of(row) for row in ds.pairs()]
        members = build_groups(pairs, {int(i): _rank(table, k) for k, i in enumerate(table.ids)})
        ds.replace_groups((m.photo_id, m.group, m.kind, m.param) for m in members)
    return DupesReport(
        photos=len(table),
        compared=len(new),
        backfilled=backfilled,
        unreadable=unreadable,
        keypointed=keypointed,
        crop_candidates=proposed,
        crop_channel=crop_channel,
        pairs_by_kind=Counter(p.kind.value for p in pairs),
        identical_sets=_identical_sets(members),
        groups=sum(1 for m in members if m.kind is None),
    )


# --- fingerprints of photos harvested before fingerprints -------------------------------------


def backfill_fingerprints(ds: DupesStore, out: Path) -> tuple[int, int]:
    """Fingerprint stored photos from their files; returns (done, unreadable)."""
    unreadable = 0

    def rows() -> Iterator[tuple[object, ...]]:
        nonlocal unreadable
        for photo_id, rel in ds.unsigned():
            try:
                yield file_signal_row(photo_id, (out / rel).read_bytes())
            except (OSError, ImageError, ValueError, HarvestError) as exc:
                unreadable += 1
                log.warning("photo %s: cannot fingerprint %s: %s", photo_id, rel, exc)

    done = ds.write_signals(rows())
    if done:
        log.info("fingerprinted %d photos from their files", done)
    return done, unreadable


def file_signal_row(photo_id: int, data: bytes) -> tuple[object, ...]:
    """A stored file's fingerprint row: its content is already upright and unframed.

    The download is gone, so there is no byte digest (NULL); the scan digest is the stored
    file's, which for a kept Large is the downloaded image data itself.
    """
    with Image.open(io.BytesIO(data)) as image:
        size = image.size  # before the draft, which shrinks what `size` reports
        image.draft("L", (max(1, image.width // 8), max(1, image.height // 8)))
        gray = np.asarray(image.convert("L"), dtype=np.uint8)
    found = fingerprint(gray, src=data, scan=data)
    width, height, scale = _content_size(data) or (*size, None)
    row = (photo_id, *found.to_row(), width, height, scale)
    return (*row[:6], None, *row[7:])  # src_sha256: unknown


def _content_size(data: bytes) -> tuple[int, int, float | None] | None:
    """The content's size in the downloaded file's pixels and the original's scale (None
    when Flickr did not say), from the record harvest wrote into the file."""
    try:
        info = jpegmeta.parse_jpeg(data)
        com = next((s for s in info.segments if s.marker == 0xFE), None)
        meta = orjson.loads(com.payload(data)) if com else None
    except (ValueError, HarvestError):  # orjson.JSONDecodeError is a ValueError
        return None
    if not isinstance(meta, dict):
        return None
    crop, size = meta.get("crop"), downloaded_size(meta)
    if size is None:
        return None
    width, height = size
    long_side = max(width, height)
    if isinstance(crop, list) and len(crop) == 4:
        width, height = int(crop[2]) - int(crop[0]), int(crop[3]) - int(crop[1])
    original = meta.get("original") or {}
    known = max(int(original.get("width") or 0), int(original.get("height") or 0))
    return width, height, (known / long_side if known else None)


# --- candidates ---------------------------------------------------------------------------------


def _candidates(t: SignalTable, new: np.ndarray, radius: int) -> dict[tuple[int, int], str]:
    """Row pairs (i < j, at least one new) worth classifying, with the channel that found them."""
    found: dict[tuple[int, int], str] = {}
    if len(new) == 0:
        return found
    _add_digests(found, t, set(new.tolist()))
    index = MultiIndex(t.ph256)
    if not t.compared.any():  # the first run: one self-join, row numbers on both sides
        _add(found, index.self_join(radius), new, rows=True)
    else:
        _add(found, _cross(index, t.ph256[new], new, radius), new, rows=False)
    variants = dihedral_many(t.ph256[new])
    for g in list(Dihedral)[1:]:
        turned = np.ascontiguousarray(variants[:, g])
        _add(found, _cross(index, turned, new, radius), new, rows=False)
    _add_metadata(found, t, set(new.tolist()))
    crops = MultiIndex(t.c80)
    for pairs in (_cross(crops, t.ph256[new], new, radius), _cross(index, t.c80[new], new, radius)):
        _add(found, pairs, new, rows=False, channel=CHANNEL_CROP)
    return found


def _cross(index: MultiIndex, queries: np.ndarray, new: np.ndarray, radius: int) -> Pairs:
    return index.cross_join(queries, radius, self_ids=new)


def _add(
    found: dict[tuple[int, int], str],
    pairs: Pairs,
    new: np.ndarray,
    *,
    rows: bool,
    channel: str = _CHANNEL_HASH,
) -> None:
    """Add pairs: `rows` when both ends are row numbers, else `a` indexes `new`."""
    a = pairs.a if rows else new[pairs.a]
    add_pairs(found, zip(a.tolist(), pairs.b.tolist(), strict=True), channel)


def add_pairs(
    found: dict[tuple[int, int], str], pairs: Iterable[tuple[int, int]], channel: str
) -> None:
    """Add row pairs found by `channel`, unless another channel found them first."""
    for x, y in pairs:
        if x != y:
            found.setdefault((min(x, y), max(x, y)), channel)


def _add_metadata(found: dict[tuple[int, int], str], t: SignalTable, new: set[int]) -> None:
    """Photos with the same title, or taken in the same second: re-uploads keep both (the
    camera's EXIF date survives a crop), so they propose the copies no global hash can see.

    Only small sets (a generic title such as "IMG_0001" names unrelated photos by the
    thousand); local features then decide.
    """
    for keys in ([_title_key(x) for x in t.titles], t.taken):
        by: dict[str, list[int]] = {}
        for row, key in enumerate(keys):
            if key:
                by.setdefault(key, []).append(row)
        for rows in by.values():
            if 1 < len(rows) <= MAX_METADATA_SET and new.intersection(rows):
                for i, x in enumerate(rows):
                    for y in rows[i + 1 :]:
                        if x in new or y in new:
                            found.setdefault((x, y), CHANNEL_CROP)


def _title_key(title: str) -> str:
    """A title as re-uploads repeat it: case and spacing folded, a " (2)" counter dropped."""
    return " ".join(_COUNTER.sub("", title).casefold().split())


def _add_digests(found: dict[tuple[int, int], str], t: SignalTable, new: set[int]) -> None:
    """Equal byte or scan digests: each such set as pairs from its first row."""
    for digests in (t.src_sha256, t.scan_sha256):
        by: dict[bytes, list[int]] = {}
        for row, digest in enumerate(digests):
            if digest is not None:
                by.setdefault(digest, []).append(row)
        for rows in by.values():
            if len(rows) > 1 and new.intersection(rows):
                for other in rows[1:]:
                    found.setdefault((rows[0], other), _CHANNEL_DIGEST)


# --- judging --------------------------------------------------------------------------------


def signal_at(t: SignalTable, row: int) -> Signal:
    """The classifier's view of one fingerprinted photo of the store."""
    return Signal(
        photo_id=int(t.ids[row]),
        ph256=t.ph256[row].tobytes(),
        src_sha256=t.src_sha256[row],
        scan_sha256=t.scan_sha256[row],
        width=int(t.width[row]),
        height=int(t.height[row]),
        original_scale=None if np.isnan(t.scale[row]) else float(t.scale[row]),
        uploaded=int(t.uploaded[row]),
    )


def _rank(t: SignalTable, row: int) -> tuple[float, int, int]:
    return signal_at(t, row).rank


def _judged(
    t: SignalTable, candidates: dict[tuple[int, int], str], out: Path, radius: int
) -> list[PairVerdict]:
    """Classified pairs; geometry confirms what the hashes cannot explain."""
    features = _FeatureCache(out, t)
    verdicts = []
    for (i, j), channel in sorted(candidates.items()):
        if channel != _CHANNEL_DIGEST and max(t.quality[i], t.quality[j]) < LOW_QUALITY:
            continue  # two flat or black pictures hash alike: only their digests can tell
        verdict = _judge(t, i, j, channel, radius)
        if verdict is not None and verdict.needs_geometry:
            verdict = features.confirm(verdict)
        if verdict is not None:
            verdicts.append(verdict)
    return verdicts


def _judge(t: SignalTable, i: int, j: int, channel: str, radius: int) -> PairVerdict | None:
    x, y = signal_at(t, i), signal_at(t, j)
    low = min(int(t.quality[i]), int(t.quality[j])) < LOW_QUALITY
    verdict = classify(x, y, radius=LOW_QUALITY_RADIUS if low else radius)
    if verdict is None and channel == CHANNEL_CROP and not low:
        a, b = ordered(x, y)  # the central 80 % of one is the whole of the other: a crop?
        return PairVerdict(
            a=a.photo_id,
            b=b.photo_id,
            kind=Kind.CROPPED,
            param="",
            distance=radius,
            variant=Dihedral.IDENTITY,
            needs_geometry=True,
        )
    return verdict


class _FeatureCache:
    """Local features of stored files, computed once per photo, for the geometry check."""

    def __init__(self, out: Path, t: SignalTable) -> None:
        self._out = out
        self._paths = dict(zip(t.ids.tolist(), t.paths, strict=True))
        self._cache: dict[tuple[int, int], geometry.Features] = {}

    def confirm(self, v: PairVerdict) -> PairVerdict | None:
        """The pair as local features see it: a crop with its kept area, another change, or
        None when the features do not confirm a copy. Unreadable files leave it unverified."""
        try:
            fa, fb = self._features(v.a, v.variant), self._features(v.b, Dihedral.IDENTITY)
        except (OSError, ImageError, ValueError) as exc:
            log.info("pair %s/%s: no local features: %s", v.a, v.b, exc)
            return replace(v, kind=Kind.OTHER, param="unverified", needs_geometry=False)
        found = geometry.verify(fa, fb)
        if found is None or not found.is_copy:
            return None  # weak, or only overlapping or alike: two pictures of one scene
        kind, params = geometry.classify_geometry(found)
        if kind is geometry.GeometryKind.CROPPED:
            return replace(
                v, kind=Kind.CROPPED, param=f"{found.kept_area:.3f}", needs_geometry=False
            )
        if kind is geometry.GeometryKind.ROTATED:
            angle = str(round(float(str(params["angle"]))))
            return replace(v, kind=Kind.ROTATED, param=angle, needs_geometry=False)
        param = f"angle={found.angle_deg:.1f} scale={found.scale:.3f}"
        return replace(v, kind=Kind.OTHER, param=param, needs_geometry=False)

    def _features(self, photo_id: int, g: Dihedral) -> geometry.Features:
        key = (photo_id, int(g))
        if key not in self._cache:
            with Image.open(self._out / self._paths[photo_id]) as image:
                image.draft("L", (GEOMETRY_SIDE, GEOMETRY_SIDE))
                gray = image.convert("L")
                gray.thumbnail((GEOMETRY_SIDE, GEOMETRY_SIDE))
                pixels = np.ascontiguousarray(turn(np.asarray(gray, dtype=np.uint8), g))
            self._cache[key] = geometry.features(pixels)
        return self._cache[key]


# --- rows and outputs --------------------------------------------------------------------------


def _pair_row(v: PairVerdict) -> tuple[object, ...]:
    method = "geometry" if v.kind in (Kind.CROPPED, Kind.OTHER) and v.param else "hash"
    if v.kind in IDENTICAL_KINDS:
        method = "digest"
    return (v.a, v.b, v.kind.value, v.param, v.distance, int(v.variant), None, method)


def _verdict_of(row: PairRow) -> PairVerdict:
    a, b, kind, param, distance, variant, _score, _method = row
    return PairVerdict(
        a=a, b=b, kind=Kind(kind), param=param, distance=distance, variant=Dihedral(variant)
    )


def _identical_sets(members: Iterable[Membership]) -> Counter[int]:
    """Sets of identical photos (a representative and its identical copies) by size."""
    sizes: Counter[int] = Counter()
    for m in members:
        if m.kind is None or m.kind in IDENTICAL_KINDS:
            sizes[m.group] += 1
    return Counter(n for n in sizes.values() if n > 1)


def write_pairs_csv(out: Path, target: Path) -> int:
    """`--pairs FILE.csv`: a,b,kind,param,distance for every pair (photo ids)."""
    with Store.open(existing_store(out), readonly=True) as store:
        rows = DupesStore(store).pairs()
    with target.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("a", "b", "kind", "param", "distance"))
        writer.writerows((a, b, kind, param, d) for a, b, kind, param, d, *_ in rows)
    return len(rows)


#: The VISE/Ashmolean analysis's tables (plus transform_flip), for archives that used VISE.
VISE_DDL = """
CREATE TABLE fileid_to_filename_map (file_id INTEGER PRIMARY KEY, filename TEXT NOT NULL);
CREATE TABLE identical_list (set_id INTEGER NOT NULL, file_id INTEGER NOT NULL, kind TEXT);
CREATE TABLE identical_list_stat (set_size INTEGER PRIMARY KEY, set_count INTEGER NOT NULL);
CREATE TABLE transform_resize (file1_id INTEGER, file2_id INTEGER, scale REAL, distance INTEGER);
CREATE TABLE transform_rotate90i (file1_id INTEGER, file2_id INTEGER, angle INTEGER,
    distance INTEGER);
CREATE TABLE transform_flip (file1_id INTEGER, file2_id INTEGER, axis TEXT, distance INTEGER);
CREATE TABLE transform_other (file1_id INTEGER, file2_id INTEGER, kind TEXT, param TEXT,
    distance INTEGER);
CREATE TABLE transform_list_stat (transform TEXT PRIMARY KEY, pair_count INTEGER NOT NULL);
"""


#: Kind → (VISE table, how its parameter is stored); the rest go to transform_other.
_VISE_TABLES: dict[Kind, tuple[str, Callable[[str], object]]] = {
    Kind.RESIZED: ("transform_resize", float),
    Kind.ROTATED: ("transform_rotate90i", lambda p: round(float(p))),
    Kind.FLIPPED: ("transform_flip", str),
}


def write_vise_sqlite(out: Path, target: Path) -> None:
    """`--sqlite FILE`: the archive's layout; file ids are photo ids, filenames their paths."""
    if target.exists():
        raise ConfigError(f"{target} exists; give a new file for --sqlite")
    with Store.open(existing_store(out), readonly=True) as store:
        ds = DupesStore(store)
        table, pairs = ds.signals(), ds.pairs()
    db = sqlite3.connect(target)
    try:
        db.executescript(VISE_DDL)
        db.executemany(
            "INSERT INTO fileid_to_filename_map VALUES (?, ?)",
            zip(table.ids.tolist(), table.paths, strict=True),
        )
        _vise_identical(db, pairs)
        _vise_transforms(db, pairs)
        db.commit()
    finally:
        db.close()


def _vise_identical(db: sqlite3.Connection, pairs: list[PairRow]) -> None:
    identical = [
        _verdict_of(p) for p in pairs if p[2] in (Kind.IDENTICAL_BYTES, Kind.IDENTICAL_PIXELS)
    ]
    rank = {x: (0, 0, x) for p in identical for x in (p.a, p.b)}
    members = build_groups(identical, rank)
    db.executemany(
        "INSERT INTO identical_list VALUES (?, ?, ?)",
        ((m.group, m.photo_id, m.kind.value if m.kind else None) for m in members),
    )
    sets = _identical_sets(members)
    db.executemany("INSERT INTO identical_list_stat VALUES (?, ?)", sorted(sets.items()))


def _vise_transforms(db: sqlite3.Connection, pairs: list[PairRow]) -> None:
    tables = {
        Kind.RESIZED: "transform_resize",
        Kind.ROTATED: "transform_rotate90i",
        Kind.FLIPPED: "transform_flip",
    }
    counts: Counter[str] = Counter()
    for a, b, kind, param, distance, *_ in pairs:
        k = Kind(kind)
        if k in (Kind.IDENTICAL_BYTES, Kind.IDENTICAL_PIXELS):
            continue
        name = tables.get(k, "transform_other")
        counts[name] += 1
        if name == "transform_other":
            db.execute(
                "INSERT INTO transform_other VALUES (?, ?, ?, ?, ?)", (a, b, kind, param, distance)
            )
        else:
            value: object = (
                float(param) if k is Kind.RESIZED else (int(param) if k is Kind.ROTATED else param)
            )
            db.execute(f"INSERT INTO {name} VALUES (?, ?, ?, ?)", (a, b, value, distance))
    db.executemany("INSERT INTO transform_list_stat VALUES (?, ?)", sorted(counts.items()))
