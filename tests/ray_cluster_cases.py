"""The multi-node `--ray` cases, on `ray.cluster_utils.Cluster`: a head and two workers, fake
nodes of one CPU each, all in this process.

A process holds one Ray, and the single-node tests share the session's (tests/test_ray.py), so
tests/test_ray_cluster.py runs this module as a child: `python -m tests.ray_cluster_cases BASE`.
It runs each case against one emulator, checks files = store = emulator truth itself (a failed
check exits non-zero with its traceback) and prints one JSON line of what it measured.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import ray
from ray.cluster_utils import Cluster

from harvester.runner import run_command
from tests.harness import ThreadedEmulator, threaded_emulator
from tests.ray_support import assert_exactly_once, ray_config

KEYWORDS = ("nature", "london", "sky", "nikon")  # about 340 photos of the 3,000
LIMIT_PER_S = 20.0  # --image-rate of the limiter case: the whole cluster's (well under demand)
NODE_ARGS: dict[str, Any] = {"num_cpus": 1, "object_store_memory": 96 * 2**20}
SMALL = {  # small images (image_scale): the cases are about requests and tasks, not codecs
    "cluster.batch_photos": 40,
    "sizes.min_side": 0,
    "images.min_side": 0,
}


class Resubmits(logging.Handler):
    """Counts the dispatcher's "attempt N" lines (a batch sent again)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "attempt" in record.getMessage():
            self.count += 1


def limiter_case(emu: ThreadedEmulator, base: Path) -> dict[str, Any]:
    """Three nodes saturating one image host: its requests per second over the run.

    A warm-up run first, so that every node's worker has imported harvest before the
    measured one (a cold worker needs seconds on a loaded 2-core box, and a node still
    starting is not demand the limiter holds back).
    """
    warm = {**SMALL, "cluster.batch_photos": 10, "fetch.rate_per_s": 1000.0}
    assert run_command(ray_config(emu, base / "warm", KEYWORDS[:1], **warm)).code == 0
    before = dict(emu.stats()["images_per_s"])
    # One batch per keyword: four over three nodes, 8 requests in flight each, so demand
    # (160/s per task at 50 ms an image) stays far above the limit from start to end.
    given: dict[str, Any] = {**SMALL, "cluster.batch_photos": 1000, "cluster.lease_block": 4}
    given["fetch.rate_per_s"] = LIMIT_PER_S
    cfg = ray_config(emu, base / "measured", KEYWORDS, **given)
    assert run_command(cfg).code == 0
    assert_exactly_once(base / "measured" / "out", emu, KEYWORDS)
    counts = [n - before.get(s, 0) for s, n in sorted(emu.stats()["images_per_s"].items())]
    counts = [n for n in counts if n > 0]
    inner = counts[1:-1]  # the first and last seconds are partial
    return {
        "target_per_s": LIMIT_PER_S,
        "seconds": len(inner),
        "mean_per_s": sum(inner) / max(1, len(inner)),
        "max_per_s": max(inner, default=0),
        "requests": sum(counts),
        "per_s": counts,
    }


def node_removed_case(
    emu: ThreadedEmulator, base: Path, cluster: Cluster, node: Any
) -> dict[str, Any]:
    """A worker node removed (not gracefully) while its batches write."""
    out = base / "out"
    removed = threading.Event()

    def remove_when_writing() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if out.exists() and sum(1 for _ in out.rglob("*.jpg")) >= 30:
                cluster.remove_node(node, allow_graceful=False)
                removed.set()
                return
            time.sleep(0.05)

    counter = Resubmits()
    logging.getLogger("harvester.cluster_engine").addHandler(counter)
    watcher = threading.Thread(target=remove_when_writing, daemon=True)
    watcher.start()
    cfg = ray_config(emu, base, KEYWORDS, **SMALL, **{"fetch.rate_per_s": 1000.0})
    code = run_command(cfg).code  # the main thread: the run installs signal handlers
    watcher.join(timeout=1)
    assert code == 0
    assert_exactly_once(out, emu, KEYWORDS)
    return {"removed_mid_run": removed.is_set(), "resubmitted": counter.count}


def main(argv: list[str]) -> int:
    """Start the fake cluster, run every case, print the figures as one JSON line."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    base = Path(argv[0])
    started = time.monotonic()
    cluster = Cluster(
        initialize_head=True, head_node_args={**NODE_ARGS, "include_dashboard": False}
    )
    workers = [cluster.add_node(**NODE_ARGS) for _ in range(2)]
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    results: dict[str, Any] = {"cluster_start_s": time.monotonic() - started}
    try:
        with threaded_emulator(
            photos=3000, seed=0, profile="ideal", image_delay_s=0.05, image_scale=0.25
        ) as emu:
            os.environ["FLICKR_API_KEY"] = emu.api_key
            results["limiter"] = limiter_case(emu, base / "limiter")
            results["node_removed"] = node_removed_case(emu, base / "node", cluster, workers[1])
    finally:
        ray.shutdown()
        cluster.shutdown()  # type: ignore[no-untyped-call]
    results["total_s"] = time.monotonic() - started
    print(json.dumps(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
