"""Which institution a photo comes from: the built-in map, sources files, and back-fill plans.

Pure: no I/O. A photo's `source` is decided by its owner's NSID, as Openverse decides its Flickr
sub-providers (reference/provenance-report.md §1): the built-in map below, overlaid by the
user's sources file (TOML, `name = ["NSID", "username", "url alias", ...]`), whose names the
command resolves to NSIDs through the API (harvester/sources.py). Everyone else is "flickr".
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from harvester.exceptions import SourcesFileError
from harvester.records import DEFAULT_SOURCE, PhotoRecord

#: Openverse's FLICKR_SUB_PROVIDERS (provider_details.py, 8 sources by 2023-10) and the two
#: its later PRs add (openverse#3441, #4971): 10 sources, 15 owner NSIDs.
BUILTIN_SOURCES: Mapping[str, tuple[str, ...]] = {
    "nasa": (
        "24662369@N07",  # NASA Goddard Photo and Video
        "35067687@N04",  # NASA HQ PHOTO
        "29988733@N04",  # NASA Johnson
        "28634332@N05",  # NASA's Marshall Space Flight Center
        "108488366@N07",  # NASAKennedy
        "136485307@N06",  # Apollo Image Gallery
    ),
    "bio_diversity": ("61021753@N02",),  # BioDivLibrary
    "spacex": ("130608600@N05",),  # Official SpaceX Photos
    "woc_tech": ("136629440@N06",),  # WOCinTech Chat
    "valence_romans": ("150408343@N02",),  # Valence Romans Agglomeration Media Library
    "east_riding": ("138361426@N08",),  # East Riding Archives
    "archief_alkmaar": ("98304311@N03",),  # Regionaal Archief Alkmaar Commons
    "bib_gulbenkian": ("26577438@N06",),  # Gulbenkian Art Library
    "internet_archive_book_images": ("126377022@N07",),  # Internet Archive Book Images
    "katmai_nps": ("99350217@N03",),  # Katmai National Park Service
}

NSID = re.compile(r"[0-9]{1,20}@N[0-9]{1,4}")
SOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
#: What a photostream alias may be: one path segment (a screen name may hold spaces).
ALIAS = re.compile(r"[A-Za-z0-9_-]{1,64}")
_URL = re.compile(r"(https?://)?((www|m)\.)?flickr\.com/", re.IGNORECASE)


class NameKind(StrEnum):
    """What a sources file's entry is, which decides how it is resolved."""

    NSID = "nsid"  # checked with flickr.people.getInfo
    URL = "url"  # a photostream or profile URL: flickr.urls.lookupUser
    NAME = "name"  # a screen name (flickr.people.findByUsername), else a URL alias


@dataclass(frozen=True, slots=True)
class UserName:
    """One entry of a sources file, as written, and what kind it is."""

    text: str

    @property
    def kind(self) -> NameKind:
        """NSID, URL or name, from its shape."""
        if NSID.fullmatch(self.text):
            return NameKind.NSID
        return NameKind.URL if _URL.match(self.text) else NameKind.NAME

    @property
    def key(self) -> str:
        """The cache key: Flickr's names and aliases do not depend on case (NSIDs as they are)."""
        return self.text if self.kind is NameKind.NSID else self.text.lower()

    @property
    def alias_url(self) -> str | None:
        """The photostream URL this name would be as an alias, if it can be one."""
        if self.kind is NameKind.URL:
            return self.text if "://" in self.text else f"https://{self.text}"
        if self.kind is NameKind.NAME and ALIAS.fullmatch(self.text):
            return f"https://www.flickr.com/photos/{self.text}/"
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class SourcesFile:
    """A parsed sources file: each source with the names that stand for it, in file order."""

    path: str
    sources: tuple[tuple[str, tuple[UserName, ...]], ...]

    @property
    def names(self) -> tuple[UserName, ...]:
        """Every entry, each once."""
        return tuple(dict.fromkeys(n for _source, names in self.sources for n in names))


def parse_sources(text: str, path: str) -> SourcesFile:
    """A sources file's TOML text as a SourcesFile; SourcesFileError naming what is wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SourcesFileError(path, f"not valid TOML: {exc}") from None
    owner_of: dict[str, str] = {}
    sources: list[tuple[str, tuple[UserName, ...]]] = []
    for source, value in data.items():
        names = _entries(path, source, value)
        for name in names:
            other = owner_of.setdefault(name.key, source)
            if other != source:
                raise SourcesFileError(path, f"{name.text!r} is listed under {other} and {source}")
        sources.append((source, names))
    return SourcesFile(path=path, sources=tuple(sources))


def _entries(path: str, source: str, value: object) -> tuple[UserName, ...]:
    if not SOURCE_NAME.fullmatch(source) or source == DEFAULT_SOURCE:
        raise SourcesFileError(
            path, f"source name {source!r}: use a-z, 0-9, _ and - (and not {DEFAULT_SOURCE!r})"
        )
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise SourcesFileError(path, f"{source}: expected a list of NSIDs, usernames or URLs")
    names: list[UserName] = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise SourcesFileError(path, f"{source}: {item!r} is not an NSID, username or URL")
        names.append(UserName(item.strip()))
    return tuple(names)


# --- the map in force ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceMap:
    """Owner NSID → source; an owner it does not name is DEFAULT_SOURCE."""

    by_owner: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def builtin(cls, extra: Mapping[str, str] | None = None) -> SourceMap:
        """The built-in map, overlaid by `extra` (NSID → source; the user's file wins)."""
        owners = {nsid: source for source, nsids in BUILTIN_SOURCES.items() for nsid in nsids}
        return cls({**owners, **(extra or {})})

    def source_of(self, owner: str) -> str:
        """The source of a photo by this owner."""
        return self.by_owner.get(owner, DEFAULT_SOURCE)

    def apply(self, photos: Sequence[PhotoRecord]) -> tuple[PhotoRecord, ...]:
        """The photos with their sources set (records of unnamed owners are kept as they are)."""
        out = []
        for photo in photos:
            source = self.source_of(photo.owner)
            out.append(photo if source == photo.source else replace(photo, source=source))
        return tuple(out)

    @property
    def digest(self) -> str:
        """A short hash of the mapping: a back-fill resumes only under the same map."""
        text = "\n".join(f"{nsid}={src}" for nsid, src in sorted(self.by_owner.items()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.by_owner)


def file_owners(spec: SourcesFile, nsid_of: Mapping[str, str]) -> dict[str, str]:
    """NSID → source for a sources file whose names `nsid_of` resolves (name key → NSID).

    Raises SourcesFileError naming every entry `nsid_of` lacks (the users Flickr does not know).
    """
    unknown = [n.text for n in spec.names if n.key not in nsid_of]
    if unknown:
        listed = ", ".join(repr(u) for u in unknown)
        raise SourcesFileError(spec.path, f"no Flickr user is {listed} (User not found)")
    owners: dict[str, str] = {}
    for source, names in spec.sources:
        for name in names:
            nsid = nsid_of[name.key]
            other = owners.setdefault(nsid, source)
            if other != source:
                raise SourcesFileError(spec.path, f"{name.text!r} ({nsid}) is also in {other}")
    return owners


# --- back-fill -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceCount:
    """One source's photos before and after a back-fill."""

    source: str
    now: int
    after: int


@dataclass(frozen=True, slots=True)
class BackfillPlan:
    """What a back-fill would do: photos per source now and after, and how many change."""

    counts: tuple[SourceCount, ...]
    changes: int

    def render(self) -> str:
        """A table, largest source first, and the number of photos that would change."""
        lines = [f"{'source':<32} {'photos':>9} {'now':>9} {'change':>8}"]
        for c in self.counts:
            lines.append(f"{c.source[:32]:<32} {c.after:>9} {c.now:>9} {c.after - c.now:>+8}")
        lines.append(f"{self.changes} photos change source")
        return "\n".join(lines)


def plan_backfill(rows: Iterable[tuple[str, str, int]], smap: SourceMap) -> BackfillPlan:
    """The plan from (owner, current source, photos) rows, as the store groups them."""
    now: Counter[str] = Counter()
    after: Counter[str] = Counter()
    changes = 0
    for owner, current, count in rows:
        target = smap.source_of(owner)
        now[current] += count
        after[target] += count
        changes += count if target != current else 0
    names = sorted(set(now) | set(after), key=lambda s: (-after[s], -now[s], s))
    counts = tuple(SourceCount(source=s, now=now[s], after=after[s]) for s in names)
    return BackfillPlan(counts=counts, changes=changes)


def batch_changes(rows: Iterable[tuple[int, str, str]], smap: SourceMap) -> list[tuple[str, int]]:
    """(new source, photo id) for the rows (id, owner, current source) whose source changes."""
    return [
        (target, photo_id)
        for photo_id, owner, current in rows
        if (target := smap.source_of(owner)) != current
    ]
