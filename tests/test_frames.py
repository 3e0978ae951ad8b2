"""Frame detection: harvest's detector vs Berg/Hays on the labelled real-photo set, and units."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pytest

from harvester.config import FrameMethod, ImagePolicy
from harvester.images import frames
from harvester.images.decoding import eighth_gray, open_source
from harvester.images.frames import (
    CropBox,
    Gray,
    coarse_borders,
    hays_borders,
    luma,
    refine_borders,
)
from harvester.images.process import ProcessedImage, process_image
from harvester.images.provenance import Provenance
from harvester.records import PhotoRecord
from tests.harness import requires_recordings
from tests.imagesets import (
    FLICKR_JPEG,
    Scores,
    add_frame,
    evaluate,
    labelled_set,
    photograph,
)

PROV = Provenance.from_record(
    PhotoRecord(id="1", owner="1@N01", secret="ab", server="1"),
    keywords=("t",),
    size_label="l",
    source_url="",
    harvested_at=datetime(2026, 1, 1, tzinfo=UTC),
)


def _detector(method: FrameMethod) -> Callable[[bytes], CropBox | None]:
    policy = ImagePolicy(min_side=1, frame_method=method)

    def predict(data: bytes) -> CropBox | None:
        result = process_image(data, PROV, policy)
        assert isinstance(result, ProcessedImage), result
        return result.crop

    return predict


@pytest.fixture(scope="module")
def scores() -> tuple[Scores, Scores]:
    """(harvest, hays) on the labelled set."""
    items = labelled_set()
    return evaluate(_detector("harvest"), items), evaluate(_detector("hays"), items)


@requires_recordings(FLICKR_JPEG)
def test_labelled_set_is_balanced_and_real() -> None:
    items = labelled_set()
    positives = [i for i in items if i.box is not None]
    assert len(positives) >= 40
    assert len(items) - len(positives) >= 15


@requires_recordings(FLICKR_JPEG)
def test_harvest_detector_reaches_target_f1_and_beats_hays(scores: tuple[Scores, Scores]) -> None:
    ours, hays = scores
    assert ours.f1 >= 0.95, ours
    assert ours.f1 > hays.f1, (ours, hays)
    assert ours.precision >= hays.precision


@requires_recordings(FLICKR_JPEG)
def test_harvest_crop_box_is_within_two_pixels(scores: tuple[Scores, Scores]) -> None:
    ours, hays = scores
    assert ours.mae_px <= 1.0
    assert ours.max_err_px <= 2
    assert ours.mae_px < hays.mae_px


@requires_recordings(FLICKR_JPEG)
def test_coarse_then_refine_finds_an_asymmetric_frame_exactly() -> None:
    photo = photograph("flickr")
    framed, box = add_frame(photo, (21, 43, 9, 66), (250, 250, 250))
    gray = luma(framed)
    small = gray[4::8, 4::8]
    coarse = coarse_borders(small)
    assert coarse is not None
    fine = refine_borders(gray, coarse, (small.shape[0], small.shape[1]))
    assert fine.box(*gray.shape) == box


@pytest.mark.parametrize("level", [0, 255])
def test_a_single_uniform_side_is_not_a_frame(level: int) -> None:
    photo = luma(photograph("astronaut")).copy()
    photo[:120] = level  # sky (or a wall) along the top edge only
    assert coarse_borders(photo[4::8, 4::8]) is None


def test_hays_baseline_crops_deepest_ring_plus_twelve_symmetrically() -> None:
    photo = luma(photograph("coffee"))
    framed, _ = add_frame(np.dstack([photo] * 3), (30, 30, 30, 30), (255, 255, 255))
    found = hays_borders(framed[:, :, 0])
    assert found is not None
    assert found.widths() == (42, 42, 42, 42)


def test_hays_baseline_sees_nothing_on_a_plain_photo() -> None:
    assert hays_borders(luma(photograph("coffee"))) is None


def _eighth(data: bytes) -> Gray:
    """The strict 1/8 greyscale decode process_image gives coarse_borders for a Large."""
    return eighth_gray(open_source(data, 10**9))


@requires_recordings(FLICKR_JPEG)
def test_corner_precheck_changes_no_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cheap corner test before the sides are measured only skips work: on the labelled
    set, plus random and half-uniform arrays, every answer equals the full measurement's."""
    rng = np.random.default_rng(3)
    grays = [_eighth(item.data) for item in labelled_set()]
    grays += [rng.integers(0, 256, (96, 128), dtype=np.uint8) for _ in range(20)]
    for level in (0, 128, 255):
        half = rng.integers(0, 256, (96, 128), dtype=np.uint8)
        half[:, :64] = level  # two sides (top-left corners) agree, the others do not
        grays.append(half)
    fast = [coarse_borders(g) for g in grays]
    monkeypatch.setattr(frames, "_may_start_border", lambda *_: True)
    assert [coarse_borders(g) for g in grays] == fast
    assert any(f is not None for f in fast)
    assert any(f is None for f in fast)
