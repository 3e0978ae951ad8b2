"""Run configuration: one tree of small frozen dataclasses, every default written once.

`RunConfig` is composed of the stage policies; the CLI fills the sections and the engine hands
each one, unchanged, to the stage that reads it:

    RunConfig
      api      ApiPolicy      the REST endpoint and the key's call budget   (flickr/)
      search   SearchPolicy   date field, negatives sent or not             (search/loop.py)
      planner  PlannerConfig  window sizing and paging                      (search/planner.py)
      sizes    SizePolicy     which size to download                        (images/sizes.py)
      fetch    FetchPolicy    downloads in flight, rate, limits, retries    (images/download.py)
      images   ImagePolicy    decode, frames, resize, encode                (images/process.py)
      write    WritePolicy    durability of each file                       (images/writer.py)
      output   OutputPolicy   where files go (--out URL) and their format   (storage/)
      cluster  ClusterPolicy  `--ray`: batches, stragglers, the shared limiter (cluster_engine.py)
      emulator BundledEmulator | None   `--emulator`: a local Flickr for the run (runner.py)

`ServePolicy` is `harvest serve`'s (serve/), apart from the run.

Policies live here, not beside their stages, so that the shared core never imports a stage and
a default changed in one place changes it everywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Literal

from PIL import Image

from harvester.records import DateField
from harvester.retry import RetryPolicy

FLICKR_REST_URL = "https://api.flickr.com/services/rest/"
#: Image requests per second: generous for loopback and CDN alike; 429s are handled anyway.
IMAGE_RATE_PER_S = 200.0
#: Largest image body downloaded or processed: Flickr originals top out near 50 MB (6k JPEG/PNG).
MAX_IMAGE_BYTES = 64 * 1024 * 1024
#: The output's long side: Flickr's Large, the size most research sets are built at.
MAX_SIDE_PX = 1024
#: Photos whose long side is below this are skipped (too small to be useful).
MIN_SIDE_PX = 500


def default_concurrency(cores: int | None = None) -> int:
    """Downloads in flight: 16 per core, at most 64 (the one default; the downloader uses it too).

    Little's law: a core finishes roughly 150 images/s (Larges with frames, image-costs.md) and
    a CDN answers in 50-100 ms from nearby, so 8-16 requests per core keep it busy (16 covers
    round trips up to about 100 ms; raise --concurrency for slower links). More only buys 429s
    from a CDN that throttles per client, and in-flight bodies are held in memory.
    """
    return min(64, 16 * (cores or os.cpu_count() or 2))


def default_threads() -> int:
    """Image threads: the codecs release the GIL, so one per core."""
    return max(1, os.cpu_count() or 2)


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardSpec:
    """Run only shard `index` (0-based) of `count`; keywords are assigned by a stable hash."""

    index: int = 0
    count: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiPolicy:
    """Where the REST API is and how many calls an hour the key may make."""

    rest_url: str = FLICKR_REST_URL
    calls_per_hour: float = 3600.0  # Flickr's documented limit per key


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchPolicy:
    """How keywords are searched, beyond window sizing."""

    date_field: DateField = DateField.UPLOAD  # the date windows are cut on, unless a line says
    send_negatives: bool = False  # also send -terms to Flickr (applied on our side anyway)


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannerConfig:
    """How windows are sized and paged."""

    # Fill windows to the cap: with a keyset cursor that is the fewest calls (README, planner).
    window_target: int = 4000  # photos a new window aims to hold (overshoot is truncated)
    unsorted_target: int = 1000  # the target once the API is seen to ignore the sort
    per_page: int = 500  # Flickr's maximum (the API clamps geo queries to 250; we follow it)
    max_results: int = 4000  # Flickr returns at most this many results per query
    floor_s: int = 300  # date grid: Flickr's date floor, so window edges never bleed
    max_growth: float = 4.0  # a window is at most this many times wider than the last one
    rate_decay: float = 0.5  # weight of an older window in the rate estimate, per window
    cap_trigger: int = 3500  # without a trusted sort, a reported total above this re-cuts
    nearly_full: float = 0.9  # a page this full is never taken as a window's last
    refetch_short_pages: bool = True  # ask a short mid-list page once more (see planner)
    refetch_give_up: int = 3  # stop refetching after this many in a row bring nothing

    def __post_init__(self) -> None:
        if min(self.window_target, self.unsorted_target, self.per_page, self.floor_s) < 1:
            raise ValueError("window targets, per_page and floor_s must be positive")
        if self.max_results < self.per_page:
            raise ValueError("max_results must hold at least one page")


class SizePreference(StrEnum):
    """`--size`: which size to try first."""

    LARGE = "large"  # url_l (1024), the default: smallest download that fills 1024 px
    LARGE2048 = "large2048"  # url_k, then url_h, then url_l
    ORIGINAL = "original"  # url_o first


@dataclass(frozen=True, slots=True, kw_only=True)
class SizePolicy:
    """How to pick a size: preference, the output's long side, the smallest acceptable side."""

    prefer: SizePreference = SizePreference.LARGE
    max_side: int = MAX_SIDE_PX
    min_side: int = MIN_SIDE_PX
    allow_smaller: bool = False


#: Image hosts recover within seconds; five tries over ~30 s ride out a throttling burst.
IMAGE_RETRY = RetryPolicy(attempts=5, base_s=1.0, cap_s=30.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchPolicy:
    """Limits of the downloader."""

    concurrency: int = field(default_factory=default_concurrency)
    rate_per_s: float = IMAGE_RATE_PER_S
    max_bytes: int = MAX_IMAGE_BYTES
    timeout_s: float = 120.0  # whole request, body included
    read_timeout_s: float = 30.0  # silence between chunks
    retry: RetryPolicy = IMAGE_RETRY


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameParams:
    """Tuning of harvest's frame detector (chosen on tests/imagesets.py's labelled set)."""

    tolerance: int = 14  # grey levels a border pixel may differ from the side's level (1/8 scale)
    min_uniform: float = 0.97  # share of a line's pixels within tolerance for it to be border
    min_step: float = 0.5  # share of the first content line that must differ from the border
    min_weak_step: float = 0.15  # the same for further sides of the frame's colour
    min_sides: int = 2  # a lone uniform side is too often sky, sea or a wall
    max_depth: float = 0.3  # no side's border is wider than this share of the image
    refine_uniform: float = 0.9  # full resolution: share within max(tolerance, 3 sigma)


FrameMethod = Literal["harvest", "hays", "none"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ImagePolicy:
    """How each image is checked, cropped, resized and encoded."""

    max_side: int = MAX_SIDE_PX
    min_side: int = MIN_SIDE_PX
    jpeg_quality: int = 90
    strip_frames: bool = True
    frame_method: FrameMethod = "harvest"
    max_pixels: int = 120_000_000  # decompression-bomb limit, checked on the header
    max_bytes: int = MAX_IMAGE_BYTES
    frame_params: FrameParams = field(default_factory=FrameParams)
    # A DCT-scaled decode keeps each 8x8 block's low frequencies only: a blocky low-pass. Left
    # this much larger than the output, the resampling filter smooths the blocks away (1.25
    # over 1.0: +0.7 dB PSNR on the benchmark's Originals for +10 % of their CPU).
    decode_headroom: float = 1.25
    resample: Image.Resampling = Image.Resampling.BICUBIC  # LANCZOS: +0.02 dB for +7 % CPU
    reducing_gap: float = 1.5  # box-reduce first when shrinking by 3x or more (PNG, GIF)
    # Encode downscaled images 4:4:4 when the source has colour detail at the output size
    # (a 4:2:0 JPEG shrunk by 2x or more): +0.9 dB PSNR for +3 % CPU and +16-20 % bytes on
    # those files; decoding larger buys as much for about +45 % CPU. libvips too drops chroma
    # subsampling at Q >= 90.
    keep_chroma: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class WritePolicy:
    """How durable each write is; fsync costs ~0.2 ms wall per file on this machine kind."""

    fsync: bool = True
    fsync_dir: bool = False


class OutputFormat(StrEnum):
    """`--output-format`: how the photos are laid out in the output."""

    FILES = "files"  # OUT/<keyword>/<NNNNN>/<file>.jpg, at most 1,000 per directory
    WEBDATASET = "webdataset"  # OUT/<keyword>/<NNNNN>.tar + .parquet + _stats.json


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputPolicy:
    """Where the files go when not under `out_dir`, and how they are laid out.

    `target` is `--out` when it is not the store's directory: an fsspec URL (s3://bucket/x,
    gs://..., memory://...) or a local directory given with `--store`. None: the files go
    to `out_dir`, beside the store, as they always have.
    """

    target: str | None = None
    format: OutputFormat = OutputFormat.FILES
    finalise_every_s: float = 5.0  # how often complete directories are looked for (webdataset)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterPolicy:
    """`--ray`: the image half as Ray tasks, one per batch (cluster_engine.py, cluster/)."""

    address: str | None = None  # None: no Ray; "local" (a private Ray), "auto" or ADDRESS
    local_cpus: int | None = None  # CPUs of the private Ray (`--ray local`); None: all
    batch_photos: int = 1000  # photos per task at most: one output directory
    flush_s: float = 30.0  # a directory still filling is sent anyway after this wait
    inflight_per_cpu: float = 2.0  # batches in flight per cluster CPU (ray.wait bounds them)
    max_attempts: int = 3  # a batch that failed or overran this often is given up
    straggler_factor: float = 3.0  # deadline: this x the rolling p95 time per photo
    min_deadline_s: float = 60.0  # never cancel a batch sooner than this
    first_deadline_s: float = 1800.0  # the deadline before three batches have been timed
    pack_deadline_s: float = 1800.0  # a webdataset pack task's, then cancelled (next pass redoes)
    lease_block: int = 16  # image-host tokens a worker leases from the limiter at once
    recover_per_min: float = 0.1  # after a 429 halving, the rate regains this share a minute

    def __post_init__(self) -> None:
        if not 1 <= self.batch_photos <= 1000:
            raise ValueError("batch_photos must be within 1..1000 (one output directory)")
        if self.max_attempts < 1 or self.lease_block < 1:
            raise ValueError("max_attempts and lease_block must be positive")


@dataclass(frozen=True, slots=True, kw_only=True)
class BundledEmulator:
    """`--emulator`: start the project's Flickr emulator for this run (no key, no network)."""

    photos: int = 10_000
    profile: str = "realistic"  # one of harvester.emulator.PROFILES
    seed: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    """Everything `harvest run` needs, resolved from the command line and environment."""

    queries_path: Path
    out_dir: Path  # the store's directory (harvest.sqlite); also the files' unless output.target
    api: ApiPolicy = ApiPolicy()
    search: SearchPolicy = SearchPolicy()
    planner: PlannerConfig = PlannerConfig()
    sizes: SizePolicy = SizePolicy()
    fetch: FetchPolicy = field(default_factory=FetchPolicy)
    images: ImagePolicy = field(default_factory=ImagePolicy)
    write: WritePolicy = WritePolicy()
    output: OutputPolicy = OutputPolicy()
    emulator: BundledEmulator | None = None
    sources_path: Path | None = None  # `--sources FILE.toml`: owners → sources, beside the map
    metadata_only: bool = False  # search and record, download nothing
    retry_failed: bool = False  # put photos that failed back in the queue first
    threads: int = field(default_factory=default_threads)
    workers: int = 1  # processes on this machine, one store and one API budget
    shard: ShardSpec = ShardSpec()
    cluster: ClusterPolicy = ClusterPolicy()  # `--ray`: the image half on a Ray cluster
    stop_grace_s: float = 5.0  # how long photos in flight may finish after a stop
    plain: bool = False  # log lines instead of the live display


@dataclass(frozen=True, slots=True, kw_only=True)
class ServePolicy:
    """`harvest serve`: where it listens and what it will take on and hand out."""

    host: str = "127.0.0.1"  # loopback: the pages have no login
    port: int = 8080
    max_upload_bytes: int = 20 * 1024 * 1024  # a search upload's whole request body
    max_pixels: int = ImagePolicy().max_pixels  # the bomb limit, read on the upload's header
    page_size: int = 60  # tiles on a browse page
    max_page_size: int = 500  # the most `GET /api/photos?limit=` gives at once
    thumb_px: int = 256  # a thumbnail's long side
    thumb_cache_bytes: int = 64 * 1024 * 1024  # thumbnails kept in memory (about 12 KB each)
    status_ttl_s: float = 2.0  # counts are read from the store at most this often
    refresh_s: float = 3.0  # how often the overview asks for them again
    search_hits: int = 10  # hits a search by image returns
