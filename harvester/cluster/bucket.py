"""The cluster-wide image-host limiter's arithmetic: a token bucket whose rate is AIMD.

`take(n, now)` reserves n tokens and says how long to wait before using them (the bucket
may go into debt, so waiters are served in order at exactly the rate); `give_back` returns
the unspent rest of a lease, so batch ends waste none of the rate; `throttled(now)`
halves the rate on a 429, at most once per `cut_interval_s`; the rate then recovers
additively, `recover_per_s` x the target per second, back up to the target.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True, kw_only=True)
class TokenBucket:
    """One host's bucket. Times are seconds on a monotonic clock, passed in."""

    target_per_s: float
    burst: float  # tokens that may pile up while idle (one lease block)
    recover_per_s: float = 0.1 / 60  # share of the target regained per second
    floor_share: float = 1 / 64  # the rate never drops below this share of the target
    cut_interval_s: float = 1.0  # 429s within this span of a cut are the same burst
    now_s: float = 0.0
    rate_per_s: float = field(init=False)
    tokens: float = field(init=False)
    _cut_at: float = field(init=False, default=float("-inf"))

    def __post_init__(self) -> None:
        if self.target_per_s <= 0 or self.burst <= 0:
            raise ValueError("a token bucket needs a positive rate and burst")
        self.rate_per_s = self.target_per_s
        self.tokens = self.burst

    def _advance(self, now_s: float) -> None:
        elapsed = max(0.0, now_s - self.now_s)
        self.now_s = max(self.now_s, now_s)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate_per_s)
        regained = elapsed * self.recover_per_s * self.target_per_s
        self.rate_per_s = min(self.target_per_s, self.rate_per_s + regained)

    def take(self, n: float, now_s: float) -> float:
        """Reserve `n` tokens; the seconds to wait before spending them (0: at once)."""
        self._advance(now_s)
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate_per_s

    def give_back(self, n: float, now_s: float) -> None:
        """Return `n` leased tokens a worker did not spend (its batch ended first)."""
        self._advance(now_s)
        self.tokens = min(self.burst, self.tokens + n)

    def throttled(self, now_s: float) -> bool:
        """A 429 from the host: halve the rate unless it was cut within the interval."""
        self._advance(now_s)
        if now_s - self._cut_at < self.cut_interval_s:
            return False
        self._cut_at = now_s
        self.rate_per_s = max(self.target_per_s * self.floor_share, self.rate_per_s / 2)
        return True
