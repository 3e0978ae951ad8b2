"""Sources as keywords: the paged walk of a list (album, gallery), and vanished sources.

`search_source` is what the engine runs for every keyword: a plain keyword, a `user:`,
`group:` or `commons:` line go to the window planner (`search_keyword`, with `user_id` or
`group_id`); an album or gallery is walked page by page with its list method at 500 a page,
the `ceil(N/500)` bound itself. Each page is checkpointed as the window `[page, page + 1)`
with the total the page reported, so a resumed walk asks only for the pages not yet done, and
a walk that finished asks for nothing. A source that stops answering mid-run (deleted, made
private) ends with a `SourceGone` the engine records, not with an error that stops the run.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from typing import Protocol

from harvester.config import PlannerConfig
from harvester.exceptions import FlickrError
from harvester.records import ListQuery, PhotoRecord, SearchPage, Window
from harvester.search.loop import SearchBackend, WindowResult, search_keyword
from harvester.search.queries import KeywordQuery, matches_negative
from harvester.search.windows import Checkpoint

log = logging.getLogger(__name__)

LIST_PER_PAGE = 500  # the maximum of photosets.getPhotos, galleries.getPhotos, pools.getPhotos
#: stat=fail codes that mean the source is no more: a list's 1 "not found", 2 "no permission"
#: (pools), 4 "member only"; search's 2 "Unknown user", 4 "no permission to view this pool",
#: 5 "User deleted" (reflection data, 2020).
LIST_GONE_CODES = frozenset({1, 2, 4})
SEARCH_GONE_CODES = frozenset({2, 4, 5})


class ListingBackend(Protocol):
    """Anything that answers the list methods (the Flickr client, or a fake in tests)."""

    async def list_page(self, query: ListQuery) -> SearchPage:
        """One page of a photoset, gallery or group pool."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceGone:
    """A source that stopped answering mid-run: the engine records why and moves on."""

    keyword: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DonePage:
    """A list page checkpointed earlier: its number and the total it reported."""

    page: int
    reported_total: int | None


def page_window(page: int) -> Window:
    """The checkpoint key of list page `page`: the window `[page, page + 1)` (`is_list_page`)."""
    return Window(start=page, end=page + 1)


async def search_source(
    kq: KeywordQuery,
    backend: SearchBackend,
    listings: ListingBackend | None,
    *,
    plan_config: PlannerConfig,
    now: int,
    done_windows: Iterable[Checkpoint] = (),
    done_pages: Iterable[DonePage] = (),
    negatives: tuple[str, ...] = (),
    send_negatives: bool = False,
) -> AsyncGenerator[WindowResult | SourceGone, None]:
    """Search a keyword or a source to the end, yielding each window (or page) as it finishes."""
    gone = SEARCH_GONE_CODES if kq.listing is None else LIST_GONE_CODES
    try:
        if kq.listing is not None:
            if listings is None:
                raise FlickrError(112, "this backend has no list methods")
            async for page in walk_listing(kq, listings, done=done_pages, negatives=negatives):
                yield page
            return
        stream = search_keyword(
            kq,
            backend,
            plan_config=plan_config,
            now=now,
            done_windows=done_windows,
            negatives=negatives,
            send_negatives=send_negatives,
        )
        async for window in stream:
            yield window
    except FlickrError as exc:
        if kq.source is None or exc.code not in gone:
            raise
        log.warning("%s: the source stopped answering: %s", kq.keyword, exc)
        yield SourceGone(keyword=kq.keyword, reason=f"source gone: {exc}")


async def walk_listing(
    kq: KeywordQuery,
    backend: ListingBackend,
    *,
    done: Iterable[DonePage] = (),
    negatives: tuple[str, ...] = (),
) -> AsyncGenerator[WindowResult, None]:
    """Walk an album or gallery page by page, skipping the pages checkpointed before."""
    assert kq.listing is not None
    kind, list_id, owner = kq.listing
    finished = {d.page for d in done}
    totals = [d.reported_total for d in done if d.reported_total is not None]
    last = max((math.ceil(t / LIST_PER_PAGE) for t in totals), default=0)
    page = 1
    while True:
        if page in finished:
            if page >= last:
                return  # the last page the list reported is done
            page += 1
            continue
        query = ListQuery(kind=kind, list_id=list_id, owner=owner, page=page)
        result = await backend.list_page(query)
        yield _page_result(kq, page, result, negatives, last)
        last = max(last, result.pages or 0)
        if not result.photos or page >= last:
            return
        page += 1


def _page_result(
    kq: KeywordQuery, page: int, result: SearchPage, negatives: tuple[str, ...], last: int
) -> WindowResult:
    photos = list({p.id: p for p in result.photos}.values())
    kept: list[PhotoRecord] = [p for p in photos if matches_negative(p, negatives) is None]
    pages = max(last, result.pages or 0, page)
    return WindowResult(
        keyword=kq.keyword,
        window=page_window(page),
        photos=tuple(kept),
        filtered_negative=len(photos) - len(kept),
        calls=1,
        reported_total=result.total,
        coverage=min(1.0, page / pages),
        windows_planned=pages,
    )
