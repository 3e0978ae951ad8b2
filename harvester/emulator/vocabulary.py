"""The emulator's keyword vocabulary: place names, the Hays negative terms, generic tags.

Every keyword is one lower-case token (Flickr's normalised tag form, as IM2GPS queries use:
"washingtondc", "newyork"). Each has a target share of photos; the corpus draws occurrences from
these shares, so popularity is skewed (a few generic tags on most photos, a Zipf tail of places).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Kind(IntEnum):
    """What a keyword is, which decides where it lands (places get geotags near them)."""

    GENERIC = 0
    PLACE = 1
    NEGATIVE = 2


@dataclass(frozen=True, slots=True)
class Keyword:
    """One vocabulary entry: token, kind, target share of photos, and a location for places."""

    word: str
    kind: Kind
    share: float
    lat: float = 0.0
    lon: float = 0.0


#: Tiered generic tags: a planner benchmark needs keywords at ~90 %, ~9 % and ~0.9 % of photos
#: (about 1,000,000 / 100,000 / 10,000 matches in a 1.1M corpus).
_GENERIC_TIERS: tuple[tuple[str, float], ...] = (
    ("photo", 0.90),
    ("canon", 0.25),
    ("travel", 0.09),
    ("nature", 0.05),
    ("sky", 0.03),
    ("sunset", 0.009),
    ("street", 0.006),
    ("architecture", 0.004),
    ("beach", 0.003),
    ("night", 0.002),
)

#: Further generic tags with Zipf shares (rank r gets 0.02 / r).
_GENERIC_ZIPF = [
    "nikon",
    "blue",
    "water",
    "clouds",
    "city",
    "landscape",
    "trees",
    "bridge",
    "river",
    "mountain",
    "snow",
    "winter",
    "summer",
    "autumn",
    "spring",
    "flowers",
    "garden",
    "park",
    "church",
    "tower",
    "lake",
    "sea",
    "ocean",
    "boat",
    "train",
    "car",
    "road",
    "building",
    "museum",
    "statue",
    "castle",
    "market",
    "harbor",
    "skyline",
    "downtown",
    "sunrise",
    "light",
    "reflection",
    "hdr",
    "panorama",
    "bw2",
    "film",
    "vintage",
    "red",
    "green",
    "yellow",
    "old",
    "new",
    "festival",
    "parade",
    "cathedral",
    "temple",
    "desert",
    "forest",
    "island",
]

#: The 38 negative terms of Hays's place_rec_queries.txt (hays-baseline.md §2), with shares.
NEGATIVE_TERMS: tuple[str, ...] = tuple(
    [
        "birthday",
        "party",
        "parties",
        "people",
        "portrait",
        "bw",
        "abstract",
        "macro",
        "me",
        "wedding",
        "indoors",
        "fun",
        "kid",
        "child",
        "children",
        "graffiti",
        "prom",
        "concert",
        "friend",
        "family",
        "dog",
        "cat",
        "face",
        "cameraphone",
        "woman",
        "women",
        "girl",
        "lady",
        "boy",
        "guy",
        "nude",
        "fraternity",
        "frat",
        "gay",
        "lesbian",
        "live",
        "baby",
        "stilllife",
    ]
)

#: Place names (cities, US states, countries) with a rough centre; shares follow Zipf by order.
_PLACES: tuple[tuple[str, float, float], ...] = (
    ("london", 51.51, -0.13),
    ("newyork", 40.71, -74.0),
    ("paris", 48.86, 2.35),
    ("california", 36.8, -119.4),
    ("usa", 39.8, -98.6),
    ("sanfrancisco", 37.77, -122.42),
    ("japan", 36.2, 138.25),
    ("tokyo", 35.68, 139.69),
    ("italy", 41.87, 12.57),
    ("france", 46.23, 2.21),
    ("chicago", 41.88, -87.63),
    ("germany", 51.17, 10.45),
    ("spain", 40.46, -3.75),
    ("berlin", 52.52, 13.4),
    ("rome", 41.9, 12.5),
    ("losangeles", 34.05, -118.24),
    ("texas", 31.97, -99.9),
    ("canada", 56.13, -106.35),
    ("seattle", 47.61, -122.33),
    ("washingtondc", 38.9, -77.04),
    ("boston", 42.36, -71.06),
    ("australia", -25.27, 133.78),
    ("barcelona", 41.39, 2.17),
    ("florida", 27.66, -81.52),
    ("england", 52.36, -1.17),
    ("china", 35.86, 104.2),
    ("amsterdam", 52.37, 4.9),
    ("newyorkcity", 40.71, -74.0),
    ("india", 20.59, 78.96),
    ("mexico", 23.63, -102.55),
    ("sydney", -33.87, 151.21),
    ("hawaii", 19.9, -155.58),
    ("istanbul", 41.01, 28.98),
    ("venice", 45.44, 12.32),
    ("brazil", -14.24, -51.93),
    ("hongkong", 22.32, 114.17),
    ("vancouver", 49.28, -123.12),
    ("toronto", 43.65, -79.38),
    ("portland", 45.52, -122.68),
    ("oregon", 43.8, -120.55),
    ("prague", 50.08, 14.44),
    ("scotland", 56.49, -4.2),
    ("ireland", 53.41, -8.24),
    ("newmexico", 34.52, -105.87),
    ("argentina", -38.42, -63.62),
    ("egypt", 26.82, 30.8),
    ("peru", -9.19, -75.02),
    ("thailand", 15.87, 100.99),
    ("vietnam", 14.06, 108.28),
    ("greece", 39.07, 21.82),
    ("athens", 37.98, 23.73),
    ("moscow", 55.76, 37.62),
    ("russia", 61.52, 105.32),
    ("philadelphia", 39.95, -75.17),
    ("atlanta", 33.75, -84.39),
    ("miami", 25.76, -80.19),
    ("dallas", 32.78, -96.8),
    ("houston", 29.76, -95.37),
    ("denver", 39.74, -104.99),
    ("colorado", 39.55, -105.78),
    ("arizona", 34.05, -111.09),
    ("phoenix", 33.45, -112.07),
    ("lasvegas", 36.17, -115.14),
    ("nevada", 38.8, -116.42),
    ("utah", 39.32, -111.09),
    ("westvirginia", 38.6, -80.45),
    ("virginia", 37.43, -78.66),
    ("georgia", 32.17, -82.9),
    ("michigan", 44.31, -85.6),
    ("detroit", 42.33, -83.05),
    ("minneapolis", 44.98, -93.27),
    ("alaska", 64.2, -149.49),
    ("norway", 60.47, 8.47),
    ("sweden", 60.13, 18.64),
    ("iceland", 64.96, -19.02),
    ("kenya", -0.02, 37.91),
    ("southafrica", -30.56, 22.94),
    ("morocco", 31.79, -7.09),
    ("chile", -35.68, -71.54),
    ("cuba", 21.52, -77.78),
    ("nepal", 28.39, 84.12),
    ("singapore", 1.35, 103.82),
    ("seoul", 37.57, 126.98),
    ("dubai", 25.2, 55.27),
    ("cairo", 30.04, 31.24),
    ("riodejaneiro", -22.91, -43.17),
    ("buenosaires", -34.6, -58.38),
)


def _zipf(rank: int, top: float) -> float:
    return top / (rank + 1)


def build_vocabulary() -> tuple[Keyword, ...]:
    """All keywords in a fixed order (the order is part of corpus determinism)."""
    words: list[Keyword] = [Keyword(w, Kind.GENERIC, s) for w, s in _GENERIC_TIERS]
    words += [Keyword(w, Kind.GENERIC, _zipf(r, 0.02)) for r, w in enumerate(_GENERIC_ZIPF)]
    words += [
        Keyword(w, Kind.PLACE, _zipf(r, 0.015), lat, lon) for r, (w, lat, lon) in enumerate(_PLACES)
    ]
    words += [Keyword(w, Kind.NEGATIVE, _zipf(r, 0.01)) for r, w in enumerate(NEGATIVE_TERMS)]
    seen: set[str] = set()
    for kw in words:
        if kw.word in seen:
            raise ValueError(f"duplicate keyword {kw.word!r}")
        seen.add(kw.word)
    return tuple(words)


VOCABULARY: tuple[Keyword, ...] = build_vocabulary()
WORD_INDEX: dict[str, int] = {kw.word: i for i, kw in enumerate(VOCABULARY)}
