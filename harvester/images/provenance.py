"""The provenance record stamped into every file: built from a PhotoRecord, serialised as JSON.

The same JSON goes into EXIF UserComment (ASCII-escaped, so every reader gets exact bytes back)
and a COM segment (UTF-8). Both must fit a 65,533-byte segment: long fields are truncated
deterministically (description, then tags, then title) and the record says `"truncated": true`.
The API key is never part of a record: nothing here receives it, and source URLs lose their query.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from harvester.exceptions import ImageError
from harvester.images.jpegmeta import ExifFields, com_segment, exif_segment, user_comment_ascii
from harvester.licenses import license_for
from harvester.records import DEFAULT_SOURCE, PhotoRecord

_TAKEN = re.compile(r"(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})")
_EXIF_TITLE_CHARS = 2000  # ImageDescription is a convenience copy; the full title is in the JSON


@dataclass(frozen=True, slots=True, kw_only=True)
class Provenance:
    """Everything known about a photo before its pixels are processed."""

    id: str
    owner: str
    owner_name: str
    secret: str
    server: str
    title: str
    description: str
    tags: tuple[str, ...]
    license_id: int
    license_name: str
    license_url: str
    date_taken: str | None
    date_taken_granularity: int
    date_taken_unknown: bool
    date_upload: int
    latitude: float | None
    longitude: float | None
    accuracy: int | None
    views: int | None
    source_url: str
    keywords: tuple[str, ...]
    size_label: str
    original_width: int | None
    original_height: int | None
    harvested_at: str  # ISO 8601, UTC
    source: str = DEFAULT_SOURCE  # the institution (harvester.dataset.sources) or "flickr"

    @classmethod
    def from_record(
        cls,
        record: PhotoRecord,
        *,
        keywords: tuple[str, ...],
        size_label: str,
        source_url: str,
        harvested_at: datetime,
    ) -> Provenance:
        """Combine a search result with what the harvest knows (keywords, size, URL, time)."""
        lic = license_for(record.license)
        return cls(
            id=record.id,
            owner=record.owner,
            owner_name=record.owner_name,
            secret=record.secret,
            server=record.server,
            title=record.title,
            description=record.description,
            tags=record.tags,
            license_id=lic.id,
            license_name=lic.name,
            license_url=lic.url,
            date_taken=record.date_taken,
            date_taken_granularity=record.date_taken_granularity,
            date_taken_unknown=record.date_taken_unknown,
            date_upload=record.date_upload,
            latitude=record.latitude,
            longitude=record.longitude,
            accuracy=record.accuracy,
            views=record.views,
            source_url=strip_query(source_url),
            keywords=keywords,
            size_label=size_label,
            original_width=record.o_width,
            original_height=record.o_height,
            harvested_at=_iso(harvested_at),
            source=record.source,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageFacts:
    """What processing learned: dimensions, crop box (left, top, right, bottom), re-encoding."""

    source_width: int
    source_height: int
    width: int
    height: int
    crop: tuple[int, int, int, int] | None
    reencoded: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Metadata:
    """The record as JSON plus the two JPEG segments that carry it."""

    record_json: bytes  # UTF-8, exactly the COM payload
    app1: bytes
    com: bytes
    truncated: bool


def strip_query(url: str) -> str:
    """The URL without query or fragment, so no credential can ride along into a file."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def record_dict(prov: Provenance, facts: ImageFacts) -> dict[str, Any]:
    """The full record, DESIGN.md §2 order (sha256 is returned separately: it cannot be inside).

    `source` names who the photo comes from; the downloaded file's dimensions are `downloaded`
    (files written before sources were known have them under `source`: see `downloaded_size`).
    """
    return {
        "id": prov.id,
        "source": prov.source,
        "owner": prov.owner,
        "owner_name": prov.owner_name,
        "secret": prov.secret,
        "server": prov.server,
        "title": prov.title,
        "description": prov.description,
        "tags": list(prov.tags),
        "license": {"id": prov.license_id, "name": prov.license_name, "url": prov.license_url},
        "date_taken": prov.date_taken,
        "date_taken_granularity": prov.date_taken_granularity,
        "date_taken_unknown": prov.date_taken_unknown,
        "date_upload": prov.date_upload,
        "latitude": prov.latitude,
        "longitude": prov.longitude,
        "accuracy": prov.accuracy,
        "views": prov.views,
        "source_url": prov.source_url,
        "keywords": list(prov.keywords),
        "size": prov.size_label,
        "original": {"width": prov.original_width, "height": prov.original_height},
        "downloaded": {"width": facts.source_width, "height": facts.source_height},
        "stored": {"width": facts.width, "height": facts.height},
        "crop": list(facts.crop) if facts.crop else None,
        "reencoded": facts.reencoded,
        "harvested_at": prov.harvested_at,
        "truncated": False,
    }


def exif_fields(prov: Provenance, user_comment: bytes) -> ExifFields:
    """Map the record onto the standard EXIF tags (Artist, Copyright, ImageDescription, ...)."""
    artist = f"{prov.owner_name} ({prov.owner})" if prov.owner_name else prov.owner
    rights = f"{prov.license_name} ({prov.license_url})" if prov.license_url else prov.license_name
    gps = None
    if prov.latitude is not None and prov.longitude is not None:
        gps = (prov.latitude, prov.longitude)
    return ExifFields(
        artist=artist,
        copyright=rights,
        description=prov.title[:_EXIF_TITLE_CHARS],
        user_comment=user_comment,
        # An unknown date taken is the upload time in disguise: better no DateTimeOriginal.
        datetime_original=None if prov.date_taken_unknown else exif_datetime(prov.date_taken),
        gps=gps,
    )


def downloaded_size(record: dict[str, Any]) -> tuple[int, int] | None:
    """The downloaded file's (width, height) from a file's record, in either layout."""
    size = record.get("downloaded") or record.get("source")
    if not isinstance(size, dict) or not {"width", "height"} <= size.keys():
        return None
    return int(size["width"]), int(size["height"])


def exif_datetime(taken: str | None) -> str | None:
    """Flickr's "YYYY-MM-DD HH:MM:SS" as EXIF "YYYY:MM:DD HH:MM:SS"; None if not that shape."""
    match = _TAKEN.fullmatch(taken or "")
    if not match or match.group(1) == "0000":
        return None
    y, mo, d, h, mi, s = match.groups()
    return f"{y}:{mo}:{d} {h}:{mi}:{s}"


def build_metadata(prov: Provenance, facts: ImageFacts) -> Metadata:
    """JSON record plus APP1/COM segments, truncating long text until both segments fit."""
    record = record_dict(prov, facts)
    built = _try_build(prov, record)
    if built is not None:
        return built
    record["truncated"] = True
    for key in ("description", "tags", "title"):
        record = _shrink(prov, record, key)
        built = _try_build(prov, record)
        if built is not None:
            return built
    raise ImageError("metadata record cannot fit a JPEG segment even when truncated")


def _shrink(prov: Provenance, record: dict[str, Any], key: str) -> dict[str, Any]:
    """The record with record[key] cut to the longest prefix that fits (empty if none does)."""
    full = record[key]

    def cut(n: int) -> dict[str, Any]:
        return {**record, key: full[:n]}

    best = _largest(len(full), lambda n: _try_build(prov, cut(n)) is not None)
    return cut(max(best, 0))


def _try_build(prov: Provenance, record: dict[str, Any]) -> Metadata | None:
    utf8 = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
    escaped = json.dumps(record, ensure_ascii=True, separators=(",", ":"))
    try:
        com = com_segment(utf8)
        app1 = exif_segment(exif_fields(prov, user_comment_ascii(escaped)))
    except ImageError:
        return None
    return Metadata(record_json=utf8, app1=app1, com=com, truncated=bool(record["truncated"]))


def _largest(upper: int, fits: Callable[[int], bool]) -> int:
    """The largest n in [0, upper] with fits(n), assuming monotonicity; -1 if none."""
    lo, hi = -1, upper
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo
