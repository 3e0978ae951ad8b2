"""Where one Large's CPU goes: the real engine on the emulator, sampled by py-spy, by stage.

    python -m bench.profile_large --larges 2000      # see bench/README.md (pipeline)

The photos are the plain (unframed) Larges of bench/pipeline.py's selection (same corpus, same
seed, so its warmed image cache is reused). Two runs of the measured harvest process
(`python -m bench.pipeline --worker harvest`, the real `Engine`): one unprofiled, for the CPU
per Large of the whole process tree; one sampled by `py-spy record --native` (attached from the
emulator's core, so the sampler's own CPU is not the tool's), for the share of each stage. A
stage's cost is its share of the samples times the unprofiled CPU per Large.

Stages are recognised by the frames on a sample's stack, the first rule that matches winning
(STAGES, in order). py-spy leaves out idle threads (a pool thread waiting for work, the loop in
epoll_wait), so the shares are of the CPU actually spent.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import common, profile_ledger
from bench.pipeline import _stored, harvest_worker, preclaim, warm_up
from bench.pipeline_corpus import Photo, corpus_size, select_photos

#: (stage, substrings of a stack): the first stage with a substring on the stack takes the
#: sample. Specific stages come before the generic ones every stack of their thread also has.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("start-up and imports", ("_find_and_load",)),
    ("fingerprints (fingerprint.py, engine.signal_row)", ("signal_row", "fingerprint.py")),
    ("strict 1/8 decode (proof + frame input)", ("eighth_gray",)),
    ("frame check", ("frames.py",)),
    ("header parse", ("open_source",)),
    ("sha256 of the stored file", ("_result (harvester/images/process.py",)),
    (
        "metadata JSON and splice",
        ("build_metadata", "jpegmeta.py", "provenance.py", "_spliced"),
    ),
    ("process_image, rest", ("process.py", "decoding.py")),
    ("path, write and rename", ("write_atomic", "photo_path", "images/writer.py")),
    ("syncfs per store batch", ("images/durable.py",)),
    ("store batching (SQLite)", ("store/", "sqlite")),
    ("HTTP client and body handling", ("aiohttp", "download.py", "yarl", "multidict")),
    ("engine, rest", ("engine.py",)),
    (
        "asyncio and thread hand-offs",
        ("asyncio", "uvloop", "concurrent/futures", "threading.py", "selectors", "queue.py"),
    ),
)
OTHER = "other (interpreter, unattributed)"
#: py-spy --native names a frame of the interpreter loop it cannot unwind after the nearest
#: exported symbol, gc_collect_main: the collector itself, timed by its callbacks in the same
#: runs, costs a few microseconds per Large (gc_cpu_s in the JSON).
GC = "interpreter, not unwound (py-spy shows gc_collect_main)"
STARTUP = STAGES[0][0]
#: A thread blocked in one of these is waiting, not working (py-spy --native counts a thread
#: waiting for the GIL or in epoll as active): such samples are left out of every share.
WAITS = (
    "pthread_cond_timedwait",
    "pthread_cond_wait",
    "PyThread_acquire_lock_timed",
    "epoll_pwait",
    "epoll_wait",
    "sem_timedwait",
    "sem_wait",
    "__futex_abstimed_wait",
    "nanosleep",
    "syncfs",  # its CPU is timed exactly (profile_ledger); its disk wait is none
)
WAITING = "waiting (GIL, epoll, locks, fsync; not CPU)"
POOL_REST = "hand-offs and the engine's own lines (outside every wrapped call)"


def classify(stack: str) -> str:
    """The stage a sampled stack (frames joined by ';', root first) belongs to."""
    leaf = ";".join(stack.split(";")[-3:])
    if any(w in leaf for w in WAITS) or "os_fsync" in stack:
        return WAITING
    if "gc_collect" in leaf:
        return GC
    for stage, needles in STAGES:
        if any(n in stack for n in needles):
            return stage
    return OTHER


def thread_of(stack: str) -> str:
    """ "pool" for a stack of a concurrent.futures worker thread, else "main" (the loop)."""
    return "pool" if "concurrent/futures/thread.py" in stack else "main"


def read_raw(path: Path) -> dict[str, dict[str, int]]:
    """Samples per thread ("main", "pool") and stage from py-spy's raw (collapsed) output."""
    counts: dict[str, Counter[str]] = {"main": Counter(), "pool": Counter()}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            counts[thread_of(stack)][classify(stack)] += int(n)
    return {k: dict(v) for k, v in counts.items()}


def worker(args: argparse.Namespace) -> int:
    """bench.pipeline's measured harvest process, reporting its CPU by thread at the end:
    the event loop's (the main thread) and the image pool's (the rest of the process)."""
    if args.gc_freeze:  # the experiment of bench/README: no full collections over start-up's heap
        gc.collect()
        gc.freeze()
    gc_s = _time_collections()
    if args.ledger:
        profile_ledger.install()
    code = harvest_worker(args)
    own = resource.getrusage(resource.RUSAGE_SELF)
    split: dict[str, Any] = {
        "main_cpu_s": time.thread_time(),
        "process_cpu_s": own.ru_utime + own.ru_stime,
    }
    split |= {"gc_cpu_s": gc_s[0], "gc_collections": gc_s[1]}
    split |= {"ledger_s": profile_ledger.exclusive(), "ledger_calls": profile_ledger.CALLS}
    split |= {"loop_ledger_s": profile_ledger.loop_exact(), "ledger_wall_s": profile_ledger.WALL}
    args.result.with_suffix(".cpu.json").write_text(json.dumps(split))
    return code


def _time_collections() -> list[float]:
    """[CPU seconds, count] of the garbage collector's runs from now on (its callbacks)."""
    spent = [0.0, 0.0]
    started = [0.0]

    def timing(phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.thread_time()
        else:
            spent[0] += time.thread_time() - started[0]
            spent[1] += 1

    gc.callbacks.append(timing)
    return spent


def worker_run(
    records: Sequence[Any], out: Path, args: argparse.Namespace, *, spy: bool
) -> dict[str, Any]:
    """The harvest worker on `records`: its CPU by thread, and with `spy` py-spy's samples
    per thread and stage (py-spy attached from the emulator's core)."""
    preclaim(out, records)
    raw = out.parent / f"{out.name}.raw.txt"
    result = out.parent / f"{out.name}-engine.json"
    cmd = [sys.executable, "-m", "bench.profile_large", "--worker", "--out", str(out)]
    cmd += ["--result", str(result), "--concurrency", str(args.concurrency)]
    cmd += ["--threads", str(args.threads), *(["--no-fsync"] if args.no_fsync else [])]
    cmd += ["--gc-freeze"] if args.gc_freeze else []
    cmd += [] if spy else ["--ledger"]  # the exact pool stages, in the unprofiled run
    log = (out.parent / f"{out.name}.log").open("wb")
    started = time.perf_counter()
    proc = subprocess.Popen(
        common.pinned(cmd, common.tool_cores()), cwd=common.ROOT, stdout=log, stderr=log
    )
    sampler = None
    if spy:
        spy_cmd = [str(Path(sys.executable).parent / "py-spy"), "record", "--native"]
        spy_cmd += ["-r", str(args.rate), "-f", "raw", "-o", str(raw), "--pid", str(proc.pid)]
        time.sleep(0.2)  # let taskset exec the interpreter first
        sampler = subprocess.Popen(
            common.pinned(spy_cmd, [common.EMULATOR_CORE]), stdout=log, stderr=log
        )
    code = proc.wait()
    wall_s = time.perf_counter() - started  # the process's whole life, start-up included
    if sampler is not None:
        sampler.wait(timeout=300)
    log.close()
    split = json.loads(result.with_suffix(".cpu.json").read_text())
    done = len(_stored(out)["paths"])
    samples = read_raw(raw) if spy and raw.exists() else {}
    return {
        "exit_code": code,
        "images": done,
        "wall_s": wall_s,
        **split,
        "samples": samples,
        "raw": str(raw),
    }


def breakdown(
    samples: dict[str, dict[str, int]], cpu_ms: dict[str, float], ledger_ms: dict[str, float]
) -> list[dict[str, Any]]:
    """Rows of (thread, stage, samples, ms per Large).

    The loop thread (main): its measured CPU per Large (`cpu_ms["main"]`) shared out by its
    stages' shares of its busy py-spy samples; start-up (imports) is one row of it, spread over
    the run's Larges. The image pool: `ledger_ms`, each stage's exact thread CPU per Large
    (bench/profile_ledger.py), and what the pool spent outside every wrapped call (hand-offs:
    the work item, the future, the wake-up of the loop; the engine's own lines) as its rest.
    Waiting samples (GIL, epoll, locks, fsync's disk wait) are no CPU and left out."""
    rows: list[dict[str, Any]] = []
    main = samples.get("main", {})
    busy = sum(n for stage, n in main.items() if stage != WAITING)
    for stage in [s for s, _ in STAGES] + [GC, OTHER]:
        n = main.get(stage, 0)
        if n:
            ms = cpu_ms["main"] * n / busy
            rows.append({"thread": "loop", "stage": stage, "samples": n, "ms": ms})
    for stage, ms in ledger_ms.items():
        rows.append({"thread": "pool", "stage": stage, "samples": None, "ms": ms})
    rest = cpu_ms["pool"] - sum(ledger_ms.values())
    rows.append({"thread": "pool", "stage": POOL_REST, "samples": None, "ms": rest})
    waits = sum(c.get(WAITING, 0) for c in samples.values())
    rows.append({"thread": "both", "stage": WAITING, "samples": waits, "ms": 0.0})
    return rows


def larges(photos: Sequence[Photo], n: int) -> list[Photo]:
    """The first `n` plain Larges of the pipeline selection (photo-id order)."""
    return [p for p in photos if p.kind == "large"][:n]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Select, warm, run unprofiled then profiled; the JSON payload."""
    work: Path = args.work
    for name in ("plain", "profiled"):
        shutil.rmtree(work / name, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    size = corpus_size(args.corpus_photos)
    with common.emulator_process(size, seed=args.seed, image_cache=args.image_cache) as emu:
        photos = larges(
            select_photos(emu.base_url, args.corpus_photos, seed=args.seed), args.larges
        )
        warm_up(photos)
        records = [p.record for p in photos]
        plain = worker_run(records, work / "plain", args, spy=False)
        profiled = worker_run(records, work / "profiled", args, spy=True)
    n = max(1, plain["images"])
    main_ms = 1000 * plain["main_cpu_s"] / n
    pool_ms = 1000 * (plain["process_cpu_s"] - plain["main_cpu_s"]) / n
    cpu_ms = {"main": main_ms, "pool": pool_ms}
    ledger_ms = {k: 1000 * v / n for k, v in plain["ledger_s"].items()}
    return {
        "benchmark": "profile_large",
        "command": " ".join(["python", "-m", "bench.profile_large", *sys.argv[1:]]),
        "machine": common.machine(),
        "larges": len(records),
        "unprofiled": plain,
        "cpu_ms_per_large": main_ms + pool_ms,
        "cpu_ms_by_thread": cpu_ms,
        "ledger_ms": ledger_ms,
        "loop_exact_ms": {k: 1000 * v / n for k, v in plain.get("loop_ledger_s", {}).items()},
        "profiled": profiled,
        "stages": breakdown(profiled["samples"], cpu_ms, ledger_ms),
    }


def report(payload: dict[str, Any]) -> None:
    """The per-stage table."""
    rows: list[list[object]] = []
    for r in payload["stages"]:
        shown = "" if r["samples"] is None else r["samples"]
        rows.append([r["thread"], r["stage"], shown, f"{r['ms']:.3f}"])
    steady = sum(r["ms"] for r in payload["stages"] if r["stage"] != STARTUP)
    rows.append(["", "total but start-up", "", f"{steady:.3f}"])
    by = payload["cpu_ms_by_thread"]
    print(
        f"\n{payload['larges']} Larges, {payload['cpu_ms_per_large']:.2f} CPU ms per Large "
        f"(loop thread {by['main']:.2f}, image pool {by['pool']:.2f}); unprofiled run "
        f"{payload['unprofiled'].get('wall_s', 0.0):.1f} s wall"
    )
    common.print_table(["thread", "stage", "py-spy samples", "CPU ms per Large"], rows)
    exact = payload.get("loop_exact_ms", {})
    if exact:
        print("loop thread, timed exactly (inside the loop's rows above): ", end="")
        print(", ".join(f"{stage} {ms:.3f} ms" for stage, ms in exact.items()))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench.profile_large", description=__doc__)
    p.add_argument("--larges", type=int, default=2000, help="plain Larges to harvest")
    p.add_argument("--corpus-photos", type=int, default=5000, help="bench.pipeline's --photos")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    p.add_argument("--work", type=Path, default=common.RESULTS / "profile-large-work")
    p.add_argument(
        "--image-cache",
        type=Path,
        default=common.RESULTS / "pipeline-work" / "emulator-cache",
        help="the emulator's image cache (bench.pipeline's, to reuse its renders)",
    )
    p.add_argument("--raw", type=Path, help="only re-classify this py-spy raw file")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--no-fsync", action="store_true", help="harvest without fsync per file")
    p.add_argument("--gc-freeze", action="store_true", help="gc.freeze() before the engine")
    p.add_argument("--ledger", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Profile and write bench/results/profile_large.json (--raw: re-read a kept profile)."""
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    if args.raw is not None:
        old = json.loads((common.RESULTS / "profile_large.json").read_text())
        old["profiled"]["samples"] = dict(read_raw(args.raw))
        old["stages"] = breakdown(
            old["profiled"]["samples"], old["cpu_ms_by_thread"], old["ledger_ms"]
        )
        report(old)
        return 0
    payload = run(args)
    report(payload)
    print(f"\nwrote {common.write_result('profile_large', payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
