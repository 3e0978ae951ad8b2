"""The album resolver of `harvest match` (duplicates.md §5.5, step 3).

An album is a set of files known to belong together: a `file,candidate_ids` row (the file and
the photo ids it may be) or the files of one `group` in `group,file` rows. A group's candidates
are the photos of the owners on whom at least ANCHORS of its global matches land; when none
did, the photos within the multi-index's widest radius (47) of one of its files. Inside an
album the m×n distance matrix (best of keys, turns and channels) is cheap, so files are
assigned one-to-one, greedily by increasing distance (each accepted pair is then the mutual
best of what is left), up to LOOSE_RADIUS; the false-match budget is m·P(d ≤ r) and stays
small for small albums. A pair with a rival within VARIANT_MARGIN, or a file no hash places
when few candidates are left, is decided by ORB+RANSAC on the pixels.
"""

from __future__ import annotations

import csv
import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from harvester.dataset import geometry
from harvester.dataset.classify import VARIANT_MARGIN
from harvester.dataset.fingerprint import Dihedral, turn
from harvester.dataset.mih import MAX_RADIUS
from harvester.exceptions import ConfigError, ImageError
from harvester.match import (
    FileMatch,
    Harvest,
    Hit,
    Probe,
    Stage,
    Verdict,
    file_match,
    geometry_gray,
    global_hits,
)

log = logging.getLogger(__name__)

LOOSE_RADIUS = 51  # pHash-256 radius inside an album (duplicates.md §5.5)
ANCHORS = 3  # global matches on one owner that restrict a group to that owner's photos
MAX_GEOMETRY_CANDIDATES = 12  # a file no hash places is checked by features against so few
_CHUNK = 1 << 14  # candidates per distance block: (chunk, 256) float32 = 16 MB
_IDS = re.compile(r"[\s|,;]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class Album:
    """Files that belong together, and the photo ids they may be (None: found from owners)."""

    name: str
    files: tuple[str, ...]  # names relative to DIR, with /
    candidates: tuple[int, ...] | None


def read_albums(path: Path, directory: Path) -> list[Album]:
    """The albums of a CSV whose header is `file,candidate_ids` or `group,file`."""
    try:
        with path.open(encoding="utf-8", newline="") as f:
            rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    except OSError as exc:
        raise ConfigError(f"cannot read --albums {path}: {exc}") from exc
    header = [c.strip().lower() for c in rows[0]] if rows else []
    body = [r for r in rows[1:] if len(r) >= 2]
    if header[:2] == ["file", "candidate_ids"]:
        return [
            Album(name=f"row {n}", files=(_name(r[0], directory),), candidates=_ids(r[1], path))
            for n, r in enumerate(body, start=2)
        ]
    if header[:2] == ["group", "file"]:
        groups: dict[str, list[str]] = {}
        for r in body:
            groups.setdefault(r[0].strip(), []).append(_name(r[1], directory))
        return [Album(name=g, files=tuple(fs), candidates=None) for g, fs in groups.items()]
    raise ConfigError(f"{path}: the header must be file,candidate_ids or group,file")


def _name(text: str, directory: Path) -> str:
    p = Path(text.strip())
    if not p.is_absolute():
        return p.as_posix()
    try:
        return p.resolve().relative_to(directory.resolve()).as_posix()
    except ValueError as exc:
        raise ConfigError(f"album file {p} is not under {directory}") from exc


def _ids(text: str, path: Path) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in _IDS.split(text.strip()) if x)
    except ValueError as exc:
        raise ConfigError(f"{path}: candidate ids must be photo ids: {text!r}") from exc


# --- resolving ----------------------------------------------------------------------------------


def resolve(
    albums: Sequence[Album],
    probes: Sequence[Probe],
    harvest: Harvest,
    rows: Sequence[FileMatch],
    *,
    max_pixels: int,
) -> dict[str, FileMatch]:
    """The rows the albums change, by file name: assigned ones become album or geometry matches."""
    index = {p.name: i for i, p in enumerate(probes)}
    by_file = {r.file: r for r in rows}
    features = LocalFeatures(harvest, max_pixels)
    changed: dict[str, FileMatch] = {}
    for album in albums:
        members = [index[f] for f in album.files if f in index and not probes[index[f]].error]
        if missing := [f for f in album.files if f not in index]:
            log.warning("album %s: no such image file under DIR: %s", album.name, missing)
        rows_of = [by_file[probes[i].name] for i in members]
        candidates = _candidates(album, [probes[i] for i in members], rows_of, harvest)
        if not members or len(candidates) == 0:
            continue
        best = [_best_hits(probes[i], harvest, candidates) for i in members]
        for m, hit, stage in _assign(best, [probes[i] for i in members], features):
            probe, old = probes[members[m]], by_file[probes[members[m]].name]
            row = file_match(probe, hit, Verdict.MATCH, harvest, stage)
            if old.verdict is Verdict.MATCH and old.photo_id == row.photo_id:
                continue  # the global pass had it already
            changed[probe.name] = row
    return changed


def _candidates(
    album: Album, probes: Sequence[Probe], rows: Sequence[FileMatch], harvest: Harvest
) -> npt.NDArray[np.intp]:
    """Harvest rows the album's files may be: those named, those of the owners its global
    matches anchor, else every photo near one of its files at the index's widest radius."""
    if album.candidates is not None:
        unknown = [i for i in album.candidates if i not in harvest.row_of]
        if unknown:
            log.warning("album %s: photos not in the harvest: %s", album.name, unknown)
        return np.array([harvest.row_of[i] for i in album.candidates if i in harvest.row_of], int)
    matched = [
        harvest.row_of[r.photo_id] for r in rows if r.verdict is Verdict.MATCH and r.photo_id
    ]
    owners = Counter(harvest.owners[row] for row in matched)
    anchored = {o for o, n in owners.items() if o and n >= min(ANCHORS, len(matched))}
    if not anchored:
        near = {h.row for hits in global_hits(probes, harvest, MAX_RADIUS) for h in hits}
        return np.array(sorted(near), int)
    return np.array([r for r, o in enumerate(harvest.owners) if o in anchored], int)


def _best_hits(probe: Probe, harvest: Harvest, rows: npt.NDArray[np.intp]) -> list[Hit]:
    """Per candidate row, the probe's best key, turn and channel (brute force: few candidates)."""
    from harvester.match import _CROP, _HASH, turns_of

    t = harvest.table
    ph = turns_of([k.ph256 for k in probe.keys])
    crop = turns_of([k.c80 for k in probe.keys])
    planes = [
        (_distances(ph, t.ph256[rows]), _HASH),
        (_distances(crop, t.ph256[rows]), _CROP),
        (_distances(ph, t.c80[rows]), _CROP),
    ]
    stacked = np.concatenate([d for d, _ in planes])  # (3·8·keys, n)
    which = stacked.argmin(axis=0)
    per_plane = len(ph)
    return [
        Hit(
            row=int(rows[j]),
            distance=int(stacked[q, j]),
            key=(q % per_plane) // 8,
            variant=Dihedral(q % 8),
            channel=planes[q // per_plane][1],
        )
        for j, q in enumerate(which.tolist())
    ]


def _distances(
    queries: npt.NDArray[np.uint8], codes: npt.NDArray[np.uint8]
) -> npt.NDArray[np.int64]:
    """(Q, N) Hamming distances, as two float32 products of bits (exact below 2**24)."""
    q = np.unpackbits(queries, axis=1).astype(np.float32)
    parts = []
    for start in range(0, len(codes), _CHUNK):
        c = np.unpackbits(codes[start : start + _CHUNK], axis=1).astype(np.float32)
        parts.append(q @ (1 - c).T + (1 - q) @ c.T)
    out = np.concatenate(parts, axis=1) if parts else np.zeros((len(q), 0), np.float32)
    distances: npt.NDArray[np.int64] = np.rint(out).astype(np.int64)
    return distances


def _assign(
    best: Sequence[Sequence[Hit]], probes: Sequence[Probe], features: LocalFeatures
) -> list[tuple[int, Hit, Stage]]:
    """One-to-one (file, hit, stage): greedy by distance, rivals and leftovers by features."""
    order = sorted(
        (h.distance, m, j)
        for m, hits in enumerate(best)
        for j, h in enumerate(hits)
        if h.distance <= LOOSE_RADIUS
    )
    files: set[int] = set()
    photos: set[int] = set()
    done: list[tuple[int, Hit, Stage]] = []
    for d, m, j in order:
        if m in files or j in photos:
            continue
        open_ = [k for k in range(len(best[m])) if k not in photos]
        rivals = [k for k in open_ if k != j and best[m][k].distance < d + VARIANT_MARGIN]
        if rivals:
            k = features.pick(probes[m], [best[m][x] for x in [j, *rivals]])
            if k is None:
                continue
            j, stage = [j, *rivals][k], Stage.GEOMETRY
        else:
            stage = Stage.ALBUM
        files.add(m)
        photos.add(j)
        done.append((m, best[m][j], stage))
    for m in set(range(len(best))) - files:
        open_ = [k for k in range(len(best[m])) if k not in photos]
        if 0 < len(open_) <= MAX_GEOMETRY_CANDIDATES:
            k = features.pick(probes[m], [best[m][x] for x in open_])
            if k is not None:
                photos.add(open_[k])
                done.append((m, best[m][open_[k]], Stage.GEOMETRY))
    return done


class LocalFeatures:
    """ORB features of files (per turn) and stored photos, computed once, for `pick`."""

    def __init__(self, harvest: Harvest, max_pixels: int) -> None:
        self._harvest = harvest
        self._max_pixels = max_pixels
        self._cache: dict[tuple[str, int], geometry.Features] = {}

    def pick(self, probe: Probe, hits: Sequence[Hit]) -> int | None:
        """The index of the hit local features confirm best (score ≥ ACCEPT_SCORE), if any."""
        scores = []
        for hit in hits:
            found = self.verified(probe, hit.row, hit.variant)
            scores.append(found.score if found is not None else 0.0)
        best = int(np.argmax(scores)) if scores else 0
        if not scores or scores[best] < geometry.ACCEPT_SCORE:
            return None
        return best

    def verified(
        self, probe: Probe, row: int, g: Dihedral = Dihedral.IDENTITY
    ) -> geometry.Verified | None:
        """The transform from turn `g` of the file to harvest row `row`, or None (also when a
        file cannot be read again)."""
        try:
            return geometry.verify(self._file(probe, g), self._photo(row))
        except (OSError, ValueError, ImageError, Image.DecompressionBombError) as exc:
            log.info("%s: no local features: %s", probe.name, exc)
            return None

    def _file(self, probe: Probe, g: Dihedral) -> geometry.Features:
        key = (probe.name, int(g))
        if key not in self._cache:
            gray = geometry_gray(probe.path, max_pixels=self._max_pixels)
            self._cache[key] = geometry.features(np.ascontiguousarray(turn(gray, g)))
        return self._cache[key]

    def _photo(self, row: int) -> geometry.Features:
        key = ("\0photo", row)
        if key not in self._cache:
            path = self._harvest.out / self._harvest.table.paths[row]
            self._cache[key] = geometry.features(geometry_gray(path, max_pixels=self._max_pixels))
        return self._cache[key]
