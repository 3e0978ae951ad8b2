"""What the image stage did to a stored photo, and the words a credit uses for it.

CC 4.0 §3(a)(1)(B) asks a re-user to say whether the material was modified. The store knows
enough to say it without opening the files: the size of the image downloaded (the search
record's size of `size_label`), the content kept after the frame strip (the fingerprint's
content box) and the stored file's size. Where the store cannot tell (no fingerprint, no
reported size), the record harvest wrote into the file itself says (`from_file_record`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Size = tuple[int, int]

FRAME_REMOVED = "frame removed"
_CONVERTED = frozenset({"png", "gif"})  # an Original in these formats is stored as a JPEG


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageChanges:
    """The downloaded image's size, the part kept (frame removed), the stored file's size."""

    source: Size
    content: Size
    stored: Size
    converted_from: str | None = None

    @property
    def frame_removed(self) -> bool:
        """A uniform border was cut off (the content box is not the whole image, either way up)."""
        return self.content not in (self.source, self.source[::-1])

    @property
    def resized(self) -> bool:
        """The kept content was scaled down to the stored size."""
        return max(self.stored) < max(self.content)

    def describe(self) -> tuple[str, ...]:
        """The modifications in words; empty when the pixels are the ones downloaded."""
        said: list[str] = []
        if self.frame_removed:
            said.append(f"{FRAME_REMOVED} (kept {_px(self.content)} of {_px(self.source)})")
        if self.resized:
            said.append(f"resized to {max(self.stored)} px on the long side")
        if self.converted_from:
            said.append(f"converted from {self.converted_from.upper()} to JPEG")
        return tuple(said)


def _px(size: Size) -> str:
    return f"{size[0]}x{size[1]}"


def downloaded_size(row: Mapping[str, Any]) -> Size | None:
    """The size Flickr reported for the variant downloaded (`size_label`), if it did."""
    label = row.get("size_label")
    for variant in row.get("sizes") or ():
        if variant.get("label") == label and variant.get("width") and variant.get("height"):
            return int(variant["width"]), int(variant["height"])
    if label == "o" and row.get("o_width") and row.get("o_height"):
        return int(row["o_width"]), int(row["o_height"])
    return None


def from_store(row: Mapping[str, Any], content: Size | None) -> ImageChanges | None:
    """The changes from an export row and its fingerprint's content box; None if unknowable."""
    source = downloaded_size(row)
    stored = row.get("stored_width"), row.get("stored_height")
    if source is None or content is None or None in stored:
        return None
    return ImageChanges(
        source=source,
        content=content,
        stored=(int(stored[0] or 0), int(stored[1] or 0)),
        converted_from=_converted(row),
    )


def from_file_record(row: Mapping[str, Any], meta: Mapping[str, Any]) -> ImageChanges | None:
    """The changes from the JSON record in the stored file (its `downloaded` size, or `source`
    in files written before sources, and its `crop`, `stored`)."""
    try:
        size = meta["downloaded"] if "downloaded" in meta else meta["source"]
        source = int(size["width"]), int(size["height"])
        stored = int(meta["stored"]["width"]), int(meta["stored"]["height"])
        crop = meta.get("crop")
        content = (int(crop[2]) - int(crop[0]), int(crop[3]) - int(crop[1])) if crop else source
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    return ImageChanges(
        source=source, content=content, stored=stored, converted_from=_converted(row)
    )


def _converted(row: Mapping[str, Any]) -> str | None:
    fmt = str(row.get("original_format") or "").lower()
    return fmt if row.get("size_label") == "o" and fmt in _CONVERTED else None


UNKNOWN = "not recorded"
NONE = "none"


def modifications_text(changes: ImageChanges | None) -> str:
    """One cell: the modifications joined by "; ", "none", or "not recorded"."""
    if changes is None:
        return UNKNOWN
    return "; ".join(changes.describe()) or NONE
