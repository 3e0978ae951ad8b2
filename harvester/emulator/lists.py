"""Albums, galleries, group pools and Flickr Commons: a layer derived from the corpus and its seed.

Nothing here is stored in the corpus: every list is a pure function of (seed, size), built once
per corpus and cached, so the corpus build (and its other users) pays nothing for it.

- Albums (photosets): 24, each a share of one owner's photos (1, 1/2, 1/5, 1/20 of them) in an
  order of the owner's choosing (a seeded shuffle); owner 0 holds about a quarter of the corpus,
  so the first album is large (over the 4,000 a search returns). Every eighth album is private:
  Flickr answers code 1 "Photoset not found" to calls without the owner's login.
- Galleries: 10, curated by one owner from anyone's photos, at most 500 each (Flickr's limit).
- Groups: 8 pools; pool 0 holds about 30 % of all photos (over the cap), the others about 70 %
  of the photos matching one vocabulary word. Group NSIDs end in @N2x as Flickr's do.
- Commons: the institutions among the owners (institutions.py), each with a launch date.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from harvester.emulator.corpus import Corpus
from harvester.emulator.institutions import INSTITUTIONS, institution_owner
from harvester.emulator.vocabulary import VOCABULARY

Rows = npt.NDArray[np.int64]

ALBUMS, GALLERIES, GROUPS = 24, 10, 8
ALBUM_SHARES = (1.0, 0.5, 0.2, 0.05)
GALLERY_SIZES = (500, 320, 120, 40, 7, 1, 500, 260, 75, 3)
MAX_GALLERY = 500
BIG_POOL_SHARE, POOL_SHARE = 0.3, 0.7
PHOTOSET_BASE = 72157700000000000
GALLERY_BASE = 72157710000000000
COMMONS_LAUNCH = 1200470400  # 2008-01-16, The Library of Congress's first day in the Commons


@dataclass(frozen=True, slots=True, eq=False)
class PhotoList:
    """One album, gallery or pool: its id, title, owner (curator) and rows in list order."""

    list_id: str
    title: str
    owner: int  # owner index; -1 for a group (no owner)
    rows: Rows  # in the list's own order
    alias: str = ""  # a group's path alias, or a gallery's short id in its URL
    private: bool = False

    @property
    def sorted_rows(self) -> npt.NDArray[np.int32]:
        """The rows in row (upload) order, for membership tests."""
        return np.sort(self.rows).astype(np.int32)


@dataclass(frozen=True, slots=True, eq=False)
class Lists:
    """Every list of one corpus, by id."""

    albums: dict[str, PhotoList]
    galleries: dict[str, PhotoList]
    groups: dict[str, PhotoList]
    institutions: tuple[tuple[str, str, int, int], ...]  # (nsid, name, launch, owner index)

    def group_by_alias(self, alias: str) -> PhotoList | None:
        """A group by the path alias in its URL (case-insensitive) or its NSID."""
        if alias in self.groups:
            return self.groups[alias]
        wanted = alias.lower()
        return next((g for g in self.groups.values() if g.alias == wanted), None)

    def gallery_by_short_id(self, short: str) -> PhotoList | None:
        """A gallery by the number in its URL (…/galleries/72157…/)."""
        return next((g for g in self.galleries.values() if g.alias == short), None)


def _mix(corpus: Corpus, salt: int) -> npt.NDArray[np.float64]:
    """A per-photo uniform [0, 1) draw for `salt`, fixed by the corpus seed (splitmix64)."""
    with np.errstate(over="ignore"):
        x = corpus.cols["look"].astype(np.uint64) ^ np.uint64(corpus.seed * 1_000_003 + salt)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _owner_rank(corpus: Corpus) -> list[int]:
    counts = np.bincount(corpus.cols["owner"].astype(np.int64), minlength=len(corpus.owner_nsid))
    return [int(o) for o in np.argsort(-counts, kind="stable") if counts[o] > 0]


def _albums(corpus: Corpus) -> dict[str, PhotoList]:
    owners = _owner_rank(corpus)
    owner_col = corpus.cols["owner"]
    out: dict[str, PhotoList] = {}
    for j in range(ALBUMS if owners else 0):
        owner = owners[(j // len(ALBUM_SHARES)) % len(owners)]
        draw = _mix(corpus, 101 + j)
        rows = np.flatnonzero((owner_col == owner) & (draw < ALBUM_SHARES[j % len(ALBUM_SHARES)]))
        rows = rows[np.argsort(draw[rows], kind="stable")]  # the owner's own order
        word = VOCABULARY[(j * 7) % len(VOCABULARY)].word
        list_id = str(PHOTOSET_BASE + (corpus.seed % 1000) * 1000 + j)
        title = f"{word.capitalize()} {2005 + j % 20}"
        out[list_id] = PhotoList(list_id, title, owner, rows.astype(np.int64), private=j % 8 == 7)
    return out


def _galleries(corpus: Corpus) -> dict[str, PhotoList]:
    owners = _owner_rank(corpus)
    out: dict[str, PhotoList] = {}
    for j in range(GALLERIES if owners else 0):
        curator = owners[(j + 1) % len(owners)]
        draw = _mix(corpus, 301 + j)
        rows = np.argsort(draw, kind="stable")[: min(GALLERY_SIZES[j], MAX_GALLERY, corpus.size)]
        short = str(GALLERY_BASE + (corpus.seed % 1000) * 1000 + j)
        number = corpus.owner_nsid[curator].split("@", 1)[0]
        title = f"Favourites of {corpus.owner_name[curator]} {j + 1}"
        out[f"{number}-{short}"] = PhotoList(
            f"{number}-{short}", title, curator, rows.astype(np.int64), alias=short
        )
    return out


def _groups(corpus: Corpus) -> dict[str, PhotoList]:
    out: dict[str, PhotoList] = {}
    for k in range(GROUPS):
        draw = _mix(corpus, 501 + k)
        if k == 0:
            rows, title = np.flatnonzero(draw < BIG_POOL_SHARE), "Everything Flickr"
        else:
            word = VOCABULARY[(k * 11) % len(VOCABULARY)].word
            matched = corpus.text_rows(word).astype(np.int64)
            rows, title = matched[draw[matched] < POOL_SHARE], f"{word.capitalize()} lovers"
        nsid = f"{1_000_000 + 7919 * k + corpus.seed % 997}@N2{k % 5}"
        alias = title.lower().replace(" ", "")
        out[nsid] = PhotoList(nsid, title, -1, rows.astype(np.int64), alias=alias)
    return out


def _institutions(corpus: Corpus) -> tuple[tuple[str, str, int, int], ...]:
    found = []
    for j, (nsid, name, _alias) in enumerate(INSTITUTIONS):
        owner = institution_owner(j)
        if owner < len(corpus.owner_nsid) and corpus.owner_nsid[owner] == nsid:
            found.append((nsid, name, COMMONS_LAUNCH + j * 30 * 86_400, owner))
    return tuple(found)


@functools.lru_cache(maxsize=8)
def lists_of(corpus: Corpus) -> Lists:
    """The lists of a corpus, built on first use."""
    return Lists(_albums(corpus), _galleries(corpus), _groups(corpus), _institutions(corpus))


def commons_rows(corpus: Corpus) -> Rows:
    """Rows of every Commons institution's photos, in upload order."""
    owners = [owner for _n, _name, _l, owner in lists_of(corpus).institutions]
    return np.flatnonzero(np.isin(corpus.cols["owner"], np.array(owners, dtype=np.int64)))
