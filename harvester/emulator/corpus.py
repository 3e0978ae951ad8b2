"""The synthetic photo corpus: numpy columns built vectorised from a seed, sorted by upload time.

A million photos build in a few seconds and a few hundred MB. Photo `i` is row `i` of every
column; ids grow with upload time as Flickr's do. Keyword occurrences are held twice: by keyword
(the inverted index, sorted row numbers, so a search is searchsorted + slicing) and by photo (to
render titles, tags and descriptions).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from harvester.emulator import copies
from harvester.emulator import corpus_build as cb
from harvester.emulator import corpus_text as ct
from harvester.emulator.config import EmulatorConfig
from harvester.emulator.vocabulary import VOCABULARY, WORD_INDEX

log = logging.getLogger(__name__)

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]

#: Title/tag/description bits of a keyword occurrence.
IN_TITLE, IN_TAGS, IN_DESC = 1, 2, 4


@dataclass(frozen=True, slots=True, eq=False)
class Corpus:
    """Columnar photo table plus keyword indexes; row order is upload order."""

    seed: int
    size: int
    cols: dict[str, npt.NDArray[Any]]
    kw_offsets: I64  # kw_photos[kw_offsets[k]:kw_offsets[k+1]]: rows matching keyword k as text
    kw_photos: I32
    tag_offsets: I64  # the same, restricted to occurrences in tags
    tag_photos: I32
    ph_offsets: I64  # ph_kw[ph_offsets[i]:ph_offsets[i+1]]: keywords of photo i
    ph_kw: npt.NDArray[np.int16]
    ph_mask: npt.NDArray[np.uint8]
    owner_nsid: tuple[str, ...]
    owner_name: tuple[str, ...]
    owner_alias: tuple[str | None, ...]  # path alias, as in photostream URLs; None if none

    def col(self, name: str) -> npt.NDArray[Any]:
        """One column by name."""
        return self.cols[name]

    def row_of_id(self, photo_id: int) -> int | None:
        """The row of a photo id, or None if no such photo."""
        ids = self.cols["id"]
        row = int(np.searchsorted(ids, photo_id))
        return row if row < self.size and int(ids[row]) == photo_id else None

    def text_rows(self, word: str) -> I32:
        """Rows whose title, tags or description contain `word` (sorted)."""
        k = WORD_INDEX.get(word)
        if k is None:
            return np.empty(0, np.int32)
        return self.kw_photos[self.kw_offsets[k] : self.kw_offsets[k + 1]]

    def tag_rows(self, word: str) -> I32:
        """Rows tagged `word` (sorted)."""
        k = WORD_INDEX.get(word)
        if k is None:
            return np.empty(0, np.int32)
        return self.tag_photos[self.tag_offsets[k] : self.tag_offsets[k + 1]]

    def keywords_of(self, row: int, where: int = IN_TITLE | IN_TAGS | IN_DESC) -> list[str]:
        """The keywords of one photo that occur in any of the `where` fields."""
        a, b = int(self.ph_offsets[row]), int(self.ph_offsets[row + 1])
        kws, masks = self.ph_kw[a:b], self.ph_mask[a:b]
        return [VOCABULARY[int(k)].word for k, m in zip(kws, masks, strict=True) if int(m) & where]

    def photo_id(self, row: int) -> str:
        """The id of a row as Flickr writes it (a decimal string)."""
        return str(int(self.cols["id"][row]))

    def dup_rows(self, row: int) -> list[int]:
        """All rows of the near-duplicate group of `row` (just [row] when it has none)."""
        group = int(self.cols["dup_group"][row])
        if group < 0:
            return [row]
        return [int(r) for r in np.flatnonzero(self.cols["dup_group"] == group)]

    @property
    def nbytes(self) -> int:
        """Memory held by the numpy arrays."""
        arrays = [*self.cols.values(), self.kw_photos, self.tag_photos, self.ph_kw, self.ph_mask]
        return sum(int(a.nbytes) for a in arrays)


def build_corpus(
    seed: int, photos: int, end_ts: int = 1_790_000_000, burst: cb.Burst | None = None
) -> Corpus:
    """Build the corpus for (seed, photos) deterministically (with `burst`: a bulk upload)."""
    rng = np.random.default_rng([seed, photos, 0x5EED])
    cols = cb.photo_columns(rng, photos, end_ts, burst, seed)
    occ_row, occ_kw, occ_mask = cb.keyword_occurrences(rng, photos)
    cb.place_geotags(rng, cols, occ_row, occ_kw)
    cb.frames_and_duplicates(rng, cols)
    occ_row, occ_kw, occ_mask = copies.text(rng, cols, (occ_row, occ_kw, occ_mask))
    if burst is not None:
        occ = cb.with_burst_word((occ_row, occ_kw, occ_mask), cols["burst"], WORD_INDEX[burst.word])
        occ_row, occ_kw, occ_mask = occ
    kw_offsets = cb.offsets(occ_kw, len(VOCABULARY))
    in_tags = (occ_mask & IN_TAGS) != 0
    tag_offsets = cb.offsets(occ_kw[in_tags], len(VOCABULARY))
    order = np.argsort(occ_row, kind="stable")
    nsids, names, aliases = ct.owners(rng, int(cols["owner"].max()) + 1)
    return Corpus(
        seed=seed,
        size=photos,
        cols=cols,
        kw_offsets=kw_offsets,
        kw_photos=occ_row,
        tag_offsets=tag_offsets,
        tag_photos=occ_row[in_tags],
        ph_offsets=cb.offsets(occ_row[order], photos),
        ph_kw=occ_kw[order].astype(np.int16),
        ph_mask=occ_mask[order],
        owner_nsid=nsids,
        owner_name=names,
        owner_alias=aliases,
    )


@functools.lru_cache(maxsize=8)
def cached_corpus(
    seed: int, photos: int, end_ts: int = 1_790_000_000, burst: cb.Burst | None = None
) -> Corpus:
    """build_corpus, memoised in-process (tests start many emulators on the same corpus)."""
    return build_corpus(seed, photos, end_ts, burst)


def burst_of(config: EmulatorConfig) -> cb.Burst | None:
    """The bulk upload `config` asks for (its burst switches), or None."""
    span, factor = int(config.burst_s or 0), float(config.burst_factor or 0.0)
    if span <= 0 or factor <= 0:
        return None
    if config.burst_word not in WORD_INDEX:
        raise ValueError(f"burst_word {config.burst_word!r} is not in the vocabulary")
    return cb.Burst(word=config.burst_word, at=config.burst_at, span_s=span, factor=factor)


def corpus_for(config: EmulatorConfig) -> Corpus:
    """The (cached) corpus of an emulator configuration, its burst included."""
    return cached_corpus(config.seed, config.photos, config.end_ts, burst_of(config))
