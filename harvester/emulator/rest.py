"""The /services/rest/ endpoint: parameters (GET or POST form), API keys, formats, faults."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from harvester.emulator import xmlfmt
from harvester.emulator.faults import (
    SERVICE_UNAVAILABLE_105,
    TOO_MANY_REQUESTS,
    UNAVAILABLE,
    Fault,
    FaultPlan,
    Stats,
    TokenBucket,
)
from harvester.emulator.methods import METHODS, MethodContext
from harvester.emulator.search import SearchError

log = logging.getLogger(__name__)

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_OAUTH_KEY = re.compile(r'oauth_consumer_key="([^"]*)"')
_JSON_TYPE = "application/json; charset=utf-8"
_JS_TYPE = "text/javascript; charset=utf-8"
_XML_TYPE = "text/xml; charset=utf-8"


def api_key_of(params: Mapping[str, str], headers: Mapping[str, str]) -> str:
    """The key: `api_key`, else OAuth 1.0a's oauth_consumer_key (header or parameter)."""
    if key := params.get("api_key", ""):
        return key
    if m := _OAUTH_KEY.search(headers.get("Authorization", "")):
        return m.group(1)
    return params.get("oauth_consumer_key", "")


def key_error(key: str, invalid: frozenset[str]) -> str | None:
    """The code-100 message for a bad key, or None when it is good."""
    if not _HEX32.match(key):
        return "Invalid API Key (Key has invalid format)"
    if key in invalid:
        return "Invalid API Key (Key not found)"
    return None


class RestEndpoint:
    """Serves flickr.* calls against one corpus with one config's faults and budget."""

    def __init__(self, ctx: MethodContext, stats: Stats) -> None:
        self.ctx = ctx
        self.stats = stats
        cfg = ctx.config
        self.faults = FaultPlan(cfg)
        self.bucket = TokenBucket(int(cfg.calls_per_hour or 0), cfg.burst_calls, cfg.time_scale)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """One REST call."""
        params: dict[str, str] = dict(request.query)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.post()).items()})
        key = api_key_of(params, request.headers)
        method = params.get("method", "")
        if not self.bucket.take(key, time.monotonic()):
            self.stats.faults["rate_limited"] += 1
            return self._count(method, key, _html_429(), None)
        if message := key_error(key, self.ctx.config.invalid_keys):
            return self._count(method, key, _fail(params, 100, message), 100)
        fault, seq = self.faults.next(key)
        if fault is not Fault.NONE:
            self.stats.faults[fault.value] += 1
        early = await self._fault_response(fault, params)
        if early is not None:
            return self._count(method, key, early[0], early[1])
        resp, code = self._dispatch(method, params, seq)
        if fault is Fault.TRUNCATE:
            return await self._truncated(request, resp, method, key)
        return self._count(method, key, resp, code)

    def _dispatch(
        self, method: str, params: dict[str, str], seq: int
    ) -> tuple[web.Response, int | None]:
        impl = METHODS.get(method)
        if impl is None:
            return _fail(params, 112, f'Method "{method}" not found'), 112
        self.ctx.seq = seq
        try:
            payload = impl(self.ctx, params)
        except SearchError as err:
            return _fail(params, err.code, err.message), err.code
        return _ok(params, payload), None

    async def _fault_response(
        self, fault: Fault, params: dict[str, str]
    ) -> tuple[web.Response, int | None] | None:
        if fault is Fault.HTTP_429:
            return _html_429(), None
        if fault is Fault.API_201:
            return _fail(params, 201, UNAVAILABLE), 201
        if fault is Fault.API_105:
            return _fail(params, 105, SERVICE_UNAVAILABLE_105), 105
        if fault is Fault.HTTP_5XX:
            status = (502, 503, 500)[self.faults.counter % 3]
            return web.Response(status=status, body=b"<error>BOOM!</error>"), None
        if fault is Fault.SLOW:
            await asyncio.sleep(self.ctx.config.slow_s / max(self.ctx.config.time_scale, 1.0))
        return None

    async def _truncated(
        self, request: web.Request, full: web.Response, method: str, key: str
    ) -> web.StreamResponse:
        body = bytes(full.body) if isinstance(full.body, bytes | bytearray) else b""
        resp = web.StreamResponse(status=200, headers={"Content-Type": full.content_type})
        resp.content_length = len(body)
        await resp.prepare(request)
        await resp.write(body[: max(1, len(body) // 2)])
        if request.transport is not None:
            request.transport.close()  # the client sees the connection drop mid-body
        self.stats.call(method, key, 200, None)
        return resp

    def _count(self, method: str, key: str, resp: web.Response, code: int | None) -> web.Response:
        self.stats.call(method, key, resp.status, code)
        return resp


def _html_429() -> web.Response:
    return web.Response(status=429, body=TOO_MANY_REQUESTS, content_type="text/html")


def _wants_xml(params: Mapping[str, str]) -> bool:
    return params.get("format", "rest") not in ("json", "php_serial")


def _ok(params: Mapping[str, str], payload: dict[str, Any]) -> web.Response:
    if _wants_xml(params):
        return web.Response(body=xmlfmt.ok(payload), headers={"Content-Type": _XML_TYPE})
    return _json(params, payload)


def _fail(params: Mapping[str, str], code: int, message: str) -> web.Response:
    if _wants_xml(params):
        return web.Response(body=xmlfmt.fail(code, message), headers={"Content-Type": _XML_TYPE})
    return _json(params, {"stat": "fail", "code": code, "message": message})


def _json(params: Mapping[str, str], payload: dict[str, Any]) -> web.Response:
    body = orjson.dumps(payload).replace(b"/", b"\\/")  # Flickr escapes slashes
    if params.get("nojsoncallback", "") == "1" and "jsoncallback" not in params:
        return web.Response(body=body, headers={"Content-Type": _JSON_TYPE})
    name = params.get("jsoncallback") or "jsonFlickrApi"
    return web.Response(body=f"{name}(".encode() + body + b")", headers={"Content-Type": _JS_TYPE})
