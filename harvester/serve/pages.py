"""What the pages show, as pure data and pure decisions: no SQL, no aiohttp, no files.

The live rates are computed from samples whose times are passed in; the views the templates
draw and the API returns are frozen records with an `as_json`. The command module
(harvester/serving.py) fills the views from the store through the `Library` seam, and search
by image through `Searcher`. Requests are parsed in query.py.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from harvester.licenses import LICENSES
from harvester.serve.query import STATUSES, Filters


def utc(ts: float | None) -> str:
    """A unix time as "YYYY-MM-DD HH:MM:SS UTC", "—" for none."""
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


#: The most of its time the server spends re-reading the counts: a read that takes longer than
#: this share of the refresh interval stretches the interval (at 1M photos a read is ~0.3 s).
READ_SHARE = 0.1


def counts_ttl_s(ttl_s: float, read_s: float) -> float:
    """How long counts read in `read_s` stay fresh: `ttl_s`, or longer for slow reads."""
    return max(ttl_s, read_s / READ_SHARE)


# --- the live rates ------------------------------------------------------------------------------


@dataclass(slots=True)
class RateMeter:
    """Photos finished per second over the last `window_s`, from samples of the counts.

    The counts come from the store, so the rate is the harvest's whatever process runs it; a
    sample is kept per call, the oldest dropped once past the window. Times are passed in.
    """

    window_s: float = 60.0
    _samples: deque[tuple[float, int]] = field(default_factory=deque)

    def add(self, now: float, finished: int) -> None:
        """Record that `finished` photos (stored, skipped or failed) were done at `now`."""
        if self._samples and finished < self._samples[-1][1]:
            self._samples.clear()  # fewer than before: --retry-failed put some back
        self._samples.append((now, finished))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window_s:
            self._samples.popleft()

    def per_s(self) -> float:
        """The rate between the oldest and newest sample kept (0 until there are two)."""
        if len(self._samples) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self._samples[0], self._samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0


# --- the views -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class KeywordLine:
    """One keyword's counts, as `harvest status` prints them."""

    keyword: str
    found: int
    pending: int
    stored: int
    skipped: int
    failed: int

    def as_json(self) -> dict[str, object]:
        """The line in /api/status."""
        return {
            "keyword": self.keyword,
            "found": self.found,
            "pending": self.pending,
            "stored": self.stored,
            "skipped": self.skipped,
            "failed": self.failed,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Counts:
    """The store's counts now, and the state of its last run."""

    keywords: tuple[KeywordLine, ...]
    reasons: tuple[tuple[str, int], ...]  # "skipped: too small" → photos, largest first
    running: bool  # the last run has not recorded its end (running, or killed)
    started_at: float | None  # the first run's start
    finished_at: float | None  # the last run's end, None while it runs
    run_hours: float  # time spent in runs (a running one until now)

    def total(self, name: str) -> int:
        """A column summed over the keywords."""
        return sum(int(getattr(line, name)) for line in self.keywords)

    @property
    def finished(self) -> int:
        """Photos with an outcome: stored, skipped or failed."""
        return self.total("stored") + self.total("skipped") + self.total("failed")


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """What the overview and /api/status show."""

    counts: Counts
    rate_per_s: float  # finished photos per second over the last minute
    at: float  # when the counts were read

    @property
    def stored_per_hour(self) -> float:
        """Stored photos per hour of run time, over every run."""
        hours = self.counts.run_hours
        return self.counts.total("stored") / hours if hours > 0 else 0.0

    def as_json(self) -> dict[str, object]:
        """/api/status."""
        c = self.counts
        return {
            "found": c.total("found"),
            "pending": c.total("pending"),
            "stored": c.total("stored"),
            "skipped": c.total("skipped"),
            "failed": c.total("failed"),
            "rate_per_s": round(self.rate_per_s, 3),
            "per_hour_now": round(self.rate_per_s * 3600),
            "stored_per_hour": round(self.stored_per_hour),
            "running": c.running,
            "started_at": c.started_at,
            "finished_at": c.finished_at,
            "at": self.at,
            "keywords": [k.as_json() for k in c.keywords],
            "reasons": dict(c.reasons),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Tile:
    """A photo as a grid tile and a row of /api/photos."""

    id: int
    title: str
    keyword: str
    status: str
    reason: str
    license: int
    license_name: str
    source: str
    geotagged: bool
    stored: bool  # a file to show
    width: int | None
    height: int | None
    flickr_url: str

    def as_json(self) -> dict[str, object]:
        """The row in /api/photos."""
        return {
            "id": self.id,
            "title": self.title,
            "keyword": self.keyword,
            "status": self.status,
            "reason": self.reason or None,
            "license": self.license,
            "license_name": self.license_name,
            "source": self.source,
            "geotagged": self.geotagged,
            "width": self.width,
            "height": self.height,
            "flickr_url": self.flickr_url,
            "page": f"/photo/{self.id}",
            "thumbnail": f"/thumb/{self.id}" if self.stored else None,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """A photo of a duplicate group: the representative (`kind` None) or a copy of it."""

    photo_id: int
    kind: str | None
    param: str
    title: str
    stored: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Group:
    """A duplicate group: the photo kept as its representative and its copies."""

    representative: Member
    copies: tuple[Member, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PhotoView:
    """The photo page: its tile, every field of its record and outcome, credits, copies."""

    tile: Tile
    fields: tuple[tuple[str, str], ...]  # (name, value) in the record's order, then the store's
    credit: str | None  # the credits line (stored photos only)
    keywords: tuple[str, ...]
    group: Group | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Attention:
    """A photo that needs a person: failed, or skipped for an error."""

    photo_id: int
    title: str
    keyword: str
    status: str
    reason: str
    attempts: int
    last_attempt: str
    flickr_url: str
    action: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FilterChoices:
    """The values the browse form offers."""

    keywords: tuple[str, ...]
    sources: tuple[str, ...]
    licences: tuple[tuple[int, str], ...] = tuple((lic.id, lic.name) for lic in LICENSES)
    statuses: tuple[str, ...] = STATUSES


@dataclass(frozen=True, slots=True, kw_only=True)
class Hit:
    """A search hit as the results page shows it, read from `SimilarResult.as_json()`."""

    rank: int
    photo_id: int
    score: float
    kind: str
    detail: str
    title: str
    license: str
    url: str


def hits_of(answer: Mapping[str, object]) -> tuple[Hit, ...]:
    """The hits of a search answer (the JSON `harvest similar --json` prints)."""
    raw = answer.get("hits")
    hits = raw if isinstance(raw, list) else []
    return tuple(
        Hit(
            rank=int(h["rank"]),
            photo_id=int(h["photo_id"]),
            score=float(h["score"]),
            kind=str(h["kind"]),
            detail=str(h.get("detail", "")),
            title=str(h.get("title", "")),
            license=str(h.get("license", "")),
            url=str(h.get("url", "")),
        )
        for h in hits
        if isinstance(h, dict)
    )


# --- the seams -----------------------------------------------------------------------------------


class Library(Protocol):
    """What the pages read of a harvest (harvester.serving fills it from the store, read-only).

    Blocking calls: the app runs them in a thread. Ids are photo ids; no path comes in.
    """

    @property
    def notices(self) -> tuple[str, ...]:
        """Sentences about what this store cannot do quickly (an older schema), or none."""
        ...

    def counts(self) -> Counts:
        """The store's counts now."""
        ...

    def choices(self) -> FilterChoices:
        """The keywords and sources the filters offer."""
        ...

    def photos(self, filters: Filters, after: int, limit: int) -> list[Tile]:
        """Up to `limit` photos matching `filters` with ids above `after`, by id."""
        ...

    def photo(self, photo_id: int) -> PhotoView | None:
        """One photo's page, None when the store has no such photo."""
        ...

    def image_file(self, photo_id: int) -> str | None:
        """The stored file of a done photo (absolute, inside OUT), None when there is none."""
        ...

    def groups(self, after: int, limit: int) -> list[Group]:
        """Duplicate groups by representative id above `after` ([] before `harvest dupes`)."""
        ...

    def attention(self, after: int, limit: int) -> list[Attention]:
        """Failed and error-skipped photos with ids above `after`, by id."""
        ...


class Searcher(Protocol):
    """Search by image (harvester.similar's index): blocking and CPU-bound, one at a time.

    Raises ImageError for an unreadable or too large image, ConfigError when the harvest has
    nothing to search.
    """

    def search(self, image: bytes, k: int) -> Mapping[str, object]:
        """The answer as `harvest similar --json` prints it (SimilarResult.as_json())."""
        ...
