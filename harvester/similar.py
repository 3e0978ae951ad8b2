"""`harvest similar OUT IMAGE`: the harvested photos that show what IMAGE shows, best first.

    IMAGE ─► upright grey at about 1/8 scale, the bomb limit checked on the header; ph256 and
       c80 with the frame stripped and without (as `harvest match` reads a file)
    ─► candidates: the 8 turns of each against every stored fingerprint (the nearest by
       Hamming distance, brute force over packed words), the central-80 % channel both ways,
       and, where `harvest dupes --crops` stored keypoint signatures, the photos sharing local
       features with IMAGE; with an embedder, its nearest vectors (`harvest index`)
    ─► re-ranked by ORB+RANSAC (dataset/geometry.py, a homography allowed: a print or a screen
       photographed at an angle): verified candidates first, by score
    ─► hits: same picture / transformed copy / looks alike, with the record's title, owner,
       licence, source, path and Flickr page.

Read-only: nothing is written into OUT (`harvest index` writes the caches beside the store).
The JSON of `--json` and of `harvest serve`'s `POST /api/similar` is `SimilarResult.as_json()`:

    {"query": {"width": W, "height": H}, "elapsed_s": 0.21, "indexed": N,
     "hits": [{"rank": 1, "photo_id": 123, "score": 0.41, "kind": "same picture",
               "detail": "rotated", "distance": 4, "path": "cat/00000/123.jpg",
               "url": "https://www.flickr.com/photos/OWNER/123/", "title": "…",
               "owner": "…", "license": "…", "source": "…"}, …]}
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from harvester.config import ImagePolicy
from harvester.dataset import geometry, keypoints
from harvester.dataset.classify import IDENTICAL_KINDS, MATCH_RADIUS, Kind, classify
from harvester.dataset.fingerprint import Dihedral, scan_sha256, src_sha256, turn
from harvester.dataset.mih import MultiIndex
from harvester.dataset.nearest import nearest, packed
from harvester.dupes import signal_at
from harvester.exceptions import ConfigError, ImageError
from harvester.licenses import license_for
from harvester.match import UNREADABLE, Key, geometry_gray, keys_of, turns_of, upright_gray
from harvester.store.dupes import DupesStore, SignalTable
from harvester.store.lookup import PhotoRow, photo_rows
from harvester.store.sqlite import Store, existing_store


class MatchKind(StrEnum):
    """What a hit is of the query."""

    SAME = "same picture"  # the same pixels, resized, re-encoded, turned or flipped
    TRANSFORMED = "transformed copy"  # cropped, tinted, at an angle: confirmed by local features
    LOOKS_ALIKE = "looks alike"  # near by hash or embedding only, not confirmed


@dataclass(frozen=True, slots=True, kw_only=True)
class SimilarHit:
    """One harvested photo in the answer."""

    rank: int  # 1-based
    photo_id: int
    score: float  # 0..1, higher is closer; comparable within one answer
    kind: MatchKind
    detail: str  # the dupes kind (`resized`, `rotated`, `cropped`, …) or the channel
    distance: int | None  # ph256 Hamming distance of the best turn, None when not compared
    path: str  # relative to OUT, as the store records it
    url: str  # the photo's Flickr page
    title: str
    owner: str
    license: str
    source: str

    def as_json(self) -> dict[str, object]:
        """The hit as `--json` prints it."""
        return {
            "rank": self.rank,
            "photo_id": self.photo_id,
            "score": round(self.score, 4),
            "kind": self.kind.value,
            "detail": self.detail,
            "distance": self.distance,
            "path": self.path,
            "url": self.url,
            "title": self.title,
            "owner": self.owner,
            "license": self.license,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class SimilarResult:
    """The answer to one query."""

    width: int  # the query's display size
    height: int
    hits: tuple[SimilarHit, ...]
    indexed: int  # photos searched
    elapsed_s: float

    def as_json(self) -> dict[str, object]:
        """The JSON of `--json` and `POST /api/similar`."""
        return {
            "query": {"width": self.width, "height": self.height},
            "elapsed_s": round(self.elapsed_s, 4),
            "indexed": self.indexed,
            "hits": [h.as_json() for h in self.hits],
        }


log = logging.getLogger(__name__)

NEAR = 40  # hash neighbours taken from the brute-force ranking of every stored photo
MAX_VERIFY = 16  # candidates checked with local features per query, nearest first
FEATURE_CACHE = 2048  # photos whose ORB features stay in memory (about 20 KB each)
#: Key tables of the keypoint vote index (8 bytes a stored descriptor each): 4 up to
#: VOTE_TABLES_LIMIT photos with signatures, 2 beyond (1 GB at a million). bench.similar at 1M:
#: with 2 the true photo is still among the 8 most voted for every crop and angle sampled.
VOTE_TABLES, VOTE_TABLES_LARGE, VOTE_TABLES_LIMIT = 4, 2, 250_000
TURN_RADIUS = 64  # a hash this near tells the turn; random pairs sit at 128 ± 8
KEYPOINT_NEAR = 8  # photos taken from the keypoint votes ...
MIN_VOTES = 2  # ... with at least this many
QUERY_POINTS = 256  # ORB keypoints of the query's signature (the stored ones have 64)
MAX_QUERY_DIGEST_BYTES = 64 << 20  # a larger query file is not read whole for its digests
#: What `refresh` compares: fingerprint rows are only ever added (or replaced, a new rowid).
VERSION_SQL = "SELECT count(*), COALESCE(max(rowid), 0) FROM photo_signal"
#: Hash verdicts that mean the query shows the photo's own pixels (turned or rescaled at most).
SAME_KINDS = frozenset(
    {
        Kind.IDENTICAL_BYTES,
        Kind.IDENTICAL_PIXELS,
        Kind.RECOMPRESSED,
        Kind.RESIZED,
        Kind.ROTATED,
        Kind.FLIPPED,
    }
)
#: Score bands, so that scores compare across kinds: same picture in (0.75, 1], transformed
#: copy in (0.5, 0.75], looks alike in [0, 0.5].
_SAME_BASE, _COPY_BASE, _ALIKE_VERIFIED_BASE = 0.75, 0.5, 0.25
_STRONG_SCORE = 0.5  # a RANSAC score this high tops its band (inliers / keypoints)

Gray = npt.NDArray[np.uint8]
#: An extra source of candidates (the embedder's index): (photo id, cosine similarity).
Neighbours = Callable[[Path | bytes, int], Sequence[tuple[int, float]]]
#: The records of the photos an answer names (by default read from OUT's store).
Describe = Callable[[Sequence[int]], Mapping[int, PhotoRow]]


class Channel(StrEnum):
    """How a candidate was proposed."""

    DIGEST = "digest"  # the same bytes, or the same pixels under other metadata
    HASH = "hash"  # ph256, nearest over all 8 turns
    CROP = "crop"  # the central 80 % of one against the whole of the other, at r <= 31
    KEYPOINTS = "keypoints"  # local features shared with the stored signatures
    EMBEDDING = "embedding"  # the user's embedder (`harvest index --embedder`)


@dataclass(slots=True, kw_only=True)
class _Candidate:
    row: int
    channel: Channel
    distance: int | None = None  # best ph256 distance, over the query's readings and turns
    key: int = 0  # which reading of the query (frame stripped or whole)
    variant: Dihedral = Dihedral.IDENTITY  # the photo looks like this turn of the query
    cosine: float | None = None
    votes: int = 0  # query descriptors meeting the photo's stored ones (keypoints channel)

    @property
    def turn(self) -> Dihedral:
        """The turn of the query to verify against: the hash's where the hash is near enough
        to say it (ORB itself is blind to mirrors, not to rotation), else the query as it is."""
        near = self.distance is not None and self.distance <= TURN_RADIUS
        return self.variant if near else Dihedral.IDENTITY


@dataclass(frozen=True, slots=True, kw_only=True)
class _Judged:
    row: int
    kind: MatchKind
    score: float
    detail: str
    distance: int | None


@dataclass(slots=True, eq=False)
class _Query:
    """The query image read as a harvested photo is, and its local features per turn."""

    source: Path | bytes
    width: int
    height: int
    keys: tuple[Key, ...]
    src: bytes | None
    scan: bytes | None
    max_pixels: int
    _gray: Gray | None = None
    _features: dict[Dihedral, geometry.Features] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)  # two verifying threads

    def opened(self) -> Path | io.BytesIO:
        return io.BytesIO(self.source) if isinstance(self.source, bytes) else self.source

    def signature(self) -> npt.NDArray[np.uint8]:
        """QUERY_POINTS descriptors at the stored signatures' size (keypoints.SIDE)."""
        image = Image.fromarray(self.gray())
        image.thumbnail((keypoints.SIDE, keypoints.SIDE))
        found = geometry.features(np.asarray(image, dtype=np.uint8), n=QUERY_POINTS)
        return np.ascontiguousarray(found.descriptors, dtype=np.uint8).reshape(-1, 32)

    def gray(self) -> Gray:
        """Upright grey at GEOMETRY_SIDE, decoded once."""
        with self._lock:
            if self._gray is None:
                self._gray = geometry_gray(self.opened(), max_pixels=self.max_pixels)
            return self._gray

    def features(self, g: Dihedral) -> geometry.Features:
        """ORB features of turn `g` of the query, computed once."""
        with self._lock:
            if g not in self._features:
                self._features[g] = geometry.features(np.ascontiguousarray(turn(self.gray(), g)))
            return self._features[g]


def read_query(image: Path | bytes, *, max_pixels: int) -> _Query:
    """IMAGE as `harvest match` reads a file; ImageError when it is not a readable picture."""
    try:
        opened = io.BytesIO(image) if isinstance(image, bytes) else image
        gray, (width, height) = upright_gray(opened, max_pixels=max_pixels)
        keys = keys_of(gray, width, height)
        data = image if isinstance(image, bytes) else _small_file(image)
    except ImageError:
        raise
    except UNREADABLE as exc:
        raise ImageError(f"not a readable image: {type(exc).__name__}: {exc}") from exc
    src = src_sha256(data) if data is not None else None
    scan = scan_sha256(data) if data is not None else None
    return _Query(image, width, height, keys, src, scan, max_pixels)


def _small_file(path: Path) -> bytes | None:
    return path.read_bytes() if path.stat().st_size <= MAX_QUERY_DIGEST_BYTES else None


class _Loaded:
    """One reading of the store's fingerprints, indexed: replaced whole by `refresh`."""

    def __init__(
        self,
        table: SignalTable,
        votes: keypoints.VoteIndex | None = None,
        version: tuple[int, int] = (0, 0),
    ) -> None:
        self.table = table
        self.votes = votes
        self.version = version  # the fingerprint table's (count, max rowid) when it was read
        self.words = packed(table.ph256)
        self.crop_index = MultiIndex(table.c80)
        self.hash_index = MultiIndex(table.ph256)
        self.row_of = {int(i): row for row, i in enumerate(table.ids.tolist())}
        self.by_src: dict[bytes, list[int]] = {}
        self.by_scan: dict[bytes, list[int]] = {}
        for row, (src, scan) in enumerate(zip(table.src_sha256, table.scan_sha256, strict=True)):
            if src is not None:
                self.by_src.setdefault(src, []).append(row)
            if scan is not None:
                self.by_scan.setdefault(scan, []).append(row)


class SimilarIndex:
    """A harvest's fingerprints in memory, answering `search` many times (the web page loads
    one and keeps it; `refresh` picks up photos stored since)."""

    def __init__(
        self,
        out: Path,
        table: SignalTable,
        *,
        votes: keypoints.VoteIndex | None = None,
        policy: ImagePolicy | None = None,
        neighbours: Neighbours | None = None,
        describe: Describe | None = None,
        workers: int = 2,
        version: tuple[int, int] = (0, 0),
    ) -> None:
        self.out = out
        self._describe = describe or self._from_store
        self._policy = policy or ImagePolicy()
        self._neighbours = neighbours
        self._workers = workers
        self._loaded = _Loaded(table, votes, version)
        self._cache: OrderedDict[int, geometry.Features] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls,
        out: Path,
        *,
        policy: ImagePolicy | None = None,
        neighbours: Neighbours | None = None,
    ) -> SimilarIndex:
        """Read OUT's fingerprints (the store opened read-only); ConfigError when it holds no
        fingerprinted photo."""
        table, votes, version = _read(out)
        return cls(out, table, votes=votes, policy=policy, neighbours=neighbours, version=version)

    def __len__(self) -> int:
        return len(self._loaded.table)

    def refresh(self) -> bool:
        """Reload when the store's fingerprints changed since the load (photos stored or
        fingerprinted since); True if it did. The check reads the fingerprint table's row
        count and its largest rowid only: cheap enough to run before every search."""
        seen = _version(self.out)
        if seen == self._loaded.version:
            return False
        self._loaded = _Loaded(*_read(self.out))
        return True

    def search(self, image: Path | bytes, *, k: int = 10) -> SimilarResult:
        """The `k` harvested photos nearest to IMAGE, best first. ImageError when IMAGE is not
        a readable picture within the pixel limit."""
        started = time.perf_counter()
        loaded = self._loaded
        query = read_query(image, max_pixels=self._policy.max_pixels)
        candidates = self._candidates(query, loaded, k)
        judged = self._judge(query, loaded, candidates)
        judged.sort(key=lambda j: (-j.score, j.distance if j.distance is not None else 999, j.row))
        top = judged[:k]
        hits = self._described(loaded, top)
        return SimilarResult(
            width=query.width,
            height=query.height,
            hits=hits,
            indexed=len(loaded.table),
            elapsed_s=time.perf_counter() - started,
        )

    # --- candidates ----------------------------------------------------------------------------

    def _candidates(self, query: _Query, loaded: _Loaded, k: int) -> dict[int, _Candidate]:
        """Every photo a channel proposes, with what each channel says of it."""
        found: dict[int, _Candidate] = {}
        for digest, rows in ((query.src, loaded.by_src), (query.scan, loaded.by_scan)):
            for row in rows.get(digest, []) if digest is not None else []:
                found[row] = _Candidate(row=row, channel=Channel.DIGEST, distance=0)
        for cand in self._hash_candidates(query, loaded, max(NEAR, k)):
            _offer(found, cand)
        if loaded.votes is not None:
            found_by = loaded.votes.votes(query.signature(), KEYPOINT_NEAR, min_votes=MIN_VOTES)
            for row, count in found_by:
                found.setdefault(row, _Candidate(row=row, channel=Channel.KEYPOINTS)).votes = count
        if self._neighbours is not None:
            for photo_id, cosine in self._neighbours(query.source, max(NEAR, k)):
                at = loaded.row_of.get(int(photo_id))
                if at is not None:
                    blank = _Candidate(row=at, channel=Channel.EMBEDDING)
                    found.setdefault(at, blank).cosine = float(cosine)
        return found

    def _hash_candidates(self, query: _Query, loaded: _Loaded, n: int) -> Iterator[_Candidate]:
        """The `n` nearest hashes over all turns, then the central-80 % channel both ways."""
        ph = turns_of([key.ph256 for key in query.keys])
        near = nearest(loaded.words, packed(ph), n, workers=self._workers)
        proposals: list[tuple[Channel, npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]]]
        proposals = [(Channel.HASH, near.queries, near.rows, near.distances)]
        crop = turns_of([key.c80 for key in query.keys])
        for queries, index in ((crop, loaded.hash_index), (ph, loaded.crop_index)):
            pairs = index.lookup(queries, MATCH_RADIUS)
            proposals.append((Channel.CROP, pairs.a, pairs.b, pairs.distance))
        for channel, qs, rows, distances in proposals:
            for q, row, d in zip(qs.tolist(), rows.tolist(), distances.tolist(), strict=True):
                yield _Candidate(
                    row=row, channel=channel, distance=d, key=q // 8, variant=Dihedral(q % 8)
                )

    # --- judging -------------------------------------------------------------------------------

    def _judge(
        self, query: _Query, loaded: _Loaded, candidates: dict[int, _Candidate]
    ) -> list[_Judged]:
        """Each candidate judged: by its hash where that says it is the same picture, else by
        local features, in rounds of two per worker, most promising first, until a round
        confirms a copy (a RANSAC-verified copy is right: false pairs measured score at most a
        fifth of the acceptance score); the rest are look-alikes unverified."""
        judged: list[_Judged] = []
        to_verify: list[_Candidate] = []
        for cand in candidates.values():
            same = _same(query, loaded.table, cand)
            if same is not None:
                judged.append(same)
            else:
                to_verify.append(cand)
        queue = _to_verify(to_verify)
        checked: set[int] = set()
        step = 2 * self._workers
        with ThreadPoolExecutor(max_workers=self._workers) as pool:
            for start in range(0, len(queue), step):
                batch = queue[start : start + step]
                verdicts = list(pool.map(lambda c: self._verify(query, loaded, c), batch))
                judged.extend(_by_geometry(c, v) for c, v in zip(batch, verdicts, strict=True))
                checked.update(c.row for c in batch)
                if any(j.kind is not MatchKind.LOOKS_ALIKE for j in judged):
                    break
        judged.extend(_alike(c, None) for c in to_verify if c.row not in checked)
        return judged

    def _verify(self, query: _Query, loaded: _Loaded, cand: _Candidate) -> geometry.Verified | None:
        """The candidate checked by ORB+RANSAC (a homography allowed) against its turn of the
        query; None when either picture has no usable features."""
        try:
            mine = query.features(cand.turn)
        except UNREADABLE as exc:
            log.info("query: no local features: %s", exc)
            return None
        theirs = self._photo_features(loaded, cand.row)
        if theirs is None:
            return None
        return geometry.verify(mine, theirs, model=geometry.Model.HOMOGRAPHY)

    def _photo_features(self, loaded: _Loaded, row: int) -> geometry.Features | None:
        photo_id = int(loaded.table.ids[row])
        with self._lock:
            if photo_id in self._cache:
                self._cache.move_to_end(photo_id)
                return self._cache[photo_id]
        path = self.out / loaded.table.paths[row]
        try:
            found = geometry.features(geometry_gray(path, max_pixels=self._policy.max_pixels))
        except UNREADABLE as exc:
            log.info("photo %d: no local features: %s", photo_id, exc)
            return None
        with self._lock:
            self._cache[photo_id] = found
            while len(self._cache) > FEATURE_CACHE:
                self._cache.popitem(last=False)
        return found

    # --- the answer ----------------------------------------------------------------------------

    def _from_store(self, ids: Sequence[int]) -> Mapping[int, PhotoRow]:
        if not ids:
            return {}
        with Store.open(existing_store(self.out), readonly=True) as store:
            return photo_rows(store, ids)

    def _described(self, loaded: _Loaded, top: Sequence[_Judged]) -> tuple[SimilarHit, ...]:
        ids = [int(loaded.table.ids[j.row]) for j in top]
        rows = self._describe(ids)
        return tuple(
            _hit(rank, j, photo_id, rows.get(photo_id), loaded.table.paths[j.row])
            for rank, (j, photo_id) in enumerate(zip(top, ids, strict=True), start=1)
        )


def _version(out: Path) -> tuple[int, int]:
    with Store.open(existing_store(out), readonly=True) as store, store.reading() as db:
        count, top = db.execute(VERSION_SQL).fetchone()
    return int(count), int(top)


def _read(out: Path) -> tuple[SignalTable, keypoints.VoteIndex | None, tuple[int, int]]:
    """The fingerprints, the vote index of the keypoint signatures where `harvest dupes
    --crops` or `harvest index` stored them, and the version they were read at (all in one
    read transaction, so one version of a store a harvest is writing)."""
    with Store.open(existing_store(out), readonly=True) as store, store.reading() as db:
        db.execute("BEGIN")
        ds = DupesStore(store)
        count, top = db.execute(VERSION_SQL).fetchone()
        table = ds.signals()
        if len(table) == 0:
            raise ConfigError(f"{out} has no fingerprinted photo; run `harvest dupes {out}` first")
        row_of = {int(i): row for row, i in enumerate(table.ids.tolist())}
        signed = ds.keypoint_count(keypoints.KP_VERSION)
        tables = VOTE_TABLES if signed <= VOTE_TABLES_LIMIT else VOTE_TABLES_LARGE
        votes = keypoints.VoteIndex(_signature_chunks(ds, row_of), tables=tables)
        db.execute("COMMIT")
    version = (int(count), int(top))
    if votes.photos == 0:
        log.info("%s: no keypoint signatures; `harvest index %s` adds them", out, out)
        return table, None, version
    return table, votes, version


def _signature_chunks(
    ds: DupesStore, row_of: dict[int, int]
) -> Iterator[tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]]:
    """The stored signatures a batch at a time, as (descriptors, row of each) arrays."""
    for batch in ds.keypoint_batches(keypoints.KP_VERSION):
        yield keypoints.stacked(keypoints.stored_signatures(dict(batch), row_of))


def _offer(found: dict[int, _Candidate], cand: _Candidate) -> None:
    """Keep the nearer proposal of a row (the whole-picture hash on a tie); a digest stays."""
    old = found.get(cand.row)
    if old is not None and (old.channel is Channel.DIGEST or _rank(old) <= _rank(cand)):
        return
    found[cand.row] = cand


def _rank(c: _Candidate) -> tuple[int, bool]:
    return (c.distance if c.distance is not None else 999, c.channel is not Channel.HASH)


def _to_verify(cands: Sequence[_Candidate]) -> list[_Candidate]:
    """The candidates worth a RANSAC, at most MAX_VERIFY: every central-80 % hit, the photos
    sharing most local features, then the nearest hashes, then the nearest embeddings; each
    channel's best first, taken in turn so that no channel crowds out another."""
    channels: dict[str, list[_Candidate]] = {
        "crop": sorted((c for c in cands if c.channel is Channel.CROP), key=_by_distance),
        "keypoints": sorted((c for c in cands if c.votes), key=lambda c: (-c.votes, c.row)),
        "hash": sorted((c for c in cands if c.channel is Channel.HASH), key=_by_distance),
        "embedding": sorted(
            (c for c in cands if c.cosine is not None), key=lambda c: (-(c.cosine or 0), c.row)
        ),
    }
    chosen: dict[int, _Candidate] = {}
    depth = 0
    while len(chosen) < MAX_VERIFY and any(depth < len(v) for v in channels.values()):
        for ranked in channels.values():
            if depth < len(ranked) and len(chosen) < MAX_VERIFY:
                chosen.setdefault(ranked[depth].row, ranked[depth])
        depth += 1
    return list(chosen.values())


def _by_distance(c: _Candidate) -> tuple[int, int]:
    return (c.distance if c.distance is not None else 999, c.row)


def _same(query: _Query, table: SignalTable, cand: _Candidate) -> _Judged | None:
    """The candidate judged by its hash alone, when the hash says it is the same picture."""
    if cand.distance is None or cand.distance > MATCH_RADIUS or cand.channel is Channel.CROP:
        return None
    mine = query.keys[cand.key].signal(query.src, query.scan)
    verdict = classify(mine, signal_at(table, cand.row))
    if verdict is None or verdict.kind not in SAME_KINDS:
        return None
    if verdict.kind in IDENTICAL_KINDS:
        score = 1.0
    else:
        score = _SAME_BASE + (1 - _SAME_BASE) * (1 - verdict.distance / (MATCH_RADIUS + 1))
    param = _query_relative(verdict.kind, verdict.param) if verdict.a == -1 else verdict.param
    detail = verdict.kind.value + (f" {param}" if param else "")
    return _Judged(
        row=cand.row, kind=MatchKind.SAME, score=score, detail=detail, distance=cand.distance
    )


def _query_relative(kind: Kind, param: str) -> str:
    """A parameter that says what the photo is of the query, turned round: what the query is
    of the photo (the classifier puts the better copy first, and that was the query)."""
    if kind is Kind.ROTATED and param:
        return str((360 - int(float(param))) % 360)
    if kind is Kind.RESIZED and param:
        return f"{1 / float(param):.3f}"
    return param


def _by_geometry(cand: _Candidate, v: geometry.Verified | None) -> _Judged:
    """A candidate the local features confirmed (a transformed copy, or a look-alike scene
    when the two only overlap), or not."""
    if v is None or v.score < geometry.ACCEPT_SCORE:
        return _alike(cand, None)
    if not v.is_copy:
        return _alike(cand, v)  # overlapping, or alike but moved apart: another view
    strength = min(1.0, v.score / _STRONG_SCORE)
    kind, _params = geometry.classify_geometry(v)
    detail = "perspective" if v.model is geometry.Model.HOMOGRAPHY else kind.value
    if cand.turn >= Dihedral.FLIP_H:
        detail = f"flipped, {detail}"
    return _Judged(
        row=cand.row,
        kind=MatchKind.TRANSFORMED,
        score=_COPY_BASE + (_SAME_BASE - _COPY_BASE) * strength,
        detail=detail,
        distance=cand.distance,
    )


def _alike(cand: _Candidate, v: geometry.Verified | None) -> _Judged:
    """Near by hash or embedding only, or overlapping scenes: looks alike."""
    by_hash = 0.0 if cand.distance is None else max(0.0, 1 - cand.distance / 128)
    by_embedding = max(0.0, cand.cosine or 0.0)
    by_keypoints = min(1.0, cand.votes / QUERY_POINTS)
    score = _ALIKE_VERIFIED_BASE * max(by_hash, by_embedding, by_keypoints)
    detail = cand.channel.value
    if v is not None:
        score = _ALIKE_VERIFIED_BASE + 0.2 * min(1.0, v.score / _STRONG_SCORE)
        detail = (
            "overlapping scene" if v.contained < geometry.MIN_CONTAINED else "same scene, moved"
        )
    return _Judged(
        row=cand.row, kind=MatchKind.LOOKS_ALIKE, score=score, detail=detail, distance=cand.distance
    )


def _hit(rank: int, j: _Judged, photo_id: int, row: PhotoRow | None, path: str) -> SimilarHit:
    owner = row.owner if row else ""
    return SimilarHit(
        rank=rank,
        photo_id=photo_id,
        score=j.score,
        kind=j.kind,
        detail=j.detail,
        distance=j.distance,
        path=path,
        url=PAGE_URL.format(owner=owner or "-", id=photo_id),
        title=row.title if row else "",
        owner=(row.owner_name or owner) if row else "",
        license=license_for(row.license).name if row else "",
        source=row.source if row else "",
    )


PAGE_URL = "https://www.flickr.com/photos/{owner}/{id}/"


def render(result: SimilarResult) -> str:
    """The answer as a table for a terminal: rank, score, kind, photo, title, credit, path."""
    lines = [
        f"{len(result.hits)} of {result.indexed:,} photos for a {result.width}x{result.height}"
        f" image ({result.elapsed_s:.2f} s)"
    ]
    for h in result.hits:
        lines.append(
            f"{h.rank:>3}  {h.score:.3f}  {h.kind.value:<16} {h.detail:<22} {h.photo_id}"
            f"  {h.title[:40]!r}  {h.owner} · {h.license} · {h.source}"
        )
        lines.append(f"{'':>5}{h.url}  {h.path}")
    return "\n".join(lines)


@dataclass(frozen=True, slots=True, kw_only=True)
class IndexReport:
    """What `harvest index OUT` added for search by image."""

    fingerprinted: int  # photos harvested before fingerprints, fingerprinted from their files
    unreadable: int
    signed: int  # photos given a keypoint signature

    def render(self) -> str:
        return (
            f"search index: {self.fingerprinted:,} photos fingerprinted from their files"
            f" ({self.unreadable:,} unreadable), {self.signed:,} keypoint signatures added"
        )


def index_for_search(out: Path) -> IndexReport:
    """`harvest index OUT`: what `harvest similar` needs beyond what the harvest stored — the
    fingerprints of photos harvested before them, and every photo's keypoint signature (the
    channel that finds crops and copies at an angle). Resumable; only what lacks one is done."""
    from harvester.dupes import backfill_fingerprints
    from harvester.dupes_keypoints import update_signatures

    with Store.open(existing_store(out)) as store:
        ds = DupesStore(store)
        fingerprinted, unreadable = backfill_fingerprints(ds, out)
        signed = update_signatures(ds, out)
    return IndexReport(fingerprinted=fingerprinted, unreadable=unreadable, signed=signed)
