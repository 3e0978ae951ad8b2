"""Source lines of a queries file: `user:`, `album:`, `group:`, `gallery:`, `commons:` (pure).

    user:George | since=2015-01-01             a person's public photos (name, NSID or URL)
    album:72157624618609504                    a photoset (id or album URL)
    group:34427469792@N01 | license=4,9        a group pool (id, URL or path alias)
    gallery:6065-72157617483228192             a gallery (id or gallery URL)
    commons:*                                  every Flickr Commons institution (or a name, NSID)

A source is parsed here into a `SourceSpec` (what the line wrote, checked for form only), and
resolved once before the run (harvester/search/resolve.py) into ids and a directory name. Users,
groups and institutions are searched (flickr.photos.search takes every search option); albums
and galleries are walked with their list methods, which take none, so an option on such a line
is an error naming it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from harvester.records import ListKind

if TYPE_CHECKING:
    from harvester.search.queries import KeywordQuery

_NSID = re.compile(r"\d+@N\d+")
_GALLERY_ID = re.compile(r"\d+-\d+")
_FLICKR_HOSTS = frozenset({"www.flickr.com", "flickr.com", "m.flickr.com", "secure.flickr.com"})
_ALBUM_PATH = re.compile(r"/photos/([^/]+)/(?:albums|sets)/(\d+)/?$")
_GALLERY_PATH = re.compile(r"/photos/[^/]+/galleries/\d+/?$")
_GROUP_PATH = re.compile(r"/groups/[^/]+(?:/pool)?/?$")
_USER_PATH = re.compile(r"/(?:photos|people)/[^/]+/?$")
ALL_INSTITUTIONS = "*"


class SourceKind(StrEnum):
    """What a source line names."""

    USER = "user"
    ALBUM = "album"
    GROUP = "group"
    GALLERY = "gallery"
    COMMONS = "commons"


class RefForm(StrEnum):
    """How the line wrote the source: an id, a URL, or a name (screen name, alias, title)."""

    ID = "id"
    URL = "url"
    NAME = "name"


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceSpec:
    """A source as written: its kind, the reference (an id, URL or name) and its form."""

    kind: SourceKind
    ref: str
    form: RefForm
    owner: str | None = None  # an album URL's owner, when it names the NSID (sent as user_id)

    @property
    def searched(self) -> bool:
        """Users, groups and institutions go through flickr.photos.search; the rest are lists."""
        return self.kind in (SourceKind.USER, SourceKind.GROUP, SourceKind.COMMONS)

    @property
    def cache_key(self) -> str:
        """The store's key for the resolution of this reference."""
        ref = self.ref if self.form is RefForm.ID else self.ref.lower()
        return f"{self.kind}:{ref}"


#: Options a list method cannot take (flickr.photosets.getPhotos / galleries.getPhotos have
#: only extras, paging, privacy_filter and media): on an album or gallery line they are errors.
LIST_METHODS = {
    SourceKind.ALBUM: "flickr.photosets.getPhotos",
    SourceKind.GALLERY: "flickr.galleries.getPhotos",
}
#: The user= option on a line that already names the owner contradicts it.
_OWNER_SOURCES = frozenset({SourceKind.USER, SourceKind.COMMONS})


def is_source_line(name: str) -> bool:
    """True when a queries-file line's name part is `kind:ref` for a known kind."""
    kind, colon, _ref = name.partition(":")
    return bool(colon) and kind.strip().lower() in SourceKind.__members__.values()


def parse_source(name: str) -> SourceSpec:
    """The spec of `kind:ref`; ValueError saying what is wrong with the reference."""
    kind_text, _, ref = name.partition(":")
    kind = SourceKind(kind_text.strip().lower())
    ref = ref.strip()
    if not ref:
        raise ValueError(f"{kind}: needs an id, URL or name after the colon")
    if ref.lower().startswith(("http://", "https://")) or "flickr.com/" in ref.lower():
        return _url(kind, ref)
    return _plain(kind, ref)


def _plain(kind: SourceKind, ref: str) -> SourceSpec:
    if kind is SourceKind.ALBUM and not ref.isdigit():
        raise ValueError(f"album:{ref}: an album id is digits (or give the album's URL)")
    if kind is SourceKind.GALLERY and not _GALLERY_ID.fullmatch(ref):
        raise ValueError(
            f"gallery:{ref}: a gallery id looks like 6065-72157617483228192 (or give its URL)"
        )
    if kind is SourceKind.COMMONS and ref == ALL_INSTITUTIONS:
        return SourceSpec(kind=kind, ref=ref, form=RefForm.ID)
    spaced = any(c.isspace() for c in ref)
    if "/" in ref or (kind is SourceKind.GROUP and spaced):
        raise ValueError(f"{kind}:{ref}: not an id, URL or name")
    is_id = kind in (SourceKind.ALBUM, SourceKind.GALLERY) or bool(_NSID.fullmatch(ref))
    return SourceSpec(kind=kind, ref=ref, form=RefForm.ID if is_id else RefForm.NAME)


def _url(kind: SourceKind, ref: str) -> SourceSpec:
    url = ref if "://" in ref else f"https://{ref}"
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.netloc.lower() not in _FLICKR_HOSTS:
        raise ValueError(f"{kind}:{ref}: not a flickr.com URL")
    if kind is SourceKind.ALBUM:
        found = _ALBUM_PATH.search(path)
        if found is None:
            raise ValueError(f"album:{ref}: not an album URL (…/photos/NAME/albums/ID)")
        owner = found.group(1) if _NSID.fullmatch(found.group(1)) else None
        return SourceSpec(kind=kind, ref=found.group(2), form=RefForm.ID, owner=owner)
    patterns = {
        SourceKind.USER: (_USER_PATH, "a photostream URL (…/photos/NAME/)"),
        SourceKind.GROUP: (_GROUP_PATH, "a group URL (…/groups/NAME/)"),
        SourceKind.GALLERY: (_GALLERY_PATH, "a gallery URL (…/photos/NAME/galleries/ID/)"),
    }
    if kind not in patterns:
        raise ValueError(f"{kind}:{ref}: takes a name or NSID, not a URL")
    pattern, wanted = patterns[kind]
    if pattern.match(path) is None:
        raise ValueError(f"{kind}:{ref}: not {wanted}")
    return SourceSpec(kind=kind, ref=f"https://www.flickr.com{path}", form=RefForm.URL)


def option_error(spec: SourceSpec, options: Iterable[str]) -> str | None:
    """Why a source line cannot take these options (attribute names), or None if it can."""
    given = sorted(set(options))
    method = LIST_METHODS.get(spec.kind)
    if method is not None and given:
        return (
            f"{spec.kind}: lines cannot take {_option_names(given)}"
            f" ({method} has no such filter; put the line above any #! defaults)"
        )
    if spec.kind in _OWNER_SOURCES and "user_id" in given:
        return f"{spec.kind}: already names the owner; user= cannot be given too"
    return None


def _option_names(attrs: list[str]) -> str:
    names = {"date_field": "date", "licenses": "license", "user_id": "user"}
    return ", ".join(f"{names.get(a, a)}=" for a in attrs)


_SAFE = re.compile(r"[^0-9a-z]+")


def directory_name(kind: SourceKind, name: str, source_id: str) -> str:
    """A safe, stable output-directory name for a resolved source: `album-my-trip-7215…`."""
    slug = _SAFE.sub("-", name.lower()).strip("-")[:40].strip("-")
    safe_id = _SAFE.sub("-", source_id.lower().replace("@", "at")).strip("-")
    return "-".join(part for part in (kind.value, slug, safe_id) if part)


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceIdentity:
    """A resolved source: the id the API takes, its display name, and its owner if it has one."""

    kind: SourceKind
    source_id: str  # NSID (user, commons), group NSID, photoset id or gallery id
    name: str
    owner: str | None = None
    count: int | None = None


def resolved_query(kq: KeywordQuery, identity: SourceIdentity) -> KeywordQuery:
    """The keyword a resolved source line becomes: its directory name and what to ask the API.

    Users and institutions are searched by `user_id`, groups by `group_id` (the window planner
    keeps a large photostream or pool exact past the 4,000 cap); albums and galleries are walked
    with their list methods.
    """
    keyword = directory_name(identity.kind, identity.name, identity.source_id)
    if identity.kind in (SourceKind.USER, SourceKind.COMMONS):
        return replace(kq, keyword=keyword, user_id=identity.source_id)
    if identity.kind is SourceKind.GROUP:
        return replace(kq, keyword=keyword, group_id=identity.source_id)
    list_kind = ListKind.PHOTOSET if identity.kind is SourceKind.ALBUM else ListKind.GALLERY
    return replace(kq, keyword=keyword, listing=(list_kind, identity.source_id, identity.owner))
