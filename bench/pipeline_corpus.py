"""The photos of the pipeline benchmark: picked from the emulator, or from a local image host.

Both sources give `Photo`s: a PhotoRecord as the search returns it, the size harvest's choice
picks, and the kind (large, original-only, framed). The local host is a fallback for when the
emulator is not available: real photographs (scikit-image) upscaled with noise to Flickr's
sizes, some framed, served by a small aiohttp app in its own pinned process.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bench import common
from harvester.records import PhotoRecord, SizeVariant
from harvester.sizes import SizeChoice, SizePolicy, choose_size


@dataclass(frozen=True)
class Photo:
    """One benchmark photo: record, chosen size, and what kind of work it is."""

    record: PhotoRecord
    choice: SizeChoice
    kind: str  # "large", "original", with "+frame" when it has a uniform border
    framed: bool

    @property
    def is_original(self) -> bool:
        return self.choice.label == "o"


def mix_counts(n: int) -> dict[str, int]:
    """The benchmark mix: ~80% Large and ~20% Original-only, ~10% of all framed."""
    originals = n // 5
    larges = n - originals
    framed_l, framed_o = larges // 10, originals // 10
    return {
        "large": larges - framed_l,
        "large+frame": framed_l,
        "original": originals - framed_o,
        "original+frame": framed_o,
    }


# --- the local image host (fallback) ---------------------------------------------------------

#: Original long sides (px), cycled: Flickr originals from phone to full-frame camera.
ORIGINAL_SIDES = (2048, 3000, 4000, 4000, 4500, 5000, 6000)
ASPECTS = ((4, 3), (3, 2), (3, 4), (16, 9), (1, 1))
POOL_PER_KIND = 7


def _source_photos() -> list[np.ndarray]:
    from skimage import data as skdata

    return [getattr(skdata, name)() for name in ("astronaut", "coffee", "chelsea", "rocket")]


def _render(src: np.ndarray, size: tuple[int, int], seed: int, frame: bool) -> bytes:
    """A photo at `size` (w, h): source resized with sensor-like noise, optionally framed."""
    rng = np.random.default_rng(seed)
    w, h = size
    inner = (w - 2 * (w // 24), h - 2 * (h // 24)) if frame else size
    img = Image.fromarray(src).resize(inner, Image.Resampling.BICUBIC)
    pixels = np.asarray(img).astype(np.int16) + rng.normal(0, 4, (inner[1], inner[0], 3)).astype(
        np.int16
    )
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if frame:
        canvas = Image.new("RGB", size, (255, 255, 255) if seed % 2 else (0, 0, 0))
        canvas.paste(img, (w // 24, h // 24))
        img = canvas
    out = io.BytesIO()
    img.save(out, "JPEG", quality=92)
    return out.getvalue()


def _dims(long_side: int, aspect: tuple[int, int]) -> tuple[int, int]:
    a, b = aspect
    return (
        (long_side, round(long_side * b / a)) if a >= b else (round(long_side * a / b), long_side)
    )


def build_pool(cache: Path) -> dict[str, list[tuple[str, int, int]]]:
    """Generate (once) a pool of image files per kind; returns kind -> [(file, w, h)]."""
    index = cache / "index.json"
    if index.exists():
        return dict(json.loads(index.read_text()))
    cache.mkdir(parents=True, exist_ok=True)
    sources = _source_photos()
    pool: dict[str, list[tuple[str, int, int]]] = {}
    for kind in mix_counts(100):
        pool[kind] = []
        for i in range(POOL_PER_KIND):
            aspect = ASPECTS[i % len(ASPECTS)]
            side = ORIGINAL_SIDES[i % len(ORIGINAL_SIDES)] if kind.startswith("original") else 1024
            w, h = _dims(side, aspect)
            data = _render(sources[i % len(sources)], (w, h), i, kind.endswith("frame"))
            name = f"{kind.replace('+', '_')}-{i}.jpg"
            (cache / name).write_bytes(data)
            pool[kind].append((name, w, h))
    index.write_text(json.dumps(pool))
    return pool


def local_photos(base_url: str, pool: dict[str, list[tuple[str, int, int]]], n: int) -> list[Photo]:
    """n records on the local host, in the benchmark mix, each mapped to a pool file."""
    photos: list[Photo] = []
    seq = 0
    for kind, count in mix_counts(n).items():
        for i in range(count):
            name, w, h = pool[kind][i % len(pool[kind])]
            photo_id = str(10_000_000_000 + seq)
            label = "o" if kind.startswith("original") else "l"
            url = f"{base_url}/65535/{photo_id}_{'ab12cd34ef'}_{label}.jpg?f={name}"
            sizes = (
                SizeVariant("m", url.replace(f"_{label}.", "_m."), 500, 375),
                SizeVariant(label, url, w, h),
            )
            record = PhotoRecord(
                id=photo_id,
                owner="12345678@N00",
                secret="ab12cd34ef",
                server="65535",
                title=f"bench photo {seq}",
                license=4,
                owner_name="bench",
                o_width=w if label == "o" else None,
                o_height=h if label == "o" else None,
                sizes=sizes,
            )
            choice = choose_size(record, SizePolicy())
            assert isinstance(choice, SizeChoice), choice
            photos.append(Photo(record, choice, kind, kind.endswith("frame")))
            seq += 1
    # Interleave the kinds (seeded) so neither tool meets all the Originals in one tail.
    random.Random(0).shuffle(photos)
    return photos


@contextlib.contextmanager
def local_host(cache: Path) -> Iterator[str]:
    """Serve `cache` (pool files by the `f` query parameter) from a process pinned to core 0."""
    port = common.free_port()
    cmd = [sys.executable, str(Path(__file__).resolve()), "serve", str(cache), str(port)]
    env = {**os.environ, "PYTHONPATH": str(common.ROOT)}
    proc = subprocess.Popen(common.pinned(cmd, [common.EMULATOR_CORE]), env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        common.wait_http(base + "/health", proc, timeout_s=60)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _serve(cache: Path, port: int) -> None:
    """The local image host: every pool file in memory, 404 for anything else."""
    from aiohttp import web

    files = {p.name: p.read_bytes() for p in cache.glob("*.jpg")}

    async def image(request: web.Request) -> web.Response:
        data = files.get(request.query.get("f", ""))
        if data is None:
            return web.Response(status=404, body=b"", content_type="text/html")
        return web.Response(body=data, content_type="image/jpeg")

    async def health(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/{server}/{name}", image)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def fetch_bytes(url: str) -> bytes:
    """One blocking GET (reference bytes for the quality check)."""
    with urllib.request.urlopen(url, timeout=60) as resp:
        data: bytes = resp.read()
        return data


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="serve the local benchmark image host")
    p.add_argument("command", choices=("serve",))
    p.add_argument("cache", type=Path)
    p.add_argument("port", type=int)
    args = p.parse_args(argv)
    _serve(args.cache, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
