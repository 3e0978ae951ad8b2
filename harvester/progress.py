"""Live run statistics and their display: a rich table on a terminal, plain log lines otherwise.

The process's logging is set up here too: on a terminal, log lines must go through the console
the live view draws on, so that rich prints them above the view instead of under a stale copy.
"""

from __future__ import annotations

import functools
import logging
import math
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.live import Live
from rich.logging import RichHandler
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

log = logging.getLogger(__name__)

_MESSAGE_FORMAT = "%(name)s: %(message)s"
#: The one plain log format, for the CLI's process and the worker processes alike.
LOG_FORMAT = f"%(asctime)s %(processName)s %(levelname)s {_MESSAGE_FORMAT}"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(slots=True)
class KeywordStats:
    """Counters for one keyword, updated by the engine."""

    keyword: str
    windows_done: int = 0
    windows_planned: int = 0
    coverage: float = 0.0  # share of the keyword's date range searched, 0..1
    found: int = 0
    new: int = 0
    duplicates: int = 0
    negatives: int = 0
    downloaded: int = 0
    skipped: int = 0
    failed: int = 0
    capped_lost: int = 0
    calls: int = 0  # API search calls for this keyword in this run
    search_done: bool = False


@dataclass(slots=True)
class RunStats:
    """Counters for the whole run; `rates` derive from a sliding window of samples."""

    keywords: dict[str, KeywordStats] = field(default_factory=dict)
    started_at: float = field(default_factory=time.monotonic)
    api_calls: int = 0
    api_retries: int = 0
    budget_per_hour: float = 3600.0
    bytes_downloaded: int = 0
    pending_at_start: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    _samples: deque[tuple[float, int, int]] = field(default_factory=lambda: deque(maxlen=60))

    def keyword(self, name: str) -> KeywordStats:
        """The stats of one keyword, created on first use."""
        stats = self.keywords.get(name)
        if stats is None:
            stats = self.keywords[name] = KeywordStats(name)
        return stats

    def total(self, attr: str) -> int:
        """Sum of one integer counter over all keywords."""
        return sum(int(getattr(k, attr)) for k in self.keywords.values())

    def sample(self, now: float) -> None:
        """Record a point for the images/s and MB/s rates."""
        self._samples.append((now, self.total("downloaded"), self.bytes_downloaded))

    def rates(self) -> tuple[float, float]:
        """Images per second and MB per second over the recent samples."""
        if len(self._samples) < 2:
            return 0.0, 0.0
        (t0, n0, b0), (t1, n1, b1) = self._samples[0], self._samples[-1]
        span = max(t1 - t0, 1e-9)
        return (n1 - n0) / span, (b1 - b0) / span / 1e6

    def budget_left(self, now: float) -> float:
        """Calls left in the current hour at the configured budget (an estimate)."""
        elapsed_h = max(now - self.started_at, 1e-9) / 3600.0
        used_this_hour = self.api_calls if elapsed_h <= 1 else self.api_calls / elapsed_h
        return max(0.0, self.budget_per_hour - used_this_hour)

    def eta_s(self) -> float | None:
        """Seconds until the known queue of photos is harvested, at the current rate."""
        images_s, _ = self.rates()
        remaining = self.claimed_count() - self.done_count()
        if images_s <= 0 or remaining <= 0:
            return None
        return remaining / images_s

    def done_count(self) -> int:
        """Photos finished in any way (downloaded, skipped, failed)."""
        return self.total("downloaded") + self.total("skipped") + self.total("failed")

    def claimed_count(self) -> int:
        """Photos this run has to finish: those pending when it started and those it claimed."""
        return self.pending_at_start + self.total("new")

    def keywords_searched(self) -> int:
        """Keywords whose search is finished."""
        return sum(1 for k in self.keywords.values() if k.search_done)

    def search_eta_s(self, now: float) -> float | None:
        """Seconds until every keyword is searched, at the pace of the run so far."""
        searched = self.keywords_searched()
        remaining = len(self.keywords) - searched
        if searched == 0 or remaining == 0:
            return None
        return remaining * max(now - self.started_at, 0.0) / searched


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


COLUMNS = ("keyword", "windows", "range", "calls", "found", "new", "dup", "neg", "done", "skip")
MAX_ROWS = 20  # a places file has hundreds of keywords; show the busy ones


def _busy(k: KeywordStats) -> bool:
    return not k.search_done or k.new > k.downloaded + k.skipped + k.failed


def render_table(stats: RunStats, now: float) -> Group:
    """The live view: the busiest keywords, a count of the others, and a totals line."""
    table = Table(expand=False, header_style="bold")
    for col in (*COLUMNS, "fail"):
        table.add_column(col, justify="left" if col == "keyword" else "right")
    everything = list(stats.keywords.values())
    shown = sorted(everything, key=lambda k: (not _busy(k), not k.windows_done))[:MAX_ROWS]
    for k in shown:
        windows = f"{k.windows_done}/{max(k.windows_planned, k.windows_done)}"
        mark = "✓" if k.search_done else f"{k.coverage:.0%}"
        counts: list[int] = [k.calls, k.found, k.new, k.duplicates, k.negatives]
        counts += [k.downloaded, k.skipped, k.failed]
        table.add_row(k.keyword, windows, mark, *(f"{v:,}" for v in counts))
    hidden = len(everything) - len(shown)
    finished = sum(1 for k in everything if not _busy(k))
    more = f"… {hidden} more keywords ({finished} finished in all)" if hidden else ""
    return Group(table, *([more] if more else []), summary_line(stats, now))


def summary_line(stats: RunStats, now: float) -> str:
    """One line with the overall counters and rates."""
    images_s, mb_s = stats.rates()
    return (
        f"found {stats.total('found'):,}  new {stats.total('new'):,}  "
        f"downloaded {stats.total('downloaded'):,}  skipped {stats.total('skipped'):,}  "
        f"failed {stats.total('failed'):,}  {images_s:.1f} img/s  {mb_s:.1f} MB/s  "
        f"API calls {stats.api_calls:,} (retries {stats.api_retries:,}, "
        f"budget left ~{stats.budget_left(now):,.0f}/h)  ETA {_fmt_eta(stats.eta_s())}"
    )


def overall_bars(stats: RunStats, now: float) -> Progress:
    """Bars for the whole run: photos finished of those claimed, keywords searched of planned."""
    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=40),
        TextColumn("{task.fields[figures]}", justify="right"),
        TextColumn("ETA {task.fields[eta]}"),
        get_time=lambda: now,  # the bars' animation follows the display's clock, not the wall
    )
    _add_bar(bars, "photos", stats.done_count(), stats.claimed_count(), stats.eta_s())
    searched, planned = stats.keywords_searched(), len(stats.keywords)
    _add_bar(bars, "keywords", searched, planned, stats.search_eta_s(now))
    return bars


def _add_bar(bars: Progress, name: str, done: int, total: int, eta_s: float | None) -> None:
    # A total of None pulses the bar: nothing counted yet, rather than a full bar at 0/0.
    figures = f"{done:,}/{total:,}"
    bars.add_task(name, total=total or None, completed=done, figures=figures, eta=_fmt_eta(eta_s))


def render_view(stats: RunStats, now: float) -> Group:
    """The whole live view: the keyword table with its totals line, then the overall bars."""
    return Group(render_table(stats, now), overall_bars(stats, now))


def wants_live(*, plain: bool) -> bool:
    """Whether to draw the live view: stderr is a terminal and `--plain` was not asked for.

    The one place this is decided: the CLI's log handler and the runner's display must agree.
    """
    return sys.stderr.isatty() and not plain


@functools.cache
def stderr_console() -> Console:
    """This process's stderr console: the live view and the rich log handler must share it."""
    return Console(stderr=True)


def log_handler(console: Console | None) -> logging.Handler:
    """Rich log lines through `console`, above its live view; plain lines on stderr for None."""
    if console is None:
        plain = logging.StreamHandler(sys.stderr)
        plain.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
        return plain
    # Rich draws the time and level columns itself; the message keeps the logger's name.
    handler = RichHandler(console=console, show_path=False, log_time_format=DATE_FORMAT)
    handler.setFormatter(logging.Formatter(_MESSAGE_FORMAT))
    return handler


def setup_logging(verbosity: int, *, console: Console | None = None) -> None:
    """Configure this process's logging: called by the CLI, and by each worker process it spawns."""
    level = logging.DEBUG if verbosity > 1 else logging.INFO
    logging.basicConfig(level=level, handlers=[log_handler(console)])
    if verbosity < 1:
        for noisy in ("aiohttp.access", "aiohttp.server"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


class ProgressDisplay:
    """Shows RunStats: rich Live on a terminal, a log line every `interval_s` otherwise.

    The live view draws on `console`, by default `stderr_console()`: the console that
    `setup_logging` gives the rich log handler, so log lines scroll above the view.
    """

    def __init__(
        self,
        stats: RunStats,
        *,
        live: bool,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        console: Console | None = None,
    ) -> None:
        self._stats = stats
        self._clock = clock
        self._interval_s = interval_s
        self._last_line = -math.inf  # so the first update logs at once, whatever the clock reads
        self._live: Live | None = None
        if live:
            # No refresh thread: the runner updates twice a second, and tests step it by hand.
            self._live = Live(
                console=console or stderr_console(), auto_refresh=False, transient=False
            )

    def __enter__(self) -> ProgressDisplay:
        if self._live is not None:
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.update(final=True)
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def update(self, *, final: bool = False) -> None:
        """Refresh the view (called about twice a second by the runner's display loop)."""
        now = self._clock()
        self._stats.sample(now)
        if self._live is not None:
            self._live.update(render_view(self._stats, now), refresh=True)
        elif final or now - self._last_line >= self._interval_s:
            self._last_line = now
            log.info("%s", summary_line(self._stats, now))
