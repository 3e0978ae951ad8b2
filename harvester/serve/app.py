"""`harvest serve`'s web application: routes, handlers, errors and assets (aiohttp, jinja2).

    GET  /                 overview: the live counts (the page polls /api/status)
    GET  /browse           the grid, filtered, by keyset pages (?after=ID)
    GET  /photo/{id}       one photo: the image, every field, its credits line, its copies
    GET  /duplicates       the groups of `harvest dupes`, a copy beside its representative
    GET  /search           search by image (POST: the upload, multipart field `image`)
    GET  /attention        failed and error-skipped photos: reasons and Flickr links
    GET  /image/{id}, /thumb/{id}    a stored file, or its thumbnail made in memory
    GET  /api/status, /api/photos;  POST /api/similar    the JSON the pages use, for scripts too
    GET  /static/{name}    the app's own CSS and script (no CDN: it works offline)

A request names photos by id, never by path: files come from the paths the store records
(resolved inside OUT by the Library), assets from a table read at start-up. Every refusal is a
4xx page, or a JSON error under /api/; anything unexpected is logged and answered with a plain
500 page, never a traceback. Blocking work runs off the loop: store reads and thumbnails in
threads, searches in a one-thread executor (CPU-bound, one at a time).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import logging
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from PIL import Image

from harvester.config import ServePolicy
from harvester.exceptions import ConfigError, ImageError
from harvester.serve import pages, query
from harvester.serve.pages import Library, RateMeter, Searcher, Status
from harvester.serve.query import BadQuery
from harvester.serve.thumbs import Thumbnails

log = logging.getLogger(__name__)

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ASSETS = {"app.css": "text/css", "app.js": "text/javascript", "favicon.svg": "image/svg+xml"}
GROUPS_PER_PAGE = 20
ATTENTION_PER_PAGE = 200
#: Sent with every answer: nothing but this app's own scripts, styles and images may load.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self';"
    " img-src 'self' blob:; connect-src 'self'; form-action 'self'; base-uri 'none';"
    " frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
PLAIN_500 = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>500 internal error</title>"
    "<h1>500 internal error</h1><p>harvest serve failed on this request; the server's log"
    " says why.</p></html>"
)


class Refused(Exception):
    """A request answered with a 4xx status and a message for the user (never leaves app.py)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class _State:
    """What the handlers share: the seams, the policy, caches and the search executor."""

    library: Library
    searcher: Searcher | None
    policy: ServePolicy
    env: Environment
    assets: dict[str, bytes]
    thumbs: Thumbnails
    clock: Callable[[], float]
    pool: concurrent.futures.ThreadPoolExecutor = field(
        default_factory=lambda: concurrent.futures.ThreadPoolExecutor(1, "serve-search")
    )
    meter: RateMeter = field(default_factory=RateMeter)
    last: Status | None = None
    fresh_s: float = 0.0  # how long `last` stays fresh

    async def status(self) -> Status:
        """The counts, read again once they are stale (pages.counts_ttl_s), with the rate."""
        now = self.clock()
        if self.last is None or now - self.last.at >= self.fresh_s:
            started = time.perf_counter()
            counts = await asyncio.to_thread(self.library.counts)
            took = time.perf_counter() - started
            self.fresh_s = pages.counts_ttl_s(self.policy.status_ttl_s, took)
            self.meter.add(now, counts.finished)
            self.last = Status(counts=counts, rate_per_s=self.meter.per_s(), at=now)
        return self.last

    def render(self, name: str, **context: Any) -> web.Response:
        """An HTML page from templates/NAME."""
        page = self.env.get_template(name).render(
            notices=self.library.notices, refresh_s=self.policy.refresh_s, **context
        )
        return web.Response(text=page, content_type="text/html")


STATE = web.AppKey("serve", _State)


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("harvester.serve", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["n"] = lambda v: "—" if v is None else f"{v:,}"
    env.filters["utc"] = pages.utc
    return env


def make_app(
    library: Library,
    searcher: Searcher | None,
    policy: ServePolicy | None = None,
    *,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """The application over `library` (and `searcher`, None: no search by image)."""
    policy = policy or ServePolicy()
    root = files("harvester.serve") / "static"
    state = _State(
        library=library,
        searcher=searcher,
        policy=policy,
        env=_environment(),
        assets={name: (root / name).read_bytes() for name in ASSETS},
        thumbs=Thumbnails(policy.thumb_px, policy.thumb_cache_bytes),
        clock=clock,
    )
    app = web.Application(middlewares=[_errors], client_max_size=policy.max_upload_bytes)
    app[STATE] = state
    app.on_response_prepare.append(_secure)
    app.on_cleanup.append(_close)
    app.add_routes(_routes())
    return app


def _routes() -> list[web.RouteDef]:
    return [
        web.get("/", overview),
        web.get("/browse", browse),
        web.get(r"/photo/{id:\d+}", photo),
        web.get(r"/image/{id:\d+}", image),
        web.get(r"/thumb/{id:\d+}", thumb),
        web.get("/duplicates", duplicates),
        web.get("/search", search_form),
        web.post("/search", search_page),
        web.get("/attention", attention),
        web.get("/api/status", api_status),
        web.get("/api/photos", api_photos),
        web.post("/api/similar", api_similar),
        web.get("/static/{name}", static),
        web.get("/favicon.ico", favicon),
    ]


async def _close(app: web.Application) -> None:
    app[STATE].pool.shutdown(wait=False, cancel_futures=True)


async def _secure(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)


# --- errors ------------------------------------------------------------------------------------


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal becomes a 4xx answer with a message, anything unexpected a plain 500."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # a redirect
        return _refusal(request, exc.status, exc.reason if exc.status != 413 else exc.text or "")
    except BadQuery as exc:
        return _refusal(request, 400, str(exc))
    except Refused as exc:
        return _refusal(request, exc.status, exc.message)
    except Exception:  # the one catch-all: the user sees a plain page, the log the traceback
        log.exception("%s %s failed", request.method, request.path)
        if request.path.startswith("/api/"):
            return web.json_response(
                {"error": {"status": 500, "message": "internal error"}}, status=500
            )
        return web.Response(text=PLAIN_500, status=500, content_type="text/html")


def _refusal(request: web.Request, status: int, message: str) -> web.Response:
    if request.path.startswith("/api/"):
        return web.json_response({"error": {"status": status, "message": message}}, status=status)
    state = request.app[STATE]
    response = state.render("error.html.j2", status=status, message=message, page="error")
    response.set_status(status)
    return response


def _photo_id(request: web.Request) -> int:
    return query.parse_int(request.match_info["id"], "photo id", least=1)


async def _read(fn: Callable[..., T], *args: object) -> T:
    """A blocking store read, in a thread (the Store serialises its connection)."""
    return await asyncio.to_thread(fn, *args)


# --- pages -------------------------------------------------------------------------------------


async def overview(request: web.Request) -> web.Response:
    """The live state of the harvest."""
    state = request.app[STATE]
    return state.render("overview.html.j2", s=await state.status(), page="overview")


async def api_status(request: web.Request) -> web.Response:
    """The live counts as JSON."""
    return web.json_response((await request.app[STATE].status()).as_json())


async def _photo_page(
    request: web.Request, limit: int
) -> tuple[query.Filters, pages.FilterChoices, list[pages.Tile], int | None]:
    state = request.app[STATE]
    choices = await _read(state.library.choices)
    filters = query.parse_filters(request.query, choices.keywords)
    after = query.parse_after(request.query)
    rows = await _read(state.library.photos, filters, after, limit + 1)
    shown, cursor = query.one_page(rows, limit, lambda t: t.id)
    return filters, choices, shown, cursor


async def browse(request: web.Request) -> web.Response:
    """A page of the grid."""
    state = request.app[STATE]
    filters, choices, tiles, cursor = await _photo_page(request, state.policy.page_size)
    return state.render(
        "browse.html.j2", f=filters, choices=choices, tiles=tiles, cursor=cursor, page="browse"
    )


async def api_photos(request: web.Request) -> web.Response:
    """A page of records as JSON: `photos`, and `next` (the cursor) while more follow."""
    policy = request.app[STATE].policy
    limit = query.parse_limit(request.query, policy.page_size, policy.max_page_size)
    filters, _, tiles, cursor = await _photo_page(request, limit)
    nxt = None if cursor is None else f"/api/photos?{filters.link(cursor)}&limit={limit}"
    return web.json_response(
        {
            "filters": filters.params(),
            "photos": [t.as_json() for t in tiles],
            "next_after": cursor,
            "next": nxt,
        }
    )


async def photo(request: web.Request) -> web.Response:
    """One photo's page."""
    state = request.app[STATE]
    photo_id = _photo_id(request)
    view = await _read(state.library.photo, photo_id)
    if view is None:
        raise Refused(404, f"this harvest has no photo {photo_id}")
    return state.render("photo.html.j2", v=view, page="photo")


async def _stored_file(request: web.Request) -> tuple[int, Path]:
    photo_id = _photo_id(request)
    path = await _read(request.app[STATE].library.image_file, photo_id)
    if path is None:
        raise Refused(404, f"no stored file for photo {photo_id}")
    return photo_id, Path(path)


async def image(request: web.Request) -> web.StreamResponse:
    """The stored file itself."""
    _, path = await _stored_file(request)
    return web.FileResponse(path, headers={"Content-Type": "image/jpeg"})


async def thumb(request: web.Request) -> web.Response:
    """A small JPEG of the stored file, made in a thread and kept in the LRU."""
    photo_id, path = await _stored_file(request)
    try:
        data = await asyncio.to_thread(request.app[STATE].thumbs.get, photo_id, path)
    except ImageError as exc:
        log.warning("photo %d: %s", photo_id, exc)
        raise Refused(404, f"photo {photo_id}'s file is not a readable image") from exc
    return web.Response(
        body=data, content_type="image/jpeg", headers={"Cache-Control": "max-age=3600"}
    )


async def duplicates(request: web.Request) -> web.Response:
    """A page of duplicate groups."""
    state = request.app[STATE]
    after = query.parse_after(request.query)
    rows = await _read(state.library.groups, after, GROUPS_PER_PAGE + 1)
    groups, cursor = query.one_page(rows, GROUPS_PER_PAGE, lambda g: g.representative.photo_id)
    return state.render("duplicates.html.j2", groups=groups, cursor=cursor, page="duplicates")


async def attention(request: web.Request) -> web.Response:
    """A page of the photos that need a person."""
    state = request.app[STATE]
    after = query.parse_after(request.query)
    rows = await _read(state.library.attention, after, ATTENTION_PER_PAGE + 1)
    items, cursor = query.one_page(rows, ATTENTION_PER_PAGE, lambda a: a.photo_id)
    return state.render("attention.html.j2", items=items, cursor=cursor, page="attention")


async def static(request: web.Request) -> web.Response:
    """One of the app's assets, by name from its table (no path reaches the filesystem)."""
    name = request.match_info["name"]
    if name not in ASSETS:
        raise Refused(404, "no such asset")
    body = request.app[STATE].assets[name]
    return web.Response(body=body, content_type=ASSETS[name], charset="utf-8")


async def favicon(request: web.Request) -> web.Response:
    """The icon, for browsers that ask for /favicon.ico whatever the page says."""
    body = request.app[STATE].assets["favicon.svg"]
    return web.Response(body=body, content_type=ASSETS["favicon.svg"])


# --- search by image ---------------------------------------------------------------------------


async def search_form(request: web.Request) -> web.Response:
    """The upload form."""
    state = request.app[STATE]
    return state.render("search.html.j2", answer=None, hits=(), page="search")


async def search_page(request: web.Request) -> web.Response:
    """The upload's results as a page."""
    state = request.app[STATE]
    answer = await _search(request)
    hits = pages.hits_of(answer)
    return state.render("search.html.j2", answer=answer, hits=hits, page="search")


async def api_similar(request: web.Request) -> web.Response:
    """The upload's results as `harvest similar --json` prints them."""
    return web.json_response(dict(await _search(request)))


async def _search(request: web.Request) -> Mapping[str, object]:
    state = request.app[STATE]
    data = await _upload(request)
    if state.searcher is None:
        raise Refused(503, "search by image is not available in this harvest serve")
    check_upload(data, state.policy.max_pixels)
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(
            state.pool, state.searcher.search, data, state.policy.search_hits
        )
    except ImageError as exc:
        raise Refused(400, str(exc)) from exc
    except ConfigError as exc:
        raise Refused(409, str(exc)) from exc


async def _upload(request: web.Request) -> bytes:
    """The bytes of the multipart field `image` (aiohttp refuses a body over the cap: 413)."""
    if not request.content_type.startswith("multipart/form-data"):
        raise BadQuery("send the image as multipart/form-data in the field 'image'")
    form = await request.post()
    upload = form.get("image")
    if not isinstance(upload, web.FileField):
        raise BadQuery("no file in the field 'image'")
    data = upload.file.read()
    if not data:
        raise BadQuery("the uploaded file is empty")
    return bytes(data)


def check_upload(data: bytes, max_pixels: int) -> tuple[int, int]:
    """The upload's size in pixels from its header; 400 if it is no image, 413 past the bomb
    limit (before any pixel is decoded)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked just below
        try:
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
        except Image.DecompressionBombError as exc:
            raise Refused(413, f"the image has too many pixels: {exc}") from exc
        except (OSError, ValueError) as exc:
            raise Refused(400, "the upload is not an image (JPEG, PNG, WebP, TIFF, ...)") from exc
    if width * height > max_pixels:
        raise Refused(
            413, f"the image has too many pixels: {width}x{height} > {max_pixels:,} in all"
        )
    return width, height
