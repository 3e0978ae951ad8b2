"""Shared bench helpers: a pinned emulator process, process-tree CPU/RSS measurement, results.

Benchmarks run on a small, shared machine, so the emulator gets its own core (`taskset -c 0`)
and the measured tool the other ones; every figure is for the tool's whole process tree.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from harvester.emulator import RunningEmulator
from harvester.flickr.budget import HOUR_S, LocalBudget
from harvester.flickr.client import FlickrClient
from harvester.retry import RetryPolicy

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
EMULATOR_CORE = 0


@contextlib.asynccontextmanager
async def scaled_client(emu: RunningEmulator, time_scale: float) -> AsyncIterator[FlickrClient]:
    """harvest's client against an in-process emulator whose clocks run `time_scale` x fast:
    the budget and the retry backoff scaled alike, so that waiting never dominates."""
    budget = LocalBudget(HOUR_S * time_scale, burst=100)
    policy = RetryPolicy(base_s=1.0 / time_scale, cap_s=60.0 / time_scale)
    async with aiohttp.ClientSession() as session:
        yield FlickrClient(session, emu.api_key, budget, rest_url=emu.rest_url, policy=policy)


def cores() -> list[int]:
    """The CPUs this process may run on."""
    return sorted(os.sched_getaffinity(0))


def tool_cores() -> list[int]:
    """CPUs for the measured tool: every allowed one except the emulator's (if there are two+)."""
    allowed = cores()
    rest = [c for c in allowed if c != EMULATOR_CORE]
    return rest or allowed


def pinned(cmd: Sequence[str], cpus: Sequence[int]) -> list[str]:
    """`cmd` prefixed with taskset when it exists, so it and its children stay on `cpus`."""
    if shutil.which("taskset") is None or len(cores()) < 2:
        return list(cmd)
    return ["taskset", "-c", ",".join(map(str, cpus)), *cmd]


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class EmulatorProcess:
    """The Flickr emulator serving in its own (pinned) process."""

    proc: subprocess.Popen[str]
    base_url: str

    def cpu_s(self) -> float:
        """CPU seconds the emulator has used so far (to show it is not the bottleneck)."""
        try:
            t = psutil.Process(self.proc.pid).cpu_times()
        except psutil.NoSuchProcess:
            return 0.0
        return float(t.user + t.system)

    def stop(self) -> None:
        """Terminate the emulator and reap it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def emulator_process(
    photos: int,
    seed: int = 0,
    profile: str = "ideal",
    extra: Sequence[str] = (),
    *,
    image_cache: Path | None = None,
) -> Iterator[EmulatorProcess]:
    """Start `harvest emulate --port 0` pinned to the emulator core; stop it on exit.

    The emulator prints its base URL as the first line on stdout once it listens.
    `image_cache` keeps rendered images on disk, so a warmed cache is never re-rendered.
    """
    cmd = [sys.executable, "-m", "harvester", "emulate", "--port", "0"]
    cmd += ["--photos", str(photos), "--seed", str(seed), "--profile", profile, *extra]
    if image_cache is not None:
        cmd += ["--image-cache", str(image_cache)]
    # `-m` from the repository root finds the checkout's harvester without PYTHONPATH.
    proc = subprocess.Popen(
        pinned(cmd, [EMULATOR_CORE]), cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    emu = EmulatorProcess(proc, "")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("http"):
            raise RuntimeError(f"the emulator did not start (exit {proc.poll()}, said {line!r})")
        emu.base_url = line.rstrip("/")
        wait_http(emu.base_url + "/services/rest/?method=flickr.test.echo", proc, timeout_s=60)
        yield emu
    finally:
        emu.stop()


def wait_http(url: str, proc: subprocess.Popen[Any], timeout_s: float) -> None:
    """Poll `url` until it answers (any HTTP status) or the process dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server did not answer within {timeout_s:.0f}s")


@dataclass
class TreeUsage:
    """CPU seconds and peak RSS of a process tree, as a sampler saw them."""

    cpu_s_sampled: float = 0.0
    cpu_s_rusage: float = 0.0
    peak_rss_bytes: int = 0
    peak_processes: int = 0
    wall_s: float = 0.0
    per_pid_cpu: dict[int, float] = field(default_factory=dict)

    @property
    def cpu_s(self) -> float:
        """Best estimate: each method can only under-count (see README), so take the larger."""
        return max(self.cpu_s_sampled, self.cpu_s_rusage)


class TreeSampler:
    """Samples a running process and all its descendants (psutil, recursive) in a thread."""

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        self._root = psutil.Process(pid)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.usage = TreeUsage()

    def start(self) -> None:
        """Begin sampling."""
        self._thread.start()

    def stop(self) -> TreeUsage:
        """Stop sampling and return what was seen."""
        self._stop.set()
        self._thread.join()
        self.usage.cpu_s_sampled = sum(self.usage.per_pid_cpu.values())
        return self.usage

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self._interval_s)

    def sample(self) -> None:
        """One pass over the tree: latest CPU per pid, and the tree's RSS sum."""
        try:
            procs = [self._root, *self._root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        rss = 0
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                with proc.oneshot():
                    t = proc.cpu_times()
                    rss += proc.memory_info().rss
                # Own user+system only: children_* would count reaped workers twice.
                self.usage.per_pid_cpu[proc.pid] = t.user + t.system
        self.usage.peak_rss_bytes = max(self.usage.peak_rss_bytes, rss)
        self.usage.peak_processes = max(self.usage.peak_processes, len(procs))


def children_cpu_s() -> float:
    """CPU seconds of every reaped descendant of this process so far (kernel accounting)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_measured(
    cmd: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None, log_path: Path
) -> tuple[int, TreeUsage]:
    """Run `cmd` to completion, measuring its whole process tree; output goes to `log_path`."""
    before = children_cpu_s()
    start = time.perf_counter()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        code = proc.wait()
    usage = sampler.stop()
    usage.wall_s = time.perf_counter() - start
    usage.cpu_s_rusage = children_cpu_s() - before
    return code, usage


def tool_figures(usage: TreeUsage, code: int, stored: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of one tool's run (images = files stored)."""
    paths: dict[str, str] = stored["paths"]
    images = len(paths)
    return {
        "images": images,
        "exit_code": code,
        "wall_s": usage.wall_s,
        "cpu_s": usage.cpu_s,
        "cpu_s_sampled": usage.cpu_s_sampled,
        "cpu_s_rusage": usage.cpu_s_rusage,
        "images_per_s": images / usage.wall_s if usage.wall_s else 0.0,
        "cpu_s_per_image": usage.cpu_s / images if images else float("inf"),
        "images_per_cpu_s": images / usage.cpu_s if usage.cpu_s else 0.0,
        "peak_rss_mb": usage.peak_rss_bytes / 2**20,
        "peak_processes": usage.peak_processes,
        "bytes_stored": sum(Path(p).stat().st_size for p in paths.values()),
        **stored,
    }


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "affinity": cores(),
        "taskset": shutil.which("taskset") is not None,
        "memory_bytes": psutil.virtual_memory().total,
        "load_avg_at_start": os.getloadavg(),
    }


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """Write bench/results/<name>.json and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    return path


def _json_default(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)  # type: ignore[call-overload]
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain aligned text table on stdout."""
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)
