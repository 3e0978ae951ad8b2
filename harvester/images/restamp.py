"""Stamp a stored file's metadata anew from its record (`harvest sources --rewrite-files`).

The file's own record (COM JSON) says what the harvest did to it (size, crop, dimensions,
keywords, time); the store's PhotoRecord says who the photo comes from. The two are combined
into fresh APP1/COM segments spliced around the file's compressed data, which is never
decoded or re-encoded: before and after, `jpegmeta.image_data` is byte-identical.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from harvester.exceptions import ImageError
from harvester.images import jpegmeta
from harvester.images.provenance import ImageFacts, Provenance, build_metadata, downloaded_size
from harvester.records import PhotoRecord


def file_record(data: bytes) -> dict[str, Any]:
    """The record harvest wrote into a file's COM segment; ImageError if there is none."""
    info = jpegmeta.parse_jpeg(data)
    com = next((s for s in info.segments if s.marker == jpegmeta.COM), None)
    if com is None:
        raise ImageError("no harvest record in the file (no COM segment)")
    try:
        meta = orjson.loads(com.payload(data))
    except orjson.JSONDecodeError:
        raise ImageError("the file's COM segment is not a harvest record") from None
    if not isinstance(meta, dict) or "id" not in meta:
        raise ImageError("the file's COM segment is not a harvest record")
    return meta


def is_current(meta: dict[str, Any], record: PhotoRecord) -> bool:
    """Whether the file's record already says what the store does (this layout, this source)."""
    return meta.get("source") == record.source and isinstance(meta.get("downloaded"), dict)


def restamped(data: bytes, record: PhotoRecord) -> list[jpegmeta.Buffer] | None:
    """The file's buffers with metadata from `record`, or None when it is already current."""
    meta = file_record(data)
    if str(meta["id"]) != record.id:
        raise ImageError(f"the file holds photo {meta['id']}, not {record.id}")
    if is_current(meta, record):
        return None
    prov = Provenance.from_record(
        record,
        keywords=tuple(meta.get("keywords") or ()),
        size_label=str(meta.get("size") or ""),
        source_url=str(meta.get("source_url") or ""),
        harvested_at=datetime.fromisoformat(str(meta["harvested_at"])),
    )
    built = build_metadata(prov, _facts(meta))
    return jpegmeta.embed_parts(data, jpegmeta.parse_jpeg(data), built.app1, built.com)


def _facts(meta: dict[str, Any]) -> ImageFacts:
    stored = meta.get("stored") or {}
    size = downloaded_size(meta)
    if size is None or not {"width", "height"} <= stored.keys():
        raise ImageError("the file's record lacks its dimensions")
    return ImageFacts(
        source_width=size[0],
        source_height=size[1],
        width=int(stored["width"]),
        height=int(stored["height"]),
        crop=_crop(meta.get("crop")),
        reencoded=bool(meta.get("reencoded")),
    )


def _crop(value: Any) -> tuple[int, int, int, int] | None:
    if not isinstance(value, list) or len(value) != 4:
        return None
    left, top, right, bottom = (int(v) for v in value)
    return left, top, right, bottom
