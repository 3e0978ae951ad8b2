"""Sources benchmark: API calls and recall per source type (user, album, group, gallery, Commons).

    python -m bench.planner_sources [--photos 200000] [--seed 0] [--quick]

Method. One in-process Flickr emulator (profile `realistic`: the 4,000 cap with repeating pages
past it, totals under-reported by up to 20 %, a 300 s date floor, 60 s fuzzy edges, short pages,
transient errors, loose types) with its derived layer of albums, galleries, group pools and
Commons institutions (harvester/emulator/lists.py). For each source type, sources of several
sizes are picked from that layer (the largest photostream, over the cap; a mid-sized one; a
small one; the largest album, also over the cap; a gallery of 500; the largest pool; a small
pool; `commons:*`), and each is run as `harvest run` runs it: the line parsed, resolved by
`harvester.lookups.Resolver` (one look-up), then `harvester.search.listings.search_source`
with the default `PlannerConfig` — users, pools and institutions are searched by `user_id` /
`group_id` through the window planner, albums and galleries walked with their list methods.

Calls are the emulator's count of REST requests by method (every attempt, retried faults
included). The bound is `ceil(N/500)` per source (for `commons:*`, the sum over institutions,
since each is its own keyword); "photo calls" are search or list calls, the look-up is counted
apart. Recall is the share of the emulator's truth (`/_emulator/truth?user_id=`, `group_id=`,
`photoset_id=`, `gallery_id=`, `commons=1`) found; "foreign" counts ids outside it. Clocks are
scaled so waiting never dominates. Writes bench/results/planner_sources.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from bench import common
from harvester.config import PlannerConfig
from harvester.emulator import EmulatorConfig, RunningEmulator, run_emulator
from harvester.emulator.corpus import Corpus, cached_corpus
from harvester.emulator.lists import lists_of
from harvester.lookups import Resolver
from harvester.search.listings import search_source
from harvester.search.queries import parse_queries
from harvester.search.source_lines import resolved_query

PHOTOS = 200_000
TIME_SCALE = 1e6
PER_PAGE = 500
NOW = 1_790_000_000 + 86_400  # a day after the corpus's last upload
LIST_METHODS = ("flickr.photosets.getPhotos", "flickr.galleries.getPhotos")
PHOTO_METHODS = ("flickr.photos.search", *LIST_METHODS)
RESULTS_MD = common.RESULTS / "planner_sources.md"

log = logging.getLogger("bench.planner_sources")


@dataclass(frozen=True, slots=True)
class Case:
    """One source line to measure, with the truth query that says which photos it holds."""

    kind: str
    label: str
    line: str
    truth: dict[str, str]


@dataclass(frozen=True, slots=True)
class Result:
    """What one source cost and found."""

    kind: str
    label: str
    line: str
    n: int
    bound: int
    photo_calls: int
    retries: int  # of those calls, retried transient faults (the profile injects 1.5 %)
    lookup_calls: int
    method: str
    found: int
    foreign: int
    keywords: int
    wall_s: float

    @property
    def recall(self) -> float:
        """Share of the truth found."""
        return self.found / self.n if self.n else 1.0

    @property
    def ratio(self) -> float:
        """Photo calls over the bound."""
        return self.photo_calls / self.bound if self.bound else math.inf


def cases(corpus: Corpus, quick: bool) -> list[Case]:
    """The sources measured: each type at the sizes its layer offers."""
    layer = lists_of(corpus)
    counts = sorted(
        ((int((corpus.cols["owner"] == o).sum()), o) for o in range(len(corpus.owner_nsid))),
        reverse=True,
    )
    big = counts[0][1]
    mid = min(counts, key=lambda c: abs(math.log((c[0] + 1) / 2000)))[1]
    small = min(counts, key=lambda c: abs(math.log((c[0] + 1) / 200)))[1]
    albums = sorted((a for a in layer.albums.values() if not a.private), key=lambda a: -a.rows.size)
    galleries = sorted(layer.galleries.values(), key=lambda g: -g.rows.size)
    groups = sorted(layer.groups.values(), key=lambda g: -g.rows.size)
    out = [
        _user("largest", corpus.owner_nsid[big]),
        _user("mid", corpus.owner_nsid[mid]),
        _user("small", corpus.owner_nsid[small]),
        Case("album", "largest", f"album:{albums[0].list_id}", {"photoset_id": albums[0].list_id}),
        Case(
            "album",
            "mid",
            f"album:{albums[len(albums) // 2].list_id}",
            {"photoset_id": albums[len(albums) // 2].list_id},
        ),
        Case(
            "gallery",
            "500",
            f"gallery:{galleries[0].list_id}",
            {"gallery_id": galleries[0].list_id},
        ),
        Case("group", "largest", f"group:{groups[0].list_id}", {"group_id": groups[0].list_id}),
        Case(
            "group",
            "small",
            f"group:https://www.flickr.com/groups/{groups[-2].alias}/",
            {"group_id": groups[-2].list_id},
        ),
        Case("commons", "all", "commons:*", {"commons": "1"}),
    ]
    return [c for c in out if c.label in ("largest", "500", "all")] if quick else out


def _user(label: str, nsid: str) -> Case:
    return Case("user", label, f"user:{nsid}", {"user_id": nsid})


async def by_method(emu: RunningEmulator) -> dict[str, int]:
    """The emulator's REST calls so far, by method."""
    return {k: int(v) for k, v in (await emu.stats())["by_method"].items()}


async def measure(emu: RunningEmulator, case: Case) -> Result:
    """Resolve and harvest one source line as `harvest run` does (metadata only)."""
    kq = parse_queries(f"{case.line}\n", "<bench>").keywords[0]
    assert kq.source is not None
    truth = set(await emu.truth(**case.truth))
    before = await by_method(emu)
    start = time.perf_counter()
    found: set[str] = set()
    async with common.scaled_client(emu, TIME_SCALE) as client:
        members, _via = await Resolver(client).resolve(kq.source)
        lookups = await by_method(emu)
        bound = 0
        for member in members:
            source = resolved_query(kq, member)
            if member.kind == "commons":
                bound += max(1, math.ceil(len(await emu.truth(user_id=member.source_id)) / 500))
            stream = search_source(source, client, client, plan_config=PlannerConfig(), now=NOW)
            async with contextlib.aclosing(stream) as results:
                async for result in results:
                    found.update(p.id for p in getattr(result, "photos", ()))
        retries = client.stats.retries_total
    wall = time.perf_counter() - start
    after = await by_method(emu)
    delta = {k: n - before.get(k, 0) for k, n in after.items()}
    looked = sum(n - before.get(k, 0) for k, n in lookups.items())
    photo_calls = sum(delta.get(m, 0) for m in PHOTO_METHODS)
    method = "list walk" if any(delta.get(m, 0) for m in LIST_METHODS) else "search + planner"
    return Result(
        kind=case.kind,
        label=case.label,
        line=case.line if len(case.line) < 48 else case.line[:45] + "...",
        n=len(truth),
        bound=bound or max(1, math.ceil(len(truth) / PER_PAGE)),
        photo_calls=photo_calls,
        retries=retries,
        lookup_calls=looked,
        method=method,
        found=len(found & truth),
        foreign=len(found - truth),
        keywords=len(members),
        wall_s=wall,
    )


HEADERS = ("source", "size", "N", "method", "photo calls", "retried", "ceil(N/500)", "ratio",
           "look-ups", "recall", "foreign")  # fmt: skip


def table_rows(results: Sequence[Result]) -> list[list[str]]:
    """One row per source."""
    return [
        [
            r.kind,
            r.label,
            f"{r.n:,}",
            r.method,
            str(r.photo_calls),
            str(r.retries),
            str(r.bound),
            f"{r.ratio:.2f}",
            str(r.lookup_calls),
            f"{100 * r.recall:.1f} %",
            str(r.foreign),
        ]
        for r in results
    ]


def markdown(results: Sequence[Result]) -> str:
    """The results as a markdown table."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(results)]
    return "\n".join(lines)


async def run_all(photos: int, seed: int, quick: bool) -> list[Result]:
    """Build the corpus, start the emulator, measure every case."""
    cfg = EmulatorConfig(host="127.0.0.1", port=0, seed=seed, photos=photos, profile="realistic",
                         time_scale=TIME_SCALE)  # fmt: skip
    corpus = await asyncio.to_thread(cached_corpus, cfg.seed, cfg.photos, cfg.end_ts)
    results = []
    async with run_emulator(cfg, corpus) as emu:
        for case in cases(corpus, quick):
            results.append(await measure(emu, case))
            log.info("%s %s: %s", case.kind, case.label, results[-1])
    return results


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """--photos, --seed, --quick."""
    parser = argparse.ArgumentParser(prog="python -m bench.planner_sources")
    parser.add_argument("--photos", type=int, default=PHOTOS, help="corpus size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="the largest source of each type")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table, write the results."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    t0 = time.perf_counter()
    results = asyncio.run(run_all(args.photos, args.seed, args.quick))
    table = markdown(results)
    print("\nAPI economy per source type (photo calls vs ceil(N/500); look-ups apart)\n")
    print(table)
    command = " ".join(["python", "-m", "bench.planner_sources", *(argv or sys.argv[1:])])
    payload = {
        "command": command,
        "photos": args.photos,
        "seed": args.seed,
        "profile": "realistic",
        "results": [{**asdict(r), "recall": r.recall, "ratio": r.ratio} for r in results],
        "total_wall_s": time.perf_counter() - t0,
        "machine": common.machine(),
    }
    common.write_result("planner_sources", payload)
    RESULTS_MD.write_text(f"`{command}`\n\n{table}\n", encoding="utf-8")
    print(f"\nwrote {RESULTS_MD} and {common.RESULTS / 'planner_sources.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
