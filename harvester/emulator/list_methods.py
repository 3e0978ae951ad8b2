"""The REST methods of albums, galleries, group pools and Commons, over the lists of lists.py.

Shapes follow Flickr's reflection data (docs/flickr-api-sources.md): photosets.getPhotos answers
a `photoset` object whose photos carry no `owner` (the set's is theirs); galleries.getPhotos and
groups.pools.getPhotos answer the standard `photos` object. Lists are not capped at 4,000 and
have no date quirks: pages past the last are empty. A list id in `ctx.gone` (a test's switch)
answers "not found", as a list deleted mid-run does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np

from harvester.emulator.lists import PhotoList, commons_rows, lists_of
from harvester.emulator.photojson import RecordBuilder
from harvester.emulator.search import Filters, SearchError

if TYPE_CHECKING:
    from harvester.emulator.methods import MethodContext

Json = dict[str, Any]
Params = Mapping[str, str]
PHOTOSET_NOT_FOUND = (1, "Photoset not found")
GALLERY_NOT_FOUND = (1, "Gallery not found")
GROUP_NOT_FOUND = (1, "Group not found")
POOL_FORBIDDEN = (4, "You don't have permission to view this pool")
MAX_PER_PAGE = 500


def _paging(params: Params, default: int) -> tuple[int, int]:
    try:
        page = max(1, int(params.get("page", "1") or 1))
    except ValueError:
        page = 1
    try:
        per_page = int(params.get("per_page", "") or default)
    except ValueError:
        per_page = default
    return page, default if per_page < 1 else min(per_page, MAX_PER_PAGE)


def _page(
    ctx: MethodContext, lst: PhotoList, params: Params, default: int
) -> tuple[Json, list[Json]]:
    page, per_page = _paging(params, default)
    rows = lst.rows
    if params.get("user_id", "").strip() and lst.owner < 0:  # a pool: one contributor's photos
        owner = ctx.owners().get(params["user_id"].strip())
        rows = rows[ctx.corpus.cols["owner"][rows] == owner] if owner is not None else rows[:0]
    total = int(rows.size)
    shown = rows[(page - 1) * per_page : page * per_page].tolist()
    extras = params.get("extras", "").split(",")
    builder = RecordBuilder(ctx.corpus, ctx.base_url, extras, bool(ctx.config.loose_types))
    head: Json = {"page": page, "pages": math.ceil(total / per_page), "perpage": per_page}
    head["total"] = str(total) if ctx.config.loose_types else total
    return head, [builder.record(int(r)) for r in shown]


def _known(
    ctx: MethodContext, table: dict[str, PhotoList], key: str, error: tuple[int, str]
) -> PhotoList:
    lst = table.get(key.strip())
    if lst is None or lst.private or lst.list_id in ctx.gone:
        raise SearchError(*error)
    return lst


def photoset_photos(ctx: MethodContext, params: Params) -> Json:
    """flickr.photosets.getPhotos: the `photoset` object, per_page default and maximum 500."""
    lst = _known(
        ctx, lists_of(ctx.corpus).albums, params.get("photoset_id", ""), PHOTOSET_NOT_FOUND
    )
    head, photos = _page(ctx, lst, params, MAX_PER_PAGE)
    primary = ctx.corpus.photo_id(int(lst.rows[0])) if lst.rows.size else "0"
    for photo in photos:
        photo.pop("owner", None)
        photo["isprimary"] = "1" if photo["id"] == primary else "0"
    block = {
        "id": lst.list_id,
        "primary": primary,
        "owner": ctx.corpus.owner_nsid[lst.owner],
        "ownername": ctx.corpus.owner_name[lst.owner],
        "photo": photos,
        "page": head["page"],
        "per_page": head["perpage"],
        "perpage": head["perpage"],
        "pages": head["pages"],
        "title": lst.title,
        "total": str(head["total"]),  # a string in real photoset pages (docs/flickr-api-sources.md)
    }
    return {"photoset": block, "stat": "ok"}


def photoset_info(ctx: MethodContext, params: Params) -> Json:
    """flickr.photosets.getInfo: owner, title, counts."""
    lst = _known(
        ctx, lists_of(ctx.corpus).albums, params.get("photoset_id", ""), PHOTOSET_NOT_FOUND
    )
    primary = ctx.corpus.photo_id(int(lst.rows[0])) if lst.rows.size else "0"
    block = {
        "id": lst.list_id,
        "owner": ctx.corpus.owner_nsid[lst.owner],
        "username": ctx.corpus.owner_name[lst.owner],
        "primary": primary,
        "photos": int(lst.rows.size),
        "count_photos": int(lst.rows.size),
        "count_videos": 0,
        "title": {"_content": lst.title},
        "description": {"_content": ""},
    }
    return {"photoset": block, "stat": "ok"}


def _gallery_block(ctx: MethodContext, lst: PhotoList) -> Json:
    curator = ctx.corpus.owner_nsid[lst.owner]
    alias = ctx.corpus.owner_alias[lst.owner] or curator
    return {
        "id": lst.list_id,
        "url": f"https://www.flickr.com/photos/{alias}/galleries/{lst.alias}/",
        "owner": curator,
        "primary_photo_id": ctx.corpus.photo_id(int(lst.rows[0])) if lst.rows.size else "0",
        "count_photos": int(lst.rows.size),
        "count_videos": 0,
        "title": {"_content": lst.title},
        "description": {"_content": ""},
    }


def gallery_photos(ctx: MethodContext, params: Params) -> Json:
    """flickr.galleries.getPhotos: the standard `photos` object, per_page default 100."""
    lst = _known(
        ctx, lists_of(ctx.corpus).galleries, params.get("gallery_id", ""), GALLERY_NOT_FOUND
    )
    head, photos = _page(ctx, lst, params, 100)
    for photo in photos:
        photo["is_primary"], photo["has_comment"] = 0, 0
    return {"photos": {**head, "photo": photos}, "stat": "ok"}


def gallery_info(ctx: MethodContext, params: Params) -> Json:
    """flickr.galleries.getInfo."""
    lst = _known(
        ctx, lists_of(ctx.corpus).galleries, params.get("gallery_id", ""), GALLERY_NOT_FOUND
    )
    return {"gallery": _gallery_block(ctx, lst), "stat": "ok"}


def lookup_gallery(ctx: MethodContext, params: Params) -> Json:
    """flickr.urls.lookupGallery: …/photos/NAME/galleries/ID/ → the gallery (getInfo's shape)."""
    parts = [p for p in urlsplit(params.get("url", "").strip()).path.split("/") if p]
    short = parts[3] if len(parts) >= 4 and parts[0] == "photos" and parts[2] == "galleries" else ""
    lst = lists_of(ctx.corpus).gallery_by_short_id(short)
    if lst is None or lst.list_id in ctx.gone:
        raise SearchError(*GALLERY_NOT_FOUND)
    return {"gallery": _gallery_block(ctx, lst), "stat": "ok"}


def pool_photos(ctx: MethodContext, params: Params) -> Json:
    """flickr.groups.pools.getPhotos: the standard `photos` object with `dateadded`."""
    lst = _known(ctx, lists_of(ctx.corpus).groups, params.get("group_id", ""), GROUP_NOT_FOUND)
    head, photos = _page(ctx, lst, params, 100)
    for photo in photos:
        photo["dateadded"] = photo.get("dateupload") or "0"
    return {"photos": {**head, "photo": photos}, "stat": "ok"}


def group_info(ctx: MethodContext, params: Params) -> Json:
    """flickr.groups.getInfo: id, name, members, pool count."""
    lst = _known(ctx, lists_of(ctx.corpus).groups, params.get("group_id", ""), GROUP_NOT_FOUND)
    block = {
        "id": lst.list_id,
        "path_alias": lst.alias,
        "name": {"_content": lst.title},
        "description": {"_content": ""},
        "members": {"_content": str(100 + int(lst.rows.size) // 7)},
        "pool_count": {"_content": int(lst.rows.size)},
        "privacy": {"_content": "3"},
    }
    return {"group": block, "stat": "ok"}


def lookup_group(ctx: MethodContext, params: Params) -> Json:
    """flickr.urls.lookupGroup: a group page or pool URL (alias or NSID) → id and groupname."""
    parts = urlsplit(params.get("url", "").strip())
    segments = [p for p in parts.path.split("/") if p]
    ok_host = parts.netloc.lower() in ("www.flickr.com", "flickr.com", "m.flickr.com")
    lst = None
    if ok_host and len(segments) >= 2 and segments[0] == "groups":
        lst = lists_of(ctx.corpus).group_by_alias(segments[1])
    if lst is None or lst.list_id in ctx.gone:
        raise SearchError(*GROUP_NOT_FOUND)
    return {"group": {"id": lst.list_id, "groupname": {"_content": lst.title}}, "stat": "ok"}


def institutions(ctx: MethodContext, params: Params) -> Json:
    """flickr.commons.getInstitutions: `<institution nsid date_launch><name><urls>` in JSON."""
    items = []
    for nsid, name, launch, owner in lists_of(ctx.corpus).institutions:
        alias = ctx.corpus.owner_alias[owner] or nsid
        urls = [
            {"type": "site", "_content": f"https://www.example.org/{alias}/"},
            {"type": "license", "_content": "https://www.flickr.com/commons/usage/"},
            {"type": "flickr", "_content": f"https://www.flickr.com/photos/{alias}/"},
        ]
        items.append(
            {
                "nsid": nsid,
                "date_launch": str(launch),
                "name": {"_content": name},
                "urls": {"url": urls},
            }
        )
    return {"institutions": {"institution": items}, "stat": "ok"}


def with_pool(ctx: MethodContext, f: Filters, params: Params) -> Filters:
    """Search filters restricted to a group pool when `group_id` is given (search's code 4)."""
    group_id = params.get("group_id", "").strip()
    if not group_id:
        return f
    lst = lists_of(ctx.corpus).groups.get(group_id)
    if lst is None or lst.list_id in ctx.gone:
        raise SearchError(*POOL_FORBIDDEN)
    from dataclasses import replace

    return replace(f, pool=lst.sorted_rows)


def list_truth(ctx: MethodContext, params: Params) -> list[str] | None:
    """Truth for `photoset_id=`, `gallery_id=` or `commons=1` (None for other queries)."""
    lists = lists_of(ctx.corpus)
    if pid := params.get("photoset_id", "").strip():
        rows = _known(ctx, lists.albums, pid, PHOTOSET_NOT_FOUND).rows
    elif gid := params.get("gallery_id", "").strip():
        rows = _known(ctx, lists.galleries, gid, GALLERY_NOT_FOUND).rows
    elif params.get("commons", "").strip() not in ("", "0"):
        rows = commons_rows(ctx.corpus)
    else:
        return None
    return [str(i) for i in ctx.corpus.cols["id"][np.asarray(rows, dtype=np.int64)].tolist()]


LIST_METHODS = {
    "flickr.photosets.getPhotos": photoset_photos,
    "flickr.photosets.getInfo": photoset_info,
    "flickr.galleries.getPhotos": gallery_photos,
    "flickr.galleries.getInfo": gallery_info,
    "flickr.urls.lookupGallery": lookup_gallery,
    "flickr.groups.pools.getPhotos": pool_photos,
    "flickr.groups.getInfo": group_info,
    "flickr.urls.lookupGroup": lookup_group,
    "flickr.commons.getInstitutions": institutions,
}
