"""Source lines resolved once, before the run: names and URLs → ids, cached in the store.

`user:` names go to flickr.people.findByUsername (then flickr.urls.lookupUser as a photostream
alias), URLs to flickr.urls.lookupUser, NSIDs to flickr.people.getInfo; `group:` URLs and
aliases to flickr.urls.lookupGroup, NSIDs to flickr.groups.getInfo; `album:` to
flickr.photosets.getInfo; `gallery:` ids to flickr.galleries.getInfo, URLs to
flickr.urls.lookupGallery; `commons:` to one flickr.commons.getInstitutions. Each call is taken
from the key's shared budget; each answer is cached in the store, so a resumed run asks nothing.
A source Flickr does not know (or will not show: a private album is "Photoset not found") is a
QueriesFileError naming the file and line, raised before anything is claimed or downloaded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

from harvester.exceptions import FlickrError, QueriesFileError
from harvester.flickr.client import FlickrClient
from harvester.flickr.listings import Institution, Resolved
from harvester.flickr.people import FlickrUser
from harvester.search.queries import KeywordQuery, QueryFile
from harvester.search.source_lines import (
    ALL_INSTITUTIONS,
    RefForm,
    SourceIdentity,
    SourceKind,
    SourceSpec,
    resolved_query,
)
from harvester.sources import ApiAccess
from harvester.store.lookups import cache_lookups, cached_lookups
from harvester.store.outputs import add_api_calls
from harvester.store.sqlite import Store

log = logging.getLogger(__name__)

#: What each list's "not found" (code 1) means to the user.
_NOT_FOUND = {
    SourceKind.ALBUM: "no such album, or a private one (Flickr answers 'Photoset not found')",
    SourceKind.GALLERY: "no such gallery ('Gallery not found')",
    SourceKind.GROUP: "no such group ('Group not found')",
}


class UnknownSource(Exception):
    """A source Flickr does not know; carries the sentence for the queries-file error."""


def resolve_queries(queries: QueryFile, store: Store, access: ApiAccess) -> QueryFile:
    """The queries with every source line resolved (through the cache, else the API)."""
    lines = [kq for kq in queries.keywords if kq.source is not None]
    if not lines:
        return queries
    cache = cached_lookups(store)
    missing = [kq for kq in lines if _spec(kq).cache_key not in cache]
    if missing:
        found, calls = asyncio.run(_resolve_all(missing, access, queries.path))
        cache_lookups(store, found)
        add_api_calls(store, calls)
        cache.update(found)
    keywords: list[KeywordQuery] = []
    for kq in queries.keywords:
        if kq.source is None:
            keywords.append(kq)
            continue
        members = cache[kq.source.cache_key]["members"]
        keywords += [resolved_query(kq, _identity(m)) for m in members]
    _check_distinct(keywords, queries.path)
    return replace(queries, keywords=tuple(keywords))


def _spec(kq: KeywordQuery) -> SourceSpec:
    assert kq.source is not None
    return kq.source


def _identity(member: dict[str, Any]) -> SourceIdentity:
    return SourceIdentity(
        kind=SourceKind(member["kind"]),
        source_id=member["source_id"],
        name=member["name"],
        owner=member.get("owner"),
        count=member.get("count"),
    )


def _check_distinct(keywords: Sequence[KeywordQuery], path: str) -> None:
    """Two lines naming one source would share a directory: the second is an error."""
    first: dict[str, int] = {}
    for kq in keywords:
        key = kq.keyword.casefold()
        if key in first:
            raise QueriesFileError(
                path, kq.line, f"names the same source as line {first[key]} ({kq.keyword})"
            )
        first.setdefault(key, kq.line)


async def _resolve_all(
    lines: Sequence[KeywordQuery], access: ApiAccess, path: str
) -> tuple[dict[str, dict[str, Any]], int]:
    found: dict[str, dict[str, Any]] = {}
    async with access.client() as client:
        resolver = Resolver(client)
        for kq in lines:
            spec = _spec(kq)
            if spec.cache_key in found:
                continue
            try:
                members, via = await resolver.resolve(spec)
            except UnknownSource as exc:
                raise QueriesFileError(path, kq.line, str(exc)) from None
            log.info("%s:%s is %s (%s)", spec.kind, spec.ref, members[0].source_id, via)
            found[spec.cache_key] = {"members": [_json(m) for m in members], "via": via}
        return found, client.stats.calls


def _json(identity: SourceIdentity) -> dict[str, Any]:
    return {**asdict(identity), "kind": identity.kind.value}


class Resolver:
    """One resolution per source line; the Commons list is asked for once."""

    def __init__(self, client: FlickrClient) -> None:
        self._client = client
        self._institutions: tuple[Institution, ...] | None = None

    async def resolve(self, spec: SourceSpec) -> tuple[list[SourceIdentity], str]:
        """The source's identities (several for `commons:*`) and the method that found them."""
        if spec.kind is SourceKind.USER:
            return [await self._user(spec)], "flickr.people / flickr.urls.lookupUser"
        if spec.kind is SourceKind.COMMONS:
            return await self._commons(spec), "flickr.commons.getInstitutions"
        try:
            found = await self._list(spec)
        except FlickrError as exc:
            if exc.code == 1:
                raise UnknownSource(f"{spec.kind}:{spec.ref}: {_NOT_FOUND[spec.kind]}") from None
            raise
        return [self._of(spec.kind, found)], found.via

    @staticmethod
    def _of(kind: SourceKind, found: Resolved) -> SourceIdentity:
        return SourceIdentity(
            kind=kind,
            source_id=found.source_id,
            name=found.name,
            owner=found.owner,
            count=found.count,
        )

    async def _list(self, spec: SourceSpec) -> Resolved:
        client, url = self._client, spec.form is RefForm.URL
        if spec.kind is SourceKind.ALBUM:
            return await client.photoset_info(spec.ref, spec.owner)
        if spec.kind is SourceKind.GALLERY:
            return await (client.lookup_gallery(spec.ref) if url else client.gallery_info(spec.ref))
        if spec.form is RefForm.ID:
            return await client.group_info(spec.ref)
        ref = spec.ref if url else f"https://www.flickr.com/groups/{spec.ref}/"
        return await client.lookup_group(ref)

    async def _user(self, spec: SourceSpec) -> SourceIdentity:
        user = await self._find_user(spec)
        if user is None:
            raise UnknownSource(f"user:{spec.ref}: Flickr knows no such user ('User not found')")
        return SourceIdentity(kind=SourceKind.USER, source_id=user.nsid, name=user.username)

    async def _find_user(self, spec: SourceSpec) -> FlickrUser | None:
        client = self._client
        if spec.form is RefForm.ID:
            return await client.person(spec.ref)
        if spec.form is RefForm.URL:
            return await client.lookup_user(spec.ref)
        user = await client.find_by_username(spec.ref)
        if user is None and not any(c.isspace() for c in spec.ref):  # a photostream alias?
            user = await client.lookup_user(f"https://www.flickr.com/photos/{spec.ref}/")
        return user

    async def _commons(self, spec: SourceSpec) -> list[SourceIdentity]:
        if self._institutions is None:
            self._institutions = await self._client.institutions()
        wanted = spec.ref.casefold()
        members = [
            SourceIdentity(kind=SourceKind.COMMONS, source_id=i.nsid, name=i.name)
            for i in self._institutions
            if spec.ref == ALL_INSTITUTIONS or wanted in (i.nsid.casefold(), i.name.casefold())
        ]
        if not members:
            raise UnknownSource(
                f"commons:{spec.ref}: no Flickr Commons institution has that name or NSID"
            )
        return members
