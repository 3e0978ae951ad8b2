"""Flickr's size ladder as the emulator serves it: which sizes a photo has, their dims and URLs."""

from __future__ import annotations

from dataclasses import dataclass

from harvester.emulator.corpus_build import BIG_SIZES_TS, LARGE_POLICY_TS

FORMATS = ("jpg", "png", "gif")
MIME = {"jpg": "image/jpeg", "png": "image/png", "gif": "image/gif"}


@dataclass(frozen=True, slots=True)
class SizeClass:
    """One rung: url_X label, file suffix, getSizes label, longest edge, square crop, secret."""

    extra: str
    suffix: str
    label: str
    edge: int
    square: bool = False
    own_secret: int = 0  # 0: the photo's secret; k>0: the k-th derived large secret; -1: original


LADDER: tuple[SizeClass, ...] = (
    SizeClass("sq", "s", "Square", 75, square=True),
    SizeClass("q", "q", "Large Square", 150, square=True),
    SizeClass("t", "t", "Thumbnail", 100),
    SizeClass("s", "m", "Small", 240),
    SizeClass("n", "n", "Small 320", 320),
    SizeClass("w", "w", "Small 400", 400),
    SizeClass("m", "", "Medium", 500),
    SizeClass("z", "z", "Medium 640", 640),
    SizeClass("c", "c", "Medium 800", 800),
    SizeClass("l", "b", "Large", 1024),
    SizeClass("h", "h", "Large 1600", 1600, own_secret=1),
    SizeClass("k", "k", "Large 2048", 2048, own_secret=2),
    SizeClass("3k", "3k", "X-Large 3K", 3072, own_secret=3),
    SizeClass("4k", "4k", "X-Large 4K", 4096, own_secret=4),
    SizeClass("5k", "5k", "X-Large 5K", 5120, own_secret=5),
    SizeClass("6k", "6k", "X-Large 6K", 6144, own_secret=6),
    SizeClass("o", "o", "Original", 0, own_secret=-1),
)
BY_EXTRA = {s.extra: s for s in LADDER}
BY_SUFFIX = {s.suffix: s for s in LADDER}
URL_EXTRAS = tuple(f"url_{s.extra}" for s in LADDER)
_ALWAYS = frozenset({"sq", "q", "t", "s", "m"})  # small sizes exist even for tiny originals


@dataclass(frozen=True, slots=True)
class PhotoGeom:
    """What the size rules need to know about one photo."""

    o_w: int
    o_h: int
    upload: int
    large_allowed: bool
    orig_visible: bool


def dims(size: SizeClass, o_w: int, o_h: int) -> tuple[int, int]:
    """Width and height of `size` for an original of o_w x o_h (never upscaled)."""
    if size.square:
        side = min(size.edge, o_w, o_h)
        return side, side
    if size.edge == 0:
        return o_w, o_h
    scale = min(1.0, size.edge / max(o_w, o_h))
    return max(1, round(o_w * scale)), max(1, round(o_h * scale))


def exists(size: SizeClass, g: PhotoGeom) -> bool:
    """Whether Flickr would offer this size for the photo."""
    longest = max(g.o_w, g.o_h)
    if size.extra in _ALWAYS:
        return True
    if size.extra == "o":
        return g.orig_visible
    if size.extra == "l":
        return longest >= 1024 and (g.upload >= LARGE_POLICY_TS or longest >= 1300)
    if size.edge > 1024 or size.extra == "c":
        big_ok = g.upload >= BIG_SIZES_TS and (size.extra == "c" or g.large_allowed)
        return big_ok and longest >= size.edge
    return longest >= size.edge


def available(g: PhotoGeom) -> list[tuple[SizeClass, int, int]]:
    """(size, width, height) for every size the photo has, smallest rung first."""
    return [(s, *dims(s, g.o_w, g.o_h)) for s in LADDER if exists(s, g)]


def derived_secret(base: int, k: int) -> int:
    """The own secret of the k-th large size, derived from the photo's h secret."""
    if k <= 1:
        return base
    x = (base * 0x9E3779B97F4A7C15 + k * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    x ^= x >> 29
    return x & ((1 << 40) - 1)


def fmt_secret(value: int) -> str:
    """A 40-bit secret as Flickr's 10 hex digits."""
    return f"{value:010x}"
