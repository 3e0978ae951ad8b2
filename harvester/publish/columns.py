"""The export's columns, each with its type: one table read by every format.

`harvest export` writes these columns in this order (JSONL keys, the CSV header); the Parquet
writer types them from the same table, and the Hugging Face metadata is these columns too.
A column added to the export must be added here with its type: tests/test_publish.py checks
that the table and a real export row name the same columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    """A column's type, as Parquet holds it."""

    STRING = "string"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    UNIX_TIME = "unix time"  # unix seconds, UTC (0 = unknown): a UTC timestamp
    LOCAL_TIME = "local time"  # Flickr's "YYYY-MM-DD HH:MM:SS", owner-local: a naive timestamp
    STRINGS = "strings"  # a list of strings (tags, keywords)
    SIZES = "sizes"  # a list of {label, url, width, height}


@dataclass(frozen=True, slots=True)
class Column:
    """One export column: its name and type."""

    name: str
    kind: Kind


S, N, F = Kind.STRING, Kind.INT, Kind.FLOAT  # the common kinds, short for the table

#: Every export column, in the order of the JSONL keys and the CSV header.
TABLE: tuple[Column, ...] = (
    # the PhotoRecord's fields (harvester.records), in their order
    Column("id", S),
    Column("owner", S),
    Column("secret", S),
    Column("server", S),
    Column("farm", N),
    Column("title", S),
    Column("description", S),
    Column("owner_name", S),
    Column("tags", Kind.STRINGS),
    Column("license", N),
    Column("date_upload", Kind.UNIX_TIME),
    Column("date_taken", Kind.LOCAL_TIME),
    Column("date_taken_granularity", N),
    Column("date_taken_unknown", Kind.BOOL),  # Flickr's datetakenunknown: date_taken is upload's
    Column("latitude", F),
    Column("longitude", F),
    Column("accuracy", N),
    Column("views", N),
    Column("original_secret", S),
    Column("original_format", S),
    Column("o_width", N),
    Column("o_height", N),
    Column("media", S),
    Column("sizes", Kind.SIZES),
    Column("source", S),  # the institution (harvest sources); "flickr" for anyone else
    # what the store adds (export.row_dict)
    Column("dateupload", Kind.UNIX_TIME),
    Column("license_name", S),
    Column("license_url", S),
    Column("keyword", S),
    Column("keywords", Kind.STRINGS),
    Column("status", S),
    Column("reason", S),
    Column("attempts", N),
    Column("path", S),
    Column("sha256", S),
    Column("stored_width", N),
    Column("stored_height", N),
    Column("size_label", S),
    Column("duplicate_of", S),
    Column("duplicate_kind", S),
)

NAMES: tuple[str, ...] = tuple(column.name for column in TABLE)
KINDS: dict[str, Kind] = {column.name: column.kind for column in TABLE}

DEFAULT_SOURCE = "flickr"


def source_of(row: Mapping[str, Any]) -> str:
    """The institution a photo comes from: the row's `source`, or "flickr" where it has none.

    The one place that reads it, so the outputs work on exports made before rows had a source.
    """
    return str(row.get("source") or DEFAULT_SOURCE)
