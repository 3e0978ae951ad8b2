"""`harvest export`: every photo of a store as JSONL or CSV, streamed row by row.

One row per photo: the full PhotoRecord (field names as in harvester.records), its licence
name and URL, the keyword that claimed it and every keyword that found it, its status and
reason, and the stored file (path, sha256, stored size). Memory stays flat whatever the size
of the store: rows are read in batches and written as they come.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import orjson

from harvester.exceptions import ConfigError
from harvester.licenses import license_for
from harvester.publish.columns import NAMES
from harvester.store.rows import ExportRow
from harvester.store.sqlite import Store

FORMATS = ("jsonl", "csv")
_EXTRA_FIELDS = (
    "dateupload",  # Flickr's name for date_upload (unix seconds), as the Openverse ingester reads
    "license_name",
    "license_url",
    "keyword",
    "keywords",
    "status",
    "reason",
    "attempts",
    "path",
    "sha256",
    "stored_width",
    "stored_height",
    "size_label",
    "duplicate_of",  # the representative of its duplicate group (`harvest dupes`), if a copy
    "duplicate_kind",
)
#: Column order of every format: the typed column table's (publish/columns.py), which must
#: name exactly the record's fields and the extras above (tests/test_publish.py holds them).
COLUMNS: tuple[str, ...] = NAMES
_LIST_SEP = "|"  # joins keywords in CSV (a keyword may contain spaces; tags never do)


def export(store_path: Path, fmt: str, out: IO[str], *, duplicates: bool = True) -> int:
    """Write every photo of the store at `store_path` to `out` as `fmt`; returns the count.

    `duplicates=False` leaves out every photo that is a copy of its group's representative.
    """
    writers: dict[str, Callable[[Iterable[dict[str, Any]], IO[str]], int]] = {
        "jsonl": write_jsonl,
        "csv": write_csv,
    }
    if fmt not in writers:
        raise ConfigError(f"unknown export format {fmt!r} (choose from {', '.join(FORMATS)})")
    with Store.open(store_path, readonly=True) as store:
        rows = (r for r in store.iter_export() if duplicates or r.duplicate_of is None)
        return writers[fmt]((row_dict(row) for row in rows), out)


def row_dict(row: ExportRow) -> dict[str, Any]:
    """One photo as a flat mapping in COLUMNS order (lists stay lists)."""
    record = orjson.loads(orjson.dumps(row.record))  # dataclass → plain JSON types, fast
    lic = license_for(row.record.license)
    extra = (
        row.record.date_upload,
        lic.name,
        lic.url,
        row.keyword,
        list(row.keywords),
        row.status,
        row.reason,
        row.attempts,
        row.path,
        row.sha256,
        row.width,
        row.height,
        row.size_label,
        row.duplicate_of and str(row.duplicate_of),  # ids are strings, as in the record
        row.duplicate_kind,
    )
    return {**record, **dict(zip(_EXTRA_FIELDS, extra, strict=True))}


def write_jsonl(rows: Iterable[dict[str, Any]], out: IO[str]) -> int:
    """One JSON object per line."""
    count = 0
    for row in rows:
        out.write(orjson.dumps(row).decode())
        out.write("\n")
        count += 1
    return count


def write_csv(rows: Iterable[dict[str, Any]], out: IO[str]) -> int:
    """A header and one line per photo; tags space-joined, keywords `|`-joined, sizes JSON."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    count = 0
    for row in rows:
        writer.writerow(_csv_cell(name, row[name]) for name in COLUMNS)
        count += 1
    return count


def _csv_cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name == "tags":
        return " ".join(value)
    if name == "keywords":
        return _LIST_SEP.join(value)
    if isinstance(value, list | dict):
        return orjson.dumps(value).decode()
    return str(value)
