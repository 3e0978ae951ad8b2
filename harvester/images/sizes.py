"""Which size of a photo to download: a pure choice from the search record, no extra API call.

The default is Flickr's Large (`url_l`, 1024 px on the long side, suffix `_b`); where a photo has
none, its Original (`url_o`, or a URL built from `originalsecret`/`originalformat`); then, only
if the policy allows it, the largest smaller size. A size whose long side is known to be under
`min_side` is never chosen: the image stage would reject it anyway, so it is not worth a request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from harvester.config import SizePolicy, SizePreference
from harvester.records import PhotoRecord, SizeVariant

DEFAULT_HOST = "https://live.staticflickr.com"

#: Nominal long side of each url_X label (reference/flickr-api.md §C), used to order sizes
#: whose dimensions the search did not return. The original has no nominal size.
NOMINAL_SIDE: dict[str, int] = {
    "sq": 75,
    "t": 100,
    "q": 150,
    "s": 240,
    "n": 320,
    "w": 400,
    "m": 500,
    "z": 640,
    "c": 800,
    "l": 1024,
    "h": 1600,
    "k": 2048,
    "3k": 3072,
    "4k": 4096,
    "f": 4096,
    "5k": 5120,
    "6k": 6144,
}

ORIGINAL = "o"
_LARGE_LABELS = ("l", "h", "k")  # the fixed sizes that reach 1024 px or more
_HEX = re.compile(r"[0-9a-f]{1,64}")
_DIGITS = re.compile(r"[0-9]{1,32}")
_FORMATS = frozenset({"jpg", "jpeg", "png", "gif"})


@dataclass(frozen=True, slots=True, kw_only=True)
class SizeChoice:
    """The size to download; width/height are 0 where the search did not report them."""

    photo_id: str
    label: str
    url: str
    width: int
    height: int

    @property
    def long_side(self) -> int | None:
        """The known long side in pixels, or None."""
        return max(self.width, self.height) or None


@dataclass(frozen=True, slots=True)
class NoSize:
    """No size worth downloading: an outcome (the photo is skipped), not an error."""

    reason: str


def choose_size(record: PhotoRecord, policy: SizePolicy) -> SizeChoice | NoSize:
    """Pick the size to download for `record` under `policy`."""
    candidates = _candidates(record)
    if not candidates:
        return NoSize("no size: the search returned no image URL")
    ordered = _preferred(candidates, policy)
    if policy.allow_smaller:
        ordered += _smaller(candidates, ordered)
    if not ordered:
        return NoSize("no size: no large or original (smaller sizes not allowed)")
    for variant in ordered:
        side = known_long_side(variant)
        if side is None or side >= policy.min_side:
            return SizeChoice(
                photo_id=record.id,
                label=variant.label,
                url=variant.url,
                width=variant.width,
                height=variant.height,
            )
    best = max(known_long_side(v) or 0 for v in ordered)
    return NoSize(f"too small: {best} px < {policy.min_side}")


def known_long_side(variant: SizeVariant) -> int | None:
    """The long side the search reported, else the label's nominal size, else None."""
    reported = max(variant.width, variant.height)
    if reported > 0:
        return reported
    return NOMINAL_SIDE.get(variant.label)


def original_variant(record: PhotoRecord) -> SizeVariant | None:
    """The Original: url_o when present, else built from originalsecret/originalformat."""
    present = record.size(ORIGINAL)
    if present is not None:
        return present
    secret, fmt = record.original_secret, (record.original_format or "").lower()
    # Every part comes from the API: build a URL only from the shapes Flickr uses.
    if not (secret and _HEX.fullmatch(secret) and fmt in _FORMATS):
        return None
    if not (_DIGITS.fullmatch(record.id) and _DIGITS.fullmatch(record.server)):
        return None
    url = f"{_host(record)}/{record.server}/{record.id}_{secret}_o.{fmt}"
    return SizeVariant(
        label=ORIGINAL, url=url, width=record.o_width or 0, height=record.o_height or 0
    )


def _host(record: PhotoRecord) -> str:
    """Scheme and host of the record's other image URLs (the emulator's, or Flickr's CDN)."""
    for variant in record.sizes:
        parts = urlsplit(variant.url)
        if parts.scheme in ("http", "https") and parts.netloc:
            return f"{parts.scheme}://{parts.netloc}"
    return DEFAULT_HOST


def _candidates(record: PhotoRecord) -> dict[str, SizeVariant]:
    """Every downloadable size by label, the Original included when it can be had."""
    found = {v.label: v for v in record.sizes if v.url}
    original = original_variant(record)
    if original is not None:
        found[ORIGINAL] = original
    return found


def _preferred(candidates: dict[str, SizeVariant], policy: SizePolicy) -> list[SizeVariant]:
    """The large sizes and the Original, in the order the preference asks for."""
    if policy.prefer is SizePreference.LARGE:
        labels = _large_order(candidates, policy.max_side)
    elif policy.prefer is SizePreference.LARGE2048:
        labels = ["k", "h", "l", ORIGINAL]
    else:
        labels = [ORIGINAL, "k", "h", "l"]
    return [candidates[label] for label in labels if label in candidates]


def _large_order(candidates: dict[str, SizeVariant], max_side: int) -> list[str]:
    """Fixed sizes that fill max_side (smallest first), the Original, then those that fall short."""
    present = [label for label in _LARGE_LABELS if label in candidates]
    filling = [label for label in present if (known_long_side(candidates[label]) or 0) >= max_side]
    short = [label for label in reversed(present) if label not in filling]
    return [*filling, ORIGINAL, *short]


def _smaller(candidates: dict[str, SizeVariant], taken: list[SizeVariant]) -> list[SizeVariant]:
    """The remaining sizes, largest first (known dimensions, else nominal ones)."""
    used = {v.label for v in taken}
    rest = [v for label, v in candidates.items() if label not in used]
    return sorted(rest, key=lambda v: known_long_side(v) or 0, reverse=True)
