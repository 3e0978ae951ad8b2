"""Pure parsing of Flickr's user look-ups: findByUsername, urls.lookupUser, people.getInfo.

All three answer a user (an NSID and a screen name) or stat=fail code 1 "User not found"
(people.getInfo also code 5, "User deleted"), which the client turns into None: a name that
matches no one is an answer, not a failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harvester.exceptions import TransientApiError
from harvester.flickr.parse import JsonObject, as_str, parse_description

#: stat=fail codes that mean "no such user" in the three methods (reflection data, 2020).
NO_SUCH_USER = frozenset({1, 5})


@dataclass(frozen=True, slots=True, kw_only=True)
class FlickrUser:
    """A Flickr account: its NSID, screen name, and photostream alias when it has one."""

    nsid: str
    username: str
    path_alias: str | None = None


def find_by_username_params(username: str) -> dict[str, str]:
    """flickr.people.findByUsername: a screen name (not the alias in photostream URLs)."""
    return {"method": "flickr.people.findByUsername", "username": username}


def lookup_user_params(url: str) -> dict[str, str]:
    """flickr.urls.lookupUser: a photostream or profile URL, alias or NSID in its path."""
    return {"method": "flickr.urls.lookupUser", "url": url}


def get_info_params(nsid: str) -> dict[str, str]:
    """flickr.people.getInfo of an NSID."""
    return {"method": "flickr.people.getInfo", "user_id": nsid}


def parse_user(data: JsonObject) -> FlickrUser:
    """The `user` of findByUsername (`id` and `nsid`) or lookupUser (`id` only)."""
    user = _object(data, "user")
    return FlickrUser(nsid=_nsid(user), username=parse_description(user.get("username")))


def parse_person(data: JsonObject) -> FlickrUser:
    """The `person` of people.getInfo."""
    person = _object(data, "person")
    alias = as_str(person.get("path_alias")) or None
    username = parse_description(person.get("username"))
    return FlickrUser(nsid=_nsid(person), username=username, path_alias=alias)


def _object(data: JsonObject, name: str) -> dict[str, Any]:
    block = data.get(name)
    if not isinstance(block, dict):
        raise TransientApiError(f"stat=ok but no '{name}' object in the response")
    return block


def _nsid(block: dict[str, Any]) -> str:
    nsid = as_str(block.get("nsid")) or as_str(block.get("id"))
    if not nsid:
        raise TransientApiError("stat=ok but the user has no NSID")
    return nsid
