"""Progress: the live table keeps to the busy keywords; the plain mode logs summary lines."""

from __future__ import annotations

import io
import logging

import pytest
from rich.console import Console

from harvester.progress import (
    MAX_ROWS,
    ProgressDisplay,
    RunStats,
    log_handler,
    overall_bars,
    render_table,
    summary_line,
)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def rendered(stats: RunStats) -> str:
    console = Console(width=200, record=True)
    console.print(render_table(stats, 0.0))
    return console.export_text()


def test_table_shows_busy_keywords_first_and_counts_the_rest() -> None:
    stats = RunStats()
    for i in range(MAX_ROWS + 10):
        k = stats.keyword(f"kw{i:02d}")
        k.search_done, k.windows_done, k.new, k.downloaded = True, 1, 5, 5  # finished
    busy = stats.keyword("kw29")
    busy.search_done, busy.calls, busy.found, busy.new = False, 7, 1234, 1200
    text = rendered(stats)
    assert "kw29" in text
    assert "1,234" in text
    assert "… 10 more keywords (29 finished in all)" in text
    assert text.count("kw") == MAX_ROWS


def test_summary_line_has_rates_budget_and_eta() -> None:
    stats = RunStats(budget_per_hour=3600)
    stats.keyword("a").new = 100
    stats.keyword("a").downloaded = 10
    stats.api_calls = 12
    stats.sample(0.0)
    stats.keyword("a").downloaded = 30
    stats.bytes_downloaded = 4_000_000
    stats.sample(2.0)
    line = summary_line(stats, stats.started_at + 60)
    assert "downloaded 30" in line
    assert "10.0 img/s" in line
    assert "2.0 MB/s" in line
    assert "API calls 12" in line
    assert "ETA 0m07s" in line


def test_plain_mode_logs_the_first_line_at_clock_zero_then_one_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    stats = RunStats(started_at=0.0)
    stats.keyword("a").found = 3
    with (
        caplog.at_level(logging.INFO, logger="harvester.progress"),
        ProgressDisplay(stats, live=False, interval_s=10, clock=clock) as display,
    ):
        display.update()
        assert len(caplog.records) == 1  # at once, though the clock reads 0 (a fresh host)
        clock.now = 9.9
        display.update()
        assert len(caplog.records) == 1  # quiet within the interval
        clock.now = 10.0
        display.update()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3  # the first, one an interval later, the final one
    assert all("found 3" in line for line in lines)


def test_live_view_keeps_log_lines_above_one_table() -> None:
    console = Console(file=io.StringIO(), record=True, width=160)
    clock, stats = FakeClock(), RunStats(started_at=0.0)
    logger = logging.getLogger("harvester.test_live")
    handler = log_handler(console)  # what setup_logging installs on a terminal
    logger.addHandler(handler)
    try:
        with ProgressDisplay(stats, live=True, clock=clock, console=console) as display:
            for step, city in enumerate(("london", "paris", "rome")):
                clock.now = step * 0.5
                stats.keyword(city).new = 10
                logger.warning("%s: search finished", city)
                display.update()
    finally:
        logger.removeHandler(handler)
    lines = console.export_text().splitlines()
    headers = [i for i, line in enumerate(lines) if "windows" in line]
    logged = [i for i, line in enumerate(lines) if "search finished" in line]
    assert len(headers) == 1  # one live view, not a table drawn again under each log line
    assert len(logged) == 3
    assert max(logged) < headers[0]
    assert [line.split()[:2] for line in lines if line.startswith(("photos", "keywords"))] == [
        ["photos", "0/30"],  # the overall bars, below the table
        ["keywords", "0/3"],
    ]


def bar_lines(stats: RunStats, now: float) -> dict[str, str]:
    console = Console(file=io.StringIO(), record=True, width=120)
    console.print(overall_bars(stats, now))
    return {line.split()[0]: line for line in console.export_text().splitlines()}


def test_overall_bars_count_photos_of_claimed_and_keywords_of_planned_with_etas() -> None:
    stats = RunStats(started_at=0.0, pending_at_start=20)  # claimed by an earlier run
    a, b, _, _ = (stats.keyword(name) for name in "abcd")  # four keywords planned
    a.search_done, a.new, a.downloaded = True, 100, 10
    b.search_done = True
    stats.sample(0.0)
    a.downloaded, a.skipped, a.failed = 30, 5, 5  # 20 more downloaded in 2 s: 10 img/s
    stats.sample(2.0)
    bars = bar_lines(stats, 60.0)
    assert bars["photos"].split()[-3:] == ["40/120", "ETA", "0m08s"]  # 80 left at 10 img/s
    assert bars["keywords"].split()[-3:] == ["2/4", "ETA", "1m00s"]  # 2 in 60 s, 2 left


def test_overall_bars_before_anything_is_counted() -> None:
    bars = bar_lines(RunStats(started_at=0.0), 0.0)
    assert bars["photos"].split()[-3:] == ["0/0", "ETA", "-"]
    assert bars["keywords"].split()[-3:] == ["0/0", "ETA", "-"]


def test_plain_log_lines_name_time_process_level_and_logger() -> None:
    record = logging.makeLogRecord({"name": "harvester.engine", "msg": "london: search finished"})
    record.levelname, record.processName = "INFO", "worker-2"
    line = log_handler(None).format(record)
    assert line.endswith(" worker-2 INFO harvester.engine: london: search finished")
    assert line[:4].isdigit()  # starts with the date
