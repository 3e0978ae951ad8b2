"""`--ray` on three fake nodes (ray.cluster_utils.Cluster), run in a child process because a
process holds one Ray and the single-node tests share the session's (tests/ray_cluster_cases.py
has the cases; it checks files = store = truth itself and reports what it measured)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.harness import REPO

pytest.importorskip("ray", reason="needs Ray: pip install 'harvest[ray]'")
pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The child's figures (it fails, with its stderr shown, when a check fails)."""
    base = tmp_path_factory.mktemp("cluster")
    proc = subprocess.run(
        [sys.executable, "-m", "tests.ray_cluster_cases", str(base)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_the_cluster_wide_limiter_holds_within_10_percent_on_three_nodes(
    cases: dict[str, Any],
) -> None:
    limiter = cases["limiter"]
    assert limiter["seconds"] >= 5, f"too short a saturated window to judge: {limiter}"
    assert limiter["mean_per_s"] == pytest.approx(limiter["target_per_s"], rel=0.10), limiter


def test_a_node_removed_mid_run_ends_exactly_once(cases: dict[str, Any]) -> None:
    node = cases["node_removed"]
    assert node["removed_mid_run"], "the node went while batches were writing"
    # files = store = truth was checked in the child; the lost batches were sent again
    assert node["resubmitted"] >= 1, node
