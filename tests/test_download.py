"""The Fetcher against real HTTP on loopback: a small fault server here, the emulator below."""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from harvester.config import FetchPolicy, default_concurrency
from harvester.exceptions import DownloadError
from harvester.images.download import Fetcher, sniff_image_type
from harvester.images.sizes import SizeChoice
from harvester.retry import RetryPolicy
from tests.harness import FakeClock

NO_WAIT = RetryPolicy(attempts=4, base_s=0.0, jitter=False)


def jpeg_bytes(width: int = 64, height: int = 48) -> bytes:
    """A small real JPEG."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(out, "JPEG", quality=80)
    return out.getvalue()


def png_bytes() -> bytes:
    """A small real PNG."""
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(out, "PNG")
    return out.getvalue()


JPEG = jpeg_bytes()
HTML_429 = (
    b"<html><body><h1>429 Too Many Requests</h1>\nYou have sent too many requests in a given "
    b"amount of time.\n</body></html>\n"
)


class FaultServer:
    """An image host whose paths each misbehave in one way; counts the hits per path."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.base_url = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{name}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.hits[name] += 1
        fault = self.fault(name, self.hits[name])
        if fault is not None:
            return fault
        if name == "streamed-big.jpg":
            return await self.stream(request, [JPEG, b"\0" * 5000])
        if name == "truncated.jpg" and self.hits[name] == 1:
            return await self.truncated(request)
        if name in {"ok.jpg", "throttled.jpg", "retry-after.jpg", "flaky.jpg", "truncated.jpg"}:
            return web.Response(body=JPEG, content_type="image/jpeg")
        return web.Response(status=404, body=b"", content_type="text/html")

    @staticmethod
    def fault(name: str, hit: int) -> web.Response | None:
        """The canned answer of a path on its `hit`-th request, or None to serve normally."""
        if name == "throttled.jpg" and hit <= 2:
            return web.Response(status=429, body=HTML_429, content_type="text/html")
        if name == "retry-after.jpg" and hit == 1:
            return web.Response(status=429, body=HTML_429, headers={"Retry-After": "7"})
        if (name == "flaky.jpg" and hit == 1) or name == "always503.jpg":
            return web.Response(status=503, body=b"")
        canned = {
            "ok.png": web.Response(body=png_bytes(), content_type="image/png"),
            "html.jpg": web.Response(
                body=b"<html><body>hi</body></html>", content_type="text/html"
            ),
            "forbidden.jpg": web.Response(status=403, body=b""),
            "big.jpg": web.Response(body=JPEG + b"\0" * 5000, content_type="image/jpeg"),
        }
        return canned.get(name)

    async def stream(self, request: web.Request, parts: list[bytes]) -> web.StreamResponse:
        """A chunked body with no Content-Length: the cap must count what arrives."""
        resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in parts:
            await resp.write(part)
        await resp.write_eof()
        return resp

    async def truncated(self, request: web.Request) -> web.StreamResponse:
        """Declares the whole JPEG, sends half, and drops the connection."""
        resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        resp.content_length = len(JPEG)
        await resp.prepare(request)
        await resp.write(JPEG[: len(JPEG) // 2])
        assert request.transport is not None
        request.transport.close()
        return resp


@pytest.fixture
async def fault_server() -> AsyncIterator[FaultServer]:
    server = FaultServer()
    runner = web.AppRunner(server.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.base_url = f"http://127.0.0.1:{port}"
    yield server
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def choice(server: FaultServer, name: str) -> SizeChoice:
    return SizeChoice(photo_id="123", label="l", url=f"{server.base_url}/{name}", width=0, height=0)


def fetcher(session: aiohttp.ClientSession, max_bytes: int | None = None) -> Fetcher:
    """A fetcher that never waits between tries (with a body-size cap, if given)."""
    cfg = FetchPolicy(concurrency=4, rate_per_s=1000.0, retry=NO_WAIT)
    return Fetcher(session, cfg if max_bytes is None else replace(cfg, max_bytes=max_bytes))


async def test_downloads_a_jpeg(fault_server: FaultServer, session: aiohttp.ClientSession) -> None:
    f = fetcher(session)
    got = await f.fetch(choice(fault_server, "ok.jpg"))
    assert got.data == JPEG
    assert (got.content_type, got.status, got.label) == ("image/jpeg", 200, "l")
    assert f.stats.bytes == len(JPEG)
    assert (f.stats.requests, f.stats.ok, f.stats.failed) == (1, 1, 0)
    assert "ok=1" in repr(f)


async def test_png_is_an_image_too(
    fault_server: FaultServer, session: aiohttp.ClientSession
) -> None:
    got = await fetcher(session).fetch(choice(fault_server, "ok.png"))
    assert got.content_type == "image/png"


async def test_404_fails_without_retry(
    fault_server: FaultServer, session: aiohttp.ClientSession
) -> None:
    f = fetcher(session)
    with pytest.raises(DownloadError, match=r"not found \(http 404\)"):
        await f.fetch(choice(fault_server, "missing.jpg"))
    assert fault_server.hits["missing.jpg"] == 1
    assert f.stats.failures == Counter({"not found": 1})
    assert not f.stats.retries


async def test_403_is_permanent(fault_server: FaultServer, session: aiohttp.ClientSession) -> None:
    with pytest.raises(DownloadError, match="http 403"):
        await fetcher(session).fetch(choice(fault_server, "forbidden.jpg"))
    assert fault_server.hits["forbidden.jpg"] == 1


async def test_429_retried_to_success(
    fault_server: FaultServer, session: aiohttp.ClientSession
) -> None:
    f = fetcher(session)
    got = await f.fetch(choice(fault_server, "throttled.jpg"))
    assert got.data == JPEG
    assert fault_server.hits["throttled.jpg"] == 3
    assert f.stats.retries == Counter({"http 429": 2})
    assert f.stats.requests == 3


async def test_retry_after_pauses_the_host(
    fault_server: FaultServer, session: aiohttp.ClientSession
) -> None:
    t = FakeClock()
    cfg = FetchPolicy(concurrency=2, rate_per_s=1000.0, retry=NO_WAIT)
    f = Fetcher(session, cfg, sleep=t.sleep, clock=t)
    assert (await f.fetch(choice(fault_server, "retry-after.jpg"))).data == JPEG
    assert "paused=7.0s" not in repr(f)
    # The next request to the host waits out the 7 s the server asked for.
    assert t.sleeps.count(7.0) == 1


async def test_5xx_retried(fault_server: FaultServer, session: aiohttp.ClientSession) -> None:
    f = fetcher(session)
    await f.fetch(choice(fault_server, "flaky.jpg"))
    assert f.stats.retries == Counter({"http 503": 1})


async def test_gives_up_after_the_policy_attempts(
    fault_server: FaultServer, session: aiohttp.ClientSession
) -> None:
    f = fetcher(session)
    with pytest.raises(DownloadError, match=r"http 503 \(after 4 tries\)"):
        await f.fetch(choice(fault_server, "always503.jpg"))
    assert fault_server.hits["always503.jpg"] == NO_WAIT.attempts
    assert f.stats.retries == Counter({"http 503": 3})
    assert f.stats.failures == Counter({"http 503": 1})


async def test_truncated_body_retried(
    fault_server: FaultServer, session: aiohttp.ClientSession
) -> None:
    f = fetcher(session)
    got = await f.fetch(choice(fault_server, "truncated.jpg"))
    assert got.data == JPEG
    assert fault_server.hits["truncated.jpg"] == 2
    assert sum(f.stats.retries.values()) == 1


@pytest.mark.parametrize("name", ["big.jpg", "streamed-big.jpg"])
async def test_max_bytes(
    fault_server: FaultServer, session: aiohttp.ClientSession, name: str
) -> None:
    f = fetcher(session, max_bytes=len(JPEG) + 1000)
    with pytest.raises(DownloadError, match="too large"):
        await f.fetch(choice(fault_server, name))
    assert fault_server.hits[name] == 1  # never retried
    assert f.stats.bytes <= len(JPEG) + 1000 + 256 * 1024
    ok = fetcher(session, max_bytes=len(JPEG) + 5000)
    assert len((await ok.fetch(choice(fault_server, name))).data) == len(JPEG) + 5000


async def test_html_body_with_200_rejected(
    fault_server: FaultServer, session: aiohttp.ClientSession
) -> None:
    f = fetcher(session)
    with pytest.raises(DownloadError, match=r"not an image \(text/html"):
        await f.fetch(choice(fault_server, "html.jpg"))
    assert fault_server.hits["html.jpg"] == 1
    assert f.stats.failures == Counter({"not an image": 1})


async def test_connection_refused_is_retried_then_fails(session: aiohttp.ClientSession) -> None:
    # A port that was free a moment ago: nothing listens there.
    runner = web.AppRunner(web.Application())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    await runner.cleanup()
    f = fetcher(session)
    gone = SizeChoice(
        photo_id="1", label="l", url=f"http://127.0.0.1:{port}/x.jpg", width=0, height=0
    )
    with pytest.raises(DownloadError, match=r"connection: \w+ \(after 4 tries\)"):
        await f.fetch(gone)
    assert f.stats.requests == NO_WAIT.attempts


async def test_concurrency_is_bounded(
    fault_server: FaultServer, session: aiohttp.ClientSession
) -> None:
    f = fetcher(session)
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, f.stats.in_flight)
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    results = await asyncio.gather(*(f.fetch(choice(fault_server, "ok.jpg")) for _ in range(20)))
    watcher.cancel()
    assert len(results) == 20
    assert 1 <= peak <= 4
    assert f.stats.in_flight == 0


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\xff\xd8\xff\xe0rest", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\nrest", "image/png"),
        (b"GIF89a...", "image/gif"),
        (b"<html>", None),
        (b"", None),
        (b"\xff\xd8", None),
    ],
)
def test_sniff(data: bytes, expected: str | None) -> None:
    assert sniff_image_type(data) == expected


@pytest.mark.parametrize(("cores", "expected"), [(1, 16), (2, 32), (4, 64), (64, 64)])
def test_default_concurrency(cores: int, expected: int) -> None:
    assert default_concurrency(cores) == expected
    assert FetchPolicy().concurrency == default_concurrency()  # one default for both
