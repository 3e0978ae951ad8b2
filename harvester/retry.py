"""Retries with capped exponential backoff and full jitter: the one place waits are decided.

Policy is pure (`RetryPolicy.delay_s`); `retry_async` applies it, and tells an `on_retry`
hook about each error it retries (the callers tally retries by reason there). Tests turn waits
off by passing `sleep=no_sleep` or a policy with `base_s=0`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)

_RNG = random.Random()

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times to try and how long to wait between tries."""

    attempts: int = 6
    base_s: float = 1.0
    cap_s: float = 60.0
    jitter: bool = True

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """Wait before try `attempt + 1` (from 1): capped exponential, full jitter."""
        ceiling = min(self.cap_s, self.base_s * (2.0 ** (attempt - 1)))
        if not self.jitter or ceiling <= 0:
            return max(0.0, ceiling)
        source = rng or _RNG
        return source.uniform(0.0, ceiling)


async def no_sleep(_seconds: float) -> None:
    """A sleep that does not wait, for tests."""
    await asyncio.sleep(0)


async def retry_async(
    call: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    retry_on: tuple[type[E], ...],
    what: str,
    sleep: Sleep = asyncio.sleep,
    on_retry: Callable[[E], object] | None = None,
) -> T:
    """Run `call` until it succeeds, retrying the `retry_on` errors under `policy`.

    `on_retry` sees each error that is about to be retried, before the wait; the error of the
    last try is raised instead.
    """
    attempt = 1
    while True:
        try:
            return await call()
        except retry_on as exc:
            if attempt >= policy.attempts:
                raise
            if on_retry is not None:
                on_retry(exc)
            delay = policy.delay_s(attempt)
            log.debug("%s failed (%s); try %d in %.2fs", what, exc, attempt + 1, delay)
            await sleep(delay)
            attempt += 1
