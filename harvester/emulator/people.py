"""Flickr's people: the institutions among the corpus owners, and the three user look-ups.

`flickr.people.findByUsername` (a screen name), `flickr.urls.lookupUser` (a photostream or
profile URL, by alias or NSID) and `flickr.people.getInfo` (an NSID) answer in the shapes of
the recorded responses (fixtures/flickr/cassettes/test_get_public_photos_by_user.yml), and
with code 1 "User not found" for anyone the corpus does not hold.

Some owners are institutions (institutions.py), so a harvest finds photos of several sources.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from harvester.emulator.search import SearchError

if TYPE_CHECKING:
    from harvester.emulator.methods import MethodContext

Json = dict[str, Any]
USER_NOT_FOUND = (1, "User not found")

_PHOTOS_PATH = re.compile(r"/(?:photos|people)/([^/]+)")


def find_by_username(ctx: MethodContext, params: Mapping[str, str]) -> Json:
    """flickr.people.findByUsername: the NSID of a screen name (case does not matter)."""
    owner = ctx.owner_names().get(params.get("username", "").strip().lower())
    if owner is None:
        raise _not_found()
    nsid = ctx.corpus.owner_nsid[owner]
    user = {"id": nsid, "nsid": nsid, "username": {"_content": ctx.corpus.owner_name[owner]}}
    return {"user": user, "stat": "ok"}


def lookup_user(ctx: MethodContext, params: Mapping[str, str]) -> Json:
    """flickr.urls.lookupUser: the owner of a photostream or profile URL (alias or NSID)."""
    owner = _owner_of_url(ctx, params.get("url", ""))
    if owner is None:
        raise _not_found()
    nsid = ctx.corpus.owner_nsid[owner]
    user = {"id": nsid, "username": {"_content": ctx.corpus.owner_name[owner]}}
    return {"user": user, "stat": "ok"}


def get_info(ctx: MethodContext, params: Mapping[str, str]) -> Json:
    """flickr.people.getInfo: a person as the 2024 recording has one."""
    owner = ctx.owners().get(params.get("user_id", "").strip())
    if owner is None:
        raise _not_found()
    return {"person": _person(ctx, owner), "stat": "ok"}


def _person(ctx: MethodContext, owner: int) -> Json:
    corpus = ctx.corpus
    nsid, name = corpus.owner_nsid[owner], corpus.owner_name[owner]
    alias = corpus.owner_alias[owner]
    rows = corpus.cols["owner"] == owner
    count = int(rows.sum())
    first = int(corpus.cols["upload"][rows].min()) if count else 0
    home = f"https://www.flickr.com/photos/{alias or nsid}/"
    return {
        "id": nsid,
        "nsid": nsid,
        "ispro": owner % 2,
        "is_deleted": 0,
        "iconserver": str(owner % 8000 + 1),
        "iconfarm": 9,
        "path_alias": alias,
        "has_stats": 0,
        "pro_badge": "standard" if owner % 2 else None,
        "expire": "0",
        "has_adfree": 0,
        "has_free_standard_shipping": 0,
        "has_free_educational_resources": 0,
        "username": {"_content": name},
        "realname": {"_content": name.capitalize()},
        "mbox_sha1sum": {"_content": hashlib.sha1(nsid.encode()).hexdigest()},
        "location": {"_content": ""},
        "timezone": {
            "label": "GMT: Dublin, Edinburgh, Lisbon, London",
            "offset": "+00:00",
            "timezone_id": "Europe/London",
            "timezone": "1",
        },
        "description": {"_content": ""},
        "photosurl": {"_content": home},
        "profileurl": {"_content": home.replace("/photos/", "/people/")},
        "mobileurl": {"_content": home},
        "photos": {
            "firstdatetaken": {"_content": ""},
            "firstdate": {"_content": str(first)},
            "count": {"_content": count},
        },
    }


def _owner_of_url(ctx: MethodContext, url: str) -> int | None:
    parts = urlsplit(url.strip())
    host = parts.netloc.lower()
    if host not in ("www.flickr.com", "flickr.com", "m.flickr.com"):
        return None
    match = _PHOTOS_PATH.match(parts.path)
    if match is None:
        return None
    who = match.group(1)
    owner = ctx.owners().get(who)
    return owner if owner is not None else ctx.owner_aliases().get(who.lower())


def _not_found() -> SearchError:
    return SearchError(*USER_NOT_FOUND)
