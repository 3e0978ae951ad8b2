"""`harvest serve` through aiohttp's test client, on a real harvest of the emulator (two runs with
one failure and one error skip, then `harvest dupes`): every route, the filters and the keyset
cursor against the store's own answer, the API's JSON shapes, every bad request a 4xx without a
traceback, traversal attempts, upload caps, the key never shown, reads beside a writer, the
query plans (seeks, not scans) and an older store opened read-only.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from harvester.config import ImagePolicy, ServePolicy
from harvester.exit_codes import EXIT_USAGE
from harvester.licenses import license_for
from harvester.serve.app import make_app
from harvester.serve.pages import RateMeter, counts_ttl_s
from harvester.serve.query import BadQuery, Filters, parse_filters
from harvester.serve.thumbs import Thumbnails
from harvester.serving import SimilarSearcher, StoreLibrary
from harvester.similar import SimilarResult
from harvester.store.schema import BROWSE_INDEXES
from harvester.store.serve import PhotoQuery, ServeStore
from harvester.store.sqlite import Store
from tests.harness import (
    STORE,
    ServedHarvest,
    harvest,
    only_line,
    store_rows,
)
from tests.onnx_models import conv_model

POLICY = ServePolicy(
    max_upload_bytes=2 * 1024 * 1024, max_pixels=4_000_000, page_size=24, status_ttl_s=0.0
)
Client = TestClient[Any, Any]


@pytest.fixture(scope="module")
def harvested(served_harvest: ServedHarvest) -> Path:
    """The harvest, dupes run (copy it before changing it)."""
    return served_harvest.out


@pytest.fixture
def out(harvested: Path, tmp_path: Path) -> Path:
    """This test's own copy of the harvest."""
    copy = tmp_path / "out"
    shutil.copytree(harvested, copy)
    return copy


async def _client(
    out: Path, policy: ServePolicy = POLICY, clock: Callable[[], float] = time.time
) -> AsyncIterator[Client]:
    with Store.open(out / STORE, readonly=True) as store:
        searcher = SimilarSearcher(out, ImagePolicy(max_pixels=policy.max_pixels))
        app = make_app(StoreLibrary(out, store), searcher, policy, clock=clock)
        async with TestClient(TestServer(app)) as client:
            yield client


@pytest.fixture
async def client(harvested: Path) -> AsyncIterator[Client]:
    """A client of the app over the shared harvest (read-only)."""
    async for c in _client(harvested):
        yield c


def _ids(out: Path, where: str = "status = 'done'") -> list[int]:
    return [int(r[0]) for r in store_rows(out, f"SELECT id FROM photos WHERE {where} ORDER BY id")]


def _grouped(out: Path) -> tuple[int, int]:
    """(a copy, its representative) from the store's dup_group."""
    rows = store_rows(
        out, "SELECT photo_id, group_id FROM dup_group WHERE kind IS NOT NULL ORDER BY 1 LIMIT 1"
    )
    return int(rows[0][0]), int(rows[0][1])


async def _text(client: Client, path: str, status: int = 200) -> str:
    async with client.get(path) as r:
        body = await r.text()
        assert r.status == status, (path, body[:500])
        return body


async def _json(client: Client, path: str, status: int = 200) -> Any:
    async with client.get(path) as r:
        assert r.status == status, (path, await r.text())
        assert r.content_type == "application/json"
        return await r.json()


# --- pages -------------------------------------------------------------------------------------


async def test_every_page_answers(client: Client, harvested: Path) -> None:
    done = _ids(harvested)
    copy, rep = _grouped(harvested)
    for path in ("/", "/browse", f"/photo/{done[0]}", "/duplicates", "/search", "/attention"):
        page = await _text(client, path)
        assert page.startswith("<!doctype html>")
        assert "Traceback" not in page
    for name, kind in (("app.css", "text/css"), ("app.js", "text/javascript")):
        async with client.get(f"/static/{name}") as r:
            assert r.status == 200
            assert r.content_type == kind
    async with client.get(f"/image/{done[0]}") as r:
        stored = store_rows(harvested, f"SELECT path FROM photos WHERE id = {done[0]}")[0][0]
        assert await r.read() == (harvested / stored).read_bytes()
    async with client.get(f"/thumb/{rep}") as r:
        assert r.status == 200
        assert r.content_type == "image/jpeg"
        thumb = Image.open(io.BytesIO(await r.read()))
        assert max(thumb.size) == POLICY.thumb_px
    assert str(copy) in await _text(client, f"/photo/{rep}")


async def test_status_is_harvest_status(client: Client, harvested: Path) -> None:
    with Store.open(harvested / STORE, readonly=True) as store:
        summary = store.summary()
    s = await _json(client, "/api/status")
    assert s["stored"] == summary.statuses["done"]
    assert s["failed"] == summary.statuses.get("failed", 0) == 1
    assert s["skipped"] == summary.statuses["skipped"]
    assert s["found"] == summary.photos
    assert {k["keyword"]: k["stored"] for k in s["keywords"]} == {
        k.keyword: k.done for k in summary.keywords
    }
    assert s["running"] is False
    assert s["finished_at"] is not None
    assert s["stored_per_hour"] > 0
    page = await _text(client, "/")
    assert f'data-count="stored">{summary.statuses["done"]:,}<' in page


async def _all_pages(client: Client, query: str, limit: int) -> list[dict[str, Any]]:
    """Every photo of /api/photos?query, following `next` from page to page."""
    seen: list[dict[str, Any]] = []
    path: str | None = f"/api/photos?{query}&limit={limit}"
    while path is not None:
        answer = await _json(client, path)
        assert len(answer["photos"]) <= limit
        seen += answer["photos"]
        path = answer["next"]
        if path is not None:
            assert answer["next_after"] == answer["photos"][-1]["id"]
    return seen


def _geo(value: str) -> str:
    return f"(json_extract(record, '$.latitude') IS NOT NULL) = {int(value == 'yes')}"


@pytest.mark.parametrize(
    ("query", "where"),
    [
        ("", "status = 'done'"),
        ("keyword=sky", "status = 'done' AND keyword = 'sky'"),
        ("license=4", "status = 'done' AND json_extract(record, '$.license') = 4"),
        ("source=flickr", "status = 'done' AND source = 'flickr'"),
        ("geotagged=yes", f"status = 'done' AND {_geo('yes')}"),
        ("geotagged=no&keyword=nature", f"status = 'done' AND {_geo('no')} AND keyword = 'nature'"),
        ("status=skipped", "status = 'skipped'"),
        ("status=failed", "status = 'failed'"),
    ],
)
async def test_filters_and_cursor_walk_exactly_the_matching_photos(
    client: Client, harvested: Path, query: str, where: str
) -> None:
    expected = _ids(harvested, where)
    assert expected, "the harvest has photos of every kind filtered on"
    walked = await _all_pages(client, query, limit=40)
    assert [p["id"] for p in walked] == expected  # in id order, none twice, none missed
    if "license=4" in query:
        assert {p["license_name"] for p in walked} == {license_for(4).name}


async def test_a_filter_narrows_the_grid(client: Client, harvested: Path) -> None:
    every = await _text(client, "/browse")
    narrowed = await _text(client, "/browse?license=4")

    def licences(page: str) -> list[str]:
        return [s.split('"')[0] for s in page.split('data-license="')[1:]]

    assert len(licences(every)) == POLICY.page_size
    assert len(set(licences(every))) > 1
    assert set(licences(narrowed)) == {"4"}
    assert len(licences(narrowed)) > 0
    assert 'id="next"' in every  # more than one page of stored photos


async def test_browse_pages_follow_the_cursor(client: Client, harvested: Path) -> None:
    first = await _text(client, "/browse?keyword=london")
    after = first.split('id="next" href="/browse?')[1].split('"')[0].replace("&amp;", "&")
    second = await _text(client, f"/browse?{after}")
    ids = _ids(harvested, "status = 'done' AND keyword = 'london'")
    size = POLICY.page_size
    assert f'data-id="{ids[size]}"' in second
    assert f'data-id="{ids[size - 1]}"' not in second


async def test_photo_page_shows_licence_credit_fields_and_copies(
    client: Client, harvested: Path
) -> None:
    copy, rep = _grouped(harvested)
    page = await _text(client, f"/photo/{copy}")
    ((licence_id, path),) = store_rows(
        harvested, f"SELECT record ->> '$.license', path FROM photos WHERE id = {copy}"
    )
    lic = license_for(int(licence_id))
    assert f'id="photo-license" class="license">{lic.name}<' in page
    assert 'id="credit"' in page
    assert "Source: https://www.flickr.com/photos/" in page
    for name in ("owner", "secret", "server", "date_upload", "tags", "sha256", "stored file"):
        assert f"<th>{name}</th>" in page
    assert f'href="/photo/{rep}"' in page
    assert "representative" in page
    kind = store_rows(harvested, f"SELECT kind FROM dup_group WHERE photo_id = {copy}")[0][0]
    assert kind in page
    assert path in page  # the stored file's path, as a field


async def test_duplicates_lists_the_groups(client: Client, harvested: Path) -> None:
    page = await _text(client, "/duplicates")
    reps = {
        int(r[0])
        for r in store_rows(harvested, "SELECT group_id FROM dup_group WHERE kind IS NOT NULL")
    }
    shown = {int(s.split('"')[0]) for s in page.split('data-group="')[1:]}
    assert shown == reps  # fewer than a page of groups in this harvest
    assert page.count('class="toggle"') == len(reps)


async def test_needs_a_human_lists_failures_and_error_skips_only(
    client: Client, harvested: Path
) -> None:
    page = await _text(client, "/attention")
    listed = {int(s.split('"')[0]) for s in page.split('<tr data-photo="')[1:]}
    failed = set(_ids(harvested, "status = 'failed'"))
    error_skips = set(_ids(harvested, "status = 'skipped' AND reason LIKE 'no size: the search%'"))
    policy = set(_ids(harvested, "status = 'skipped' AND reason LIKE 'too small%'"))
    assert failed
    assert error_skips
    assert policy
    assert listed == failed | error_skips
    assert "https://www.flickr.com/photos/" in page


# --- search ------------------------------------------------------------------------------------


def _rotated_copy(out: Path, photo_id: int) -> bytes:
    (path,) = store_rows(out, f"SELECT path FROM photos WHERE id = {photo_id}")[0]
    pixels = np.rot90(np.asarray(Image.open(out / path).convert("RGB"))).copy()
    sink = io.BytesIO()
    Image.fromarray(pixels).save(sink, "JPEG", quality=90)
    return sink.getvalue()


def _form(data: bytes, field: str = "image") -> FormData:
    form = FormData()
    form.add_field(field, data, filename="query.jpg", content_type="image/jpeg")
    return form


async def test_api_similar_answers_harvest_similars_json(client: Client, harvested: Path) -> None:
    target = _ids(harvested)[7]
    async with client.post("/api/similar", data=_form(_rotated_copy(harvested, target))) as r:
        assert r.status == 200
        answer = await r.json()
    assert set(answer) == {"query", "elapsed_s", "indexed", "hits"}
    shape = SimilarResult(width=1, height=1, hits=(), indexed=0, elapsed_s=0.0).as_json()
    assert set(answer) == set(shape)
    assert set(answer["query"]) == {"width", "height"}
    assert answer["hits"][0]["photo_id"] == target
    assert answer["hits"][0]["rank"] == 1
    assert set(answer["hits"][0]) == {
        "rank", "photo_id", "score", "kind", "detail", "distance", "path", "url", "title",
        "owner", "license", "source",
    }  # fmt: skip
    async with client.post("/search", data=_form(_rotated_copy(harvested, target))) as r:
        page = await r.text()
    assert f'data-photo="{target}" data-rank="1"' in page


# --- refusals ----------------------------------------------------------------------------------

BAD_GETS = [
    ("/browse?after=abc", 400),
    ("/browse?after=-1", 400),
    ("/browse?after=99999999999999999999999", 400),
    ("/browse?license=99", 400),
    ("/browse?license=x", 400),
    ("/browse?status=nope", 400),
    ("/browse?geotagged=maybe", 400),
    ("/browse?keyword=no-such-keyword", 400),
    ("/api/photos?after=1.5", 400),
    ("/api/photos?limit=0", 400),
    ("/api/photos?limit=100000", 400),
    ("/api/photos?source=" + "x" * 300, 400),
    ("/duplicates?after=x", 400),
    ("/attention?after=%00", 400),
    ("/photo/1", 404),
    ("/photo/99999999999999999999999", 400),
    ("/image/1", 404),
    ("/thumb/1", 404),
    ("/no/such/page", 404),
    ("/api/similar", 405),
]


@pytest.mark.parametrize(("path", "status"), BAD_GETS)
async def test_bad_requests_get_a_4xx_and_no_traceback(
    client: Client, path: str, status: int
) -> None:
    async with client.get(path) as r:
        body = await r.text()
        assert r.status == status
    assert "Traceback" not in body
    assert 'File "' not in body
    if path.startswith("/api/"):
        assert (await _error(body))["status"] == status
    else:
        assert "<h1>" in body


async def _error(body: str) -> dict[str, Any]:
    import orjson

    error: dict[str, Any] = orjson.loads(body)["error"]
    assert error["message"]
    return error


def _png(width: int, height: int) -> bytes:
    sink = io.BytesIO()
    Image.new("L", (width, height), 128).save(sink, "PNG")
    return sink.getvalue()


@pytest.mark.parametrize(
    ("form", "status", "says"),
    [
        (_form(b"this is no image at all"), 400, "not an image"),
        (_form(b""), 400, "empty"),
        (_form(_png(64, 64), field="picture"), 400, "field 'image'"),
        (_form(b"\xff" * (POLICY.max_upload_bytes + 1)), 413, "size"),
        (_form(_png(2100, 2000)), 413, "too many pixels"),
        ({"image": "just text"}, 400, "field 'image'"),
    ],
)
async def test_bad_uploads_are_refused(
    client: Client, form: FormData | dict[str, str], status: int, says: str
) -> None:
    async with client.post("/api/similar", data=form) as r:
        body = await r.text()
        assert r.status == status, body
    assert says in (await _error(body))["message"]
    assert "Traceback" not in body


async def test_an_upload_that_is_not_multipart_is_refused(client: Client) -> None:
    async with client.post(
        "/api/similar", data=b"\xff\xd8", headers={"Content-Type": "image/jpeg"}
    ) as r:
        assert r.status == 400


TRAVERSALS = [
    "/static/../harvest.sqlite",
    "/static/..%2Fharvest.sqlite",
    "/static/%2e%2e%2fharvest.sqlite",
    "/static/%2e%2e/%2e%2e/etc/passwd",
    "/static//etc/passwd",
    "/static/%2Fetc%2Fpasswd",
    "/static/app.css%00.py",
    "/image/..%2F..%2Fetc%2Fpasswd",
    "/thumb/%2Fetc%2Fpasswd",
    "/image/1/../../harvest.sqlite",
    "/photo/..%2f..%2fharvest.sqlite",
    "/harvest.sqlite",
    "/../../../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
]


async def _raw_status(client: Client, target: str) -> tuple[int, bytes]:
    """Send `target` byte for byte (no client-side normalising) and read the status."""
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return int(answer.split(b" ", 2)[1]), answer


@pytest.mark.parametrize("target", TRAVERSALS)
async def test_traversal_attempts_get_404(client: Client, target: str) -> None:
    status, answer = await _raw_status(client, target)
    assert status == 404
    assert b"SQLite format" not in answer
    assert b"root:" not in answer


async def test_the_stored_files_by_path_are_not_served(client: Client, harvested: Path) -> None:
    (path,) = store_rows(harvested, "SELECT path FROM photos WHERE status = 'done' LIMIT 1")[0]
    status, _ = await _raw_status(client, f"/{path}")
    assert status == 404


@pytest.mark.parametrize("planted", ["../../../../etc/passwd", "/etc/passwd", "../harvest.sqlite"])
async def test_a_store_path_outside_out_is_not_served(out: Path, planted: str) -> None:
    victim = _ids(out)[0]
    db = sqlite3.connect(out / STORE)
    db.execute("UPDATE photos SET path = ? WHERE id = ?", (planted, victim))
    db.commit()
    db.close()
    async for client in _client(out):
        for route in ("image", "thumb"):
            async with client.get(f"/{route}/{victim}") as r:
                assert r.status == 404


async def test_the_api_key_never_appears(
    client: Client, harvested: Path, served_harvest: ServedHarvest
) -> None:
    key = served_harvest.api_key
    assert len(key) >= 8
    copy, rep = _grouped(harvested)
    paths = ["/", "/browse", "/browse?status=failed", "/duplicates", "/attention", "/search"]
    paths += [f"/photo/{i}" for i in (copy, rep, *_ids(harvested, "status != 'done'")[:5])]
    paths += ["/api/status", "/api/photos?status=skipped", "/browse?after=x", "/photo/1"]
    for path in paths:
        async with client.get(path) as r:
            assert key not in await r.text()
    async with client.post("/api/similar", data=_form(_rotated_copy(harvested, rep))) as r:
        assert key not in await r.text()


HOSTILE = "</td><script>alert('title')</script><img src=x onerror=alert(1)>"


async def test_hostile_store_text_stays_text(out: Path) -> None:
    victim = _ids(out)[0]
    db = sqlite3.connect(out / STORE)
    db.execute(
        "UPDATE photos SET record = json_set(record, '$.title', ?, '$.owner_name', ?) WHERE id = ?",
        (HOSTILE, HOSTILE, victim),
    )
    db.commit()
    db.close()
    async for client in _client(out):
        for path in (f"/photo/{victim}", "/browse"):
            page = await _text(client, path)
            assert "<script>alert" not in page
            assert "onerror=alert(1)>" not in page
            assert "&lt;script&gt;alert(&#39;title&#39;)&lt;/script&gt;" in page
        answer = await _json(client, f"/api/photos?after={victim - 1}&limit=1")
        assert answer["photos"][0]["title"] == HOSTILE  # data, returned as it is, as JSON


# --- beside a running harvest, older stores ----------------------------------------------------


async def test_reads_beside_a_writer_and_counts_follow_it(out: Path) -> None:
    claimed = _ids(out, "status = 'claimed'") or _ids(out, "status = 'skipped'")
    # An hour between any two reads: the counts are never fresh, however slow a loaded machine
    # makes the read that the cache stretches its lifetime by (pages.counts_ttl_s).
    hours = itertools.count(0.0, 3600.0)
    async for client in _client(out, clock=lambda: next(hours)):
        before = await _json(client, "/api/status")
        writer = Store.open(out / STORE)
        try:
            with writer.transaction() as db:  # a write transaction held open, as a harvest does
                db.execute(
                    "UPDATE photos SET status = 'failed', reason = 'x' WHERE id = ?", (claimed[0],)
                )
                during = await _json(client, "/api/status")
                assert during["failed"] == before["failed"]  # the last committed state
                await _text(client, "/browse")
            after = await _json(client, "/api/status")
        finally:
            writer.close()
    assert after["failed"] == before["failed"] + 1


async def test_nothing_is_written_into_out(out: Path) -> None:
    def files() -> dict[str, int]:
        return {
            p.relative_to(out).as_posix(): p.stat().st_mtime_ns
            for p in out.rglob("*")
            if p.is_file() and not p.name.startswith(f"{STORE}-")
        }

    before = files()
    async for client in _client(out):
        for pid in _ids(out)[:30]:
            await _text(client, f"/photo/{pid}")
            async with client.get(f"/thumb/{pid}") as r:
                assert r.status == 200
    assert files() == before


def test_the_browse_queries_seek_at_any_size(harvested: Path) -> None:
    queries = [
        PhotoQuery(status="done"),
        PhotoQuery(status="skipped"),
        PhotoQuery(status="done", keyword="sky"),
        PhotoQuery(status="done", license=4),
        PhotoQuery(status="done", source="flickr"),
        PhotoQuery(status="done", geotagged=True),
        PhotoQuery(status="done", keyword="sky", license=4, geotagged=False, source="flickr"),
    ]
    with Store.open(harvested / STORE, readonly=True) as store:
        facts = ServeStore(store)
        assert facts.capabilities.missing_indexes == ()
        for query in queries:
            plan = facts.plan(query, 12345, 60)
            assert len(plan) == 1, (query, plan)  # one step: no sort, no second pass
            assert plan[0].startswith("SEARCH photos USING"), (query, plan)
            assert "rowid>?" in plan[0], (query, plan)  # the cursor is part of the seek
        every = queries[-1]
        assert "INDEX photos_keyword_status (keyword=? AND status=?" in facts.plan(every, 1, 60)[0]


def _drop_browse_indexes(out: Path) -> None:
    db = sqlite3.connect(out / STORE)
    for name in BROWSE_INDEXES:
        db.execute(f"DROP INDEX {name}")
    db.commit()
    db.close()


async def test_an_older_store_opened_read_only_still_serves(out: Path) -> None:
    _drop_browse_indexes(out)
    expected = _ids(out, "status = 'done' AND json_extract(record, '$.license') = 4")
    async for client in _client(out):
        page = await _text(client, "/browse?license=4")
        assert "predates harvest serve&#39;s browse indexes" in page
        assert [p["id"] for p in await _all_pages(client, "license=4", 50)] == expected
    assert not store_rows(out, "SELECT name FROM sqlite_master WHERE name = 'photos_status'")


async def test_a_version_1_store_opened_read_only_serves_every_page(out: Path) -> None:
    """No source column, no fingerprint or duplicate tables, no browse indexes: all degrade."""
    _drop_browse_indexes(out)
    db = sqlite3.connect(out / STORE)
    for table in ("photo_signal", "dup_pair", "dup_group", "photo_keypoints"):
        db.execute(f"DROP TABLE {table}")
    db.execute("DROP INDEX photos_source")
    db.execute("ALTER TABLE photos DROP COLUMN source")
    db.commit()
    db.close()
    done = _ids(out)
    flickr = _ids(out, "status = 'done' AND COALESCE(record ->> '$.source', 'flickr') = 'flickr'")
    assert 0 < len(flickr) < len(done)
    async for client in _client(out):
        for path in (
            "/",
            "/browse?source=flickr",
            f"/photo/{done[0]}",
            "/duplicates",
            "/attention",
        ):
            page = await _text(client, path)
            assert "Traceback" not in page
        assert "predates `harvest dupes`" in await _text(client, "/duplicates")
        walked = await _all_pages(client, "source=flickr", 200)
    assert [p["id"] for p in walked] == flickr  # the source from the record, as before sources


def test_a_writer_adds_the_browse_indexes_in_place_and_keeps_every_row(out: Path) -> None:
    _drop_browse_indexes(out)
    rows = store_rows(out, "SELECT * FROM photos ORDER BY id")
    Store.open(out / STORE).close()
    names = {r[0] for r in store_rows(out, "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert set(BROWSE_INDEXES) <= names
    assert store_rows(out, "SELECT * FROM photos ORDER BY id") == rows


async def test_an_unexpected_error_is_a_plain_500_and_logged(
    harvested: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(StoreLibrary):
        def groups(self, after: int, limit: int) -> list[Any]:
            raise RuntimeError("a bug in the library")

    with Store.open(harvested / STORE, readonly=True) as store:
        app = make_app(Broken(harvested, store), None, POLICY)
        async with TestClient(TestServer(app)) as client:
            with caplog.at_level(logging.ERROR, logger="harvester.serve.app"):
                async with client.get("/duplicates") as r:
                    body = await r.text()
                    assert r.status == 500
            async with client.post("/api/similar", data=_form(_png(64, 64))) as r:
                assert r.status == 503  # no searcher
    assert "a bug in the library" not in body
    assert "Traceback" not in body
    assert "500 internal error" in body
    assert any("a bug in the library" in str(rec.exc_info) for rec in caplog.records)


# --- pure parts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, Filters()),
        ({"keyword": "sky", "license": "4"}, Filters(keyword="sky", license=4)),
        ({"geotagged": "no", "status": "failed"}, Filters(geotagged=False, status="failed")),
        ({"source": "NASA", "keyword": "", "license": ""}, Filters(source="NASA")),
    ],
)
def test_parse_filters(params: dict[str, str], expected: Filters) -> None:
    assert parse_filters(params, {"sky"}) == expected
    assert (
        parse_filters(dict(p.split("=") for p in expected.link().split("&")), {"sky"}) == expected
    )


@pytest.mark.parametrize(
    "params",
    [
        {"license": "17"},
        {"license": "04x"},
        {"status": "DONE"},
        {"keyword": "cat"},
        {"geotagged": "1"},
    ],
)
def test_parse_filters_refuses(params: dict[str, str]) -> None:
    with pytest.raises(BadQuery):
        parse_filters(params, {"sky"})


@pytest.mark.parametrize(
    ("samples", "per_s"),
    [
        ([], 0.0),
        ([(0.0, 10)], 0.0),
        ([(0.0, 10), (10.0, 30)], 2.0),
        ([(0.0, 0), (30.0, 600), (61.0, 900), (90.0, 1200)], 10.0),  # the first fell out
        ([(0.0, 500), (5.0, 100), (10.0, 150)], 10.0),  # fewer than before: start again
    ],
)
def test_rate_meter(samples: list[tuple[float, int]], per_s: float) -> None:
    meter = RateMeter(window_s=60.0)
    for now, finished in samples:
        meter.add(now, finished)
    assert meter.per_s() == pytest.approx(per_s)


@pytest.mark.parametrize(
    ("ttl_s", "read_s", "fresh_s"), [(2.0, 0.01, 2.0), (2.0, 0.3, 3.0), (0.0, 0.0, 0.0)]
)
def test_slow_count_reads_stay_fresh_longer(ttl_s: float, read_s: float, fresh_s: float) -> None:
    assert counts_ttl_s(ttl_s, read_s) == pytest.approx(fresh_s)


def test_thumbnail_cache_is_bounded(harvested: Path) -> None:
    paths = [
        harvested / p
        for (p,) in store_rows(harvested, "SELECT path FROM photos WHERE status = 'done' LIMIT 12")
    ]
    thumbs = Thumbnails(side_px=128, max_bytes=20_000)
    for n, path in enumerate(paths):
        assert thumbs.get(n, path) == thumbs.get(n, path)  # the second from the cache
        assert thumbs.size_bytes <= 20_000
    assert 0 < len(thumbs) < len(paths)
    assert thumbs.hits == len(paths)


# --- the command -------------------------------------------------------------------------------


def test_serve_without_a_store_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert harvest("serve", tmp_path) == 2
    assert "holds no harvest" in only_line(capsys.readouterr().err)


def test_serve_refuses_a_bad_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert harvest("serve", tmp_path, "--port", "70000") == EXIT_USAGE
    assert "at most 65535" in capsys.readouterr().err


def test_serve_with_an_embedder_but_no_index_says_how_to_make_one(
    out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = conv_model(tmp_path / "model.onnx")
    assert harvest("serve", out, "--embedder", model, "--port", "0") == EXIT_USAGE
    assert "harvest index" in only_line(capsys.readouterr().err)


def test_the_searcher_adds_the_embedders_neighbours_and_reloads_at_most_once_a_minute(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with sqlite3.connect(out / "harvest.sqlite") as db:
        ids = [int(r[0]) for r in db.execute("SELECT photo_id FROM photo_signal ORDER BY 1")]
    asked: list[int] = []

    def neighbours(image: Path | bytes, k: int) -> list[tuple[int, float]]:
        asked.append(k)
        return [(ids[-1], 0.93), (10**15, 0.99)]  # the second is no stored photo: ignored

    searcher = SimilarSearcher(out, ImagePolicy(), neighbours)
    query = io.BytesIO()
    Image.fromarray(np.full((300, 400, 3), 90, np.uint8)).save(query, "JPEG")
    answer = searcher.search(query.getvalue(), 50)
    hits = {h["photo_id"]: h for h in answer["hits"]}  # type: ignore[attr-defined]
    assert asked
    assert ids[-1] in hits
    assert 10**15 not in hits
    clock = [1000.0]
    monkeypatch.setattr("harvester.serving.time.monotonic", lambda: clock[0])
    searcher = SimilarSearcher(out, ImagePolicy())
    reloads: list[bool] = []
    searcher.search(query.getvalue(), 1)
    index = searcher._index
    assert index is not None
    real_refresh = index.refresh

    def counted() -> bool:
        reloads.append(real_refresh())
        return reloads[-1]

    monkeypatch.setattr(index, "refresh", counted)
    clock[0] += 30
    searcher.search(query.getvalue(), 1)
    assert reloads == []
    clock[0] += 31
    searcher.search(query.getvalue(), 1)
    assert reloads == [False]
