"""Table tests of the window planner against a simulated, quirky, pure Flickr search backend."""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from harvester.config import PlannerConfig
from harvester.records import DateField, PhotoRecord, SearchPage, Window
from harvester.search.planner import DEFAULT_SINCE, DEFAULT_TAKEN_SINCE, KeywordPlan, plan_range
from harvester.search.windows import (
    Checkpoint,
    PageObservation,
    PageRequest,
    WindowCapped,
    WindowDone,
)

DAY = 86_400
YEAR = 365 * DAY
T0 = DEFAULT_SINCE
CFG = PlannerConfig()


@dataclass
class Sim:
    """Flickr's search over a list of upload times, with its known quirks as switches."""

    times: list[int]  # sorted upload times; photo id = index
    licenses: list[int] = field(default_factory=list)
    floor_s: int = 0  # API date floor: a query acts like its enclosing floor-aligned range
    under_report: float = 0.0  # `total` reported this much too low
    hidden_every: int = 0  # every k-th photo takes a slot but is never shown (short pages)
    unsorted: bool = False  # the API ignores `sort`
    bleed_s: int = 0  # fuzzy edges: the query reaches this far outside its dates
    drop_every: int = 0  # every k-th call drops a few photos from a mid-list page, that time only
    drop_run: int = 1  # ... and so do the calls right after it, up to this many in a row
    cap: int = 4000
    calls: int = 0

    def visible(self, i: int) -> bool:
        return not (self.hidden_every and i % self.hidden_every == 0)

    def truth(self, start: int, end: int) -> set[int]:
        lo, hi = bisect.bisect_left(self.times, start), bisect.bisect_left(self.times, end)
        return {i for i in range(lo, hi) if self.visible(i)}

    def matching(self, lo: int, hi: int, license: int | None) -> list[int]:
        if self.floor_s:
            lo, hi = lo - lo % self.floor_s, hi + (-hi) % self.floor_s
        lo, hi = lo - self.bleed_s, hi + self.bleed_s
        first, last = bisect.bisect_left(self.times, lo), bisect.bisect_left(self.times, hi)
        ids = [i for i in range(first, last) if license is None or self.licenses[i] == license]
        if self.unsorted:
            random.Random(lo * 7 + hi).shuffle(ids)
        return ids

    def search(self, request: PageRequest) -> SearchPage:
        self.calls += 1
        w, per = request.window, request.per_page
        ids = self.matching(w.start, w.end, w.license)
        offset = min((request.page - 1) * per, self.cap - per)  # past the cap: repeats
        shown = [i for i in ids[offset : offset + per] if self.visible(i)]
        total = int(len(ids) * (1 - self.under_report))
        pages = math.ceil(total / per)
        if (
            self.drop_every
            and self.calls % self.drop_every < self.drop_run
            and request.page < pages
        ):
            at = self.calls * 7919 % max(1, len(shown) - 3)
            del shown[at : at + 1 + self.calls % 3]
        photos = tuple(
            PhotoRecord(
                id=str(i), owner="1@N01", secret="ab", server="1", date_upload=self.times[i]
            )
            for i in shown
        )
        return SearchPage(page=request.page, pages=pages, per_page=per, total=total, photos=photos)


@dataclass
class Run:
    """The outcome of driving a plan to the end (or for `max_windows` windows)."""

    found: set[int] = field(default_factory=set)
    windows: list[Window] = field(default_factory=list)
    done: list[Checkpoint] = field(default_factory=list)
    requests: list[PageRequest] = field(default_factory=list)
    capped_lost: int = 0


def drive(plan: KeywordPlan, sim: Sim, max_windows: int | None = None) -> Run:
    """Fetch what the plan asks; keep the in-window photos of every finished window."""
    run, seen, known = Run(), set[int](), set[str]()
    while (request := plan.next_request()) is not None:
        run.requests.append(request)
        page = sim.search(request)
        obs = PageObservation.from_page(page, request.window, DateField.UPLOAD, CFG.floor_s, known)
        seen |= {int(p.id) for p in page.photos}
        known |= {p.id for p in page.photos}
        for decision in plan.observe(request, obs):
            if isinstance(decision, WindowDone | WindowCapped):
                w = decision.window
                run.windows.append(w)
                run.found |= {i for i in seen if w.contains(sim.times[i])}
                run.done.append(Checkpoint(window=w, found=decision.found))
            if isinstance(decision, WindowCapped):
                run.capped_lost += decision.lost_estimate
        if max_windows is not None and len(run.windows) >= max_windows:
            break
    return run


def assert_no_overlap(windows: list[Window]) -> None:
    """Whole windows never overlap; licence windows overlap only other licences' windows."""
    spans = sorted(windows)
    for a, b in itertools.pairwise(spans):
        same_bucket = (a.start, a.end) == (b.start, b.end)
        if same_bucket and a.license is not None and b.license is not None:
            assert a.license != b.license
        else:
            assert a.end <= b.start, (a, b)


def uniform(n: int, years: float, seed: int = 1) -> list[int]:
    rng = random.Random(seed)
    return sorted(T0 + rng.randrange(int(years * YEAR)) for _ in range(n))


def growing(n: int, years: float, seed: int = 2) -> list[int]:
    """Density growing e-fold every two years, as Flickr's uploads did."""
    rng, span = random.Random(seed), years * YEAR
    k = 1 / (2 * YEAR)
    top = math.exp(k * span) - 1
    return sorted(T0 + int(math.log1p(rng.random() * top) / k) for _ in range(n))


def with_burst(n: int, burst: int, seed: int = 3) -> list[int]:
    rng = random.Random(seed)
    at = T0 + 3 * YEAR + 1234
    return sorted(uniform(n, 8, seed) + [at + rng.randrange(3600) for _ in range(burst)])


def with_gaps(n: int, seed: int = 4) -> list[int]:
    """Two dense clusters six years apart, nothing in between."""
    rng = random.Random(seed)
    first = [T0 + YEAR + rng.randrange(30 * DAY) for _ in range(n // 2)]
    second = [T0 + 7 * YEAR + rng.randrange(30 * DAY) for _ in range(n - n // 2)]
    return sorted(first + second)


END = T0 + 10 * YEAR

#: Each test builds its own simulator (they count calls): name -> how to build it.
SCENARIOS: dict[str, Callable[[], Sim]] = {
    "uniform-20k": lambda: Sim(uniform(20_000, 10)),
    "uniform-small": lambda: Sim(uniform(300, 10)),
    "growth-50k": lambda: Sim(growing(50_000, 10)),
    "burst": lambda: Sim(with_burst(10_000, 6_000)),
    "empty-stretches": lambda: Sim(with_gaps(8_000)),
    "under-reported": lambda: Sim(growing(30_000, 10), under_report=0.25),
    "date-floor-600": lambda: Sim(growing(20_000, 10), floor_s=600),
    "fuzzy-edges": lambda: Sim(growing(20_000, 10), bleed_s=200),
    "short-pages": lambda: Sim(growing(20_000, 10), hidden_every=37),
    "short-pages-under-reported": lambda: Sim(
        growing(20_000, 10), under_report=0.2, hidden_every=41
    ),
    "transient-short-pages": lambda: Sim(growing(30_000, 10), under_report=0.2, drop_every=20),
    "short-refetches": lambda: Sim(growing(20_000, 10), drop_every=9, drop_run=2),
    "empty": lambda: Sim([]),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_full_recall_no_overlap_few_calls(name: str) -> None:
    sim = SCENARIOS[name]()
    run = drive(KeywordPlan(T0, END, CFG), sim)
    truth = sim.truth(T0, END)
    assert run.found == truth
    assert_no_overlap(run.windows)
    lower = math.ceil(len(truth) / CFG.per_page)
    assert sim.calls <= 1.25 * lower + 2, (sim.calls, lower)


@pytest.mark.parametrize(
    "name", ["uniform-20k", "growth-50k", "under-reported", "transient-short-pages"]
)
def test_big_keywords_stay_near_the_lower_bound(name: str) -> None:
    sim = SCENARIOS[name]()
    run = drive(KeywordPlan(T0, END, CFG), sim)
    lower = math.ceil(len(run.found) / CFG.per_page)
    assert sim.calls <= 1.1 * lower


def test_windows_cover_the_range_exactly_on_the_grid() -> None:
    run = drive(KeywordPlan(T0 + 7, END + 11, CFG), Sim(growing(5_000, 10)))
    spans = sorted(run.windows)
    assert spans[0].start == T0
    assert spans[-1].end == END
    assert all(a.end == b.start for a, b in itertools.pairwise(spans))
    assert all(w.start % CFG.floor_s == 0 and w.end % CFG.floor_s == 0 for w in spans)


def test_requests_never_go_past_the_cap() -> None:
    run = drive(KeywordPlan(T0, END, CFG), Sim(growing(30_000, 10)))
    assert max(r.page for r in run.requests) <= CFG.max_results // CFG.per_page
    assert all(r.per_page == 500 for r in run.requests)


UNSORTED: dict[str, Callable[[], Sim]] = {
    "unsorted": lambda: Sim(growing(20_000, 10), unsorted=True),
    "unsorted-under-reported-short": lambda: Sim(
        growing(20_000, 10), unsorted=True, under_report=0.2, hidden_every=41, floor_s=300
    ),
}


@pytest.mark.parametrize("name", list(UNSORTED))
def test_unsorted_api_falls_back_to_shrinking_windows(name: str) -> None:
    sim = UNSORTED[name]()
    plan = KeywordPlan(T0, END, CFG)
    run = drive(plan, sim)
    assert not plan.trust_sort
    assert run.found == sim.truth(T0, END)
    assert_no_overlap(run.windows)
    assert sim.calls <= 1.6 * math.ceil(len(run.found) / CFG.per_page)


def one_hot_bucket(n: int, licenses: list[int]) -> Sim:
    """`n` photos inside a single 300 s bucket (more than the cap), plus background."""
    rng = random.Random(5)
    bucket = T0 + 2 * YEAR
    times = [bucket + rng.randrange(CFG.floor_s) for _ in range(n)] + uniform(3_000, 10, 6)
    order = sorted(range(len(times)), key=times.__getitem__)
    lic = [licenses[rng.randrange(len(licenses))] for _ in times]
    return Sim([times[i] for i in order], [lic[i] for i in order], floor_s=CFG.floor_s)


def test_bucket_over_the_cap_splits_by_licence() -> None:
    sim = one_hot_bucket(9_000, [0, 1, 2, 4, 5, 7, 9, 10, 11, 14])
    run = drive(KeywordPlan(T0, END, CFG), sim)
    assert run.found == sim.truth(T0, END)
    assert_no_overlap(run.windows)
    assert {w.license for w in run.windows if w.license is not None} == set(range(17))
    assert run.capped_lost == 0


def test_one_licence_over_the_cap_is_capped_with_its_loss() -> None:
    sim = one_hot_bucket(5_000, [4])
    run = drive(KeywordPlan(T0, END, CFG), sim)
    truth = sim.truth(T0, END)
    assert len(truth) - len(run.found) == 1_000
    assert run.capped_lost == 1_000
    assert_no_overlap(run.windows)


def test_keyword_licences_limit_the_split() -> None:
    sim = one_hot_bucket(6_000, [1, 2])
    run = drive(KeywordPlan(T0, END, CFG, licenses=[2, 1]), sim)
    assert {w.license for w in run.windows if w.license is not None} == {1, 2}


@pytest.mark.parametrize("stop_after", [1, 3, 7])
def test_resume_skips_done_windows_and_finishes(stop_after: int) -> None:
    sim = Sim(growing(30_000, 10))
    first = drive(KeywordPlan(T0, END, CFG), sim, max_windows=stop_after)
    second = drive(KeywordPlan.resume(T0, END, first.done, CFG), sim)
    assert first.found | second.found == sim.truth(T0, END)
    assert_no_overlap(first.windows + second.windows)


def window_truth(sim: Sim, done: Checkpoint) -> set[int]:
    """The visible photos of one window (of its licence only, for a licence window)."""
    w = done.window
    inside = sim.truth(w.start, w.end)
    return {i for i in inside if w.license is None or sim.licenses[i] == w.license}


def test_resume_mid_licence_split_searches_only_the_other_licences() -> None:
    sim = one_hot_bucket(9_000, list(range(17)))
    first = drive(KeywordPlan(T0, END, CFG), sim)
    licence_done = [d for d in first.done if d.window.license is not None]
    bucket = licence_done[0].window.start
    kept = [d for d in first.done if d.window.end <= bucket] + licence_done[:6]
    second = drive(KeywordPlan.resume(T0, END, kept, CFG), sim)
    again = {w.license for w in second.windows if w.license is not None}
    assert again == set(range(17)) - {d.window.license for d in licence_done[:6]}
    assert_no_overlap([d.window for d in kept] + second.windows)
    before = set().union(*(window_truth(sim, d) for d in kept))
    assert before | second.found == sim.truth(T0, END)
    assert not before & second.found


def test_resume_of_a_finished_keyword_asks_nothing() -> None:
    sim = Sim(uniform(2_000, 10))
    first = drive(KeywordPlan(T0, END, CFG), sim)
    plan = KeywordPlan.resume(T0, END, first.done, CFG)
    assert plan.next_request() is None
    assert plan.coverage == 1.0


def test_geo_queries_follow_the_apis_smaller_page() -> None:
    sim = Sim(growing(6_000, 10))
    plan = KeywordPlan(T0, END, CFG)
    run, calls = Run(), 0
    while (request := plan.next_request()) is not None:
        calls += 1
        page = sim.search(
            PageRequest(
                window=request.window, page=request.page, per_page=min(250, request.per_page)
            )
        )
        obs = PageObservation.from_page(page, request.window, DateField.UPLOAD, CFG.floor_s)
        run.found |= {int(p.id) for p in page.photos if request.window.contains(p.date_upload)}
        plan.observe(request, obs)
    assert plan.per_page == 250
    assert run.found == sim.truth(T0, END)


@pytest.mark.parametrize(
    ("since", "until", "now", "expected"),
    [
        (None, None, T0 + 1000, (T0, T0 + 900)),
        (T0 + 10, T0 + 610, T0 + DAY, (T0, T0 + 900)),
        (T0 + 300, T0 + 600, T0 + DAY, (T0 + 300, T0 + 600)),
        (T0 + 600, None, T0 + 300, (T0 + 600, T0 + 600)),
    ],
)
def test_plan_range(
    since: int | None, until: int | None, now: int, expected: tuple[int, int]
) -> None:
    assert plan_range(since, until, now, 300) == expected


def test_taken_dates_start_in_1900() -> None:
    assert plan_range(None, None, T0, 300, DateField.TAKEN) == (DEFAULT_TAKEN_SINCE, T0)


def test_observe_rejects_a_page_for_another_request() -> None:
    plan = KeywordPlan(T0, END, CFG)
    request = plan.next_request()
    assert request is not None
    other = PageRequest(window=request.window, page=2, per_page=500)
    with pytest.raises(ValueError, match="active request"):
        plan.observe(
            other,
            PageObservation(
                count=0,
                per_page=500,
                pages=0,
                total=0,
                in_window=0,
                first_date=None,
                last_date=None,
                ascending=True,
            ),
        )


def test_taken_dates_are_read_as_utc() -> None:
    record = PhotoRecord(
        id="1", owner="1@N01", secret="ab", server="1", date_taken="2004-01-01 00:05:00"
    )
    page = SearchPage(page=1, pages=1, per_page=500, total=1, photos=(record,))
    obs = PageObservation.from_page(page, Window(start=T0, end=T0 + 600), DateField.TAKEN, 300)
    assert (obs.in_window, obs.first_date) == (1, T0 + 300)


@pytest.mark.parametrize(
    ("target", "floor_s", "max_results"), [(0, 300, 4000), (4000, 0, 4000), (4000, 300, 100)]
)
def test_config_rejects_nonsense(target: int, floor_s: int, max_results: int) -> None:
    with pytest.raises(ValueError, match="must"):
        PlannerConfig(window_target=target, floor_s=floor_s, max_results=max_results)
