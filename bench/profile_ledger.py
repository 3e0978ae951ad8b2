"""Exact thread CPU of the image pool's stages, for bench.profile_large's unprofiled run.

`install()` wraps the functions the engine's pool thread calls for each photo (in the measured
process only, nothing is changed on disk) so that each call adds its thread CPU time to its
stage. A stage's time includes what it calls, so `exclusive()` takes the inner stages out of
process_image's. py-spy cannot do this part: it counts a pool thread that waits for the core
or re-takes the GIL as busy in whatever it was doing.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import harvester.batch
import harvester.images.durable
import harvester.images.jpegmeta
import harvester.images.process

_lock = threading.Lock()
SPENT: dict[str, float] = {}
CALLS: dict[str, int] = {}
WALL: dict[str, float] = {}  # wall seconds per stage (a wait on the disk shows here, not in SPENT)

#: (stage, module, attribute): what is wrapped. The inner stages are looked up in
#: harvester.images.process, where process_image finds them.
WRAPPED: tuple[tuple[str, Any, str], ...] = (
    ("process_image", harvester.batch, "process_image"),
    ("strict 1/8 decode", harvester.images.process, "eighth_gray"),
    ("frame check", harvester.images.process, "coarse_borders"),
    ("header parse", harvester.images.process, "open_source"),
    ("metadata JSON and segments", harvester.images.process, "build_metadata"),
    ("metadata splice", harvester.images.jpegmeta, "embed_parts"),
    ("sha256 of the stored file", harvester.images.process, "_result"),
    ("fingerprints", harvester.batch, "signal_row"),
    ("write, rename (fsync apart)", harvester.batch, "write_atomic"),
    ("fsync", os, "fsync"),
)
#: Loop-thread calls timed the same way (their CPU is part of the loop thread's, which py-spy
#: shares out; these figures are exact and reported beside that share, not added to it).
LOOP_WRAPPED: tuple[tuple[str, Any, str], ...] = (
    ("path (photo_path)", harvester.batch, "photo_path"),
    ("syncfs per store batch (the done barrier)", harvester.images.durable.BatchSync, "__call__"),
)
INNER = (
    "strict 1/8 decode",
    "frame check",
    "header parse",
    "metadata JSON and segments",
    "metadata splice",
    "sha256 of the stored file",
)


def _timed(stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started, wall = time.thread_time(), time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent = time.thread_time() - started
            waited = time.perf_counter() - wall
            with _lock:
                SPENT[stage] = SPENT.get(stage, 0.0) + spent
                WALL[stage] = WALL.get(stage, 0.0) + waited
                CALLS[stage] = CALLS.get(stage, 0) + 1

    return timed


def install() -> None:
    """Wrap every function of WRAPPED in this process."""
    for stage, module, name in (*WRAPPED, *LOOP_WRAPPED):
        setattr(module, name, _timed(stage, getattr(module, name)))


def exclusive() -> dict[str, float]:
    """CPU seconds per stage, each outer stage less the stages inside it."""
    loop = {stage for stage, _, _ in LOOP_WRAPPED}
    out = {stage: s for stage, s in SPENT.items() if stage not in loop}
    inner = sum(out.get(s, 0.0) for s in INNER)
    out["process_image, rest"] = out.pop("process_image", 0.0) - inner
    out["write, rename (fsync apart)"] = out.get("write, rename (fsync apart)", 0.0) - out.get(
        "fsync", 0.0
    )
    return out


def loop_exact() -> dict[str, float]:
    """CPU seconds of the loop-thread calls of LOOP_WRAPPED."""
    return {stage: SPENT.get(stage, 0.0) for stage, _, _ in LOOP_WRAPPED}
