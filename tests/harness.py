"""Helpers shared by the tests: recordings, emulators, running `harvest`, reading its output, fakes.

Import them as `from tests.harness import …`; conftest.py holds only fixtures.

- Recordings of real Flickr traffic live outside the repository: in `$HARVEST_FIXTURES/flickr/`
  when that is set, else in `shared/fixtures/flickr/` beside the checkout. Tests that read them
  are marked `@requires_recordings(...)` and skip, saying how to get them, where they are absent.
- `harvest(...)` runs the CLI in-process (against a `threaded_emulator`); `run_harvest(...)` runs
  it in a child process and can signal it when the store shows an event (k photos stored).
- `store_rows` reads a harvest's store, read-only; `FakeClock` and `FakeStoredImage` stand in for
  the clock/sleep and for what the image stage reports about a written file.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiohttp
import pytest

from harvester import cli
from harvester.emulator import EmulatorConfig, RunningEmulator, run_emulator

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]
FIXTURES_ENV = "HARVEST_FIXTURES"
STORE = "harvest.sqlite"  # the store's file name in an output directory

# --- recordings ----------------------------------------------------------------------------------


def fixtures_dir() -> Path:
    """The shared fixtures: $HARVEST_FIXTURES, else shared/fixtures beside the checkout."""
    configured = os.environ.get(FIXTURES_ENV)
    return Path(configured) if configured else REPO.parent / "shared" / "fixtures"


def _missing_reason(names: list[str]) -> str:
    where = fixtures_dir() / "flickr"
    return (
        f"needs the Flickr recordings {', '.join(names)} (not in {where}): set {FIXTURES_ENV}"
        " to a fixtures directory holding flickr/, or place shared/fixtures beside the checkout"
    )


def recording(name: str) -> Path:
    """The recorded Flickr response `name` (relative to fixtures/flickr/); FileNotFoundError
    saying how to get the recordings if it is absent."""
    path = fixtures_dir() / "flickr" / name
    if not path.is_file():
        raise FileNotFoundError(_missing_reason([name]))
    return path


def requires_recordings(*names: str) -> pytest.MarkDecorator:
    """Skip a test (or, as `pytestmark`, a module) unless these recordings are present."""
    missing = [name for name in names if not (fixtures_dir() / "flickr" / name).is_file()]
    return pytest.mark.skipif(bool(missing), reason=_missing_reason(missing))


# --- emulators -----------------------------------------------------------------------------------

#: `await emulator_factory(photos=..., seed=..., profile=..., **switches)` (the conftest fixture).
EmulatorFactory = Callable[..., Awaitable[RunningEmulator]]


class ServesFlickr(Protocol):
    """What `harvest run` needs to know of an emulator: where it is and the key it accepts."""

    @property
    def rest_url(self) -> str: ...
    @property
    def api_key(self) -> str: ...


@dataclass
class ThreadedEmulator:
    """A running emulator whose event loop lives in a background thread."""

    running: RunningEmulator
    loop: asyncio.AbstractEventLoop

    @property
    def rest_url(self) -> str:
        """The REST endpoint."""
        return self.running.rest_url

    @property
    def api_key(self) -> str:
        """The key it accepts."""
        return self.running.api_key

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def stats(self) -> dict[str, Any]:
        """/_emulator/stats: calls by method and key, images served."""
        return self._call(self.running.stats())

    def searches(self) -> int:
        """flickr.photos.search calls answered so far."""
        return int(self.stats()["by_method"].get("flickr.photos.search", 0))

    def images(self) -> int:
        """Image requests answered so far."""
        return int(self.stats()["images"])

    def calls(self) -> int:
        """REST calls answered so far."""
        return int(self.stats()["calls"])

    def truth(self, keyword: str) -> set[str]:
        """Ids of the photos a free-text search for `keyword` matches exactly."""
        return set(self._call(self.running.truth(text=keyword)))


@contextlib.contextmanager
def threaded_emulator(**config: Any) -> Iterator[ThreadedEmulator]:
    """Serve an in-process emulator (EmulatorConfig(**config)) from a thread with its own loop.

    `harvester.cli.main` runs its own event loop, so tests calling it are plain functions and the
    emulator cannot share their loop.
    """
    started: concurrent.futures.Future[
        tuple[RunningEmulator, asyncio.AbstractEventLoop, asyncio.Event]
    ] = concurrent.futures.Future()

    async def serve() -> None:
        stop = asyncio.Event()
        try:
            async with run_emulator(EmulatorConfig(**config)) as running:
                started.set_result((running, asyncio.get_running_loop(), stop))
                await stop.wait()
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            raise

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="emulator", daemon=True)
    thread.start()
    running, loop, stop = started.result(timeout=60)
    try:
        yield ThreadedEmulator(running, loop)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)


# --- running harvest -----------------------------------------------------------------------------


def write_queries(path: Path, keywords: tuple[str, ...]) -> Path:
    """A queries file of `keywords`, one a line, under a comment."""
    path.write_text("# test queries\n" + "\n".join(keywords) + "\n", encoding="utf-8")
    return path


def _run_flags(emu: ServesFlickr, queries: Path, out: Path) -> list[str]:
    """`run` against the emulator with no budget to speak of and plain progress lines."""
    return [
        "run",
        str(queries),
        "--out",
        str(out),
        "--flickr-url",
        emu.rest_url,
        "--calls-per-hour",
        "1000000",
        "--plain",
    ]


def run_args(emu: ServesFlickr, queries: Path, out: Path, *extra: str) -> list[str]:
    """In-process `run` (see `harvest`): also no fsync and few downloads at once."""
    quick = ["--no-fsync", "--concurrency", "8", "--threads", "2"]
    return [*_run_flags(emu, queries, out), *quick, *extra]


def harvest(*args: str | Path) -> int:
    """`harvest ARGS` in-process; the exit code, whether returned or raised (argparse)."""
    try:
        return cli.main([str(a) for a in args])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


def harvest_keywords(emu: ServesFlickr, base: Path, keywords: tuple[str, ...]) -> Path:
    """A finished in-process harvest of `keywords` into `base/out`, with the emulator's key."""
    queries = write_queries(base / "queries.txt", keywords)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLICKR_API_KEY", emu.api_key)
        code = harvest(*run_args(emu, queries, base / "out"))
    assert code == 0, f"the harvest exited {code}"
    return base / "out"


def harvest_args(emu: ServesFlickr, queries: Path, out: Path, *extra: str) -> list[str]:
    """The command line of `harvest run` in a child process (see `run_harvest`)."""
    return [sys.executable, "-m", "harvester.cli", *_run_flags(emu, queries, out), *extra]


@dataclass(frozen=True, slots=True)
class Exited:
    """How a child `harvest` ended: its exit code (negative: the signal that ended it), whether
    we signalled it while it was still running, and how long it took to exit after that."""

    code: int
    signalled: bool
    err: str
    exit_after_signal_s: float | None = None


async def run_harvest(
    emu: ServesFlickr,
    args: list[str],
    *,
    stop_when: Callable[[], bool] | None = None,
    stop_with: signal.Signals = signal.SIGKILL,
    timeout_s: float = 150.0,
) -> Exited:
    """Run `args` (from `harvest_args`) in a child process with the emulator's key.

    With `stop_when`, poll it while the child runs and send `stop_with` the first time it holds;
    a child that exits first is not signalled (the caller asserts it was).
    """
    env = {**os.environ, "FLICKR_API_KEY": emu.api_key}
    proc = await asyncio.create_subprocess_exec(
        *args, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    output = asyncio.ensure_future(proc.communicate())  # drains stderr while we poll
    signalled_at: float | None = None
    try:
        async with asyncio.timeout(timeout_s):
            while stop_when is not None and not output.done():
                if stop_when():
                    proc.send_signal(stop_with)
                    signalled_at = time.monotonic()
                    break
                await asyncio.sleep(0.05)
            _, err = await output
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = err.decode(errors="replace")
    code = int(proc.returncode or 0)
    if code and signalled_at is None:
        print(text[-3000:])  # shown by pytest when the test fails
    took = None if signalled_at is None else time.monotonic() - signalled_at
    return Exited(code, signalled_at is not None, text, took)


# --- reading a harvest ---------------------------------------------------------------------------


def store_rows(out: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of `sql` over the store in `out`, opened read-only (a run may be writing it)."""
    db = sqlite3.connect(f"{(out / STORE).as_uri()}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def store_count(out: Path, sql: str) -> int:
    """`SELECT COUNT(…)` over the store in `out`; 0 while the store or its schema does not exist."""
    if not (out / STORE).is_file():
        return 0
    try:
        return int(store_rows(out, sql)[0][0])
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # a run has created the file but not the schema yet
            return 0
        raise


def image_files(out: Path) -> dict[str, str]:
    """Relative path → sha256 of every image under `out` (temporary files included)."""
    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file() and (p.suffix == ".jpg" or ".tmp-" in p.name)
    }


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a harvest holds: its files and its photo rows."""

    files: dict[str, str]
    photos: list[tuple[Any, ...]]

    @classmethod
    def of(cls, out: Path) -> Snapshot:
        """The files and photo rows of the harvest in `out` now."""
        rows = store_rows(out, "SELECT id, keyword, status, path, sha256 FROM photos ORDER BY id")
        return cls(image_files(out), rows)


def assert_consistent(out: Path) -> dict[str, str]:
    """Files and store agree: every done photo has its file and every file is a done photo,
    each photo at most once, no temporary file; returns {id: status}."""
    rows = store_rows(out, "SELECT id, status, path, sha256 FROM photos")
    done = {path: sha for _id, status, path, sha in rows if status == "done"}
    files = image_files(out)
    assert not [f for f in files if ".tmp-" in f], "no temporary file remains"
    assert files == done, "every file is a done photo (same bytes) and every done photo a file"
    ids = [Path(f).name.split("_", 1)[0] for f in files]
    assert len(ids) == len(set(ids)), "each photo is stored once"
    return {str(pid): status for pid, status, _path, _sha in rows}


def error_line(err: str) -> str:
    """The one `harvest…:` line of stderr (the end-of-run table may be there too)."""
    lines = [line for line in err.splitlines() if line.startswith("harvest")]
    assert len(lines) == 1, f"expected one error line, got {lines!r} in {err!r}"
    return lines[0]


def only_line(err: str) -> str:
    """stderr is exactly one line, and it is the error."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected exactly one line, got {lines!r}"
    assert lines[0].startswith("harvest"), lines
    return lines[0]


# --- fakes ---------------------------------------------------------------------------------------


@dataclass
class FakeClock:
    """A clock (call it) that moves only when a test moves `now` or something awaits `sleep`:
    sleeps are recorded and the time jumps, nothing really waits."""

    now: float = 1_700_000_000.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Record the wait, move the time on, and let other tasks run once."""
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)

    @property
    def slept_s(self) -> float:
        """The total of every sleep so far."""
        return sum(self.sleeps)


@dataclass(frozen=True, slots=True)
class FakeStoredImage:
    """What the image stage reports about a written file, as `Store.mark_done` reads it."""

    width: int
    height: int
    sha256: str

    @classmethod
    def of(cls, data: bytes, width: int = 1024, height: int = 768) -> FakeStoredImage:
        """The report for a file holding `data`."""
        return cls(width, height, hashlib.sha256(data).hexdigest())


# --- a harvest to serve --------------------------------------------------------------------------


def spoil_claims(out: Path, count: int = 2) -> dict[str, int]:
    """Make claimed records unusable before their download, so the run that follows fails one
    (a wrong secret: 404 from the image host) and error-skips the other (no image URL at all);
    returns {"failed": id, "skipped": id}."""
    db = sqlite3.connect(out / STORE)
    try:
        large = "SELECT 1 FROM json_each(record, '$.sizes') WHERE value ->> '$.label' = 'l'"
        sql = f"SELECT id, record FROM photos WHERE EXISTS ({large}) ORDER BY id LIMIT ? OFFSET 3"
        rows = db.execute(sql, (count,)).fetchall()
        spoilt = dict(zip(("failed", "skipped"), (int(r[0]) for r in rows), strict=False))
        for (pid, text), kind in zip(rows, ("failed", "skipped"), strict=False):
            rec = json.loads(text)
            if kind == "failed":
                for size in rec["sizes"]:
                    size["url"] = re.sub(r"/(\d+)_[0-9a-f]+", r"/\1_0000000000", size["url"])
                rec["original_secret"] = "0" * 10
            else:
                rec["sizes"], rec["original_secret"] = [], None
            db.execute("UPDATE photos SET record = ? WHERE id = ?", (json.dumps(rec), pid))
        db.commit()
    finally:
        db.close()
    return spoilt


@dataclass(frozen=True, slots=True)
class ServedHarvest:
    """The `served_harvest` fixture: a harvest, and the API key it was made with."""

    out: Path
    api_key: str


def harvest_to_serve(emu: ServesFlickr, base: Path, keywords: tuple[str, ...]) -> Path:
    """A finished two-run harvest of `keywords` into `base/out` (search, then the downloads with
    one failure and one error skip, see `spoil_claims`), then `harvest dupes` over it."""
    queries = write_queries(base / "queries.txt", keywords)
    out = base / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLICKR_API_KEY", emu.api_key)
        assert harvest(*run_args(emu, queries, out, "--metadata-only")) == 0
        spoil_claims(out)
        assert harvest(*run_args(emu, queries, out)) == 0
    assert harvest("dupes", out, "--crops", "off") == 0
    return out


@contextlib.contextmanager
def serving(out: Path, timeout_s: float = 60.0) -> Iterator[str]:
    """`harvest serve OUT --port 0` in a child process; yields its base URL (from the line it
    prints once listening) and stops it with SIGINT, as Ctrl-C would."""
    cmd = [sys.executable, "-m", "harvester", "serve", str(out), "--port", "0"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        url = _served_url(proc, timeout_s)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def _served_url(proc: subprocess.Popen[str], timeout_s: float) -> str:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        match = re.search(r" on (http://\S+/) ", line)
        if match:
            return match.group(1)
    raise AssertionError(f"harvest serve did not start: {''.join(seen)[-2000:]}")


CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver on PATH"
    " (apt-get install chromium chromium-driver; .ci/run installs them)",
)


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """Headless Debian Chromium through selenium, with the browser and network logs on."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        "--no-first-run",
        "--disable-extensions",
        "--hide-scrollbars",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


async def emulator_call(em: RunningEmulator, method: str, fmt: str = "json", **params: str) -> Any:
    """One REST call of `method` on the emulator: the parsed JSON, or the XML root."""
    query = {"method": method, "api_key": em.api_key, **params}
    if fmt == "json":
        query.update(format="json", nojsoncallback="1")
    async with aiohttp.ClientSession() as s, s.get(em.rest_url, params=query) as r:
        assert r.status == 200
        body = await r.read()
    return json.loads(body) if fmt == "json" else ET.fromstring(body)
