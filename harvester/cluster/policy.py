"""Batches and stragglers, as decisions: which directories go out, when one is overdue, and
whether a failed batch is tried again. Time is passed in; nothing here knows Ray."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from harvester.config import ClusterPolicy

#: Batches timed before the rolling deadline replaces `first_deadline_s`.
MIN_SAMPLES = 3


@dataclass(frozen=True, slots=True, order=True)
class DirKey:
    """One output directory: a keyword and its 0-based directory index (seq // 1000)."""

    keyword: str
    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DirBacklog:
    """Claimed, uncommitted photos of one directory, as the store reports them."""

    key: DirKey
    claimed: int  # claimed and not in a batch in flight: what a new batch can take
    oldest_s: float  # when the earliest of its claims was made
    closed: bool  # the keyword's numbering has passed the directory: no claim can join it
    inflight: int = 0  # photos of the directory in batches in flight


def ready_batches(
    backlog: Iterable[DirBacklog],
    *,
    now_s: float,
    searching: frozenset[str] | set[str],
    flush_s: float,
    batch_photos: int,
) -> list[DirKey]:
    """The batches to send now, one directory key per batch of up to `batch_photos`.

    A directory with nothing in flight goes out when no more photos can join it (it is
    closed, or its keyword's search has ended) or when its oldest claim has waited `flush_s`,
    so a rare keyword does not wait for 1,000 photos. A directory with a batch in flight
    sends more beside it only in full batches while it can still fill, and all it holds once
    it cannot: so a directory of a late keyword spreads over the cluster, and a trickle of
    claims waits for the batch in flight instead of going out in crumbs. Batches of
    different directories alternate, oldest claim first (the batches of one directory hold
    different photos, and each sweep spares the photos still in flight).
    """
    per = max(1, batch_photos)
    entries: list[tuple[int, float, DirKey]] = []
    for d in backlog:
        if d.claimed <= 0:
            continue
        complete = d.closed or d.key.keyword not in searching
        if d.inflight == 0 and not (complete or now_s - d.oldest_s >= flush_s):
            continue
        batches = -(-d.claimed // per) if complete or d.inflight == 0 else d.claimed // per
        entries += [(n, d.oldest_s, d.key) for n in range(batches)]
    return [key for _n, _oldest, key in sorted(entries)]


def max_inflight(cluster_cpus: float, policy: ClusterPolicy) -> int:
    """Batches in flight: `inflight_per_cpu` per cluster CPU, at least one."""
    return max(1, math.ceil(cluster_cpus * policy.inflight_per_cpu))


class Durations:
    """Rolling seconds per photo of recent committed batches, for the straggler deadline."""

    def __init__(self, keep: int = 50) -> None:
        self._per_photo: deque[float] = deque(maxlen=keep)

    def __repr__(self) -> str:
        return f"<Durations n={len(self._per_photo)} p95={self.quantile(0.95)}>"

    def add(self, seconds: float, photos: int) -> None:
        """Record a committed batch."""
        self._per_photo.append(seconds / max(1, photos))

    def quantile(self, q: float) -> float | None:
        """The q-quantile per photo (nearest rank), None before any sample."""
        return quantile(sorted(self._per_photo), q)

    def __len__(self) -> int:
        return len(self._per_photo)


def quantile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank quantile of sorted values; None for none."""
    if not ordered:
        return None
    rank = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]


def deadline_s(durations: Durations, photos: int, policy: ClusterPolicy) -> float:
    """How long a batch of `photos` may run before it counts as a straggler.

    `straggler_factor` x the rolling p95 time per photo x its photos, never under
    `min_deadline_s`; `first_deadline_s` until MIN_SAMPLES batches have been timed.
    """
    p95 = durations.quantile(0.95)
    if len(durations) < MIN_SAMPLES or p95 is None:
        return policy.first_deadline_s
    return max(policy.min_deadline_s, policy.straggler_factor * p95 * photos)


@dataclass(frozen=True, slots=True)
class Retry:
    """Send the batch again, as attempt `attempt`."""

    attempt: int


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Record every photo of the batch as failed, with this reason."""

    reason: str


def after_failure(attempt: int, error: str, policy: ClusterPolicy) -> Retry | GiveUp:
    """What to do with a batch whose attempt `attempt` (0-based) failed or overran."""
    if attempt + 1 < policy.max_attempts:
        return Retry(attempt + 1)
    return GiveUp(f"batch gave up after {policy.max_attempts} attempts: {error}")
