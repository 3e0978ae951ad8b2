"""Transient faults, the per-key token bucket, and request statistics.

Fault decisions are a pure function of (seed, request number), so a run is reproducible; no key
ever sees more than `max_consecutive_faults` failures in a row, so a retried call gets through.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from harvester.emulator.config import EmulatorConfig

TOO_MANY_REQUESTS = (
    b"<html><body><h1>429 Too Many Requests</h1>\n"
    b"You have sent too many requests in a given amount of time.\n</body></html>\n"
)
UNAVAILABLE = "Sorry, the Flickr API service is not currently available."
SERVICE_UNAVAILABLE_105 = "Service currently unavailable"


class Fault(StrEnum):
    """What goes wrong with one REST call."""

    NONE = "none"
    HTTP_429 = "429"
    API_105 = "105"
    API_201 = "201"
    HTTP_5XX = "5xx"
    SLOW = "slow"
    TRUNCATE = "truncate"


def unit(seed: int, n: int, salt: int = 0) -> float:
    """A deterministic uniform draw in [0, 1) from (seed, n, salt) (splitmix64)."""
    x = (seed * 0x9E3779B97F4A7C15 + n * 0xBF58476D1CE4E5B9 + salt * 0x94D049BB133111EB) & (
        (1 << 64) - 1
    )
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & ((1 << 64) - 1)
    return ((x ^ (x >> 31)) >> 11) / float(1 << 53)


@dataclass(slots=True)
class TokenBucket:
    """calls_per_hour per key (scaled by time_scale), holding at most `capacity` calls."""

    calls_per_hour: int
    capacity: int
    time_scale: float
    _state: dict[str, tuple[float, float]] = field(default_factory=dict)

    def take(self, key: str, now: float) -> bool:
        """Spend one call for `key` at monotonic time `now`; False when the bucket is empty."""
        if self.calls_per_hour <= 0:
            return True
        tokens, last = self._state.get(key, (float(self.capacity), now))
        rate = self.calls_per_hour / 3600.0 * self.time_scale
        tokens = min(float(self.capacity), tokens + (now - last) * rate)
        ok = tokens >= 1.0
        self._state[key] = (tokens - 1.0 if ok else tokens, now)
        return ok


@dataclass(slots=True)
class FaultPlan:
    """Chooses the fault of each call from the configured rates."""

    config: EmulatorConfig
    counter: int = 0
    _streak: Counter[str] = field(default_factory=Counter)

    def next(self, key: str) -> tuple[Fault, int]:
        """The fault for the next call by `key`, and that call's sequence number."""
        self.counter += 1
        n = self.counter
        fault = self._draw(n)
        failing = fault not in (Fault.NONE, Fault.SLOW)
        if failing and self._streak[key] >= self.config.max_consecutive_faults:
            fault, failing = Fault.NONE, False
        self._streak[key] = self._streak[key] + 1 if failing else 0
        return fault, n

    def _draw(self, n: int) -> Fault:
        cfg = self.config
        u = unit(cfg.seed, n, 1)
        for fault, rate in (
            (Fault.HTTP_429, cfg.rate_429),
            (Fault.API_201, (cfg.rate_api_error or 0.0) * 0.7),
            (Fault.API_105, (cfg.rate_api_error or 0.0) * 0.3),
            (Fault.HTTP_5XX, cfg.rate_5xx),
            (Fault.TRUNCATE, cfg.rate_truncate),
            (Fault.SLOW, cfg.rate_slow),
        ):
            if u < (rate or 0.0):
                return fault
            u -= rate or 0.0
        return Fault.NONE


@dataclass(slots=True)
class Stats:
    """Counts of REST calls (by method, key, HTTP status, API code) and image requests."""

    calls: int = 0
    by_method: Counter[str] = field(default_factory=Counter)
    by_key: Counter[str] = field(default_factory=Counter)
    by_status: Counter[str] = field(default_factory=Counter)
    by_code: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    images: int = 0
    images_by_status: Counter[str] = field(default_factory=Counter)
    image_bytes: int = 0
    # Image requests by wall-clock second (int(time.time())): rate checks of the limiters.
    images_per_s: Counter[int] = field(default_factory=Counter)

    def call(self, method: str, key: str, status: int, code: int | None) -> None:
        """Record one REST response."""
        self.calls += 1
        self.by_method[method] += 1
        self.by_key[key] += 1
        self.by_status[str(status)] += 1
        self.by_code["ok" if code is None else str(code)] += 1

    def image(self, status: int, nbytes: int) -> None:
        """Record one static-host response."""
        self.images += 1
        self.images_per_s[int(time.time())] += 1
        self.images_by_status[str(status)] += 1
        self.image_bytes += nbytes

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready snapshot."""
        return {
            "calls": self.calls,
            "by_method": dict(self.by_method),
            "by_key": dict(self.by_key),
            "by_status": dict(self.by_status),
            "by_code": dict(self.by_code),
            "faults": dict(self.faults),
            "images": self.images,
            "images_by_status": dict(self.images_by_status),
            "image_bytes": self.image_bytes,
            "images_per_s": {str(sec): n for sec, n in sorted(self.images_per_s.items())},
        }
