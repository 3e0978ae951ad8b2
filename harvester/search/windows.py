"""Search windows and the small records passed between the planner and the search loop."""

from __future__ import annotations

import calendar
import itertools
import time
from collections.abc import Container
from dataclasses import dataclass

from harvester.records import DateField, PhotoRecord, SearchPage, Window

#: How many of a page's last dates an observation keeps: where a window ends of itself, the
#: rate just before its end comes from these (a burst that stopped mid-page reads as over).
END_DATES = 8


def record_date(record: PhotoRecord, date_field: DateField) -> int | None:
    """The photo's date on the planner's axis: upload seconds, or its taken time read as UTC."""
    if date_field is DateField.UPLOAD:
        return record.date_upload
    if not record.date_taken:
        return None
    try:
        parsed = time.strptime(record.date_taken[:19], "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return calendar.timegm(parsed)


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """A window finished in an earlier run, which a resumed plan skips (license None = all).

    The engine builds these from the store's window rows; `found` seeds the rate estimate.
    """

    window: Window
    found: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PageRequest:
    """One page of one window to fetch, sorted ascending on the plan's date field."""

    window: Window
    page: int
    per_page: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PageObservation:
    """What the planner needs from a page: counts and dates, never the photos themselves."""

    count: int  # photos returned, including any outside the window
    per_page: int | None  # the page size the API used
    pages: int | None
    total: int | None
    in_window: int  # photos whose date lies in the window
    first_date: int | None  # first and last in-window dates, in returned order
    last_date: int | None
    ascending: bool  # in-window dates never go back a grid bucket
    new: int | None = None  # in-window photos not already in hand (None: not counted)
    head_date: int | None = None  # the date of the page's first photo, in the window or not
    tail: tuple[int, ...] = ()  # the in-window dates in the grid bucket of the last one
    before: int = 0  # photos dated before the window's start (fuzzy edges bleeding in)
    last_dates: tuple[int, ...] = ()  # the last few in-window dates (END_DATES of them)

    @classmethod
    def from_page(
        cls,
        page: SearchPage,
        window: Window,
        date_field: DateField,
        floor_s: int,
        known: Container[str] = frozenset(),
    ) -> PageObservation:
        """Summarise a search page for `window`; `known` holds the ids already in hand."""
        dated = [(p.id, record_date(p, date_field)) for p in page.photos]
        inside_ids = [i for i, d in dated if d is not None and window.contains(d)]
        inside = [d for _, d in dated if d is not None and window.contains(d)]
        buckets = [d // floor_s for d in inside]
        head = dated[0][1] if dated else None
        tail = tuple(d for d in inside if d // floor_s == buckets[-1]) if inside else ()
        return cls(
            count=len(page.photos),
            per_page=page.per_page or None,
            pages=page.pages,
            total=page.total,
            in_window=len(inside),
            first_date=inside[0] if inside else None,
            last_date=inside[-1] if inside else None,
            ascending=all(a <= b for a, b in itertools.pairwise(buckets)),
            new=sum(1 for i in inside_ids if i not in known),
            head_date=head,
            tail=tail,
            before=sum(1 for _, d in dated if d is not None and d < window.start),
            last_dates=tuple(inside[-END_DATES:]),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowDone:
    """`window` is complete: `found` in-window results (truncated: cut short at the cap)."""

    window: Window
    found: int
    reported_total: int | None
    truncated: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowCapped:
    """`window` (one licence in one bucket) holds more than the cap: done, with a known loss."""

    window: Window
    found: int
    reported_total: int | None
    lost_estimate: int


@dataclass(frozen=True, slots=True)
class WindowSplit:
    """`window` was abandoned and will be searched in narrower parts (or per licence)."""

    window: Window
    reason: str


Decision = WindowDone | WindowCapped | WindowSplit


class Coverage:
    """The done parts of a keyword's range: merged whole spans, and buckets done per licence."""

    def __init__(self, floor_s: int, licenses: tuple[int, ...]) -> None:
        self._floor_s = floor_s
        self._licenses = frozenset(licenses)
        self.spans: list[tuple[int, int]] = []  # sorted, disjoint, merged
        self.partial: dict[int, set[int]] = {}  # bucket start -> licences done there

    def add(self, start: int, end: int, license: int | None = None) -> None:
        """Mark a window done; a bucket whose every licence is done becomes a whole span."""
        if license is not None:
            done = self.partial.setdefault(start, set())
            done.add(license)
            if done >= self._licenses:
                del self.partial[start]
                self.add(start, start + self._floor_s)
            return
        if end <= start:
            return
        merged: list[tuple[int, int]] = []
        for s, e in sorted([*self.spans, (start, end)]):
            if merged and s <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], e))
            else:
                merged.append((s, e))
        self.spans = merged

    def skip(self, pos: int) -> int:
        """The first instant at or after `pos` that no whole span covers."""
        for start, end in self.spans:
            if start <= pos < end:
                pos = end
        return pos

    def room(self, pos: int, end: int) -> int:
        """Seconds from `pos` to `end` or to the next span or part-done bucket after it."""
        later = [s for s, _ in self.spans if s > pos] + [b for b in self.partial if b > pos]
        return min([end, *later]) - pos

    def licences_left(self, bucket: int, licenses: tuple[int, ...]) -> list[int]:
        """The licences still to search in `bucket`, in order."""
        done = self.partial.get(bucket, set())
        return [lic for lic in licenses if lic not in done]

    def share(self, start: int, end: int) -> float:
        """The share of `[start, end)` covered by whole spans, 0..1."""
        if end <= start:
            return 1.0
        covered = sum(max(0, min(e, end) - max(s, start)) for s, e in self.spans)
        return min(1.0, covered / (end - start))
