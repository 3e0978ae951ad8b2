"""`harvest report OUT`: one self-contained HTML page of what a harvest did, and the photos
that need a person as `OUT/needs-attention.csv`.

    store (read-only; SQL aggregates, store/report.py) + Store.summary (as `harvest status`)
      ─► the view (report/model.py) ─► figures (report/charts.py) ─► page (report/render.py)
      ─► both files written beside their targets under temporary names, then renamed

Nothing is written until every input is checked: no store, an empty harvest, or a target that
exists and is not a harvest report (unless --force) is one clear error, and then nothing changes.
"""

from __future__ import annotations

import csv
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from harvester import __version__
from harvester.config import PlannerConfig
from harvester.exceptions import ConfigError
from harvester.licenses import license_for
from harvester.records import reason_key
from harvester.report import model
from harvester.report.model import Attention, Bar, KeywordLine, Report, RunMark
from harvester.store.report import AttentionRow, ReportStore, SearchTally, WindowTally
from harvester.store.rows import KeywordSummary, StoreSummary
from harvester.store.sqlite import Store, existing_store

CSV_NAME = "needs-attention.csv"
HTML_NAME = "report.html"
GEO_CELL_DEG = 0.5
CAPPED_SHOWN = 200
DEFAULT_ROWS_SHOWN = 5000


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportFiles:
    """What `harvest report` wrote, and its summary line."""

    html: Path
    csv: Path
    summary: str
    attention: int


def run_report(
    out: Path,
    html: Path | None = None,
    *,
    force: bool = False,
    rows_shown: int = DEFAULT_ROWS_SHOWN,
    clock: Callable[[], float] = time.time,
) -> ReportFiles:
    """Write the report of the harvest in `out`; ConfigError (exit 2) before any write."""
    store_path = existing_store(out)
    html_path, csv_path = html or out / HTML_NAME, out / CSV_NAME
    check_target(html_path, force=force, ours=_is_report)
    check_target(csv_path, force=force, ours=_is_attention_csv)
    with Store.open(store_path, readonly=True) as store:
        summary = store.summary()
        facts = ReportStore(store)
        tallies = facts.window_tallies(PlannerConfig().max_results)
        if summary.photos == 0 and not tallies:
            raise ConfigError(f"{out} holds an empty harvest (no window searched, no photo)")
        with replacing(csv_path) as sink:
            attention = _write_attention(facts, sink, rows_shown)
        report = _report(out, facts, summary, tallies, attention, clock)
    page = _page(report)
    with replacing(html_path) as sink:
        sink.write(page)
    summary_line = report.summary_line()
    return ReportFiles(
        html=html_path, csv=csv_path, summary=summary_line, attention=attention.total
    )


def check_target(path: Path, *, force: bool, ours: Callable[[Path], bool]) -> None:
    """Refuse a target that exists and is not a file this command wrote (unless `force`)."""
    if path.is_dir():
        raise ConfigError(f"{path} is a directory")
    if path.exists() and not force and not ours(path):
        raise ConfigError(f"{path} exists and is not a harvest report: pass --force to replace it")
    if not path.parent.is_dir():
        raise ConfigError(f"{path.parent} is not a directory")


def _is_report(path: Path) -> bool:
    from harvester.report.render import GENERATOR

    with path.open("rb") as f:
        head = f.read(1024)
    return f'<meta name="generator" content="{GENERATOR}">'.encode() in head


def _is_attention_csv(path: Path) -> bool:
    with path.open("rb") as f:
        first = f.readline(1024)
    return first.rstrip(b"\r\n") == ",".join(model.CSV_HEADER).encode()


@contextmanager
def replacing(path: Path) -> Iterator[IO[str]]:
    """A text sink that becomes `path` in one rename when the block succeeds; on any error
    the temporary file goes and `path` is as it was."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as sink:
            yield sink
            sink.flush()
            os.fsync(sink.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Attention:
    """What writing needs-attention.csv found: the rows the page shows, how many there are in
    all, and the error skips by their tally key (to mark the reasons table)."""

    shown: tuple[Attention, ...]
    total: int
    error_skips: Counter[str]


def _write_attention(facts: ReportStore, sink: IO[str], shown: int) -> _Attention:
    """Stream every row needing a person into the CSV, keeping the first `shown`."""
    writer = csv.writer(sink)
    writer.writerow(model.CSV_HEADER)
    kept: list[Attention] = []
    total, error_skips = 0, Counter[str]()
    for row in facts.attention(model.POLICY_SKIPS):
        item = _attention(row)
        writer.writerow(model.csv_row(item))
        total += 1
        if row.status == "skipped":
            error_skips[reason_key(row.status, row.reason)] += 1
        if len(kept) < shown:
            kept.append(item)
    return _Attention(shown=tuple(kept), total=total, error_skips=error_skips)


def _attention(row: AttentionRow) -> Attention:
    return Attention(
        photo_id=row.photo_id,
        page=model.photo_page(row.owner, row.photo_id),
        title=row.title,
        keyword=row.keyword,
        status=row.status,
        reason=row.reason,
        attempts=row.attempts,
        last_attempt=model.utc(row.updated_at),
        action=model.action_for(row.status, row.reason),
    )


def _report(
    out: Path,
    facts: ReportStore,
    summary: StoreSummary,
    tallies: list[WindowTally],
    attention: _Attention,
    clock: Callable[[], float],
) -> Report:
    runs = tuple(
        RunMark(
            number=n,
            worker=r.worker,
            started_at=r.started_at,
            finished_at=r.finished_at,
            outcome=r.outcome,
        )
        for n, r in enumerate(facts.runs(), start=1)
    )
    lines = _keyword_lines(summary, tallies, facts.search_tallies(), facts.unique_found())
    mix = facts.stored_mix(GEO_CELL_DEG)
    licences, sources, cells = mix.licences, mix.sources, mix.geo
    hours = {(h.hour_s, h.status): h.count for h in facts.per_hour()}
    kinds = facts.duplicate_kinds()
    return Report(
        title=f"Harvest report: {out.resolve().name}",
        store=str(existing_store(out)),
        version=__version__,
        generated_at=model.utc(clock()),
        runs=runs,
        keywords=lines,
        total=model.total_line(lines),
        statuses=dict(summary.statuses),
        reasons=tuple(_reason_bars(summary.reasons, attention.error_skips)),
        timeline=model.timeline(hours, runs),
        licences=tuple(model.licence_bars(licences)),
        sources=tuple(
            sorted(
                (Bar(label=s, count=n) for s, n in sources.items()),
                key=lambda b: (-b.count, b.label),
            )
        ),
        geo=model.GeoView(
            cell_deg=cells.cell_deg,
            lon=cells.lon,
            lat=cells.lat,
            count=cells.count,
            stored=summary.statuses.get("done", 0),
        ),
        duplicates=None
        if kinds is None
        else tuple(model.top_bars((Bar(label=k, count=n) for k, n in kinds.items()), keep=20)),
        duplicate_copies=facts.duplicate_copies(),
        capped=tuple(_capped_rows(facts)),
        per_page=PlannerConfig().per_page,
        attention=attention.shown,
        attention_total=attention.total,
        csv_name=CSV_NAME,
        notes=tuple(_notes(runs, lines)),
    )


def _keyword_lines(
    summary: StoreSummary,
    tallies: list[WindowTally],
    searched: dict[str, SearchTally],
    unique: dict[str, int],
) -> tuple[KeywordLine, ...]:
    """One line per keyword of `harvest status` (same counts), with the report's extras."""
    by_keyword = {t.keyword: t for t in tallies}
    return tuple(
        _keyword_line(k, by_keyword.get(k.keyword), searched.get(k.keyword), unique)
        for k in summary.keywords
    )


def _keyword_line(
    k: KeywordSummary, w: WindowTally | None, s: SearchTally | None, unique: dict[str, int]
) -> KeywordLine:
    negatives = None if s is None else s.negatives
    return KeywordLine(
        keyword=k.keyword,
        windows=k.windows,
        found=k.found,
        new=k.new,
        duplicates=k.duplicates,
        negatives=negatives,
        pending=k.claimed,
        stored=k.done,
        skipped=k.skipped,
        failed=k.failed,
        calls=None if s is None else s.calls,
        unique=unique.get(k.keyword, 0) + (negatives or 0),
        at_cap=0 if w is None else w.at_cap,
        split_buckets=0 if w is None else w.split_buckets,
        licence_windows=0 if w is None else w.licence_windows,
        capped=0 if w is None else w.capped,
        lost=0 if w is None else max(w.capped_reported - w.capped_found, 0),
    )


def _reason_bars(reasons: Mapping[str, int], error_skips: Counter[str]) -> list[Bar]:
    """`harvest status`'s reason tally, each noted policy or error (both when a key mixes)."""
    bars = []
    for key, count in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])):
        errors = count if key.startswith("failed") else error_skips.get(key, 0)
        if errors == count:
            note = "error"
        elif errors == 0:
            note = "policy"
        else:
            note = f"policy {count - errors:,}, error {errors:,}"
        bars.append(Bar(label=key, count=count, note=note))
    return bars


def _capped_rows(facts: ReportStore) -> Iterator[model.CappedRow]:
    for c in facts.capped_windows(CAPPED_SHOWN):
        yield model.CappedRow(
            keyword=c.keyword,
            start=model.utc(c.start_s),
            end=model.utc(c.end_s),
            licence="every licence" if c.license is None else license_for(c.license).name,
            found=c.found,
            reported=c.reported_total,
        )


def _notes(runs: tuple[RunMark, ...], lines: tuple[KeywordLine, ...]) -> Iterator[str]:
    if any(line.calls is None for line in lines):
        yield (
            "Search calls and negative-term drops are kept by the store since this report"
            " existed; keywords searched before show them as —."
        )
    if runs and runs[-1].finished_at is None:
        yield "The last run has not recorded its end: it is still running, or was killed."


def _page(report: Report) -> str:
    """Draw the figures and render the page (matplotlib and jinja2 are imported only here)."""
    from harvester.report import charts
    from harvester.report.render import render

    figures = {"keywords": charts.keywords_svg(report.keywords)}
    if report.timeline.starts:
        figures["timeline"] = charts.timeline_svg(report.timeline)
    if report.reasons:
        figures["reasons"] = charts.bars_svg(
            model.top_bars(report.reasons, 10), "reasons", "photos"
        )
    if report.licences:
        figures["licences"] = charts.bars_svg(report.licences, "licences", "stored photos")
        figures["sources"] = charts.bars_svg(report.sources, "sources", "stored photos")
    if report.geo.photos:
        figures["map"] = charts.map_svg(report.geo)
    if report.duplicates:
        figures["duplicates"] = charts.bars_svg(report.duplicates, "duplicates", "pairs")
    return render(report, figures)
