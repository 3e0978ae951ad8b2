"""Owner identities and the text of a photo (title, description, tags), derived from its keywords.

Text holds only vocabulary keywords, camera file codes and markup, so the keyword index is an
exact account of which words a photo's title, description and tags contain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from harvester.emulator.institutions import with_institutions

if TYPE_CHECKING:
    from harvester.emulator.corpus import Corpus

_SYLLABLES = [
    "ka",
    "ro",
    "mi",
    "ta",
    "ne",
    "lu",
    "sa",
    "vo",
    "pe",
    "ri",
    "do",
    "na",
    "ge",
    "li",
    "mo",
    "bu",
    "ze",
    "ha",
    "ki",
    "yo",
    "ra",
    "te",
    "fi",
    "sol",
    "mar",
    "an",
    "el",
    "ven",
]
_CODES = ("IMG_{:04d}", "DSC{:05d}", "P{:07d}", "DSCF{:04d}", "_MG_{:04d}")


def owners(
    rng: np.random.Generator, m: int
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str | None, ...]]:
    """NSIDs like 12345678@N04, distinct user names and path aliases (two owners in three
    have one) for `m` owners, institutions (people.py) among them."""
    draws = rng.integers(10_000_000, 210_000_000, 2 * m + 16)
    _, first = np.unique(draws, return_index=True)
    nums = draws[np.sort(first)][:m]  # distinct, in draw order
    suffix = rng.integers(0, 9, m)
    syl = rng.integers(0, len(_SYLLABLES), (m, 3))
    digits = rng.integers(0, 1000, m)
    nsids = tuple(f"{int(a)}@N{int(s):02d}" for a, s in zip(nums, suffix, strict=True))
    names = tuple(
        "".join(_SYLLABLES[int(j)] for j in syl[i]) + (str(int(digits[i])) if i % 3 else "")
        for i in range(m)
    )
    unique = _dedupe(names)
    aliases = [name.lower() if i % 3 else None for i, name in enumerate(unique)]
    return with_institutions(list(nsids), list(unique), aliases)


def _dedupe(names: tuple[str, ...]) -> tuple[str, ...]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        n = seen.get(name, 0)
        seen[name] = n + 1
        out.append(name if n == 0 else f"{name}_{n}")
    return tuple(out)


def title(corpus: Corpus, row: int) -> str:
    """A photo's title: its title keywords, a camera file code, or both (sometimes empty).

    A copy has its source's title keywords and look, so its source's title, and now and then a
    re-upload's " (2)" after it (not a word: the keyword index stays exact).
    """
    text = _title(corpus, row)
    pid = int(corpus.cols["id"][row])
    if text and int(corpus.cols["copy_of"][row]) >= 0 and (pid >> 4) % 3 == 0:
        return text + " (2)"
    return text


def _title(corpus: Corpus, row: int) -> str:
    from harvester.emulator.corpus import IN_TITLE

    look = int(corpus.cols["look"][row])
    words = corpus.keywords_of(row, IN_TITLE)
    code = _CODES[look % len(_CODES)].format((look >> 8) % 100_000)
    if not words:
        return "" if look % 11 == 0 else code
    shown = [w.capitalize() if (look >> 3) & 1 else w for w in words]
    style = (look >> 4) % 3
    if style == 0:
        return " ".join(shown)
    if style == 1:
        return f"{code} {' '.join(shown)}"
    return " - ".join(shown)


def description(corpus: Corpus, row: int) -> str:
    """A description with Flickr-like HTML and entities around the description keywords."""
    from harvester.emulator.corpus import IN_DESC

    words = corpus.keywords_of(row, IN_DESC)
    if not words:
        return ""
    look = int(corpus.cols["look"][row])
    if (look >> 6) % 2:
        return " &amp; ".join(words) + "&#8230;"
    head, *rest = words
    return f"<b>{head.capitalize()}</b>\n\n" + " ".join(rest)


def tags(corpus: Corpus, row: int) -> str:
    """Normalised tags, space-separated, as the `tags` extra gives them."""
    from harvester.emulator.corpus import IN_TAGS

    return " ".join(corpus.keywords_of(row, IN_TAGS))
