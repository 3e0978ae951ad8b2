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

from dataclasses import dataclass
from enum import StrEnum


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
