"""The Berg/Hays window search (IM2GPS query script), re-implemented for bench/planner.py.

Source: `get_imgs_geo_gps_search.py` as described in shared/reference/hays-baseline.md §1
(shiyu-cheng/6895_Visual_Sentiment_Prediction @ 4059cbc). Per window `[mintime, maxtime]`:

1. Binary search on `maxtime`: the bracket is `[mintime + 900, mintime + 20 * timeskip]`, the
   first guess `0.95 * lower + 0.05 * upper`. Each probe is page 1, `per_page=250`, Flickr's
   default sort, and reads `total`: above 250 lowers `upper` and halves towards `lower`, below
   250 raises `lower` and halves towards `upper` (exactly 250 changes nothing). A probe with
   `total > 0` uses one of 6 tries; an empty one widens `upper` by `timeskip` instead.
   `maxtime` moves once more after the last probe, so the window harvested is not the one
   measured (bug 1 of §5, kept: it is the algorithm).
2. Harvest pages `1 .. min(16, pages)` of the *last probe's* `pages`, `per_page=250`,
   `sort=interestingness-desc`.
3. Advance: `timeskip = maxtime - mintime; mintime = maxtime` (windows share an edge second).

Timestamps are floats as in the original; they go out truncated to whole seconds, which is
what Flickr (and the emulator) do with `str(float)` dates. Deviations, all of them crash or
hang fixes, none changing the search itself:

- every call goes through harvest's `FlickrClient` (bounded retries with backoff) instead of
  a bare `except:` that retries forever with no backoff (bug 5);
- a probe whose `total` is unknown (`""`) is asked again, at most `UNKNOWN_TOTAL_TRIES` times,
  where the original's `int("")` raised and retried forever;
- the first window, when no probe ran because the first guess already reaches `endtime`, is
  probed once (the original would raise NameError on `rsp`); later windows reuse the previous
  window's last probe in that case, exactly as the original does;
- the last window is clamped to `endtime` (bug 3).

What is searched (`text=`) is the caller's: the original's `has_geo=1`, `accuracy=6` and
negative terms are query content, not the window search, and are left out so that both
methods search the same photos. Photos are deduplicated by id here (the original writes
repeats out; its readme says to dedupe by id afterwards).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harvester.records import SearchPage, SearchQuery
from harvester.search.loop import SearchBackend

UNKNOWN_TOTAL_TRIES = 5


@dataclass(frozen=True, slots=True)
class HaysConfig:
    """The original's constants (hays-baseline.md §1)."""

    timeskip: float = 172_800.0  # 2 days: the initial window width
    desired_photos: int = 250  # the probe's target `total`
    per_page: int = 250
    keep_going: int = 6  # probes per window that return something
    max_pages: int = 16  # "16 pages = 4000 images, should be duplicate safe"
    min_width: float = 900.0  # lower bound of maxtime is mintime + 15 min
    bracket_widths: int = 20  # upper bound of maxtime is mintime + 20 * timeskip
    first_guess: float = 0.05  # maxtime = 0.95 * lower + 0.05 * upper
    probe_sort: str = ""  # no sort parameter value: Flickr's default order
    page_sort: str = "interestingness-desc"


@dataclass(slots=True)
class HaysWindow:
    """One harvested window: what its last probe said and what its pages returned."""

    mintime: float
    maxtime: float
    probes: int
    probe_total: int  # `total` of the last probe (possibly of a narrower/wider window)
    probe_pages: int
    pages_visited: int
    rows: int  # photos on the harvested pages, repeats included
    stale_probe: bool  # no probe ran for this window: the previous window's answer was used


@dataclass(slots=True)
class HaysResult:
    """Everything the search returned, deduplicated by id, and its call counts."""

    ids: set[str] = field(default_factory=set)
    rows: int = 0
    probe_calls: int = 0
    page_calls: int = 0
    windows: list[HaysWindow] = field(default_factory=list)

    @property
    def calls(self) -> int:
        """Search calls that returned a page (retries of failed attempts not included)."""
        return self.probe_calls + self.page_calls


class HaysSearch:
    """The window search over one `SearchBackend` for one text query and date range."""

    def __init__(
        self,
        backend: SearchBackend,
        text: str,
        start: int,
        end: int,
        config: HaysConfig | None = None,
    ) -> None:
        self.backend = backend
        self.text = text
        self.start = float(start)
        self.end = float(end)
        self.cfg = config or HaysConfig()
        self.result = HaysResult()

    def _query(self, mintime: float, maxtime: float, page: int, sort: str) -> SearchQuery:
        return SearchQuery(
            min_date=int(mintime),
            max_date=int(maxtime),
            text=self.text,
            sort=sort,
            page=page,
            per_page=self.cfg.per_page,
        )

    async def _probe(self, mintime: float, maxtime: float) -> tuple[SearchPage, int]:
        """Page 1 in the default order, until its `total` is known (the original: forever)."""
        for _ in range(UNKNOWN_TOTAL_TRIES):
            page = await self.backend.search(self._query(mintime, maxtime, 1, self.cfg.probe_sort))
            self.result.probe_calls += 1
            if page.total is not None:
                return page, page.total
        return page, 0

    async def _binary_search(
        self, mintime: float, timeskip: float
    ) -> tuple[float, SearchPage | None, int, int]:
        """Choose maxtime: (maxtime, last probe page, its total, probes made)."""
        cfg = self.cfg
        lower = mintime + cfg.min_width
        upper = mintime + timeskip * cfg.bracket_widths
        maxtime = (1.0 - cfg.first_guess) * lower + cfg.first_guess * upper
        keep_going = cfg.keep_going
        last: SearchPage | None = None
        total = 0
        probes = 0
        while keep_going > 0 and maxtime < self.end:
            last, total = await self._probe(mintime, maxtime)
            probes += 1
            if total > cfg.desired_photos:
                upper = maxtime
                maxtime = (lower + maxtime) / 2
            if total < cfg.desired_photos:
                lower = maxtime
                maxtime = (upper + maxtime) / 2
            if total > 0:
                keep_going -= 1
            else:
                upper += timeskip
        return maxtime, last, total, probes

    async def run(self) -> HaysResult:
        """Search `[start, end]` window by window; returns the deduplicated result."""
        cfg = self.cfg
        timeskip = cfg.timeskip
        mintime = self.start
        maxtime = mintime + timeskip
        last: SearchPage | None = None
        total = 0
        while maxtime < self.end:
            maxtime, probe, probe_total, probes = await self._binary_search(mintime, timeskip)
            stale = probe is None
            if probe is not None:
                last, total = probe, probe_total
            maxtime = min(maxtime, self.end)  # fix: the last window is clamped to endtime
            if last is None:  # fix: the original raises NameError on the very first window
                last, total = await self._probe(mintime, maxtime)
                probes += 1
            pages = last.pages or 0
            visit = min(cfg.max_pages, pages)
            rows = 0
            for number in range(1, visit + 1):
                page = await self.backend.search(
                    self._query(mintime, maxtime, number, cfg.page_sort)
                )
                self.result.page_calls += 1
                rows += len(page.photos)
                self.result.ids.update(p.id for p in page.photos)
            self.result.rows += rows
            self.result.windows.append(
                HaysWindow(mintime, maxtime, probes, total, pages, visit, rows, stale)
            )
            timeskip = maxtime - mintime
            mintime = maxtime
        return self.result


async def hays_search(
    backend: SearchBackend, text: str, start: int, end: int, config: HaysConfig | None = None
) -> HaysResult:
    """Run the Berg/Hays window search for `text` over `[start, end]`."""
    return await HaysSearch(backend, text, start, end, config).run()
