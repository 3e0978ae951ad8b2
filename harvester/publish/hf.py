"""The Hugging Face imagefolder metadata: one JSON line per stored image, `file_name` first.

`datasets.load_dataset("imagefolder", data_dir=OUT)` reads OUT/metadata.jsonl, pairs each line
with the image at `file_name` (relative to OUT) and takes every other key as a column. It
infers the columns' types from the file's first block (10 MB, about 6,000 rows) and holds the
rest to them, so a column that is null in every row of that block (no duplicates yet among
the first thousands of photos, say) would be typed null and break on the first value after
it. `leading_rows` picks the few rows that show every column's type, to be written first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from harvester.publish.tables import local_time

FILE_NAME = "file_name"
METADATA = "metadata.jsonl"
#: Export columns that say nothing about a stored image (always "done", no reason) or that
#: `file_name` replaces.
DROPPED = frozenset({"path", "status", "reason", "attempts"})


def metadata_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored photo's export row as a metadata line: `file_name` (its path), then the rest.

    `date_taken` is null where it is not a date ("0000-00-00 00:00:00"): the reader infers a
    timestamp column from the dates it sees first and would fail on the first one that is not.
    """
    line = {FILE_NAME: row["path"], **{k: v for k, v in row.items() if k not in DROPPED}}
    if "date_taken" in line:
        taken = local_time(line["date_taken"])
        line["date_taken"] = None if taken is None else taken.isoformat(sep=" ")
    return line


def _shows_type(value: Any) -> bool:
    """A value from which a JSON reader learns the column's type (not null, not [])."""
    return value is not None and value != []


def leading_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows, in order, that first show a type for some column: written first, they make
    every column that is ever set typed from the first block. Stops once all are shown."""
    unseen: set[str] | None = None
    chosen: list[dict[str, Any]] = []
    for row in rows:
        if unseen is None:
            unseen = set(row)
        shown = {key for key in unseen if _shows_type(row.get(key))}
        if shown:
            chosen.append(dict(row))
            unseen -= shown
        if not unseen:
            break
    return chosen
