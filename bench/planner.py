"""Planner benchmark: recall and API calls of harvest's window planner vs the Berg/Hays search.

    python -m bench.planner [--sizes 10k,100k,1m] [--quick]

Method. One in-process Flickr emulator corpus (seed 0, 1.1M photos, profile `realistic`: the
4,000-result cap with repeating pages past it, totals under-reported by up to 20 %, a 300 s
date floor, 60 s fuzzy edges, 2 % short pages, 1.5 % transient API errors and 5xx, loose
types) holds text keywords matching about 10k, 100k and 1M photos; the keyword nearest each
size is picked from the corpus vocabulary and its exact match set is read from the emulator's
ground truth (`/_emulator/truth`, the same filters as flickr.photos.search without quirks).
Each size is searched, over the same date range `[2004-01-01, now)`, by:

- **harvest**: `harvester.search.loop.search_keyword` with the default `PlannerConfig` (the
  keyset window planner: 500 per page, windows filled to the 4,000 cap, ascending date sort);
- **hays**: the Berg/Hays IM2GPS window search (bench/planner_hays.py: 250 per page, 250
  results per window, 6 probes per window, at most 16 pages, interestingness order), crash
  fixes only;
- **lower bound**: `ceil(N / 500)` calls, one full page of 500 per call, recall 100 %.

Both searches drive the same `harvester.flickr.client.FlickrClient` (retries included), each against
a fresh emulator on the same corpus, so fault sequences are deterministic and counters start
at zero. Calls are the emulator's count of REST requests received (authoritative: every
attempt, retried faults included); "pages" are the calls that returned a page. Recall is the
share of ground-truth ids found (deduplicated); "per 1k" is calls per 1,000 unique photos
found. Clocks are scaled by `TIME_SCALE` (the emulator's rate limit and slow responses, the
client's budget and retry backoff) so that waiting never dominates; call counts and recall do
not depend on it, wall seconds are noisy (small shared machine).

Burst corpora follow the smooth ones (`--bursts day,hour`): the same corpus with the 100k word
uploading 500 x its rate for a day, and the 1M word 1,000 x for an hour, both over the cap
(the emulator's burst switch). The table shows the calls retried after a fault and the short
pages refetched (both the profile's faults: 1.5 % and 2 %), and the calls over the bound
without them ("planned"): what the planner itself chose.

Targets: harvest's recall >= 99.5 % on every corpus and calls <= 1.25 x the lower bound;
issue 14's <= 1.05 x on smooth corpora and <= 1.10 x on bursts. Writes
bench/results/planner.md and bench/results/planner.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from bench import common
from bench.planner_hays import HaysConfig, HaysResult, hays_search
from harvester.config import PlannerConfig
from harvester.emulator import EmulatorConfig, RunningEmulator, run_emulator
from harvester.emulator.config import Profile
from harvester.emulator.control import vocabulary
from harvester.emulator.corpus import Corpus, corpus_for
from harvester.flickr.client import FlickrClient
from harvester.records import SearchPage, SearchQuery
from harvester.search.loop import WindowResult, search_keyword
from harvester.search.planner import DEFAULT_SINCE, plan_range
from harvester.search.queries import parse_queries

SIZES: dict[str, int] = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}


@dataclass(frozen=True, slots=True)
class Burst:
    """A bulk upload on top of a smooth corpus: `word` at `factor` x its rate for `span_s`."""

    label: str
    size: str  # the smooth corpus it is added to (its keyword is `word`)
    span_s: int
    factor: float
    word: str


#: The burst corpora beside the smooth ones (issue 14): the words the smooth sizes pick.
BURSTS: dict[str, Burst] = {
    "day": Burst("100k + a day at 500x", "100k", 86_400, 500.0, "travel"),
    "hour": Burst("1m + an hour at 1,000x", "1m", 3_600, 1000.0, "photo"),
}
CORPUS_PHOTOS = 1_100_000
PROFILE: Profile = "realistic"
TIME_SCALE = 1e6
PER_PAGE = 500  # Flickr's maximum page: the lower bound's page
TARGET_RECALL = 0.995
TARGET_RATIO = 1.25
TARGET_SMOOTH, TARGET_BURST = 1.05, 1.10  # issue 14: calls over the bound, smooth and burst
METHODS = ("harvest", "hays")
RESULTS_MD = common.RESULTS / "planner.md"

log = logging.getLogger("bench.planner")


@dataclass(frozen=True, slots=True)
class Target:
    """One corpus size: the keyword chosen for it and its ground truth."""

    label: str
    wanted: int
    keyword: str
    n: int  # ground-truth matches


@dataclass(slots=True)
class Run:
    """One method on one corpus."""

    label: str
    n: int
    keyword: str
    method: str
    found: int  # ground-truth photos found (unique)
    extra: int  # unique photos returned that are not in the ground truth
    calls: int  # REST requests the emulator received (every attempt)
    pages: int  # calls that returned a page
    wall_s: float
    details: dict[str, Any] = field(default_factory=dict)
    refetched: int = 0  # pages asked for again at once (short pages: the profile's 2 %)

    @property
    def planned(self) -> int:
        """The calls the planner chose: pages less the refetches the profile's faults forced."""
        return self.pages - self.refetched

    @property
    def lower(self) -> int:
        """The lower bound for this corpus: ceil(N / 500)."""
        return math.ceil(self.n / PER_PAGE)

    @property
    def recall(self) -> float:
        """Share of the ground truth found."""
        return self.found / self.n if self.n else 1.0

    @property
    def per_1k(self) -> float:
        """Calls per 1,000 unique photos found."""
        return 1000.0 * self.calls / self.found if self.found else math.inf

    @property
    def ratio(self) -> float:
        """Calls over the lower bound."""
        return self.calls / self.lower if self.lower else math.inf

    def as_json(self) -> dict[str, Any]:
        """The run with its derived figures."""
        out = asdict(self)
        out.update(
            lower_bound=self.lower,
            recall=self.recall,
            calls_per_1k_unique=self.per_1k,
            ratio_to_lower_bound=self.ratio,
            retried=self.calls - self.pages,
            planned=self.planned,
            planned_ratio_to_lower_bound=self.planned / self.lower if self.lower else math.inf,
        )
        if self.method == "harvest":
            out["meets_targets"] = {
                "recall": self.recall >= TARGET_RECALL,
                "calls": self.ratio <= TARGET_RATIO,
            }
        return out


# --- corpus and ground truth -----------------------------------------------------------------


def emulator_config(
    seed: int, photos: int, burst_s: int = 0, burst_factor: float = 0.0, burst_word: str = "photo"
) -> EmulatorConfig:
    """The emulator every run uses: profile `realistic` as is, clocks scaled, burst if asked."""
    return EmulatorConfig(
        host="127.0.0.1",
        port=0,
        seed=seed,
        photos=photos,
        profile=PROFILE,
        time_scale=TIME_SCALE,
        burst_s=burst_s,
        burst_factor=burst_factor,
        burst_word=burst_word,
    )


def pick_keyword(corpus: Corpus, wanted: int) -> tuple[str, int]:
    """The vocabulary word whose text-match count is nearest `wanted` (on a log scale)."""
    words = [(w["word"], int(w["text_count"])) for w in vocabulary(corpus) if w["text_count"]]
    return min(words, key=lambda wc: abs(math.log(wc[1] / wanted)))


def upload_dates(corpus: Corpus, ids: Sequence[str]) -> npt.NDArray[np.int64]:
    """Upload times of photos by id (corpus ids are sorted, so one searchsorted)."""
    all_ids = corpus.cols["id"]
    rows = np.searchsorted(all_ids, np.array([int(i) for i in ids], dtype=np.int64))
    return np.asarray(corpus.cols["upload"][rows], dtype=np.int64)


# --- the client --------------------------------------------------------------------------------


async def emulator_calls(emu: RunningEmulator) -> tuple[int, dict[str, Any]]:
    """Total REST calls the emulator received, and its whole stats snapshot."""
    stats = await emu.stats()
    return int(stats["calls"]), stats


# --- harvest -------------------------------------------------------------------------------------


class RepeatCounter:
    """A search backend passing calls through, counting pages asked for twice in a row."""

    def __init__(self, inner: FlickrClient) -> None:
        self.inner = inner
        self.repeats = 0
        self._last: SearchQuery | None = None

    async def search(self, query: SearchQuery) -> SearchPage:
        """One page from the client; a repeat of the previous query is a refetch."""
        self.repeats += query == self._last
        self._last = query
        return await self.inner.search(query)


def window_row(result: WindowResult) -> dict[str, Any]:
    """A finished window, for the diagnostics."""
    w = result.window
    return {
        "start": w.start,
        "end": w.end,
        "license": w.license,
        "found": len(result.photos),
        "reported_total": result.reported_total,
        "calls": result.calls,
        "capped": result.capped,
        "lost_estimate": result.lost_estimate,
    }


async def run_harvest(emu: RunningEmulator, target: Target, now: int) -> tuple[set[str], Run]:
    """harvest's planner and search loop on one keyword, as the engine drives them."""
    kq = parse_queries(f"{target.keyword}\n", "<bench>").keywords[0]
    ids: set[str] = set()
    windows: list[dict[str, Any]] = []
    pages = 0
    start = time.perf_counter()
    async with common.scaled_client(emu, TIME_SCALE) as client:
        backend = RepeatCounter(client)
        stream = search_keyword(kq, backend, plan_config=PlannerConfig(), now=now)
        async with contextlib.aclosing(stream) as results:
            async for result in results:
                ids.update(p.id for p in result.photos)
                pages += result.calls
                windows.append(window_row(result))
        wall = time.perf_counter() - start
        client_stats = client.stats
    calls, stats = await emulator_calls(emu)
    details = {
        "windows": len(windows),
        "licence_windows": sum(1 for w in windows if w["license"] is not None),
        "capped_windows": sum(1 for w in windows if w["capped"]),
        "lost_estimate": sum(int(w["lost_estimate"]) for w in windows),
        "client_attempts": client_stats.calls,
        "client_retries": dict(client_stats.retries),
        "emulator": stats,
        "window_list": windows,
    }
    run = Run(target.label, target.n, target.keyword, "harvest", 0, 0, calls, pages, wall, details)
    run.refetched = backend.repeats
    return ids, run


def harvest_misses(
    corpus: Corpus, missed: Sequence[str], windows: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The windows holding missed photos, worst first (licence windows matched by licence)."""
    if not missed:
        return []
    dates = upload_dates(corpus, missed)
    rows = np.searchsorted(corpus.cols["id"], np.array([int(i) for i in missed], np.int64))
    lics = corpus.cols["license"][rows]
    tally: Counter[int] = Counter()
    nowhere = 0
    for date, lic in zip(dates.tolist(), lics.tolist(), strict=True):
        hit = next(
            (
                i
                for i, w in enumerate(windows)
                if w["start"] <= date < w["end"] and w["license"] in (None, lic)
            ),
            None,
        )
        if hit is None:
            nowhere += 1
        else:
            tally[hit] += 1
    worst = [{**windows[i], "missed": k} for i, k in tally.most_common(10)]
    return ([{"outside_every_window": nowhere}] if nowhere else []) + worst


# --- the Berg/Hays baseline ----------------------------------------------------------------------


def hays_diagnostics(result: HaysResult, truth_dates: npt.NDArray[np.int64]) -> dict[str, Any]:
    """Why the baseline lost photos: windows holding more than the pages it visited."""
    floor = 300  # the emulator's date floor: what a window [a, b] really covers
    over: list[dict[str, Any]] = []
    held_over_cap = 0
    stale = 0
    for w in result.windows:
        lo = int(w.mintime) // floor * floor
        hi = (int(w.maxtime) // floor + 1) * floor - 1
        held = int(np.searchsorted(truth_dates, hi, "right") - np.searchsorted(truth_dates, lo))
        room = w.pages_visited * HaysConfig().per_page
        if held > room:
            over.append({**asdict(w), "held": held, "room": room})
            held_over_cap += held > HaysConfig().max_pages * HaysConfig().per_page
            stale += w.stale_probe
    short = sum(o["held"] - o["room"] for o in over)
    last = next((o for o in over if o["maxtime"] == result.windows[-1].maxtime), None)
    return {
        "windows": len(result.windows),
        "probe_calls": result.probe_calls,
        "page_calls": result.page_calls,
        "rows_returned": result.rows,
        "windows_holding_more_than_visited": len(over),
        "of_which_over_16_pages": held_over_cap,
        "of_which_stale_probe": stale,
        "photos_beyond_visited_pages": short,
        "of_which_in_last_window": 0 if last is None else last["held"] - last["room"],
        "worst_windows": sorted(over, key=lambda o: o["room"] - o["held"])[:10],
    }


async def run_hays(
    emu: RunningEmulator, target: Target, start: int, end: int
) -> tuple[set[str], Run, HaysResult]:
    """The Berg/Hays window search on one keyword, through the same client."""
    t0 = time.perf_counter()
    async with common.scaled_client(emu, TIME_SCALE) as client:
        result = await hays_search(client, target.keyword, start, end)
        wall = time.perf_counter() - t0
        client_stats = client.stats
    calls, stats = await emulator_calls(emu)
    details = {
        "client_attempts": client_stats.calls,
        "client_retries": dict(client_stats.retries),
        "emulator": stats,
    }
    run = Run(target.label, target.n, target.keyword, "hays", 0, 0, calls, result.calls, wall)
    run.details = details
    return result.ids, run, result


# --- one corpus size -----------------------------------------------------------------------------


async def measure(
    corpus: Corpus, cfg: EmulatorConfig, label: str, methods: Sequence[str], word: str = ""
) -> tuple[Target, list[Run]]:
    """Every method on `word` (or the keyword nearest SIZES[label]), each on a fresh emulator."""
    wanted = SIZES.get(label, 0)
    keyword = word or pick_keyword(corpus, wanted)[0]
    now = cfg.end_ts + 3600  # past the corpus's last upload, so the range covers every photo
    start, end = plan_range(None, None, now, PlannerConfig().floor_s)
    assert start == DEFAULT_SINCE
    runs: list[Run] = []
    target: Target | None = None
    truth: set[str] = set()
    truth_dates = np.empty(0, np.int64)
    for method in methods:
        async with run_emulator(cfg, corpus) as emu:
            if target is None:
                truth_list = await emu.truth(text=keyword)
                truth = set(truth_list)
                truth_dates = np.sort(upload_dates(corpus, truth_list))
                target = Target(label, wanted, keyword, len(truth))
                log.info(
                    "%s: keyword %r, %d photos in the ground truth", label, keyword, len(truth)
                )
            if method == "harvest":
                ids, run = await run_harvest(emu, target, now)
                missed = sorted(truth - ids)
                run.details["missed_by_window"] = harvest_misses(
                    corpus, missed, run.details["window_list"]
                )
                del run.details["window_list"]
            else:
                ids, run, result = await run_hays(emu, target, start, end)
                run.details.update(hays_diagnostics(result, truth_dates))
        run.found = len(ids & truth)
        run.extra = len(ids - truth)
        log.info(
            "%s %s: recall %.4f, %d calls (%.2f x lower bound), %.1f s",
            label,
            method,
            run.recall,
            run.calls,
            run.ratio,
            run.wall_s,
        )
        runs.append(run)
    assert target is not None
    return target, runs


# --- output --------------------------------------------------------------------------------------

HEADERS = (
    "corpus N",
    "keyword",
    "method",
    "recall %",
    "unique found",
    "calls",
    "retried",
    "refetched",
    "calls / 1k unique",
    "x lower bound",
    "planned x bound",
    "wall s",
)


def table_rows(targets: Sequence[Target], runs: Sequence[Run]) -> list[list[str]]:
    """Rows of the result table: per corpus, each method then the lower bound."""
    rows: list[list[str]] = []
    for t in targets:
        lower = math.ceil(t.n / PER_PAGE)
        for r in (r for r in runs if r.label == t.label):
            rows.append(
                [
                    t.label,
                    f"{t.n:,}",
                    t.keyword,
                    r.method,
                    f"{100 * r.recall:.2f}",
                    f"{r.found:,}",
                    f"{r.calls:,}",
                    f"{r.calls - r.pages:,}",
                    f"{r.refetched:,}" if r.method == "harvest" else "-",
                    f"{r.per_1k:.2f}",
                    f"{r.ratio:.3f}",
                    f"{r.planned / lower:.3f}",
                    f"{r.wall_s:.1f}",
                ]
            )
        per_1k = 1000.0 * lower / t.n
        bound = ["lower bound ceil(N/500)", "100.00", f"{t.n:,}", f"{lower:,}", "0", "0"]
        rows.append(
            [t.label, f"{t.n:,}", t.keyword, *bound, f"{per_1k:.2f}", "1.000", "1.000", "-"]
        )
    return rows


def markdown_table(rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table."""
    lines = ["| corpus | " + " | ".join(HEADERS) + " |"]
    lines.append("|---|" + "|".join(["---:"] * len(HEADERS)) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(runs: Sequence[Run]) -> list[str]:
    """One line per corpus: does harvest meet the targets?"""
    out = []
    bursts = {b.label for b in BURSTS.values()}
    for r in (r for r in runs if r.method == "harvest"):
        aim = TARGET_BURST if r.label in bursts else TARGET_SMOOTH
        ok_recall = r.recall >= TARGET_RECALL
        ok_calls = r.ratio <= TARGET_RATIO
        out.append(
            f"- {r.label}, N={r.n:,} ({r.keyword}): recall {100 * r.recall:.2f} % "
            f"({'meets' if ok_recall else 'MISSES'} >= {100 * TARGET_RECALL:.1f} %), "
            f"calls {r.ratio:.3f} x lower bound "
            f"({'meets' if ok_calls else 'MISSES'} <= {TARGET_RATIO} x; "
            f"{'meets' if r.ratio <= aim else 'MISSES'} issue 14's <= {aim} x); "
            f"{r.calls - r.pages} retried, {r.refetched} short pages refetched, "
            f"{r.planned / r.lower:.3f} x without them"
        )
    return out


def write_outputs(
    settings: dict[str, Any], targets: Sequence[Target], runs: Sequence[Run], table: str
) -> None:
    """bench/results/planner.md and planner.json."""
    payload = {
        "settings": settings,
        "machine": common.machine(),
        "targets": {"recall": TARGET_RECALL, "calls_ratio": TARGET_RATIO},
        "corpora": [asdict(t) for t in targets],
        "runs": [r.as_json() for r in runs],
        "table_markdown": table,
    }
    path = common.write_result("planner", payload)
    md = [
        "# Planner benchmark",
        "",
        f"Command: `{settings['command']}`",
        "",
        f"Emulator: seed {settings['seed']}, {settings['photos']:,} photos, profile "
        f"`{PROFILE}`, time scale {TIME_SCALE:g}. Calls are REST requests the emulator "
        "received (retried faults included); pages are calls that returned a page.",
        "",
        table,
        "",
        "Targets for harvest (recall >= 99.5 %, calls <= 1.25 x lower bound):",
        "",
        *verdict(runs),
        "",
        f"Details: {path.relative_to(common.ROOT)}",
        "",
    ]
    RESULTS_MD.write_text("\n".join(md))


# --- main ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(
        prog="python -m bench.planner", description=__doc__.split("\n", 1)[0]
    )
    ap.add_argument("--sizes", help="comma list of 10k,100k,1m (default: all; --quick: 10k)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: the 10k corpus only")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma list of harvest,hays")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--photos", type=int, default=CORPUS_PHOTOS, help="emulator corpus size")
    ap.add_argument(
        "--bursts",
        help="comma list of day,hour: burst corpora after the smooth ones "
        "(default: both; --quick or --sizes alone: none; '' for none)",
    )
    args = ap.parse_args(argv)
    sizes = args.sizes if args.sizes is not None else ("10k" if args.quick else ",".join(SIZES))
    args.size_list = [s.strip().lower() for s in sizes.split(",") if s.strip()]
    alone = args.quick or args.sizes is not None
    bursts = args.bursts if args.bursts is not None else ("" if alone else ",".join(BURSTS))
    args.burst_list = [b.strip().lower() for b in bursts.split(",") if b.strip()]
    for b in args.burst_list:
        if b not in BURSTS:
            ap.error(f"unknown burst {b!r} (choose from {', '.join(BURSTS)})")
    args.method_list = [m.strip() for m in args.methods.split(",") if m.strip()]
    for s in args.size_list:
        if s not in SIZES:
            ap.error(f"unknown size {s!r} (choose from {', '.join(SIZES)})")
    for m in args.method_list:
        if m not in METHODS:
            ap.error(f"unknown method {m!r} (choose from {', '.join(METHODS)})")
    return args


async def build(cfg: EmulatorConfig) -> Corpus:
    """The emulator's corpus for `cfg`, timed."""
    t0 = time.perf_counter()
    corpus = await asyncio.to_thread(corpus_for, cfg)
    log.info("corpus of %d photos built in %.1f s", corpus.size, time.perf_counter() - t0)
    return corpus


async def main_async(args: argparse.Namespace) -> tuple[list[Target], list[Run]]:
    """Build the smooth corpus once and measure each size, then each burst on its own corpus."""
    targets: list[Target] = []
    runs: list[Run] = []
    if args.size_list:
        cfg = emulator_config(args.seed, args.photos)
        corpus = await build(cfg)
        for label in args.size_list:
            target, size_runs = await measure(corpus, cfg, label, args.method_list)
            targets.append(target)
            runs += size_runs
    for name in args.burst_list:
        burst = BURSTS[name]
        cfg = emulator_config(args.seed, args.photos, burst.span_s, burst.factor, burst.word)
        corpus = await build(cfg)
        target, burst_runs = await measure(corpus, cfg, burst.label, args.method_list, burst.word)
        targets.append(target)
        runs += burst_runs
    return targets, runs


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table, write the results."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("harvester.search.loop", "harvester.search.planner", "harvester.retry"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = parse_args(argv)
    t0 = time.perf_counter()
    targets, runs = asyncio.run(main_async(args))
    table = markdown_table(table_rows(targets, runs))
    print()
    print(table)
    print()
    print("\n".join(verdict(runs)))
    settings = {
        "command": " ".join(["python", "-m", "bench.planner", *(argv or sys.argv[1:])]),
        "sizes": args.size_list,
        "methods": args.method_list,
        "seed": args.seed,
        "photos": args.photos,
        "profile": PROFILE,
        "bursts": {name: asdict(BURSTS[name]) for name in args.burst_list},
        "time_scale": TIME_SCALE,
        "planner_config": asdict(PlannerConfig()),
        "hays_config": asdict(HaysConfig()),
        "total_wall_s": time.perf_counter() - t0,
    }
    write_outputs(settings, targets, runs, table)
    print(f"\nwrote {RESULTS_MD} and {common.RESULTS / 'planner.json'}")
    print(f"total {settings['total_wall_s']:.1f} s")
    from bench.planner_sources import main as sources_main  # per source type (issue 14)

    return sources_main(["--quick"])


if __name__ == "__main__":
    raise SystemExit(main())
