"""bench.ray: the CPU of each further image leaves every fixed cost out."""

from __future__ import annotations

import math

import pytest

from bench.ray import marginal_cpu


@pytest.mark.parametrize(
    ("half", "full", "expected"),
    [
        # 5 CPU-s fixed, 20 ms an image: 5 + 10 at 500 images, 5 + 20 at 1,000
        ({"images": 500, "cpu_s": 15.0}, {"images": 1000, "cpu_s": 25.0}, 0.020),
        # a fixed cost alone changes nothing
        ({"images": 500, "cpu_s": 110.0}, {"images": 1000, "cpu_s": 120.0}, 0.020),
    ],
)
def test_marginal_cpu_is_the_slope_between_the_runs(
    half: dict[str, float], full: dict[str, float], expected: float
) -> None:
    assert marginal_cpu(half, full) == pytest.approx(expected)


def test_marginal_cpu_of_runs_with_the_same_images_is_undefined() -> None:
    assert math.isnan(marginal_cpu({"images": 7, "cpu_s": 1.0}, {"images": 7, "cpu_s": 2.0}))
