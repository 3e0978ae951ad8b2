"""The static image host: URLs from search resolve, sizes are honest, bad paths are empty 404s."""

from __future__ import annotations

import io
import json
from pathlib import Path

import aiohttp
import numpy as np
from PIL import Image

from harvester.emulator import RunningEmulator
from harvester.emulator.corpus import cached_corpus
from harvester.emulator.photojson import image_url
from harvester.emulator.sizes import BY_EXTRA
from harvester.emulator.static import ImageStore
from tests.harness import EmulatorFactory


async def _fetch(url: str) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, dict(r.headers), await r.read()


async def _search(em: RunningEmulator, extras: str, n: int = 100) -> list[dict[str, str]]:
    params = {
        "method": "flickr.photos.search",
        "api_key": em.api_key,
        "format": "json",
        "nojsoncallback": "1",
        "text": "photo",
        "extras": extras,
        "per_page": str(n),
    }
    async with aiohttp.ClientSession() as s, s.get(em.rest_url, params=params) as r:
        return list(json.loads(await r.read())["photos"]["photo"])


async def test_url_l_serves_a_jpeg_of_the_advertised_size(emulator: RunningEmulator) -> None:
    photo = next(p for p in await _search(emulator, "url_l") if "url_l" in p)
    status, headers, body = await _fetch(photo["url_l"])
    assert status == 200
    assert headers["Content-Type"] == "image/jpeg"
    assert headers["Cache-Control"] == "public, max-age=31536000"
    img = Image.open(io.BytesIO(body))
    assert img.format == "JPEG"
    assert img.size == (int(photo["width_l"]), int(photo["height_l"]))
    assert (headers["imagewidth"], headers["imageheight"]) == (str(img.width), str(img.height))
    assert max(img.size) == 1024
    assert 100_000 <= len(body) <= 400_000
    assert np.asarray(img.convert("L")).std() > 20  # not a flat colour


async def test_wrong_secret_is_an_empty_404(emulator: RunningEmulator) -> None:
    photo = (await _search(emulator, "url_m", n=1))[0]
    bad = photo["url_m"].replace(photo["secret"], "0000000000")
    status, headers, body = await _fetch(bad)
    assert (status, body) == (404, b"")
    assert headers["Content-Type"].startswith("text/html")


async def test_png_original_and_download_suffix(emulator: RunningEmulator) -> None:
    c = emulator.corpus.cols
    rows = np.flatnonzero(
        (c["o_fmt"] == 1) & c["orig_visible"] & (c["o_w"] < 2000) & (c["o_h"] < 2000)
    )
    row = int(rows[0])
    url = image_url(emulator.base_url, emulator.corpus, row, BY_EXTRA["o"])
    assert url.endswith(".png")
    status, headers, body = await _fetch(url)
    assert status == 200
    assert headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(body)).size == (int(c["o_w"][row]), int(c["o_h"][row]))
    status, headers, _ = await _fetch(url.replace("_o.png", "_o_d.png"))
    assert status == 200
    assert headers["Content-Disposition"] == f"attachment; filename={url.rsplit('/', 1)[1]}"
    status, _, _ = await _fetch(url.replace(".png", ".jpg"))
    assert status == 404


async def test_same_seed_same_bytes_other_seed_other_bytes(
    emulator_factory: EmulatorFactory,
) -> None:
    a = await emulator_factory(photos=800, seed=5)
    b = await emulator_factory(photos=800, seed=5)
    c = await emulator_factory(photos=800, seed=6)
    urls = [image_url(em.base_url, em.corpus, 10, BY_EXTRA["m"]) for em in (a, b, c)]
    bodies = [(await _fetch(u))[2] for u in urls]
    assert bodies[0] == bodies[1]
    assert bodies[0] != bodies[2]
    # The in-process cache is per emulator: b really rendered its copy.
    assert b.emulator.static.store.renders == 1


async def test_frames_and_rotated_duplicates_are_in_the_pixels(emulator: RunningEmulator) -> None:
    c = emulator.corpus.cols
    framed = int(
        np.flatnonzero(c["frame"] & (c["frame_w"].min(axis=1) >= 40) & (c["frame_color"] == 0))[0]
    )
    status, _, body = await _fetch(
        image_url(emulator.base_url, emulator.corpus, framed, BY_EXTRA["m"])
    )
    px = np.asarray(Image.open(io.BytesIO(body)).convert("L"), dtype=np.float64)
    assert status == 200
    assert px[:3].mean() > 235
    assert px[-3:].mean() > 235
    rotated = int(np.flatnonzero(c["dup_rot"] == 1)[0])
    truth = emulator.corpus.dup_rows(rotated)
    src = min(truth)
    assert c["o_w"][rotated] <= c["o_h"][src]
    assert c["o_h"][rotated] <= c["o_w"][src]


def test_disk_cache_is_keyed_by_corpus_size(tmp_path: Path) -> None:
    """A row's photo depends on the corpus size: two sizes must never share cached bytes."""
    small, large = cached_corpus(7, 300), cached_corpus(7, 600)
    stores = [ImageStore(c, 7, 1 << 20, str(tmp_path)) for c in (small, large)]
    assert stores[0].disk is not None
    assert stores[1].disk is not None
    assert stores[0].disk != stores[1].disk
    assert stores[0].disk.parent == stores[1].disk.parent == tmp_path
