"""The search loop: drives a keyword's plan through a search backend, one window at a time.

`search_keyword` asks the planner for pages, fetches them, and yields a `WindowResult` for each
finished window: its photos deduplicated, restricted to the window's dates and the keyword's
range, and cleared of negative terms. The caller commits each result (window checkpoint and
photo claims in one transaction), so memory stays bounded by about one window (the cap).

Photos the API returns from outside the window (fuzzy date edges) are dropped rather than
kept: windows tile the range, so the window they belong to returns them too. Photos fetched in
a window that was abandoned or cut short stay in hand and go out with the window containing them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from typing import Protocol

from harvester.config import PlannerConfig
from harvester.records import DateField, PhotoRecord, SearchPage, SearchQuery, Window
from harvester.search.planner import KeywordPlan, plan_range
from harvester.search.queries import KeywordQuery, matches_negative
from harvester.search.windows import (
    Checkpoint,
    PageObservation,
    PageRequest,
    WindowCapped,
    WindowDone,
    WindowSplit,
    record_date,
)

log = logging.getLogger(__name__)

GEO_PER_PAGE = 250  # Flickr's page size limit for bbox / geo queries


class SearchBackend(Protocol):
    """Anything that answers flickr.photos.search (the Flickr client, or a fake in tests)."""

    async def search(self, query: SearchQuery) -> SearchPage:
        """One page of results for `query`."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowResult:
    """One finished window of one keyword: what to checkpoint and which photos to claim."""

    keyword: str
    window: Window
    photos: tuple[PhotoRecord, ...]  # deduplicated, in the window, negatives removed
    filtered_negative: int  # photos dropped for a negative term
    calls: int  # API calls spent since the previous result (including abandoned windows)
    reported_total: int | None
    capped: bool = False
    lost_estimate: int = 0  # for a capped window: results Flickr would not return
    coverage: float = 0.0  # share of the keyword's range done after this window
    windows_planned: int = 0  # windows done plus an estimate of those to come


def build_query(
    kq: KeywordQuery, request: PageRequest, negatives: Iterable[str] = ()
) -> SearchQuery:
    """The search call for one page of one window (negatives go in `text` only if given)."""
    window = request.window
    taken = kq.date_field is DateField.TAKEN
    text = kq.text
    excluded = [f"-{term}" for term in negatives if " " not in term]
    if text is not None and excluded:
        text = " ".join([text, *excluded])
    return SearchQuery(
        min_date=window.start,
        max_date=window.end - 1,
        text=text,
        tags=kq.tags,
        tag_mode=kq.tag_mode,
        date_field=kq.date_field,
        licenses=(window.license,) if window.license is not None else kq.licenses,
        bbox=kq.bbox,
        has_geo=kq.has_geo,
        user_id=kq.user_id,
        accuracy=kq.accuracy,
        group_id=kq.group_id,
        sort="date-taken-asc" if taken else "date-posted-asc",
        page=request.page,
        per_page=request.per_page,
    )


def keyword_config(kq: KeywordQuery, config: PlannerConfig) -> PlannerConfig:
    """The plan config for a keyword: geo queries get Flickr's smaller page."""
    if kq.bbox is not None or kq.has_geo is not None:  # others: the plan adopts the API's
        return dataclasses.replace(config, per_page=min(config.per_page, GEO_PER_PAGE))
    return config


class _InHand:
    """Photos fetched but not yet handed out, keyed by id (so repeats collapse)."""

    def __init__(self, kq: KeywordQuery, licenses: tuple[int, ...]) -> None:
        self._kq = kq
        self._licenses = frozenset(licenses)
        self._photos: dict[str, tuple[int, PhotoRecord]] = {}

    def __len__(self) -> int:
        return len(self._photos)

    def __contains__(self, photo_id: object) -> bool:
        return photo_id in self._photos

    def add(self, photos: Iterable[PhotoRecord], window: Window) -> None:
        since, until = self._kq.since, self._kq.until
        for photo in photos:
            date = record_date(photo, self._kq.date_field)
            if date is None or not window.contains(date):
                continue
            if (since is not None and date < since) or (until is not None and date >= until):
                continue
            if self._kq.licenses and photo.license not in self._kq.licenses:
                continue  # the API ignored the licence filter
            self._photos.setdefault(photo.id, (date, photo))

    def take(self, window: Window, last_of_split: bool) -> list[PhotoRecord]:
        """Remove and return the photos of `window` (for a licence window, its licence)."""
        taken = [
            pid
            for pid, (date, photo) in self._photos.items()
            if window.contains(date) and self._licence_fits(window, photo, last_of_split)
        ]
        return [self._photos.pop(pid)[1] for pid in taken]

    def _licence_fits(self, window: Window, photo: PhotoRecord, last_of_split: bool) -> bool:
        if window.license is None or photo.license == window.license:
            return True
        # a licence no split query asks for (Flickr added one?) leaves with the last one
        return last_of_split and photo.license not in self._licenses


def _result(
    kq: KeywordQuery,
    decision: WindowDone | WindowCapped,
    photos: list[PhotoRecord],
    negatives: tuple[str, ...],
    plan: KeywordPlan,
    calls: int,
) -> WindowResult:
    kept = [p for p in photos if matches_negative(p, negatives) is None]
    return WindowResult(
        keyword=kq.keyword,
        window=decision.window,
        photos=tuple(kept),
        filtered_negative=len(photos) - len(kept),
        calls=calls,
        reported_total=decision.reported_total,
        capped=isinstance(decision, WindowCapped),
        lost_estimate=decision.lost_estimate if isinstance(decision, WindowCapped) else 0,
        coverage=plan.coverage,
        windows_planned=plan.windows_planned,
    )


async def search_keyword(
    kq: KeywordQuery,
    backend: SearchBackend,
    *,
    plan_config: PlannerConfig,
    now: int,
    done_windows: Iterable[Checkpoint] = (),
    negatives: tuple[str, ...] = (),
    send_negatives: bool = False,
) -> AsyncGenerator[WindowResult, None]:
    """Search one keyword to the end, yielding each window as it finishes.

    Windows in `done_windows` (checkpointed earlier) are never searched again. Backend errors
    propagate: whatever was yielded is checkpointed, and a rerun resumes after it.
    """
    cfg = keyword_config(kq, plan_config)
    start, end = plan_range(kq.since, kq.until, now, cfg.floor_s, kq.date_field)
    plan = KeywordPlan.resume(start, end, done_windows, cfg, kq.licenses)
    in_hand = _InHand(kq, plan.licenses)
    sent_negatives = negatives if send_negatives else ()
    calls = 0
    while (request := plan.next_request()) is not None:
        page = await backend.search(build_query(kq, request, sent_negatives))
        calls += 1
        obs = PageObservation.from_page(page, request.window, kq.date_field, cfg.floor_s, in_hand)
        in_hand.add(page.photos, request.window)
        for decision in plan.observe(request, obs):
            if isinstance(decision, WindowSplit):
                log.info("%s: %s %s", kq.keyword, decision.window, decision.reason)
                continue
            last = (
                decision.window.license is not None
                and decision.window.license == (plan.licenses[-1])
            )
            photos = in_hand.take(decision.window, last)
            yield _result(kq, decision, photos, negatives, plan, calls)
            calls = 0
    if len(in_hand):  # only photos outside every licence asked for; Flickr ignored the filter
        log.debug("%s: %d photos outside the licences searched dropped", kq.keyword, len(in_hand))
    log.info("%s: search finished, %d API calls in this run", kq.keyword, plan.calls)
