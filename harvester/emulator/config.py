"""Emulator configuration: one frozen dataclass, realism switches defaulted from a profile."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

Profile = Literal["ideal", "realistic", "hostile"]

#: Switch values per profile; a switch left as None in EmulatorConfig takes its profile's value.
#: Rates are probabilities per call (REST) or per image request (image_429_rate).
PROFILES: dict[str, dict[str, Any]] = {
    "ideal": {
        "loose_types": False,
        "result_cap": 0,
        "total_underreport": 0.0,
        "fuzzy_edge_s": 0,
        "date_floor_s": 0,
        "short_page_rate": 0.0,
        "empty_total_rate": 0.0,
        "string_pages_rate": 0.0,
        "rate_429": 0.0,
        "rate_api_error": 0.0,
        "rate_5xx": 0.0,
        "rate_slow": 0.0,
        "rate_truncate": 0.0,
        "image_429_rate": 0.0,
        "calls_per_hour": 0,
        "burst_s": 0,
        "burst_factor": 0.0,
    },
    "realistic": {
        "loose_types": True,
        "result_cap": 4000,
        "total_underreport": 0.2,
        "fuzzy_edge_s": 60,
        "date_floor_s": 300,
        "short_page_rate": 0.02,
        "empty_total_rate": 0.0,
        "string_pages_rate": 0.05,
        "rate_429": 0.0,
        "rate_api_error": 0.01,
        "rate_5xx": 0.005,
        "rate_slow": 0.01,
        "rate_truncate": 0.0,
        "image_429_rate": 0.0,
        "calls_per_hour": 3600,
        "burst_s": 0,
        "burst_factor": 0.0,
    },
    "hostile": {
        "loose_types": True,
        "result_cap": 4000,
        "total_underreport": 0.2,
        "fuzzy_edge_s": 120,
        "date_floor_s": 300,
        "short_page_rate": 0.1,
        "empty_total_rate": 0.05,
        "string_pages_rate": 0.3,
        "rate_429": 0.05,
        "rate_api_error": 0.05,
        "rate_5xx": 0.03,
        "rate_slow": 0.03,
        "rate_truncate": 0.03,
        "image_429_rate": 0.03,
        "calls_per_hour": 3600,
        "burst_s": 0,
        "burst_factor": 0.0,
    },
}

#: The fields that default from the profile (all of PROFILES' keys).
SWITCHES: tuple[str, ...] = tuple(PROFILES["ideal"])


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """Everything the emulator needs; None switches resolve from `profile` in __post_init__."""

    host: str = "127.0.0.1"
    port: int = 0
    seed: int = 0
    photos: int = 10_000
    profile: Profile = "ideal"
    time_scale: float = 1.0
    invalid_keys: frozenset[str] = field(default_factory=frozenset)
    # Realism switches (None: the profile's value).
    loose_types: bool | None = None
    result_cap: int | None = None  # 0: no cap; else pages past it repeat the last in-cap page
    total_underreport: float | None = None  # max fraction by which large totals are reported low
    fuzzy_edge_s: int | None = None  # photos this close outside a date window may bleed in
    date_floor_s: int | None = None  # query dates snap outward to multiples of this
    short_page_rate: float | None = None
    empty_total_rate: float | None = None  # total "" instead of a number
    string_pages_rate: float | None = None  # pages as a string
    rate_429: float | None = None
    rate_api_error: float | None = None  # codes 105 / 201
    rate_5xx: float | None = None
    rate_slow: float | None = None
    rate_truncate: float | None = None
    image_429_rate: float | None = None
    calls_per_hour: int | None = None  # token bucket per key; 0 disables it
    # A bulk upload of `burst_word` (an event, an institution's import): `burst_s` seconds
    # (3600 an hour, 86400 a day; 0 off) from `burst_at` at `burst_factor` x its usual rate.
    burst_s: int | None = None
    burst_factor: float | None = None
    # Fixed knobs.
    burst_calls: int = 3600  # bucket capacity
    slow_s: float = 2.0  # delay of a slow response (divided by time_scale)
    max_consecutive_faults: int = 3  # per key: a retried call always gets through eventually
    end_ts: int = 1_790_000_000  # "now" of the corpus (2026-09-21), fixed for determinism
    burst_word: str = "photo"
    burst_at: int = 1_755_001_234  # 2025-08-12T12:20:34Z, off the 5-minute grid
    image_cache_bytes: int = 512 * 1024 * 1024
    image_cache_dir: str | None = None
    # Load-test knobs (not Flickr behaviour): serve the pixels of `row % image_pool` for every
    # photo so a million-photo crawl renders only a pool, and scale every image's sides.
    image_pool: int = 0
    image_scale: float = 1.0
    image_delay_s: float = 0.0  # added before every image answer (a far CDN: latency-bound runs)
    public_url: str | None = None  # base URL clients reach us at (docker: http://emulator:8410)

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown emulator profile {self.profile!r}")
        if self.photos < 1:
            raise ValueError("the emulator needs at least one photo")
        defaults = PROFILES[self.profile]
        for f in fields(self):
            if f.name in defaults and getattr(self, f.name) is None:
                object.__setattr__(self, f.name, defaults[f.name])
        object.__setattr__(self, "invalid_keys", frozenset(self.invalid_keys))
        if self.burst_s and not self.burst_at + self.burst_s <= self.end_ts:
            raise ValueError("the burst must end before the corpus's end_ts")

    def switch(self, name: str) -> Any:
        """A resolved switch value (never None after __post_init__)."""
        return getattr(self, name)

    @property
    def cap(self) -> int:
        """The result cap as an int (0 when off)."""
        return int(self.result_cap or 0)

    @property
    def floor_s(self) -> int:
        """The date floor in seconds (0 when off)."""
        return int(self.date_floor_s or 0)

    @property
    def fuzz_s(self) -> int:
        """The fuzzy edge width in seconds (0 when off)."""
        return int(self.fuzzy_edge_s or 0)
