"""Pure request/response code for sources: list methods, their look-ups, Commons institutions.

Shapes (docs/flickr-api-sources.md has the sources): flickr.photosets.getPhotos answers
`{"photoset": {"id", "owner", "ownername", "page", "perpage", "pages", "total", "photo": [...]}}`
with no `owner` in its photos (the set's owner is theirs); galleries.getPhotos and
groups.pools.getPhotos answer the standard `{"photos": {...}}` of flickr.photos.search. Every
list call asks for the same `extras` as search, so no photo costs a further call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harvester.exceptions import TransientApiError
from harvester.flickr.parse import (
    EXTRAS,
    JsonObject,
    ParsedPage,
    as_int,
    as_str,
    parse_description,
    parse_photos,
)
from harvester.records import ListKind, ListQuery, SearchPage

#: Each list's method, its id parameter and the key of its page object (reflection data,
#: 2020); which stat=fail codes mean "gone" is search/listings.py's LIST_GONE_CODES.
LIST_METHODS: dict[ListKind, tuple[str, str, str]] = {
    ListKind.PHOTOSET: ("flickr.photosets.getPhotos", "photoset_id", "photoset"),
    ListKind.GALLERY: ("flickr.galleries.getPhotos", "gallery_id", "photos"),
    ListKind.POOL: ("flickr.groups.pools.getPhotos", "group_id", "photos"),
}
MAX_PER_PAGE = 500  # all three list methods (reflection data: "The maximum allowed value is 500")


@dataclass(frozen=True, slots=True, kw_only=True)
class Resolved:
    """A source's identity as the API gave it: id, display name, owner, photo count if known."""

    source_id: str
    name: str
    owner: str | None = None
    count: int | None = None
    via: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Institution:
    """A Flickr Commons member: its account NSID, name and launch date (unix seconds)."""

    nsid: str
    name: str
    launched: int = 0


def list_params(query: ListQuery) -> dict[str, str]:
    """The parameters of one list page (without the api_key/format envelope)."""
    method, id_param, _key = LIST_METHODS[query.kind]
    params = {
        "method": method,
        id_param: query.list_id,
        "extras": ",".join(EXTRAS),
        "page": str(query.page),
        "per_page": str(min(query.per_page, MAX_PER_PAGE)),
    }
    if query.kind is ListKind.PHOTOSET:
        params["media"] = "photos"
        if query.owner:
            params["user_id"] = query.owner
    return params


def parse_list_page(kind: ListKind, data: Mapping[str, Any]) -> ParsedPage:
    """A stat=ok list body as a SearchPage; a photoset's owner is given to its photos."""
    _method, _param, key = LIST_METHODS[kind]
    block = data.get(key)
    if not isinstance(block, dict):
        raise TransientApiError(f"stat=ok but no '{key}' object in the list response")
    raw = block.get("photo")
    items = raw if isinstance(raw, list) else []
    owner = as_str(block.get("owner"))
    if kind is ListKind.PHOTOSET and owner:
        items = [{"owner": owner, **item} if isinstance(item, dict) else item for item in items]
    records, rejected = parse_photos(items)
    page = SearchPage(
        page=as_int(block.get("page")) or 1,
        pages=as_int(block.get("pages")),
        per_page=as_int(block.get("perpage")) or as_int(block.get("per_page")) or len(records),
        total=as_int(block.get("total")),
        photos=records,
    )
    return ParsedPage(page=page, rejected=rejected)


def _block(data: JsonObject, name: str) -> dict[str, Any]:
    block = data.get(name)
    if not isinstance(block, dict):
        raise TransientApiError(f"stat=ok but no '{name}' object in the response")
    return block


def parse_photoset_info(data: JsonObject) -> Resolved:
    """flickr.photosets.getInfo: id, title, owner and photo count."""
    block = _block(data, "photoset")
    return Resolved(
        source_id=as_str(block.get("id")),
        name=parse_description(block.get("title")),
        owner=as_str(block.get("owner")) or None,
        count=as_int(block.get("count_photos")) or as_int(block.get("photos")),
        via="flickr.photosets.getInfo",
    )


def parse_gallery_info(data: JsonObject, via: str) -> Resolved:
    """flickr.galleries.getInfo or flickr.urls.lookupGallery (the same `gallery` object)."""
    block = _block(data, "gallery")
    return Resolved(
        source_id=as_str(block.get("id")),
        name=parse_description(block.get("title")),
        owner=as_str(block.get("owner")) or None,
        count=as_int(block.get("count_photos")),
        via=via,
    )


def parse_group(data: JsonObject, via: str) -> Resolved:
    """flickr.urls.lookupGroup (`groupname`) or flickr.groups.getInfo (`name`)."""
    block = _block(data, "group")
    name = parse_description(block.get("groupname")) or parse_description(block.get("name"))
    return Resolved(source_id=as_str(block.get("id")), name=name, via=via)


def parse_institutions(data: JsonObject) -> tuple[Institution, ...]:
    """flickr.commons.getInstitutions: every member, in the order Flickr lists them."""
    block = _block(data, "institutions")
    items = block.get("institution")
    if not isinstance(items, list):
        raise TransientApiError("stat=ok but no institution list in commons.getInstitutions")
    return tuple(
        Institution(
            nsid=as_str(item.get("nsid")),
            name=parse_description(item.get("name")),
            launched=as_int(item.get("date_launch")) or 0,
        )
        for item in items
        if isinstance(item, dict) and as_str(item.get("nsid"))
    )
