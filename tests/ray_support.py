"""Helpers of the --ray tests (tests/test_ray.py, tests/ray_cluster_cases.py): the one check
they all end with, and the run configuration they share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harvester.cli import build_run_config
from harvester.config import RunConfig
from tests.harness import ThreadedEmulator, assert_consistent, store_rows, write_queries

#: Keywords of the ideal 2,000-photo corpus: about 120 photos between them.
KEYWORDS = ("sky", "nikon")


def assert_exactly_once(out: Path, emu: ThreadedEmulator, keywords: tuple[str, ...]) -> None:
    """Files = store = emulator truth: every matching photo once, none claimed still, every
    file a done photo with the store's bytes, no temporary file, no directory over 1,000."""
    status = assert_consistent(out)
    truth = set().union(*(emu.truth(kw) for kw in keywords))
    assert set(status) == truth, "the store holds exactly the photos the emulator matches"
    assert "claimed" not in status.values(), "no photo left uncommitted"
    per_dir = store_rows(
        out, "SELECT COUNT(*) FROM photos WHERE status = 'done' GROUP BY keyword, seq / 1000"
    )
    assert all(n <= 1000 for (n,) in per_dir)


def ray_config(
    emu: ThreadedEmulator, base: Path, keywords: tuple[str, ...], **given: Any
) -> RunConfig:
    """A `--ray` run against `emu` (the Ray already started), quick settings, `given` on top."""
    base.mkdir(parents=True, exist_ok=True)
    queries = write_queries(base / "queries.txt", keywords)
    settings: dict[str, Any] = {
        "api.rest_url": emu.rest_url,
        "api.calls_per_hour": 1e6,
        "cluster.address": "auto",
        "fetch.concurrency": 8,
        "write.fsync": False,
        "threads": 1,
        "plain": True,
        **given,
    }
    return build_run_config(queries, base / "out", settings)
