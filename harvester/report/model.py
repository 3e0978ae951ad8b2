"""What the report shows, as pure data and pure decisions: no SQL, no files, no matplotlib.

The command module (harvester/reporting.py) fills these from the store; charts.py and
render.py only draw them. Decisions a reader relies on live here as tables: which skips are
policy and which need a person, what to do about a failure, how finished photos are binned.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

from harvester.licenses import license_for

#: Skip reasons that are harvest's own policy (README: --min-side, --allow-smaller): expected,
#: nothing to do. Any other skip is an error a person should see.
POLICY_SKIPS: tuple[str, ...] = ("too small", "no size: no large or original")
HOUR_S = 3600
DAY_S = 24 * HOUR_S
MAX_BINS = 1500  # beyond this many hours the timeline counts per day (a bar stays visible)
PHOTO_PAGE = "https://www.flickr.com/photos/{owner}/{id}/"
_NSID = re.compile(r"^[0-9]+@N[0-9]+$")

#: (pattern in a failure's reason, what a person should do), first match wins.
ACTIONS: tuple[tuple[str, str], ...] = (
    ("http 404", "drop: gone from Flickr"),
    ("http 410", "drop: gone from Flickr"),
    ("http 403", "drop: made private"),
    ("unsafe record", "inspect: the API returned an unusable id, secret or owner"),
    ("undecodable", "inspect: the image does not decode"),
    ("not an image", "inspect: the host sent something else"),
    ("decompression bomb", "inspect: too many pixels"),
    ("too large", "inspect: over the download size cap"),
    ("internal", "report a bug: harvest failed on this photo"),
)
RETRY = "retry: harvest run … --retry-failed"
INSPECT = "inspect"


def is_policy_skip(reason: str | None) -> bool:
    """True for a skip harvest makes on purpose (too small, no size allowed)."""
    return (reason or "").startswith(POLICY_SKIPS)


def action_for(status: str, reason: str | None) -> str:
    """What a person should do about a photo that needs one (provenance-report.md §2.1.7)."""
    text = (reason or "").lower()
    for pattern, action in ACTIONS:
        if pattern in text:
            return action
    return RETRY if status == "failed" else INSPECT


def photo_page(owner: str, photo_id: int) -> str:
    """The photo's page on Flickr; the owner is URL-quoted, since it comes from the API."""
    return PHOTO_PAGE.format(owner=quote(owner, safe="@") or "-", id=int(photo_id))


def valid_owner(owner: str) -> bool:
    """True for a Flickr NSID such as 12345678@N06."""
    return bool(_NSID.match(owner))


def lower_bound(found: int, per_page: int) -> int:
    """The fewest search calls that can return `found` photos: ceil(found / per_page)."""
    return math.ceil(found / per_page) if found > 0 else 0


def utc(ts: float | None) -> str:
    """A unix time as "YYYY-MM-DD HH:MM UTC" ("" for none)."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


# --- the view ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class KeywordLine:
    """One keyword's row: search, outcomes, the cap and the API calls it cost.

    `negatives` and `calls` are None for a harvest made before they were kept.
    """

    keyword: str
    windows: int = 0
    found: int = 0
    new: int = 0
    duplicates: int = 0
    negatives: int | None = None
    pending: int = 0
    stored: int = 0
    skipped: int = 0
    failed: int = 0
    calls: int | None = None
    unique: int = 0  # distinct photos its searches returned, negatives included
    at_cap: int = 0
    split_buckets: int = 0
    licence_windows: int = 0
    capped: int = 0
    lost: int = 0  # Flickr's totals over what the capped windows returned


COUNTED = (
    "windows",
    "found",
    "new",
    "duplicates",
    "negatives",
    "pending",
    "stored",
    "skipped",
    "failed",
    "calls",
    "unique",
    "at_cap",
    "split_buckets",
    "licence_windows",
    "capped",
    "lost",
)


def total_line(lines: Sequence[KeywordLine]) -> KeywordLine:
    """The TOTAL row; a column that any keyword lacks (None) stays None."""
    sums: dict[str, int | None] = {}
    for name in COUNTED:
        values = [getattr(line, name) for line in lines]
        sums[name] = None if any(v is None for v in values) else sum(values)
    return KeywordLine(keyword="TOTAL", **sums)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunMark:
    """A run on the timeline: its number, start, end and outcome (None while running)."""

    number: int
    worker: str
    started_at: float
    finished_at: float | None
    outcome: str | None

    @property
    def restart(self) -> bool:
        """Every run after the first continues the job."""
        return self.number > 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeline:
    """Photos finished per bin (an hour, or a day for long jobs), every bin of the job."""

    bin_s: int
    starts: tuple[int, ...]
    done: tuple[int, ...]
    skipped: tuple[int, ...]
    failed: tuple[int, ...]
    runs: tuple[RunMark, ...]

    @property
    def unit(self) -> str:
        """ "hour" or "day"."""
        return "hour" if self.bin_s == HOUR_S else "day"

    @property
    def peak(self) -> int:
        """The busiest bin's photos."""
        sums = [d + s + f for d, s, f in zip(self.done, self.skipped, self.failed, strict=True)]
        return max(sums, default=0)


def timeline(
    counts: Mapping[tuple[int, str], int], runs: Sequence[RunMark], *, max_bins: int = MAX_BINS
) -> Timeline:
    """Bin (hour start, status) → photos into every bin from the first run (or photo) to the
    last photo or run end, empty bins included so stalls show; days past `max_bins` hours."""
    edges = [h for h, _ in counts] + [int(r.started_at) for r in runs]
    edges += [int(r.finished_at) for r in runs if r.finished_at is not None]
    if not edges:
        return Timeline(bin_s=HOUR_S, starts=(), done=(), skipped=(), failed=(), runs=())
    first, last = min(edges) // HOUR_S * HOUR_S, max(edges) // HOUR_S * HOUR_S
    bin_s = HOUR_S if (last - first) // HOUR_S + 1 <= max_bins else DAY_S
    first, last = first // bin_s * bin_s, last // bin_s * bin_s
    starts = tuple(range(first, last + 1, bin_s))
    index = {start: i for i, start in enumerate(starts)}
    series: dict[str, list[int]] = {s: [0] * len(starts) for s in ("done", "skipped", "failed")}
    for (hour, status), n in counts.items():
        if status in series:
            series[status][index[hour // bin_s * bin_s]] += n
    return Timeline(
        bin_s=bin_s,
        starts=starts,
        done=tuple(series["done"]),
        skipped=tuple(series["skipped"]),
        failed=tuple(series["failed"]),
        runs=tuple(runs),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Bar:
    """One labelled count of a bar chart or tally table."""

    label: str
    count: int
    note: str = ""


def top_bars(items: Iterable[Bar], keep: int) -> list[Bar]:
    """The `keep` largest (ties by label), the rest summed as one "other" bar."""
    ranked = sorted(items, key=lambda b: (-b.count, b.label))
    if len(ranked) <= keep + 1:
        return ranked
    rest = sum(b.count for b in ranked[keep:])
    return [*ranked[:keep], Bar(label=f"other ({len(ranked) - keep})", count=rest)]


def licence_bars(counts: Mapping[int, int]) -> list[Bar]:
    """Stored photos by licence name, the note flagging NC, ND, SA and all-rights-reserved."""
    bars = []
    for lic_id, n in counts.items():
        name = license_for(lic_id).name
        bars.append(Bar(label=name, count=n, note=" ".join(licence_flags(lic_id))))
    return sorted(bars, key=lambda b: (-b.count, b.label))


def licence_flags(lic_id: int) -> tuple[str, ...]:
    """What a licence restricts: ARR (all rights reserved), NC, ND, SA."""
    if lic_id == 0:
        return ("ARR",)
    name = license_for(lic_id).name
    return tuple(flag for flag in ("NC", "ND", "SA") if f"-{flag}" in name)


@dataclass(frozen=True, slots=True, kw_only=True)
class Attention:
    """A photo that needs a person: its page, why, and what to do."""

    photo_id: int
    page: str
    title: str
    keyword: str
    status: str
    reason: str
    attempts: int
    last_attempt: str
    action: str


CSV_HEADER = (
    "photo_id",
    "page",
    "keyword",
    "status",
    "reason",
    "attempts",
    "last_attempt",
    "action",
    "title",
)


def csv_row(item: Attention) -> tuple[str | int, ...]:
    """The row of `needs-attention.csv` for one photo (CSV_HEADER's order)."""
    return (
        item.photo_id,
        item.page,
        item.keyword,
        item.status,
        item.reason,
        item.attempts,
        item.last_attempt,
        item.action,
        item.title,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class CappedRow:
    """A window still over the cap: where, which licence, what Flickr reported and returned."""

    keyword: str
    start: str
    end: str
    licence: str
    found: int
    reported: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class GeoView:
    """Geotagged stored photos binned on a longitude/latitude grid."""

    cell_deg: float
    lon: tuple[float, ...]
    lat: tuple[float, ...]
    count: tuple[int, ...]
    stored: int  # all stored photos, for the geotagged share

    @property
    def photos(self) -> int:
        """Geotagged photos."""
        return sum(self.count)

    @property
    def share(self) -> float:
        """Geotagged share of the stored photos (0 when none is stored)."""
        return self.photos / self.stored if self.stored else 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """Everything the page shows."""

    title: str
    store: str
    version: str
    generated_at: str
    runs: tuple[RunMark, ...]
    keywords: tuple[KeywordLine, ...]
    total: KeywordLine
    statuses: Mapping[str, int]
    reasons: tuple[Bar, ...]  # "skipped: too small" → photos, as `harvest status` tallies
    timeline: Timeline
    licences: tuple[Bar, ...]
    sources: tuple[Bar, ...]
    geo: GeoView
    duplicates: tuple[Bar, ...] | None  # pairs by kind; None before `harvest dupes`
    duplicate_copies: int
    capped: tuple[CappedRow, ...]
    per_page: int
    attention: tuple[Attention, ...]  # the first `attention_shown` rows
    attention_total: int
    csv_name: str
    notes: tuple[str, ...] = field(default=())

    @property
    def photos(self) -> int:
        """Photos claimed in total, whatever their status (as `harvest status`)."""
        return sum(self.statuses.values())

    def bound_of(self, line: KeywordLine) -> int:
        """A keyword's lower bound on search calls: ceil(unique / per_page)."""
        return lower_bound(line.unique, self.per_page)

    @property
    def calls_bound(self) -> int:
        """The sum over keywords of their lower bounds."""
        return sum(self.bound_of(k) for k in self.keywords)

    @property
    def calls_ratio(self) -> float | None:
        """Search calls over the lower bound (None when either is unknown or zero)."""
        calls, bound = self.total.calls, self.calls_bound
        return calls / bound if calls is not None and bound else None

    @property
    def restarts(self) -> int:
        """Runs after the first."""
        return max(len(self.runs) - 1, 0)

    def summary_line(self) -> str:
        """The one-sentence summary at the top of the page."""
        t = self.total
        calls = "search calls not recorded" if t.calls is None else f"{t.calls:,} search calls"
        return (
            f"{self.photos:,} photos found by {_plural(len(self.keywords), 'keyword')} in "
            f"{_plural(len(self.runs), 'run')} ({_plural(self.restarts, 'restart')}): "
            f"{t.stored:,} stored, "
            f"{t.skipped:,} skipped, {t.failed:,} failed, {t.pending:,} pending; {calls}; "
            f"{self.attention_total:,} need a human."
        )


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"
