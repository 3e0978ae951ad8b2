"""Run configuration: small frozen dataclasses, every default in one place, units in names."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

FLICKR_REST_URL = "https://api.flickr.com/services/rest/"
#: Image requests per second: generous for loopback and CDN alike; 429s are handled anyway.
IMAGE_RATE_PER_S = 200.0
#: Largest image body downloaded or processed: Flickr originals top out near 50 MB (6k JPEG/PNG).
MAX_IMAGE_BYTES = 64 * 1024 * 1024


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


@dataclass(frozen=True, slots=True)
class ShardSpec:
    """Run only shard `index` (0-based) of `count`; keywords are assigned by a stable hash."""

    index: int = 0
    count: int = 1


@dataclass(frozen=True, slots=True)
class RunConfig:
    """Everything `harvest run` needs, resolved from the command line and environment."""

    queries_path: Path
    out_dir: Path
    flickr_url: str = FLICKR_REST_URL
    calls_per_hour: float = 3600.0
    window_target: int = 4000  # fill windows to the cap: fewest calls (see README, planner)
    date_field: str = "upload"
    send_negatives: bool = False
    metadata_only: bool = False
    retry_failed: bool = False
    size: str = "large"
    max_side: int = 1024
    min_side: int = 500
    allow_smaller: bool = False
    strip_frames: bool = True
    concurrency: int = field(default_factory=default_concurrency)
    threads: int = field(default_factory=default_threads)
    image_rate_per_s: float = IMAGE_RATE_PER_S
    max_image_bytes: int = MAX_IMAGE_BYTES
    fsync: bool = True
    workers: int = 1
    shard: ShardSpec = ShardSpec()
    stop_grace_s: float = 5.0
