"""Image downloads: bounded, rate-limited, retried, size-capped and type-checked, into memory.

`Fetcher.fetch(choice)` turns a `SizeChoice` (images/sizes.py) into the image's bytes or a
`DownloadError` with a short reason. Transient failures (HTTP 429 and 5xx, connection errors,
timeouts, truncated bodies) are retried under a `RetryPolicy`; permanent ones (404 and other
4xx, a body over `max_bytes`, a body that is not an image) fail at once. The image hosts get
their own limiter, separate from the API budget, because Flickr's CDN throttles with 429 too;
a 429 carrying `Retry-After` pauses every request to the host, not just the one that got it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
from aiolimiter import AsyncLimiter

from harvester.config import (
    FetchPolicy,
)
from harvester.exceptions import DownloadError
from harvester.images.sizes import SizeChoice
from harvester.records import reason_head
from harvester.retry import retry_async

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

CHUNK_BYTES = 256 * 1024
MAX_RETRY_AFTER_S = 120.0  # never let one header park the whole downloader for longer
#: Magic bytes of the formats Flickr serves (originals may be PNG or GIF).
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Downloaded:
    """An image body in memory, with the type sniffed from its first bytes."""

    data: bytes
    content_type: str
    url: str
    label: str
    status: int


@dataclass(slots=True)
class FetchStats:
    """Running counters of one Fetcher."""

    requests: int = 0
    ok: int = 0
    failed: int = 0
    bytes: int = 0
    in_flight: int = 0
    retries: Counter[str] = field(default_factory=Counter)  # by reason of the failed try
    failures: Counter[str] = field(default_factory=Counter)  # final failures by reason


class HostLimiter(Protocol):
    """A limiter shared beyond this process (a Ray actor's leases): one token per request to
    `host`, and word of each 429 the host sent so the shared rate can back off."""

    async def acquire(self, host: str) -> None: ...

    def throttled(self, host: str) -> None: ...


class _Transient(DownloadError):
    """A failure worth another try; `reason` is the short tally key."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class Fetcher:
    """Downloads image bodies over a shared aiohttp session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        config: FetchPolicy | None = None,
        *,
        limiter: AsyncLimiter | None = None,
        hosts: HostLimiter | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        self.config = config or FetchPolicy()
        self.stats = FetchStats()
        self._session = session
        self._gate = asyncio.Semaphore(self.config.concurrency)
        self._limiter = limiter or AsyncLimiter(self.config.rate_per_s, 1.0)
        self._hosts = hosts  # when given, it paces the requests instead of `_limiter`
        self._sleep = sleep
        self._clock = clock
        self._paused_until = 0.0
        self._timeout = aiohttp.ClientTimeout(
            total=self.config.timeout_s, sock_read=self.config.read_timeout_s
        )

    def __repr__(self) -> str:
        s = self.stats
        retries = sum(s.retries.values())
        return (
            f"<Fetcher in_flight={s.in_flight}/{self.config.concurrency} requests={s.requests} "
            f"ok={s.ok} failed={s.failed} retries={retries} bytes={s.bytes} "
            f"paused={max(0.0, self._paused_until - self._clock()):.1f}s>"
        )

    async def fetch(self, choice: SizeChoice) -> Downloaded:
        """Download `choice`, retrying transient failures; raise DownloadError when it fails."""
        try:
            result = await retry_async(
                functools.partial(self._attempt, choice),
                policy=self.config.retry,
                retry_on=(_Transient,),
                what=f"image {choice.photo_id}_{choice.label}",
                sleep=self._sleep,
                on_retry=self._count_retry,
            )
        except _Transient as exc:
            self._count_failure(exc.reason)
            tries = max(1, self.config.retry.attempts)  # a transient error escapes only the last
            raise DownloadError(f"{exc.reason} (after {tries} tries)") from exc
        except DownloadError as exc:
            self._count_failure(reason_head(str(exc)))
            raise
        self.stats.ok += 1
        return result

    def _count_retry(self, exc: _Transient) -> None:
        self.stats.retries[exc.reason] += 1

    def _count_failure(self, reason: str) -> None:
        self.stats.failed += 1
        self.stats.failures[reason] += 1

    async def _attempt(self, choice: SizeChoice) -> Downloaded:
        """One request: wait out a host pause, take a slot and a token, then read the body."""
        pause = self._paused_until - self._clock()
        if pause > 0:
            await self._sleep(pause)
        async with self._gate:
            if self._hosts is None:
                await self._limiter.acquire()
            else:
                await self._hosts.acquire(_host(choice.url))
            self.stats.in_flight += 1
            self.stats.requests += 1
            try:
                return await self._request(choice)
            finally:
                self.stats.in_flight -= 1

    async def _request(self, choice: SizeChoice) -> Downloaded:
        """GET the URL; aiohttp's errors become ours here and nowhere else."""
        try:
            async with self._session.get(
                choice.url, timeout=self._timeout, allow_redirects=True
            ) as resp:
                self._check_status(resp)
                data = await self._read_body(resp)
                kind = sniff_image_type(data)
                if kind is None:
                    raise DownloadError(f"not an image ({_mime(resp)}, {len(data)} bytes)")
                return Downloaded(
                    data=data,
                    content_type=kind,
                    url=choice.url,
                    label=choice.label,
                    status=resp.status,
                )
        except TimeoutError as exc:
            raise _Transient("timeout") from exc
        except aiohttp.ClientPayloadError as exc:
            raise _Transient("truncated body") from exc
        except aiohttp.ClientError as exc:
            raise _Transient(f"connection: {type(exc).__name__}") from exc

    def _check_status(self, resp: aiohttp.ClientResponse) -> None:
        """Pass 200; make 429/5xx transient and every other status permanent."""
        status = resp.status
        if status == 200:
            return
        if status == 429:
            self._pause_host(resp.headers.get("Retry-After"))
            if self._hosts is not None:
                self._hosts.throttled(resp.url.host or "")
            raise _Transient("http 429")
        if status >= 500:
            raise _Transient(f"http {status}")
        if status in (404, 410):
            raise DownloadError(f"not found (http {status})")
        raise DownloadError(f"http {status}")

    def _pause_host(self, retry_after: str | None) -> None:
        """Honour a numeric Retry-After for every request to the host (the CDN is throttling)."""
        try:
            delay = float(retry_after) if retry_after else 0.0
        except ValueError:
            return  # an HTTP date: rare on CDNs; the per-request backoff still applies
        if delay > 0:
            until = self._clock() + min(delay, MAX_RETRY_AFTER_S)
            self._paused_until = max(self._paused_until, until)

    async def _read_body(self, resp: aiohttp.ClientResponse) -> bytes:
        """Stream the body, refusing more than max_bytes (declared or actually sent)."""
        limit = self.config.max_bytes
        declared = resp.content_length
        if declared is not None and declared > limit:
            raise DownloadError(f"too large: {declared} bytes > {limit}")
        chunks: list[bytes] = []
        received = 0
        async for chunk in resp.content.iter_chunked(CHUNK_BYTES):
            received += len(chunk)
            self.stats.bytes += len(chunk)
            if received > limit:
                raise DownloadError(f"too large: over {limit} bytes")
            chunks.append(chunk)
        if declared is not None and received < declared:
            raise _Transient("truncated body")
        return b"".join(chunks)


def sniff_image_type(data: bytes) -> str | None:
    """The MIME type the magic bytes say, or None when the body is not a JPEG, PNG or GIF."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    return None


def _host(url: str) -> str:
    """The host part of an image URL (the key of its shared token bucket)."""
    return url.split("://", 1)[-1].split("/", 1)[0]


def _mime(resp: aiohttp.ClientResponse) -> str:
    return resp.content_type or "no content type"
