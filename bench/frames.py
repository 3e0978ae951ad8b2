"""Frame detection benchmark: harvest's detector vs the Berg/Hays ring baseline on tests/imagesets.

Run: python -m bench.frames   (prints a table, writes bench/results/frames.json)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

from bench import common
from harvester.config import FrameMethod, ImagePolicy
from harvester.images.frames import CropBox
from harvester.images.process import ProcessedImage, process_image
from harvester.images.provenance import Provenance
from harvester.records import PhotoRecord
from tests.imagesets import evaluate, labelled_set

_PROV = Provenance.from_record(
    PhotoRecord(id="1", owner="1@N01", secret="ab", server="1"),
    keywords=("bench",),
    size_label="l",
    source_url="",
    harvested_at=datetime(2026, 1, 1, tzinfo=UTC),
)


def predictor(method: FrameMethod) -> Callable[[bytes], CropBox | None]:
    """A detector over whole JPEG files through process_image."""
    policy = ImagePolicy(min_side=1, frame_method=method)

    def predict(data: bytes) -> CropBox | None:
        result = process_image(data, _PROV, policy)
        assert isinstance(result, ProcessedImage), result
        return result.crop

    return predict


def main() -> None:
    """Score both methods and time them."""
    items = labelled_set()
    rows = {}
    for method in ("harvest", "hays"):
        start = time.perf_counter()
        scores = evaluate(predictor(method), items)
        elapsed = (time.perf_counter() - start) / len(items) * 1000
        rows[method] = {
            "precision": round(scores.precision, 4),
            "recall": round(scores.recall, 4),
            "f1": round(scores.f1, 4),
            "tp_fp_fn_tn": [scores.tp, scores.fp, scores.fn, scores.tn],
            "box_mae_px": round(scores.mae_px, 2),
            "box_max_err_px": scores.max_err_px,
            "ms_per_image_process": round(elapsed, 2),
        }
    print(f"{len(items)} images")
    print(f"{'method':8} {'P':>6} {'R':>6} {'F1':>6} {'MAE px':>7} {'max px':>7} {'ms/img':>7}")
    for method, r in rows.items():
        print(
            f"{method:8} {r['precision']:6.3f} {r['recall']:6.3f} {r['f1']:6.3f} "
            f"{r['box_mae_px']:7.2f} {r['box_max_err_px']:7d} {r['ms_per_image_process']:7.2f}"
        )
    out = common.RESULTS / "frames.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    print(f"wrote {out.relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
