"""`harvest match DIR --against OUT`: which harvested photo each image file under DIR is.

    files under DIR (JPEG, PNG, TIFF's first page) ─► upright grey at about 1/8 scale, the
       bomb limit checked on the header ─► ph256 and c80, with the frame stripped and without
    ─► global pass: the 8 turns of each against the harvest's multi-index at r ≤ 31 (and the
       central-80 % channel both ways); a unique best by VARIANT_MARGIN is a match
    ─► album resolver (optional, match_albums.py): candidates restricted to an album, one-to-one
       at r ≤ 51, ambiguous pairs confirmed by ORB+RANSAC
    ─► keypoint stage (match_keypoints.py): files still unmatched, against the photos they share
       local features with (the signatures `harvest dupes` stored), confirmed by ORB+RANSAC
    ─► one row per file (CSV), one per harvested photo, a summary with matches per stage.

Read-only on both sides (duplicates.md §5.5): nothing is written into DIR or OUT.
"""

from __future__ import annotations

import csv
import logging
import math
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt
from PIL import ExifTags, Image

from harvester.config import FrameParams, ImagePolicy
from harvester.dataset.classify import MATCH_RADIUS, VARIANT_MARGIN, Kind, Signal, classify
from harvester.dataset.fingerprint import (
    MIN_SIDE,
    Dihedral,
    c80,
    dihedral_many,
    ph256,
    scan_sha256,
    src_sha256,
)
from harvester.dataset.keypoints import KP_VERSION
from harvester.dataset.mih import MultiIndex
from harvester.dupes import GEOMETRY_SIDE, signal_at
from harvester.exceptions import ConfigError, ImageError
from harvester.images.decoding import check_pixels, orient
from harvester.images.frames import coarse_borders
from harvester.store.dupes import DupesStore, SignalTable
from harvester.store.sqlite import Store, existing_store

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".tif", ".tiff"})
MIN_GRAY_SIDE = 64  # px: the reduced decode keeps at least this short side
MAX_DIGEST_BYTES = 64 << 20  # larger files are not read whole for their digests
CSV_COLUMNS = ("file", "photo_id", "distance", "kind", "verdict", "larger", "stage")
PER_PHOTO_COLUMNS = ("photo_id", "file", "distance", "verdict")
Gray = npt.NDArray[np.uint8]
_HASH, _CROP = "hash", "crop"
_REDUCIBLE = frozenset({"L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "I", "F"})  # Image.reduce modes
UNREADABLE = (OSError, ValueError, ImageError, EOFError, SyntaxError, Image.DecompressionBombError)


class Verdict(StrEnum):
    """What the matcher says of one file."""

    MATCH = "match"
    AMBIGUOUS = "ambiguous"
    NONE = "none"
    ERROR = "error"


class Stage(StrEnum):
    """Which pass matched a file (the SLNSW accounting: global, then albums, then features)."""

    GLOBAL = "global"
    ALBUM = "album"
    GEOMETRY = "geometry"


@dataclass(frozen=True, slots=True, kw_only=True)
class Key:
    """The hashes of one reading of a file (frame stripped or kept) and its content size."""

    framed: bool  # True: the whole picture, frame kept
    ph256: bytes
    c80: bytes
    width: int  # content box in the file's display pixels
    height: int

    def signal(self, src_sha256: bytes | None, scan_sha256: bytes | None) -> Signal:
        """The classifier's view of this reading of a file (id -1: no harvested photo)."""
        return Signal(
            photo_id=-1,
            ph256=self.ph256,
            src_sha256=src_sha256,
            scan_sha256=scan_sha256,
            width=self.width,
            height=self.height,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Probe:
    """One file as the matcher sees it, or why it could not be read."""

    path: Path
    name: str  # relative to DIR, with /
    width: int = 0  # display pixels (EXIF orientation applied)
    height: int = 0
    keys: tuple[Key, ...] = ()
    src_sha256: bytes | None = None
    scan_sha256: bytes | None = None
    error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Hit:
    """A harvested photo near a file: the best of its keys, turns and channels."""

    row: int  # row of the SignalTable
    distance: int
    key: int  # index into Probe.keys
    variant: Dihedral  # the photo looks like this turn of the file
    channel: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FileMatch:
    """One row of the --csv output."""

    file: str
    photo_id: int | None
    distance: int | None
    kind: str  # a dataset.classify Kind, or the reason for verdict `error`
    verdict: Verdict
    larger: bool | None  # more pixels than the photo's Flickr original
    stage: Stage | None = None

    def row(self) -> tuple[object, ...]:
        """The CSV row, in CSV_COLUMNS order."""
        larger = "" if self.larger is None else str(self.larger).lower()
        return (
            self.file,
            "" if self.photo_id is None else self.photo_id,
            "" if self.distance is None else self.distance,
            self.kind,
            self.verdict.value,
            larger,
            self.stage.value if self.stage else "",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class MatchReport:
    """The run's summary: verdicts, and matches per stage (cumulative, as the archive did)."""

    files: int
    verdicts: Counter[str] = field(default_factory=Counter)
    by_stage: Counter[str] = field(default_factory=Counter)
    skipped: int = 0  # files under DIR without an image suffix
    albums: bool = False

    def render(self) -> str:
        """files, matched, ambiguous, none, errors; with albums the rate after each stage."""
        v = self.verdicts
        lines = [
            f"files {self.files:,} (skipped, not images: {self.skipped:,})",
            f"matched {v[Verdict.MATCH]:,}, ambiguous {v[Verdict.AMBIGUOUS]:,}, "
            f"none {v[Verdict.NONE]:,}, errors {v[Verdict.ERROR]:,}",
        ]
        if self.albums:
            done, steps = 0, []
            for stage in Stage:
                done += self.by_stage[stage]
                steps.append(f"{stage.value} {_percent(done, self.files)}")
            lines.append("matched after each stage: " + " → ".join(steps))
        return "\n".join(lines)


def _percent(n: int, total: int) -> str:
    return f"{100 * n / total:.1f} % ({n:,})" if total else "0 %"


# --- the harvest side ---------------------------------------------------------------------------


class Harvest:
    """The harvest's fingerprints indexed for lookups, with each photo's original size."""

    def __init__(
        self,
        out: Path,
        table: SignalTable,
        originals: dict[int, tuple[int, str]],
        keypoints: dict[int, bytes] | None = None,
    ) -> None:
        self.out = out
        self.table = table
        self.keypoints = keypoints or {}  # photo id → signature, where `harvest dupes` made one
        self.hash_index = MultiIndex(table.ph256)
        self.crop_index = MultiIndex(table.c80)
        self.row_of = {int(i): row for row, i in enumerate(table.ids.tolist())}
        fallback = table.width * table.height * np.nan_to_num(table.scale, nan=1.0) ** 2
        self.original_px = np.array(
            [originals.get(int(i), (0, ""))[0] or fallback[r] for r, i in enumerate(table.ids)],
            dtype=np.float64,
        )
        self.owners = [originals.get(int(i), (0, ""))[1] for i in table.ids.tolist()]

    @classmethod
    def load(cls, out: Path) -> Harvest:
        """Read OUT's store (read-only); ConfigError when it holds no fingerprinted harvest."""
        with Store.open(existing_store(out), readonly=True) as store:
            table = DupesStore(store).signals()
            keypoints = DupesStore(store).keypoints(KP_VERSION)
            with store.reading() as db:
                rows = db.execute(
                    "SELECT id, json_extract(record, '$.o_width'),"
                    " json_extract(record, '$.o_height'),"
                    " COALESCE(json_extract(record, '$.owner'), '')"
                    " FROM photos WHERE status = 'done'"
                ).fetchall()
        if len(table) == 0:
            raise ConfigError(f"{out} has no fingerprinted photo; run `harvest dupes {out}` first")
        originals = {int(i): (int(w or 0) * int(h or 0), str(o)) for i, w, h, o in rows}
        return cls(out, table, originals, keypoints)

    def signal(self, row: int) -> Signal:
        """The classifier's view of one harvested photo."""
        return signal_at(self.table, row)


# --- the file side ------------------------------------------------------------------------------


def image_files(directory: Path) -> tuple[list[tuple[Path, str]], int]:
    """(path, name relative to DIR) of every image file under DIR, sorted; and how many other
    files were skipped. ConfigError when there is no image at all."""
    if not directory.is_dir():
        raise ConfigError(f"{directory} is not a directory")
    found, skipped = [], 0
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            found.append((path, path.relative_to(directory).as_posix()))
        else:
            skipped += 1
    if not found:
        raise ConfigError(f"{directory} holds no image file (JPEG, PNG or TIFF)")
    return found, skipped


def probe_file(path: Path, name: str, *, max_pixels: int) -> Probe:
    """Read one file like a harvested photo; an unreadable one is a Probe with its error."""
    try:
        gray, (width, height) = upright_gray(path, max_pixels=max_pixels)
        src, scan = _digests(path)
        keys = keys_of(gray, width, height)
    except UNREADABLE as exc:
        reason = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        log.warning("%s: unreadable: %s", name, reason)
        return Probe(path=path, name=name, error=reason)
    return Probe(
        path=path,
        name=name,
        width=width,
        height=height,
        keys=keys,
        src_sha256=src,
        scan_sha256=scan,
    )


def reduction(width: int, height: int) -> int:
    """The decode's reduction: 1/8 of the sides, but never below MIN_GRAY_SIDE a short side."""
    return max(1, min(8, min(width, height) // MIN_GRAY_SIDE))


def upright_gray(
    path: Path | IO[bytes], *, max_pixels: int, side: int | None = None
) -> tuple[Gray, tuple[int, int]]:
    """The first page in grey, reduced (to `side` on the long side if given), EXIF orientation
    applied; and the display size of the full picture. The bomb check reads only the header."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            width, height = image.size
            check_pixels(width, height, max_pixels)
            orientation = int(image.getexif().get(ExifTags.Base.Orientation, 1) or 1)
            factor = reduction(width, height)
            if side is not None:
                factor = max(1, max(width, height) // side)
            target = (math.ceil(width / factor), math.ceil(height / factor))
            if image.format == "JPEG":
                image.draft("L", target)
            image.load()
            more = max(1, image.width // target[0])
            gray = _gray(image.reduce(more) if more > 1 and image.mode in _REDUCIBLE else image)
    more = max(1, gray.shape[1] // target[0])
    if more > 1:
        gray = np.asarray(Image.fromarray(gray).reduce(more), dtype=np.uint8)
    pixels = np.ascontiguousarray(orient(gray, orientation))
    return pixels, ((height, width) if orientation >= 5 else (width, height))


def geometry_gray(path: Path | IO[bytes], *, max_pixels: int) -> Gray:
    """The upright grey picture local features are found on: at most GEOMETRY_SIDE on the long
    side, as `harvest dupes` verifies its pairs (the decode's reduction is a whole factor, so
    it is then shrunk to fit)."""
    gray, _ = upright_gray(path, max_pixels=max_pixels, side=GEOMETRY_SIDE)
    image = Image.fromarray(gray)
    image.thumbnail((GEOMETRY_SIDE, GEOMETRY_SIDE))
    return np.asarray(image, dtype=np.uint8)


def _gray(image: Image.Image) -> Gray:
    """8-bit grey; 16- and 32-bit greyscale (scanners' masters) scaled down, not clipped."""
    if image.mode.startswith("I;16") or image.mode == "I":
        wide = np.asarray(image).astype(np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or wide.max() > 255 else 255.0
        out: Gray = np.clip(wide * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
        return out
    return np.asarray(image.convert("L"), dtype=np.uint8)


def _digests(path: Path) -> tuple[bytes | None, bytes | None]:
    """The file's digests, as the harvest keeps them for downloads (small enough files only)."""
    if path.stat().st_size > MAX_DIGEST_BYTES:
        return None, None
    data = path.read_bytes()
    return src_sha256(data), scan_sha256(data)


def keys_of(gray: Gray, width: int, height: int) -> tuple[Key, ...]:
    """The frame-stripped reading (if a frame is found), then the whole picture."""
    whole = _key(gray, framed=True, width=width, height=height)
    borders = coarse_borders(gray, FrameParams())
    if borders is None:
        return (whole,)
    box = borders.box(*gray.shape)
    if min(box.width, box.height) < MIN_SIDE:
        return (whole,)
    inner = gray[box.top : box.bottom, box.left : box.right]
    sx, sy = width / gray.shape[1], height / gray.shape[0]
    stripped = _key(inner, framed=False, width=round(box.width * sx), height=round(box.height * sy))
    return (stripped, whole)


def _key(gray: Gray, *, framed: bool, width: int, height: int) -> Key:
    return Key(framed=framed, ph256=ph256(gray), c80=c80(gray), width=width, height=height)


def probe_all(files: Sequence[tuple[Path, str]], *, max_pixels: int) -> list[Probe]:
    """Every file probed, two at a time (Pillow decodes without the GIL)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda f: probe_file(*f, max_pixels=max_pixels), files))


# --- the global pass ----------------------------------------------------------------------------


def global_hits(probes: Sequence[Probe], harvest: Harvest, radius: int) -> list[list[Hit]]:
    """Per probe, its harvested photos within `radius`, best first, each photo once."""
    owners: list[tuple[int, int]] = [
        (p, k) for p, probe in enumerate(probes) for k in range(len(probe.keys))
    ]
    best: list[dict[int, Hit]] = [{} for _ in probes]
    if not owners:
        return [[] for _ in probes]
    ph = turns_of([probes[p].keys[k].ph256 for p, k in owners])
    crop = turns_of([probes[p].keys[k].c80 for p, k in owners])
    for queries, index, channel in (
        (ph, harvest.hash_index, _HASH),
        (crop, harvest.hash_index, _CROP),  # the file shows more around the photo
        (ph, harvest.crop_index, _CROP),  # the file is the photo's centre
    ):
        pairs = index.cross_join(queries, radius)
        for q, row, d in zip(
            pairs.a.tolist(), pairs.b.tolist(), pairs.distance.tolist(), strict=True
        ):
            p, k = owners[q // 8]
            hit = Hit(row=row, distance=d, key=k, variant=Dihedral(q % 8), channel=channel)
            _keep(best[p], hit)
    return [sorted(b.values(), key=lambda h: (h.distance, h.channel != _HASH, h.row)) for b in best]


def _keep(best: dict[int, Hit], hit: Hit) -> None:
    old = best.get(hit.row)
    if old is None or (hit.distance, hit.channel != _HASH) < (old.distance, old.channel != _HASH):
        best[hit.row] = hit


def turns_of(hashes: Sequence[bytes]) -> npt.NDArray[np.uint8]:
    """(8·N, 32): the 8 turns of each hash, query 8·i + g being turn g of hash i."""
    codes = np.frombuffer(b"".join(hashes), dtype=np.uint8).reshape(-1, 32)
    return np.ascontiguousarray(dihedral_many(codes).reshape(-1, 32))


def verdict_of(hits: Sequence[Hit]) -> Verdict:
    """match: a unique best within the radius; ambiguous: another photo within the margin."""
    if not hits:
        return Verdict.NONE
    if len(hits) > 1 and hits[1].distance < hits[0].distance + VARIANT_MARGIN:
        return Verdict.AMBIGUOUS
    return Verdict.MATCH


def file_match(
    probe: Probe, hit: Hit | None, verdict: Verdict, harvest: Harvest, stage: Stage | None
) -> FileMatch:
    """The row of a probe and its best photo (or none)."""
    if probe.error:
        return FileMatch(
            file=probe.name,
            photo_id=None,
            distance=None,
            kind=probe.error,
            verdict=Verdict.ERROR,
            larger=None,
        )
    if hit is None:
        return FileMatch(
            file=probe.name, photo_id=None, distance=None, kind="", verdict=verdict, larger=None
        )
    return FileMatch(
        file=probe.name,
        photo_id=int(harvest.table.ids[hit.row]),
        distance=hit.distance,
        kind=kind_of(probe, hit, harvest),
        verdict=verdict,
        larger=probe.width * probe.height > harvest.original_px[hit.row],
        stage=stage if verdict is Verdict.MATCH else None,
    )


def kind_of(probe: Probe, hit: Hit, harvest: Harvest, radius: int = 256) -> str:
    """What the file is of the photo, as `harvest dupes` would call the pair."""
    mine = probe.keys[hit.key].signal(probe.src_sha256, probe.scan_sha256)
    if hit.channel == _CROP:
        return Kind.CROPPED.value
    verdict = classify(mine, harvest.signal(hit.row), radius=radius)
    return verdict.kind.value if verdict else Kind.OTHER.value


# --- the run ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class MatchResult:
    """Rows per file and per photo, and the summary."""

    files: list[FileMatch]
    report: MatchReport
    probes: list[Probe]
    hits: list[list[Hit]]
    photo_ids: list[int]  # every harvested photo, by SignalTable row


def run_match(
    directory: Path,
    out: Path,
    *,
    albums: Path | None = None,
    policy: ImagePolicy | None = None,
) -> MatchResult:
    """Match every image file under `directory` against the harvest in `out`."""
    from harvester import match_albums, match_keypoints

    policy = policy or ImagePolicy()
    harvest = Harvest.load(out)
    files, skipped = image_files(directory)
    groups = match_albums.read_albums(albums, directory) if albums else []
    probes = probe_all(files, max_pixels=policy.max_pixels)
    hits = global_hits(probes, harvest, MATCH_RADIUS)
    rows = [
        file_match(p, h[0] if h else None, verdict_of(h), harvest, Stage.GLOBAL)
        for p, h in zip(probes, hits, strict=True)
    ]
    if groups:
        resolved = match_albums.resolve(groups, probes, harvest, rows, max_pixels=policy.max_pixels)
        rows = [resolved.get(r.file, r) for r in rows]
    by_features = match_keypoints.resolve(probes, harvest, rows, max_pixels=policy.max_pixels)
    rows = [by_features.get(r.file, r) for r in rows]
    report = MatchReport(
        files=len(rows),
        verdicts=Counter(r.verdict.value for r in rows),
        by_stage=Counter(r.stage.value for r in rows if r.stage and r.verdict is Verdict.MATCH),
        skipped=skipped,
        albums=bool(groups),
    )
    ids = [int(i) for i in harvest.table.ids.tolist()]
    return MatchResult(files=rows, report=report, probes=probes, hits=hits, photo_ids=ids)


def check_outputs(directory: Path, outputs: Iterable[Path | None]) -> None:
    """ConfigError when an output file would be written inside DIR (matching never writes there)."""
    inside = directory.resolve()
    for path in outputs:
        if path is not None and path.resolve().is_relative_to(inside):
            raise ConfigError(f"{path} is inside {directory}; match never writes into DIR")


def write_csv(rows: Iterable[FileMatch], target: Path) -> int:
    """`--csv FILE`: CSV_COLUMNS, one row per file; an error's reason is in `kind`."""
    with target.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        count = 0
        for row in rows:
            writer.writerow(row.row())
            count += 1
    return count


def write_per_photo(result: MatchResult, target: Path) -> int:
    """`--per-photo FILE.csv`: each harvested photo's best file (empty when none is near)."""
    harvest_ids = result.photo_ids
    chosen = {r.photo_id: r for r in result.files if r.verdict is Verdict.MATCH}
    nearest: dict[int, tuple[int, str]] = {}
    for probe, hits in zip(result.probes, result.hits, strict=True):
        for hit in hits:
            photo = harvest_ids[hit.row]
            if photo not in nearest or hit.distance < nearest[photo][0]:
                nearest[photo] = (hit.distance, probe.name)
    with target.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(PER_PHOTO_COLUMNS)
        for photo in harvest_ids:
            if photo in chosen:
                row = chosen[photo]
                writer.writerow((photo, row.file, row.distance, Verdict.MATCH.value))
            elif photo in nearest:
                distance, name = nearest[photo]
                writer.writerow((photo, name, distance, Verdict.AMBIGUOUS.value))
            else:
                writer.writerow((photo, "", "", Verdict.NONE.value))
    return len(harvest_ids)
