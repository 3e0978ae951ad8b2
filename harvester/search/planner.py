"""Adaptive time-window planner: a pure state machine deciding which search page to ask next.

One `KeywordPlan` per keyword cuts its date range `[start, end)` into half-open windows on a
`floor_s` grid (Flickr's date floor: narrower windows act like the enclosing bucket) and pages
through each with an ascending date sort, so the first page of a window is its probe.

- Widths: `window_target / rate`, the rate a decaying ratio estimate over recent windows, at
  most `max_growth` times the last width (so empty stretches grow geometrically).
- The cap: a window the 4,000 results cannot finish is paged to the cap and truncated by
  keyset: everything before the grid bucket of the last photo returned is complete, and the
  next window starts at that bucket. Paging on to the cap costs nothing (every page is full
  and new), so the default target fills windows to the cap rather than stopping short of it.
- A bucket holding more than the cap is split by licence; one licence over the cap in one
  bucket is recorded as capped, with its estimated loss.
- If the API ignores the sort, the plan stops trusting it: windows over the cap are abandoned
  and retried narrower (`unsorted_target`), as the Berg/Hays and Openverse searches do.
- Short pages mid-list are refetched once (photos dropped for one call), and a nearly full
  page never ends a window (`pages` follows the under-reported total).

The plan holds counts and dates only, never photos; `now` is the caller's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from harvester.config import PlannerConfig
from harvester.licenses import ALL_IDS
from harvester.records import DateField, Window
from harvester.search.windows import (
    END_DATES,
    Checkpoint,
    Coverage,
    Decision,
    PageObservation,
    PageRequest,
    WindowCapped,
    WindowDone,
    WindowSplit,
)

log = logging.getLogger(__name__)

DEFAULT_SINCE = 1072915200  # 2004-01-01T00:00:00Z: Flickr opened in February 2004
DEFAULT_TAKEN_SINCE = -2208988800  # 1900-01-01T00:00:00Z
#: Windows meant to reach the cap aim this far past it, so that few end on a part-filled page
#: (a window that reaches the cap is truncated at a bucket and continued: no call is lost).
OVERSHOOT = 1.5


def plan_range(
    since: int | None,
    until: int | None,
    now: int,
    floor_s: int,
    date_field: DateField = DateField.UPLOAD,
) -> tuple[int, int]:
    """A keyword's grid-aligned range: `[since or the default start, until or now)`.

    The default start is 2004-01-01 for upload dates (Flickr opened in February 2004) and
    1900-01-01 for taken dates (scans of old photos). `since` and `until` round outwards (the
    search loop drops photos outside them); `now` rounds down, so the bucket still receiving
    uploads is left for a later run. Empty years cost little: the first window spans the
    whole range and is paged to the cap.
    """
    default = DEFAULT_SINCE if date_field is DateField.UPLOAD else DEFAULT_TAKEN_SINCE
    start = default if since is None else since
    start -= start % floor_s
    end = now - now % floor_s
    if until is not None:
        end = min(end, until + (-until) % floor_s)
    return start, max(start, end)


@dataclass(slots=True)
class _Active:
    """The window being paged: counts and the last date seen, never the photos."""

    window: Window
    page: int = 1
    fetched: int = 0
    last_date: int | None = None
    sorted_ok: bool = True
    reported_total: int | None = None
    last_before: int | None = None  # last_date before the current page (for a refetch)
    short: tuple[int, int] | None = None  # (count, in_window) of a short page being refetched
    refetched_page: int = 0
    tail: tuple[int, ...] = ()  # in-window dates read in the grid bucket of `last_date`
    tail_before: tuple[int, ...] = ()  # `tail` before the current page (for a refetch)
    tail_count: int = 0  # in-window photos of the last page that had any
    tail_from: int | None = None  # ... and the first of their dates
    end_dates: tuple[int, ...] = ()  # the last END_DATES in-window dates read
    end_before: tuple[int, ...] = ()  # `end_dates` before the current page (for a refetch)
    check_before: int | None = None  # pages were skipped: the first one read must start before


class KeywordPlan:
    """The search plan of one keyword: `next_request`, then `observe` its page, until None."""

    def __init__(
        self,
        start: int,
        end: int,
        config: PlannerConfig | None = None,
        licenses: Iterable[int] = (),
        done: Iterable[Checkpoint] = (),
    ) -> None:
        self.config = cfg = config or PlannerConfig()
        self.start = start - start % cfg.floor_s
        self.end = max(self.start, end - end % cfg.floor_s)
        self.licenses: tuple[int, ...] = tuple(sorted(set(licenses))) or ALL_IDS
        self.per_page = cfg.per_page
        self.calls = 0
        self.trust_sort = True
        self.refetch_short = cfg.refetch_short_pages
        self._useless_refetches = 0
        self._cursor = self.start
        self._active: _Active | None = None
        self._split: list[int] = []  # licences still to search in the bucket at _cursor
        self._split_found = 0
        self._done = Coverage(cfg.floor_s, self.licenses)
        self._rate_num = 0.0
        self._rate_den = 0.0
        self._last_width = 0
        self._forced_width = 0  # set by a shrink: the next window's width, used once
        self._local_rate: float | None = None  # photos/s where the last window ended
        self._skip: tuple[int, int] | None = None  # (pages, date) the next window may skip
        self._bleed = 0  # photos before its start the last window read from page 1 returned
        self._windows_done = 0
        self._resume(done)

    @classmethod
    def resume(
        cls,
        start: int,
        end: int,
        done_windows: Iterable[Checkpoint],
        config: PlannerConfig | None = None,
        licenses: Iterable[int] = (),
    ) -> KeywordPlan:
        """A plan that skips the windows already done (from the store) and seeds its rate."""
        return cls(start, end, config, licenses, done_windows)

    def __repr__(self) -> str:
        return (
            f"<KeywordPlan [{self.start},{self.end}) cursor={self._cursor} calls={self.calls} "
            f"done={self._windows_done} rate={self.rate:.3g}/s trust_sort={self.trust_sort}>"
        )

    # -- public state ----------------------------------------------------------------------

    @property
    def rate(self) -> float:
        """Estimated matching photos per second near the cursor (0 when unknown)."""
        return self._rate_num / self._rate_den if self._rate_den > 0 else 0.0

    @property
    def coverage(self) -> float:
        """Share of the date range searched so far, 0..1."""
        return self._done.share(self.start, self.end)

    @property
    def windows_planned(self) -> int:
        """Windows done so far plus an estimate of those still to come."""
        rate = self.rate
        if rate <= 0:
            return self._windows_done + (0 if self.coverage >= 1.0 else 1)
        remaining = (1.0 - self.coverage) * (self.end - self.start) * rate
        return self._windows_done + int(-(-remaining // self.config.window_target))

    # -- the state machine -----------------------------------------------------------------

    def next_request(self) -> PageRequest | None:
        """The page to fetch next, or None when the keyword is finished."""
        if self._active is None and not self._open_next():
            return None
        assert self._active is not None
        return PageRequest(
            window=self._active.window, page=self._active.page, per_page=self.per_page
        )

    def observe(self, request: PageRequest, obs: PageObservation) -> list[Decision]:
        """Take in the page answering `request`; say which windows are now done, capped or split.

        A window ends on an empty page, or on a short page unless `page < pages` (Flickr sends
        short pages mid-list). A full page always asks for the next one, as `pages` follows the
        under-reported total. At the last page under the cap the window overflows (`_overflow`).
        """
        act = self._active
        if act is None or request.window != act.window or request.page != act.page:
            raise ValueError(f"observation for {request} does not answer the active request")
        self.calls += 1
        if act.check_before is not None and not self._skip_held(act, obs):
            return []
        if act.short is not None:
            self._settle_refetch(act, obs)
        act.last_before, act.tail_before, act.end_before = act.last_date, act.tail, act.end_dates
        self._take(act, obs)
        if self._refetch_wanted(act, obs):
            act.short = (obs.count, obs.in_window)
            return []
        if self._window_ends(act, obs):
            return self._finish(act)
        if act.page >= self._max_pages():
            return self._overflow(act, obs)
        if self._hopeless(act, obs):
            return self._shrink(act, max(obs.total or 0, act.fetched))
        if self._ends_nearly_full(act, obs):
            return self._truncate(act, self._cut(act))
        act.page += 1
        return []

    # -- observing -------------------------------------------------------------------------

    def _take(self, act: _Active, obs: PageObservation) -> None:
        if obs.per_page and obs.per_page < self.per_page and act.page == 1:
            self.per_page = obs.per_page  # the API clamped it (geo queries: 250)
        floor = self.config.floor_s
        if obs.first_date is not None and act.last_date is not None:
            act.sorted_ok &= obs.first_date // floor >= act.last_date // floor
        act.sorted_ok &= obs.ascending
        if not act.sorted_ok and self.trust_sort:
            log.info("search results are not in ascending date order; windows will shrink")
            self.trust_sort = False
        act.fetched += obs.in_window
        if act.page == 1:
            self._bleed = obs.before
        act.end_dates = (act.end_dates + obs.last_dates)[-END_DATES:]
        if obs.last_date is not None:
            act.last_date = obs.last_date
        if obs.in_window:
            act.tail_count, act.tail_from = obs.in_window, obs.first_date
        if obs.tail:
            same = bool(act.tail) and act.tail[0] // floor == obs.tail[0] // floor
            act.tail = act.tail + obs.tail if same else obs.tail
        if obs.total is not None:
            act.reported_total = max(obs.total, act.reported_total or 0)

    def _refetch_wanted(self, act: _Active, obs: PageObservation) -> bool:
        """A short page before `pages` may have dropped photos for this call only: ask again.

        Flickr (and the emulator) sometimes leave a few photos out of a page mid-list; they
        would be lost, since the next page starts after them. Each page is refetched at most
        once. The two fetches are merged by the caller, so a refetch that is short again
        (elsewhere) still helps; only `refetch_give_up` refetches in a row that bring no new
        photo turn refetching off (such short pages are permanent: hidden photos).
        """
        full = min(self.per_page, obs.per_page or self.per_page)
        return (
            self.refetch_short
            and act.refetched_page != act.page
            and 0 < obs.count < full
            and obs.pages is not None
            and act.page < obs.pages
        )

    def _settle_refetch(self, act: _Active, obs: PageObservation) -> None:
        assert act.short is not None
        count, in_window = act.short
        useful = obs.count > count if obs.new is None else obs.new > 0
        self._useless_refetches = 0 if useful else self._useless_refetches + 1
        if self._useless_refetches >= self.config.refetch_give_up:
            log.info("refetched short pages came back no fuller; not refetching any more")
            self.refetch_short = False
        act.fetched -= in_window  # the refetch replaces the short page in the counts
        act.last_date, act.tail, act.end_dates = act.last_before, act.tail_before, act.end_before
        act.short, act.refetched_page = None, act.page

    def _skip_held(self, act: _Active, obs: PageObservation) -> bool:
        """A window that skipped its first pages: its first page read must begin before the
        date the skip counted up to (so every photo skipped was read before); if not, the
        window starts again at page 1 (that call is lost, no photo is).
        """
        before, act.check_before = act.check_before, None
        assert before is not None
        if obs.head_date is not None and obs.head_date < before and obs.ascending:
            return True
        log.info("%s: skipped pages did not hold what was read before; from page 1", act.window)
        self._active = _Active(act.window)
        return False

    def _window_ends(self, act: _Active, obs: PageObservation) -> bool:
        """An empty page ends a window; a short one too, unless `pages` or its size say no.

        A nearly full page is not trusted as the end either: hidden photos make pages a
        little short, and `pages` follows an under-reported total, so together they would
        end a window early. One more call settles it.
        """
        if obs.count == 0:
            return True
        full = min(self.per_page, obs.per_page or self.per_page)
        if obs.count >= full * self.config.nearly_full:
            return False
        return not (obs.pages is not None and act.page < obs.pages)

    def _ends_nearly_full(self, act: _Active, obs: PageObservation) -> bool:
        """A nearly full page that `pages` calls the last: end the window at its last bucket.

        Such a page is not trusted as the end (`_window_ends`), but asking for the next page
        costs a call that usually comes back empty. Ending the window at the bucket of its last
        photo instead loses nothing (sorted: everything before that bucket was read) and the
        call goes to the next window, which starts with whatever this one had left.
        """
        full = min(self.per_page, obs.per_page or self.per_page)
        return (
            self.trust_sort
            and act.window.license is None
            and obs.pages is not None
            and act.page >= obs.pages
            and obs.count < full
            and act.window.start < self._cut(act) < act.window.end
        )

    def _cut(self, act: _Active) -> int:
        """The start of the grid bucket of the window's last photo (its start if none)."""
        if act.last_date is None:
            return act.window.start
        return act.last_date - act.last_date % self.config.floor_s

    def _hopeless(self, act: _Active, obs: PageObservation) -> bool:
        """Without a trusted sort, a window reporting more than the cap is re-cut at once."""
        return (
            not self.trust_sort
            and act.window.license is None
            and (obs.total or 0) > self.config.cap_trigger
            and act.window.end - act.window.start > self.config.floor_s
        )

    # -- window outcomes -------------------------------------------------------------------

    def _finish(self, act: _Active) -> list[Decision]:
        if act.window.license is None:
            self._note_rate(act, act.window.end, ended=True)
        self._close(act)
        return [WindowDone(window=act.window, found=act.fetched, reported_total=act.reported_total)]

    def _close(self, act: _Active) -> None:
        """Book a window as done: advance the cursor, or the licence split it belongs to."""
        self._active = None
        self._windows_done += 1
        if act.window.license is None:
            self._advance(act.window.end, act.fetched)
            return
        self._split.pop(0)
        self._split_found += act.fetched
        if not self._split:
            self._close_bucket()

    def _overflow(self, act: _Active, obs: PageObservation) -> list[Decision]:
        """The cap is reached: truncate by keyset, shrink, split by licence, or record a loss."""
        window = act.window
        if window.license is not None:
            return self._capped(act)
        floor = self.config.floor_s
        if self.trust_sort and act.last_date is not None:
            cut = self._cut(act)
            if cut > window.start:
                return self._truncate(act, min(cut, window.end))
            # sorted, and the first `max_results` all fall in the first bucket: it alone
            # holds more than the cap, so narrowing cannot help
            return self._split_licences(act)
        if window.end - window.start > floor:
            return self._shrink(act, max(obs.total or 0, act.fetched))
        return self._split_licences(act)

    def _truncate(self, act: _Active, cut: int) -> list[Decision]:
        """End the window at the bucket of its last photo; the next window starts there.

        The photos already read in that bucket, up to the last date, come back first in the
        next window, after those its fuzzy start lets in (as many as this window's first page
        had, at most as many as were read): the whole pages they fill are skipped (checked on
        its first page; a wrong guess costs a call, never a photo).
        """
        self._active = None
        self._windows_done += 1
        done = Window(start=act.window.start, end=cut)
        assert act.last_date is not None
        self._note_rate(act, act.last_date + 1)
        read = sum(1 for d in act.tail if cut <= d < act.last_date)
        ahead = read + min(self._bleed, read)
        # Once refetching has given up, a short page may have dropped a photo of this bucket
        # for good: re-reading the bucket is its one more chance, so nothing is skipped then.
        skip = ahead >= self.per_page and self.refetch_short
        self._skip = (ahead // self.per_page, act.last_date) if skip else None
        self._advance(cut, act.fetched)
        return [
            WindowDone(
                window=done, found=act.fetched, reported_total=act.reported_total, truncated=True
            )
        ]

    def _shrink(self, act: _Active, seen: int) -> list[Decision]:
        """Abandon the window and retry its start with a narrower one (no trusted sort)."""
        self._active = None
        window = act.window
        width = window.end - window.start
        wanted = width * self._target() // max(1, seen)
        self._forced_width = max(self.config.floor_s, self._align(min(wanted, width // 2)))
        return [WindowSplit(window, reason=f"{seen} results exceed the cap")]

    def _split_licences(self, act: _Active) -> list[Decision]:
        self._active = None
        bucket = Window(start=act.window.start, end=act.window.start + self.config.floor_s)
        self._split = self._done.licences_left(bucket.start, self.licenses)
        self._split_found = 0
        self._cursor = bucket.start
        log.info("bucket %s holds more than the cap: splitting by licence", bucket)
        return [WindowSplit(bucket, reason="one date bucket exceeds the cap: split by licence")]

    def _capped(self, act: _Active) -> list[Decision]:
        lost = max(0, (act.reported_total or 0) - act.fetched)
        self._close(act)
        log.warning("%s capped at %d results, about %d lost", act.window, act.fetched, lost)
        return [
            WindowCapped(
                window=act.window,
                found=act.fetched,
                reported_total=act.reported_total,
                lost_estimate=lost,
            )
        ]

    def _close_bucket(self) -> None:
        end = self._cursor + self.config.floor_s
        self._done.partial.pop(self._cursor, None)
        self._local_rate = self._split_found / self.config.floor_s
        self._advance(end, self._split_found)

    def _advance(self, end: int, found: int) -> None:
        width = end - self._cursor
        self._done.add(self._cursor, end)
        self._add_rate(found, width)
        self._last_width = width
        self._cursor = end

    # -- choosing the next window ----------------------------------------------------------

    def _open_next(self) -> bool:
        if self._split:
            window = Window(
                start=self._cursor, end=self._cursor + self.config.floor_s, license=self._split[0]
            )
            self._active = _Active(window)
            return True
        pos = self._cursor = self._done.skip(self._cursor)
        if pos >= self.end:
            return False
        if pos in self._done.partial:
            self._split = self._done.licences_left(pos, self.licenses)
            self._split_found = 0
            return self._open_next()
        width = self._next_width(self._done.room(pos, self.end))
        self._active = _Active(Window(start=pos, end=pos + width))
        skip, self._skip = self._skip, None
        if skip is not None and self.trust_sort:
            self._active.page, self._active.check_before = skip[0] + 1, skip[1]
        return True

    def _next_width(self, room: int) -> int:
        """Target / rate on the grid; at most `max_growth` × the last width; within the room."""
        cfg = self.config
        if self._forced_width:
            width, self._forced_width = self._forced_width, 0
            return min(room, width)
        if self._last_width <= 0:
            return room  # nothing known yet: the first page measures the whole range
        aim = self._target() * (OVERSHOOT if self._target() >= cfg.max_results else 1.0)
        if self.trust_sort and self._local_rate is not None:
            # sorted: a window too wide costs nothing (truncated at the cap), so no growth
            # limit, and the rate is the one where the last window ended, not an average
            if self._local_rate <= 0:
                return room
            return min(room, max(cfg.floor_s, self._align(int(aim / self._local_rate))))
        grown = int(self._last_width * cfg.max_growth)
        rate = self.rate
        wanted = grown if rate <= 0 else min(grown, int(aim / rate))
        return min(room, max(cfg.floor_s, self._align(wanted)))

    def _note_rate(self, act: _Active, end: int, *, ended: bool = False) -> None:
        """The rate at the end of a window: its last page's photos over the dates it covers.

        A window that `ended` of itself (not cut at the cap) takes the lowest of that, the rate
        of its last few photos up to its end, and the average over recent windows: a window
        ending of itself mid-range means the rate fell (after a burst the last page is mostly
        burst), and a window too wide costs nothing when the sort holds (it is cut at the cap).
        """
        if act.tail_from is None:
            self._local_rate = 0.0
            return
        rate = act.tail_count / max(1, end - act.tail_from)
        if ended and act.end_dates:
            rate = min(rate, len(act.end_dates) / max(1, end - act.end_dates[0]))
        if ended and self.rate > 0:
            rate = min(rate, self.rate)
        self._local_rate = rate

    def _target(self) -> int:
        """Photos a window aims for; small when only finished windows are safe (no sort)."""
        cfg = self.config
        return cfg.window_target if self.trust_sort else min(cfg.window_target, cfg.unsorted_target)

    def _align(self, seconds: int) -> int:
        return seconds - seconds % self.config.floor_s

    def _add_rate(self, found: int, width: int) -> None:
        """Ratio estimator over recent windows; older ones fade by `rate_decay` per window."""
        if width <= 0:
            return
        decay = self.config.rate_decay
        self._rate_num = self._rate_num * decay + found
        self._rate_den = self._rate_den * decay + width

    def _max_pages(self) -> int:
        return max(1, self.config.max_results // self.per_page)

    # -- resume ----------------------------------------------------------------------------

    def _resume(self, done: Iterable[Checkpoint]) -> None:
        recent: list[Checkpoint] = []
        for item in done:
            window = item.window
            self._done.add(window.start, window.end, window.license)
            recent += [item] if window.license is None else []
            self._windows_done += 1
        for item in sorted(recent, key=lambda c: c.window.end)[-8:]:
            width = item.window.end - item.window.start
            self._add_rate(item.found, width)
            self._last_width = width
