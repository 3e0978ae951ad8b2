"""The report's pure parts as tables (policy skips, actions, binning, bounds, licences), its SQL
aggregates over a store built by hand, and its figures (deterministic, labels escaped)."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from harvester.records import PhotoRecord, SizeVariant, Window
from harvester.report import charts, model
from harvester.report.model import Bar, KeywordLine, RunMark
from harvester.store.report import ReportStore, photo_source
from harvester.store.sqlite import Store

H = 3600
T0 = 1_700_000_000 // H * H


@pytest.mark.parametrize(
    ("reason", "policy"),
    [
        ("too small: 400 px < 500", True),
        ("too small after frame: 480x300 < 500", True),
        ("no size: no large or original (smaller sizes not allowed)", True),
        ("no size: the search returned no image URL", False),
        ("something new", False),
        (None, False),
    ],
)
def test_policy_skips(reason: str | None, policy: bool) -> None:
    assert model.is_policy_skip(reason) is policy


@pytest.mark.parametrize(
    ("status", "reason", "starts"),
    [
        ("failed", "download: not found (http 404)", "drop: gone"),
        ("failed", "download: http 410", "drop: gone"),
        ("failed", "download: http 403", "drop: made private"),
        ("failed", "download: timeout (after 5 tries)", "retry"),
        ("failed", "download: http 503 (after 5 tries)", "retry"),
        ("failed", "unsafe record: owner 'x' is not an NSID", "inspect"),
        ("failed", "undecodable image: OSError: broken", "inspect"),
        ("failed", "internal: KeyError", "report a bug"),
        ("skipped", "no size: the search returned no image URL", "inspect"),
    ],
)
def test_action_for(status: str, reason: str, starts: str) -> None:
    assert model.action_for(status, reason).startswith(starts)


@pytest.mark.parametrize(
    ("found", "per_page", "bound"), [(0, 500, 0), (1, 500, 1), (500, 500, 1), (501, 500, 2)]
)
def test_lower_bound(found: int, per_page: int, bound: int) -> None:
    assert model.lower_bound(found, per_page) == bound


@pytest.mark.parametrize(
    ("lic", "flags"), [(0, ("ARR",)), (4, ()), (1, ("NC", "SA")), (16, ("NC", "ND")), (9, ())]
)
def test_licence_flags(lic: int, flags: tuple[str, ...]) -> None:
    assert model.licence_flags(lic) == flags


def test_photo_page_quotes_the_owner() -> None:
    assert model.photo_page("123@N06", 42) == "https://www.flickr.com/photos/123@N06/42/"
    assert model.photo_page("a/b?c", 1) == "https://www.flickr.com/photos/a%2Fb%3Fc/1/"


def _run(n: int, start: float, end: float | None, outcome: str | None = "finished") -> RunMark:
    return RunMark(number=n, worker="w", started_at=start, finished_at=end, outcome=outcome)


def test_timeline_fills_every_hour_of_the_job_and_marks_runs() -> None:
    counts = {(T0, "done"): 5, (T0 + 3 * H, "done"): 2, (T0 + 3 * H, "failed"): 1}
    runs = [_run(1, T0 + 10, T0 + H + 5, "interrupted"), _run(2, T0 + 2 * H + 1, None, None)]
    tl = model.timeline(counts, runs)
    assert tl.unit == "hour"
    assert tl.starts == (T0, T0 + H, T0 + 2 * H, T0 + 3 * H)
    assert tl.done == (5, 0, 0, 2)
    assert tl.failed == (0, 0, 0, 1)
    assert tl.skipped == (0, 0, 0, 0)
    assert tl.peak == 5
    assert [r.restart for r in tl.runs] == [False, True]


def test_timeline_counts_per_day_past_max_bins() -> None:
    counts = {(T0, "done"): 1, (T0 + 100 * H, "skipped"): 3}
    tl = model.timeline(counts, [], max_bins=50)
    assert tl.unit == "day"
    assert sum(tl.done) == 1
    assert sum(tl.skipped) == 3
    assert len(tl.starts) in (5, 6)


def test_timeline_of_nothing() -> None:
    assert model.timeline({}, []).starts == ()


def test_top_bars_keep_the_largest_and_sum_the_rest() -> None:
    bars = [Bar(label=c, count=n) for c, n in zip("abcde", (5, 1, 4, 2, 3), strict=True)]
    assert [(b.label, b.count) for b in model.top_bars(bars, 2)] == [
        ("a", 5),
        ("c", 4),
        ("other (3)", 6),
    ]
    assert len(model.top_bars(bars, 4)) == 5, "no 'other' for a single bar"


def test_total_line_keeps_unknown_as_unknown() -> None:
    known = KeywordLine(keyword="a", found=3, calls=2, negatives=1)
    total = model.total_line([known, KeywordLine(keyword="b", found=4)])
    assert (total.found, total.calls, total.negatives) == (7, None, None)
    assert model.total_line([known, known]).calls == 4


# --- SQL aggregates over a store built by hand --------------------------------------------------


def _photo(i: int, **changes: object) -> PhotoRecord:
    url = f"https://live.staticflickr.com/65535/{i}_abcdef0123_b.jpg"
    base = PhotoRecord(
        id=str(i),
        owner="7478087@N06",
        secret="abcdef0123",
        server="65535",
        license=4,
        sizes=(SizeVariant(label="l", url=url, width=1024, height=768),),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
def facts(tmp_path: Path) -> ReportStore:
    clock = iter(float(T0 + k * 60) for k in range(1000))
    path = tmp_path / "harvest.sqlite"
    with Store(path, clock=lambda: next(clock)) as store:
        photos = [
            _photo(1, latitude=48.8, longitude=2.3),
            _photo(2, latitude=48.9, longitude=2.4, license=0),
            _photo(3, latitude=-33.9, longitude=151.2),
            _photo(4),
            _photo(5),
        ]
        store.commit_window(
            "paris",
            Window(start=0, end=10),
            photos[:3],
            reported_total=4000,
            capped=False,
            calls=8,
            negatives=2,
        )
        store.commit_window(
            "paris",
            Window(start=10, end=11, license=4),
            photos[3:],
            reported_total=4100,
            capped=True,
            calls=9,
        )
        store.commit_window(
            "paris",
            Window(start=10, end=11, license=5),
            [],
            reported_total=0,
            capped=False,
            calls=1,
        )
        for i in (1, 2, 3):
            store.mark_done(
                str(i), path=f"p/{i}.jpg", sha256="0" * 64, width=1, height=1, size_label="l"
            )
        store.mark_skipped("4", "too small: 400 px < 500")
        store.mark_skipped("5", "no size: the search returned no image URL")
        store.flush()
    db = sqlite3.connect(path)  # photo 3 as the sources engineer's records will say
    db.execute("UPDATE photos SET record = json_set(record, '$.source', 'nasa') WHERE id = 3")
    db.commit()
    db.close()
    return ReportStore(Store.open(path, readonly=True))


def test_window_tallies_name_what_the_cap_did(facts: ReportStore) -> None:
    [paris] = facts.window_tallies(max_results=2)
    assert (paris.windows, paris.at_cap, paris.split_buckets, paris.licence_windows) == (3, 1, 1, 2)
    assert (paris.capped, paris.capped_found, paris.capped_reported) == (1, 2, 4100)
    [capped] = facts.capped_windows(10)
    assert (capped.start_s, capped.license, capped.found) == (10, 4, 2)


def test_search_tallies_and_unique_found(facts: ReportStore) -> None:
    tally = facts.search_tallies()["paris"]
    assert (tally.calls, tally.negatives) == (18, 2)
    assert facts.unique_found() == {"paris": 5}


def test_licences_sources_and_geo_of_stored_photos(facts: ReportStore) -> None:
    mix = facts.stored_mix(1.0)
    assert mix.licences == {4: 2, 0: 1}
    assert mix.sources == {"flickr": 2, "nasa": 1}, "a record with no source is flickr's"
    cells = mix.geo
    assert sorted(zip(cells.lon, cells.lat, cells.count, strict=True)) == [
        (2.0, 48.0, 2),
        (151.0, -34.0, 1),
    ]


def test_photo_source_default() -> None:
    assert [photo_source(s) for s in (None, "", "nasa", 3)] == [
        "flickr",
        "flickr",
        "nasa",
        "flickr",
    ]


def test_attention_leaves_policy_skips_out(facts: ReportStore) -> None:
    rows = list(facts.attention(model.POLICY_SKIPS))
    assert [(r.photo_id, r.status) for r in rows] == [(5, "skipped")]
    hours = facts.per_hour()
    assert sum(h.count for h in hours) == 5
    assert {h.hour_s % H for h in hours} == {0}
    assert facts.duplicate_kinds() is None, "harvest dupes has not run"


# --- figures -----------------------------------------------------------------------------------


def test_figures_are_deterministic_and_escape_their_labels() -> None:
    bars = [Bar(label="<script>alert(1)</script> $x_$", count=3), Bar(label="a & b", count=1)]
    first = charts.bars_svg(bars, "t", "photos")
    assert first == charts.bars_svg(bars, "t", "photos")
    assert first.startswith("<svg")
    assert "<script" not in first
    assert "&lt;script&gt;alert(1)&lt;/script&gt; $x_$" in first
    assert "a &amp; b" in first


@pytest.mark.parametrize("cells", [2, charts.SCATTER_CELLS + 1])
def test_map_rasterises_its_cells(cells: int) -> None:
    lon = tuple(-180.0 + (i % 720) * 0.5 for i in range(cells))
    lat = tuple(-90.0 + (i // 720) * 0.5 for i in range(cells))
    geo = model.GeoView(cell_deg=0.5, lon=lon, lat=lat, count=(5,) * cells, stored=9 * cells)
    svg = charts.map_svg(geo)
    assert "data:image/png;base64," in svg
    assert svg.count("<path") < 200, "cells are pixels, not one path each"
