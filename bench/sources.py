"""Sources benchmark: the v2→v3 migration, the dry run and the back-fill of N photos.

    python -m bench.sources --photos 1000000 [--dir /tmp/x]

A store of N done photos (records of about 1 KB; 1.5 % by the built-in map's accounts, the
rest by distinct owners) is written as a version-2 store (no source column), then opened
(the migration: ADD COLUMN and the source index), counted per source (`harvest sources`'s
dry run), back-filled (`--apply`) and back-filled again (nothing to change: the cost of
running it once more after a harvest). Prints a table and writes bench/results/sources.json.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from bench import common
from harvester.config import WritePolicy
from harvester.dataset.sources import BUILTIN_SOURCES, SourceMap, plan_backfill
from harvester.sources import backfill
from harvester.store.sources import SourcesStore
from harvester.store.sqlite import Store

INSTITUTION_SHARE = 0.015


def _rows(n: int) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(0)
    accounts = [nsid for nsids in BUILTIN_SOURCES.values() for nsid in nsids]
    for i in range(1, n + 1):
        owner = (
            rng.choice(accounts)
            if rng.random() < INSTITUTION_SHARE
            else f"{rng.randrange(10**7, 2 * 10**8)}@N0{rng.randrange(9)}"
        )
        record: dict[str, Any] = {"id": str(i), "owner": owner, "secret": "0123456789"}
        record |= {"server": "65535", "title": "t" * 80, "description": "d" * 700}
        record["tags"] = ["a", "b", "c"]
        path = f"kw/{i // 1000 + 1:05d}/{i}.jpg"
        yield (i, "kw", "done", path, "ab" * 32, 1024, 683, "l", orjson.dumps(record).decode(), i)


def _version_2_store(path: Path, n: int) -> None:
    """A store as version 2 left it: today's schema less photos.source, version 2 in meta."""
    Store.open(path).close()
    db = sqlite3.connect(path)
    db.executescript(
        "DROP INDEX photos_source; DROP INDEX photos_source_status;"
        " ALTER TABLE photos DROP COLUMN source;"
        "UPDATE meta SET value = '2' WHERE key = 'schema_version';"
    )
    db.executemany(
        "INSERT INTO photos (id, keyword, status, path, sha256, width, height, size_label,"
        " record, seq, claimed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1.0)",
        _rows(n),
    )
    db.commit()
    db.close()


def _timed(what: dict[str, float], name: str, start: float) -> None:
    what[name] = round(time.perf_counter() - start, 3)


def bench(n: int, tmp: Path) -> dict[str, Any]:
    """Time each step on a fresh store of n photos."""
    path = tmp / f"sources-{n}.sqlite"
    _version_2_store(path, n)
    times: dict[str, float] = {}
    start = time.perf_counter()
    store = Store.open(path)
    _timed(times, "migrate_s", start)
    smap = SourceMap.builtin()
    with store:
        start = time.perf_counter()
        plan = plan_backfill(SourcesStore(store).owner_counts(smap.by_owner), smap)
        _timed(times, "dry_run_s", start)
        start = time.perf_counter()
        first = backfill(store, smap, out=tmp, rewrite_files=False, write=WritePolicy())
        _timed(times, "apply_s", start)
        start = time.perf_counter()
        again = backfill(store, smap, out=tmp, rewrite_files=False, write=WritePolicy())
        _timed(times, "apply_again_s", start)
        start = time.perf_counter()
        counts = SourcesStore(store).source_counts()
        _timed(times, "counts_by_index_s", start)
    if not first.changed == plan.changes == n - counts["flickr"] or again.changed:
        raise RuntimeError(f"back-fill disagrees with its plan: {first}, {plan.changes}, {again}")
    return {"photos": n, "changed": first.changed, "batches": first.batches, **times}


def main() -> None:
    """Parse arguments, run each size, print the table, write the JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.sources",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--photos", type=int, action="append", default=None)
    parser.add_argument("--dir", type=Path, default=None, help="where the store files go")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        results = [bench(n, Path(tmp)) for n in args.photos or [1_000_000]]
    headers = ["photos", "changed", "migrate s", "dry run s", "apply s", "again s", "counts s"]
    keys = ["photos", "changed", "migrate_s", "dry_run_s", "apply_s", "apply_again_s"]
    common.print_table(headers, [[r[k] for k in keys] + [r["counts_by_index_s"]] for r in results])
    print(f"wrote {common.write_result('sources', {'results': results})}")


if __name__ == "__main__":
    main()
