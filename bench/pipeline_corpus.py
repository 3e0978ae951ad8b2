"""The photos of the pipeline benchmark, picked from the Flickr emulator by its ground truth.

The records come from `flickr.photos.search` with harvest's own extras (so they are exactly what
harvest's search would claim), the frame of each from `GET /_emulator/photo/{id}`. The mix:

- ``large``: photos with ``url_l`` (harvest downloads the 1024-px Large and keeps its pixels);
- ``original``: photos harvest downloads as the Original and must downscale. The emulator, like
  Flickr, offers a Large for every photo over 1,300 px, so its natural Original-only photos are
  all small. To put big Originals (the corpus's own size distribution, up to 6,000 px, PNG and
  GIF included) in the mix, the bench removes the Large rungs (l, h, k) from the records of
  these photos: harvest's size choice then picks ``url_o``, as it does for a Large-less photo;
- ``+frame`` on a share of both: the emulator painted a uniform border into every size.

Each photo gets the URL harvest's size choice picks; img2dataset is given the same URLs.
"""

from __future__ import annotations

import json
import random
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from harvester.config import SizePolicy
from harvester.flickr.parse import decode_response, parse_search_page, search_params
from harvester.images.sizes import SizeChoice, choose_size
from harvester.records import PhotoRecord, SearchQuery

API_KEY = "0123456789abcdef0123456789abcdef"  # the emulator's DEFAULT_API_KEY
CORPUS_END_TS = 1_790_000_000  # EmulatorConfig.end_ts
LARGE_RUNGS = frozenset({"l", "h", "k"})
MIN_SIDE = 500  # harvest's and (by flag) img2dataset's minimum shorter side


@dataclass(frozen=True)
class Photo:
    """One benchmark photo: record, chosen size, and what kind of work it is."""

    record: PhotoRecord
    choice: SizeChoice
    kind: str  # "large" or "original", with "+frame" when it has a uniform border
    framed: bool

    @property
    def is_original(self) -> bool:
        """True when harvest downloads (and must downscale) the Original."""
        return self.choice.label == "o"


def mix_counts(n: int, original_share: float = 0.2, frame_share: float = 0.1) -> dict[str, int]:
    """The benchmark mix: 80 % Large and 20 % Original, a tenth of each framed."""
    originals = round(n * original_share)
    larges = n - originals
    framed_l, framed_o = round(larges * frame_share), round(originals * frame_share)
    return {
        "large": larges - framed_l,
        "large+frame": framed_l,
        "original": originals - framed_o,
        "original+frame": framed_o,
    }


def corpus_size(n: int) -> int:
    """Emulator photos needed to pick `n` of the mix (a third have a visible Original)."""
    return max(4000, 4 * n)


def _get_json(url: str, timeout_s: float = 60.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return json.loads(resp.read())


def search_all(base_url: str, per_page: int = 500) -> Iterator[PhotoRecord]:
    """Every photo of the emulator, as flickr.photos.search returns it with harvest's extras."""
    page = 1
    while True:
        query = SearchQuery(min_date=1, max_date=CORPUS_END_TS, page=page, per_page=per_page)
        params = {**search_params(query), "api_key": API_KEY, "format": "json"}
        params["nojsoncallback"] = "1"
        url = f"{base_url}/services/rest/?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=60) as resp:
            parsed = parse_search_page(decode_response(resp.status, resp.read()))
        yield from parsed.page.photos
        if page >= (parsed.page.pages or 0) or not parsed.page.photos:
            return
        page += 1


def photo_truth(base_url: str, photo_id: str) -> dict[str, Any]:
    """The emulator's ground truth of one photo (sizes, original, frame)."""
    truth: dict[str, Any] = _get_json(f"{base_url}/_emulator/photo/{photo_id}")
    return truth


def without_large(record: PhotoRecord) -> PhotoRecord:
    """The record with its Large rungs removed, so harvest's size choice takes the Original."""
    return replace(record, sizes=tuple(s for s in record.sizes if s.label not in LARGE_RUNGS))


def _candidate(record: PhotoRecord, kind: str) -> Photo | None:
    """`record` as a photo of `kind` ("large" or "original"), or None when it cannot be one."""
    if kind == "original":
        original = record.size("o")
        if original is None or max(original.width, original.height) <= 1024:
            return None
        record = without_large(record)
    choice = choose_size(record, SizePolicy())
    if not isinstance(choice, SizeChoice) or choice.label != kind[0]:
        return None
    if min(choice.width, choice.height) < MIN_SIDE:
        return None
    return Photo(record, choice, kind, framed=False)


def select_photos(base_url: str, n: int, seed: int = 0) -> list[Photo]:
    """`n` photos in the benchmark mix, in photo-id order (the order harvest's store feeds)."""
    want = mix_counts(n)
    records = list(search_all(base_url))
    random.Random(seed).shuffle(records)
    pools: dict[str, list[Photo]] = {"large": [], "original": []}
    for record in records:
        # Originals first: they are rarer (a visible Original over 1,024 px).
        for kind in ("original", "large"):
            if (photo := _candidate(record, kind)) is not None:
                pools[kind].append(photo)
                break
    chosen: list[Photo] = []
    for kind in ("large", "original"):
        chosen += _fill(base_url, pools[kind], want[kind], want[f"{kind}+frame"], kind)
    return sorted(chosen, key=lambda p: int(p.record.id))


def _fill(base_url: str, pool: Sequence[Photo], plain: int, framed: int, kind: str) -> list[Photo]:
    """Take `plain` unframed and `framed` framed photos from `pool` (ground truth decides)."""
    out: list[Photo] = []
    need = {False: plain, True: framed}
    batch = 256
    with ThreadPoolExecutor(8) as threads:
        for at in range(0, len(pool), batch):
            chunk = pool[at : at + batch]
            truths = threads.map(lambda p: photo_truth(base_url, p.record.id), chunk)
            for photo, truth in zip(chunk, truths, strict=True):
                is_framed = truth["frame"] is not None
                if need[is_framed] > 0:
                    need[is_framed] -= 1
                    label = f"{kind}+frame" if is_framed else kind
                    out.append(replace(photo, kind=label, framed=is_framed))
            if not any(need.values()):
                return out
    raise RuntimeError(f"the emulator corpus is too small for the mix: {kind} short by {need}")


def save_photos(photos: Sequence[Photo], path: str) -> None:
    """The selection as JSON lines (id, kind, url), for inspection."""
    with open(path, "w") as f:
        for p in photos:
            row: dict[str, object] = {"id": p.record.id, "kind": p.kind, "url": p.choice.url}
            row |= {"label": p.choice.label, "width": p.choice.width, "height": p.choice.height}
            f.write(json.dumps(row) + "\n")


def fetch_bytes(url: str) -> bytes:
    """One blocking GET (warm-up and the quality check's reference bytes)."""
    with urllib.request.urlopen(url, timeout=120) as resp:
        data: bytes = resp.read()
        return data
