"""The API call budget: one token bucket per key, in-process or shared by worker processes.

Flickr allows 3,600 calls per hour *per key*, across every process using it. `CallBudget` is
the seam: `LocalBudget` (aiolimiter) serves one process; `SharedBudget` keeps the bucket in a
small SQLite file so `--workers N` processes draw from one budget without dividing it up
front (an idle worker leaves its share to the busy ones). A Ray deployment would implement
the same Protocol with an actor. Every attempt, retries included, takes one token.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aiolimiter import AsyncLimiter

from harvester.exceptions import StoreError

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

HOUR_S = 3600.0
DEFAULT_BURST = 10  # calls allowed back to back; the hourly rate still holds
#: The shared budget's file in an output directory: every worker and command on it shares it.
BUDGET_FILENAME = "budget.sqlite"


class CallBudget(Protocol):
    """Something that hands out API calls at a sustained rate."""

    calls_per_hour: float

    async def acquire(self) -> None:
        """Wait until one call may be made, and take it."""
        ...

    def used_last_hour(self) -> int:
        """Calls taken in the trailing hour (across processes when shared)."""
        ...


# --- pure bucket policy ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Bucket:
    """A token bucket's state at `updated_s` (wall-clock seconds)."""

    tokens: float
    updated_s: float


@dataclass(frozen=True, slots=True)
class Take:
    """The decision for one request: the new state and how long to wait (0 = granted)."""

    bucket: Bucket
    wait_s: float


def take_token(bucket: Bucket, now_s: float, rate_per_s: float, capacity: float) -> Take:
    """Refill the bucket up to `now_s`, then take one token or say how long until one exists."""
    elapsed = max(0.0, now_s - bucket.updated_s)  # a clock stepping back must not mint tokens
    tokens = min(capacity, bucket.tokens + elapsed * rate_per_s)
    if tokens >= 1.0:
        return Take(Bucket(tokens=tokens - 1.0, updated_s=now_s), 0.0)
    return Take(Bucket(tokens=tokens, updated_s=now_s), (1.0 - tokens) / rate_per_s)


def budget_name(api_key: str) -> str:
    """A stable, non-reversible name for a key's bucket (the key itself is never stored)."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


# --- in-process ------------------------------------------------------------------------------


class MinuteTally:
    """Counts events per minute over the trailing hour, for the `used_last_hour` display."""

    def __init__(self) -> None:
        self._minutes: deque[list[int]] = deque()  # [minute, count], oldest first

    def add(self, now_s: float) -> None:
        """Count one event at `now_s`."""
        minute = int(now_s // 60)
        if self._minutes and self._minutes[-1][0] == minute:
            self._minutes[-1][1] += 1
        else:
            self._minutes.append([minute, 1])

    def last_hour(self, now_s: float) -> int:
        """Events in the 60 minutes up to `now_s`."""
        horizon = int(now_s // 60) - 60
        while self._minutes and self._minutes[0][0] <= horizon:
            self._minutes.popleft()
        return sum(count for _, count in self._minutes)


class LocalBudget:
    """The budget of a single process: an aiolimiter bucket of `burst` tokens."""

    def __init__(
        self,
        calls_per_hour: float = HOUR_S,
        *,
        burst: int = DEFAULT_BURST,
        clock: Clock = time.time,
    ) -> None:
        if calls_per_hour <= 0:
            raise ValueError("calls_per_hour must be positive")
        self.calls_per_hour = calls_per_hour
        # burst tokens per burst/rate seconds is the same rate with a small bucket, so a fresh
        # process cannot fire its whole hour at once.
        self._limiter = AsyncLimiter(burst, burst * HOUR_S / calls_per_hour)
        self._tally = MinuteTally()
        self._clock = clock

    async def acquire(self) -> None:
        """Wait for a token and take it."""
        await self._limiter.acquire()
        self._tally.add(self._clock())

    def used_last_hour(self) -> int:
        """Calls taken in the trailing hour by this process."""
        return self._tally.last_hour(self._clock())

    def __repr__(self) -> str:
        used = self.used_last_hour()
        return f"LocalBudget({self.calls_per_hour:g}/h, used_last_hour={used})"


# --- shared across processes -----------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bucket (name TEXT PRIMARY KEY, tokens REAL, updated_s REAL);
CREATE TABLE IF NOT EXISTS tally (name TEXT, minute INTEGER, calls INTEGER,
                                  PRIMARY KEY (name, minute)) WITHOUT ROWID;
"""


class SharedBudget:
    """A token bucket in a SQLite file, shared by every process that opens the same file.

    Each take is one short IMMEDIATE transaction, so processes serialise on the file lock for
    microseconds; at 1 call/s that cost is nothing. Time is wall-clock (`time.time`), the
    only clock processes share.
    """

    def __init__(
        self,
        path: Path,
        name: str,
        calls_per_hour: float = HOUR_S,
        *,
        burst: int = DEFAULT_BURST,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if calls_per_hour <= 0:
            raise ValueError("calls_per_hour must be positive")
        self.calls_per_hour = calls_per_hour
        self._name, self._burst = name, float(burst)
        self._rate_per_s = calls_per_hour / HOUR_S
        self._clock, self._sleep = clock, sleep
        self._lock = asyncio.Lock()
        self._db = _open_bucket_db(path)

    async def acquire(self) -> None:
        """Wait until the shared bucket has a token, and take it."""
        async with self._lock:  # one coroutine per process at a time polls the file
            while (wait_s := self._try_take()) > 0:
                await self._sleep(wait_s)

    def _try_take(self) -> float:
        now = self._clock()
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                take = take_token(self._load(now), now, self._rate_per_s, self._burst)
                self._save(take.bucket)
                if take.wait_s == 0:
                    self._count(now)
        except sqlite3.Error as exc:
            raise StoreError(f"API budget file: {exc}") from exc
        return take.wait_s

    def _load(self, now: float) -> Bucket:
        row = self._db.execute(
            "SELECT tokens, updated_s FROM bucket WHERE name = ?", (self._name,)
        ).fetchone()
        return (
            Bucket(tokens=row[0], updated_s=row[1])
            if row
            else Bucket(tokens=self._burst, updated_s=now)
        )

    def _save(self, bucket: Bucket) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO bucket (name, tokens, updated_s) VALUES (?, ?, ?)",
            (self._name, bucket.tokens, bucket.updated_s),
        )

    def _count(self, now: float) -> None:
        self._db.execute(
            "INSERT INTO tally (name, minute, calls) VALUES (?, ?, 1) "
            "ON CONFLICT (name, minute) DO UPDATE SET calls = calls + 1",
            (self._name, int(now // 60)),
        )
        self._db.execute(  # keep two hours, so the table stays a few rows long
            "DELETE FROM tally WHERE name = ? AND minute < ?", (self._name, int(now // 60) - 120)
        )

    def used_last_hour(self) -> int:
        """Calls taken in the trailing hour by every process sharing the file."""
        horizon = int(self._clock() // 60) - 60
        row = self._db.execute(
            "SELECT COALESCE(SUM(calls), 0) FROM tally WHERE name = ? AND minute > ?",
            (self._name, horizon),
        ).fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    def __repr__(self) -> str:
        used = self.used_last_hour()
        return f"SharedBudget({self.calls_per_hour:g}/h, used_last_hour={used})"


def _open_bucket_db(path: Path) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_SCHEMA)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the API budget file {path}: {exc}") from exc
    return db
