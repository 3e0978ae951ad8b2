"""Parquet from export rows, every column typed by the column table (columns.TABLE).

pyarrow is imported here only, when a Parquet file is written: `harvest run` never loads it.
Dates become timestamps: `date_upload` (unix seconds; Flickr's 0 for "unknown" is null) in
UTC, `date_taken` naive (owner-local, as Flickr gives it; an unparsable one is null). Lists
stay lists. Rows are written in row groups of `batch_rows`, so memory stays flat.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from harvester.exceptions import HarvestError
from harvester.publish.columns import KINDS, NAMES, TABLE, Kind

BATCH_ROWS = 10_000


def arrow_type(kind: Kind) -> Any:
    """The pyarrow type of a column kind."""
    import pyarrow as pa

    size = pa.struct(
        [
            ("label", pa.string()),
            ("url", pa.string()),
            ("width", pa.int64()),
            ("height", pa.int64()),
        ]
    )
    return {
        Kind.STRING: pa.string(),
        Kind.INT: pa.int64(),
        Kind.FLOAT: pa.float64(),
        Kind.BOOL: pa.bool_(),
        Kind.UNIX_TIME: pa.timestamp("s", tz="UTC"),
        Kind.LOCAL_TIME: pa.timestamp("s"),
        Kind.STRINGS: pa.list_(pa.string()),
        Kind.SIZES: pa.list_(size),
    }[kind]


def arrow_schema() -> Any:
    """The export's Parquet schema, in column order."""
    import pyarrow as pa

    return pa.schema([(column.name, arrow_type(column.kind)) for column in TABLE])


def _unix(value: Any) -> int | None:
    return int(value) if value else None  # 0: Flickr did not say


def local_time(value: Any) -> datetime | None:
    """Flickr's date taken as a naive datetime; None when unknown or not a date."""
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:  # "0000-00-00 00:00:00" and other shapes Flickr has sent
        return None


def _same(value: Any) -> Any:
    return value


_CONVERT: dict[Kind, Callable[[Any], Any]] = {
    Kind.UNIX_TIME: _unix,
    Kind.LOCAL_TIME: local_time,
    Kind.INT: lambda v: None if v is None else int(v),
    Kind.FLOAT: lambda v: None if v is None else float(v),
    Kind.BOOL: lambda v: None if v is None else bool(v),
}


def typed_value(kind: Kind, value: Any) -> Any:
    """One cell as the Python value pyarrow stores for `kind`."""
    return _CONVERT.get(kind, _same)(value)


def record_batch(rows: Sequence[Mapping[str, Any]]) -> Any:
    """A pyarrow RecordBatch of rows, typed by the column table."""
    import pyarrow as pa

    for row in rows:
        if extra := set(row) - KINDS.keys():
            raise HarvestError(  # a new export column: a bug to fix here
                f"export column(s) {', '.join(sorted(extra))} have no type in publish/columns.py"
            )
    arrays = [
        pa.array(
            [typed_value(column.kind, row.get(column.name)) for row in rows],
            arrow_type(column.kind),
        )
        for column in TABLE
    ]
    return pa.RecordBatch.from_arrays(arrays, names=list(NAMES))


def write_parquet(
    rows: Iterable[Mapping[str, Any]], path: Path, *, batch_rows: int = BATCH_ROWS
) -> int:
    """Write rows to a Parquet file at `path` in row groups; returns the row count."""
    import pyarrow.parquet as pq

    count = 0
    with pq.ParquetWriter(str(path), arrow_schema(), compression="zstd") as writer:
        batch: list[Mapping[str, Any]] = []
        for row in rows:
            batch.append(row)
            if len(batch) == batch_rows:
                writer.write_batch(record_batch(batch))
                count, batch = count + len(batch), []
        if batch or not count:  # an empty file still carries the schema
            writer.write_batch(record_batch(batch))
            count += len(batch)
    return count
