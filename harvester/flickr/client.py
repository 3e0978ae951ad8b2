"""The async Flickr REST client: budgeted, retried, typed, and careful never to leak the key.

Calls are form-encoded POSTs (as flickrapi sends them), so the API key travels in the body and
never in a URL that aiohttp could quote in an error. Each attempt takes one token from the
`CallBudget` before it goes out; transient failures are retried under `RetryPolicy`
(harvester/retry.py), permanent ones raise `FlickrError`, code 100 `InvalidApiKeyError`.
Parsing of the loose JSON lives in flickr/parse.py; where the key comes from, in flickr/keys.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp

from harvester.config import FLICKR_REST_URL
from harvester.exceptions import FlickrError, HarvestError, TransientApiError
from harvester.flickr.budget import CallBudget
from harvester.flickr.listings import (
    Institution,
    Resolved,
    list_params,
    parse_gallery_info,
    parse_group,
    parse_institutions,
    parse_list_page,
    parse_photoset_info,
)
from harvester.flickr.parse import (
    JsonObject,
    as_int,
    as_str,
    decode_response,
    parse_search_page,
    search_params,
)
from harvester.flickr.people import (
    NO_SUCH_USER,
    FlickrUser,
    find_by_username_params,
    get_info_params,
    lookup_user_params,
    parse_person,
    parse_user,
)
from harvester.licenses import License
from harvester.records import ListQuery, SearchPage, SearchQuery, SizeVariant
from harvester.retry import RetryPolicy, retry_async

log = logging.getLogger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

_KEY_MASK = "[api-key]"

#: getSizes labels → the url_X suffix labels used everywhere else.
_SIZE_LABELS = {
    "Square": "sq",
    "Large Square": "q",
    "Thumbnail": "t",
    "Small": "s",
    "Small 320": "n",
    "Small 400": "w",
    "Medium": "m",
    "Medium 640": "z",
    "Medium 800": "c",
    "Large": "l",
    "Large 1600": "h",
    "Large 2048": "k",
    "X-Large 3K": "3k",
    "X-Large 4K": "4k",
    "X-Large 5K": "5k",
    "X-Large 6K": "6k",
    "Original": "o",
}


@dataclass(slots=True)
class ClientStats:
    """Live counters for the progress display: calls sent, retries and drops by reason."""

    calls: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    gave_up: int = 0
    rejected_records: Counter[str] = field(default_factory=Counter)

    @property
    def retries_total(self) -> int:
        """All retries, whatever the reason."""
        return sum(self.retries.values())


class _NetworkError(TransientApiError):
    """A timeout or connection failure, with the reason tag used in the retry tally."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class FlickrClient:
    """flickr.photos.search and friends over a shared aiohttp session; a `SearchBackend`."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_key: str,
        budget: CallBudget,
        *,
        rest_url: str = FLICKR_REST_URL,
        policy: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        timeout_s: float = 60.0,
    ) -> None:
        self._session = session
        self._key = api_key
        self._budget = budget
        self._url = rest_url
        self._policy = policy or RetryPolicy()
        self._sleep = sleep
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.stats = ClientStats()

    async def search(self, query: SearchQuery) -> SearchPage:
        """One page of flickr.photos.search with every extra later stages need."""
        return await self._call(search_params(query), self._parse_search)

    async def licenses(self) -> tuple[License, ...]:
        """flickr.photos.licenses.getInfo, in the order Flickr returns them."""
        params = {"method": "flickr.photos.licenses.getInfo"}
        return await self._call(params, _parse_licenses)

    async def echo(self) -> None:
        """flickr.test.echo: the cheapest call that proves the key works (raises if not)."""
        await self._call({"method": "flickr.test.echo"}, lambda _data: None)

    async def get_sizes(self, photo_id: str) -> tuple[SizeVariant, ...]:
        """flickr.photos.getSizes, for diagnostics only: the harvest itself never needs it."""
        params = {"method": "flickr.photos.getSizes", "photo_id": photo_id}
        return await self._call(params, _parse_sizes)

    async def find_by_username(self, username: str) -> FlickrUser | None:
        """flickr.people.findByUsername; None when no one has that screen name."""
        return await self._user(find_by_username_params(username), parse_user)

    async def lookup_user(self, url: str) -> FlickrUser | None:
        """flickr.urls.lookupUser of a photostream or profile URL; None when it is no one's."""
        return await self._user(lookup_user_params(url), parse_user)

    async def person(self, nsid: str) -> FlickrUser | None:
        """flickr.people.getInfo; None when Flickr knows no such (or a deleted) user."""
        return await self._user(get_info_params(nsid), parse_person)

    async def _user(
        self, params: Mapping[str, str], parse: Callable[[JsonObject], FlickrUser]
    ) -> FlickrUser | None:
        try:
            return await self._call(params, parse)
        except FlickrError as exc:
            if exc.code in NO_SUCH_USER:
                return None
            raise

    async def list_page(self, query: ListQuery) -> SearchPage:
        """One page of a photoset, gallery or group pool, with the same extras as search."""

        def parse(data: JsonObject) -> SearchPage:
            parsed = parse_list_page(query.kind, data)
            if parsed.rejected:
                self.stats.rejected_records.update(parsed.rejected)
            return parsed.page

        return await self._call(list_params(query), parse)

    async def photoset_info(self, photoset_id: str, owner: str | None = None) -> Resolved:
        """flickr.photosets.getInfo (FlickrError code 1: no such, or a private, photoset);
        `owner` (an NSID) goes as `user_id`, which the 2020 reflection data lists as required."""
        params = {"method": "flickr.photosets.getInfo", "photoset_id": photoset_id}
        if owner:
            params["user_id"] = owner
        return await self._call(params, parse_photoset_info)

    async def gallery_info(self, gallery_id: str) -> Resolved:
        """flickr.galleries.getInfo of a gallery id."""
        params = {"method": "flickr.galleries.getInfo", "gallery_id": gallery_id}
        return await self._call(params, lambda d: parse_gallery_info(d, params["method"]))

    async def lookup_gallery(self, url: str) -> Resolved:
        """flickr.urls.lookupGallery of a gallery URL."""
        params = {"method": "flickr.urls.lookupGallery", "url": url}
        return await self._call(params, lambda d: parse_gallery_info(d, params["method"]))

    async def lookup_group(self, url: str) -> Resolved:
        """flickr.urls.lookupGroup of a group page or pool URL."""
        params = {"method": "flickr.urls.lookupGroup", "url": url}
        return await self._call(params, lambda d: parse_group(d, params["method"]))

    async def group_info(self, group_id: str) -> Resolved:
        """flickr.groups.getInfo of a group NSID."""
        params = {"method": "flickr.groups.getInfo", "group_id": group_id}
        return await self._call(params, lambda d: parse_group(d, params["method"]))

    async def institutions(self) -> tuple[Institution, ...]:
        """flickr.commons.getInstitutions: every Flickr Commons member."""
        return await self._call({"method": "flickr.commons.getInstitutions"}, parse_institutions)

    def _parse_search(self, data: JsonObject) -> SearchPage:
        parsed = parse_search_page(data)
        if parsed.rejected:
            self.stats.rejected_records.update(parsed.rejected)
            log.warning("dropped malformed photo records: %s", dict(parsed.rejected))
        return parsed.page

    async def _call(self, params: Mapping[str, str], parse: Callable[[JsonObject], T]) -> T:
        form = {**params, "api_key": self._key, "format": "json", "nojsoncallback": "1"}

        async def attempt() -> T:
            try:
                return parse(await self._post(form))
            except TransientApiError:
                raise  # retried; scrubbed below once it is the last
            except HarvestError as exc:
                raise _scrubbed(exc, self._key) from None

        try:
            return await retry_async(
                attempt,
                policy=self._policy,
                retry_on=(TransientApiError,),
                what=params["method"],
                sleep=self._sleep,
                on_retry=self._count_retry,
            )
        except TransientApiError as exc:
            self.stats.gave_up += 1
            raise _scrubbed(exc, self._key) from None

    def _count_retry(self, exc: TransientApiError) -> None:
        self.stats.retries[_reason(exc)] += 1

    async def _post(self, form: Mapping[str, str]) -> JsonObject:
        await self._budget.acquire()
        self.stats.calls += 1
        try:
            async with self._session.post(self._url, data=form, timeout=self._timeout) as resp:
                body = await resp.read()
                status = resp.status
        except TimeoutError:
            raise _NetworkError("Flickr API request timed out", "timeout") from None
        except aiohttp.ClientPayloadError:
            raise _NetworkError("Flickr API response cut short", "truncated") from None
        except aiohttp.ClientError as exc:
            text = _mask(f"{type(exc).__name__}: {exc}", self._key)
            raise _NetworkError(f"Flickr API connection error ({text})", "connection") from None
        return decode_response(status, body)

    def __repr__(self) -> str:
        budget = self._budget
        left = max(0.0, budget.calls_per_hour - budget.used_last_hour())
        return (
            f"FlickrClient(calls={self.stats.calls}, retries={dict(self.stats.retries)}, "
            f"gave_up={self.stats.gave_up}, budget_left={left:g}/{budget.calls_per_hour:g}/h)"
        )


def _reason(exc: TransientApiError) -> str:
    if isinstance(exc, _NetworkError):
        return exc.reason
    if exc.status is not None:
        return f"http_{exc.status}"
    if exc.code is not None:
        return f"code_{exc.code}"
    return "bad_body"


def _mask(text: str, key: str) -> str:
    return text.replace(key, _KEY_MASK) if key else text


def _scrubbed(exc: HarvestError, key: str) -> HarvestError:
    """The same exception with the key masked wherever the server might have echoed it."""
    exc.args = tuple(_mask(a, key) if isinstance(a, str) else a for a in exc.args)
    if isinstance(getattr(exc, "message", None), str):
        exc.message = _mask(exc.message, key)  # type: ignore[attr-defined]
    return exc


def _parse_licenses(data: JsonObject) -> tuple[License, ...]:
    block = data.get("licenses")
    items = block.get("license") if isinstance(block, dict) else None
    if not isinstance(items, list):
        raise TransientApiError("stat=ok but no licence list in licenses.getInfo")
    return tuple(
        License(
            id=as_int(item.get("id")) or 0,
            name=as_str(item.get("name")),
            url=as_str(item.get("url")),
        )
        for item in items
        if isinstance(item, dict)
    )


def _parse_sizes(data: JsonObject) -> tuple[SizeVariant, ...]:
    block = data.get("sizes")
    items = block.get("size") if isinstance(block, dict) else None
    if not isinstance(items, list):
        raise TransientApiError("stat=ok but no size list in photos.getSizes")
    return tuple(_size_variant(item) for item in items if isinstance(item, dict))


def _size_variant(item: Mapping[str, Any]) -> SizeVariant:
    label = as_str(item.get("label"))
    return SizeVariant(
        label=_SIZE_LABELS.get(label, label),
        url=as_str(item.get("source")),
        width=as_int(item.get("width")) or 0,
        height=as_int(item.get("height")) or 0,
    )
