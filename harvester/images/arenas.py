"""glibc's malloc arenas capped before the image threads start: a flat peak RSS.

glibc gives threads that contend for malloc arenas of their own, up to 8 per core, and memory
freed in an arena mostly stays with it. The image threads decode, resample and encode buffers of
tens of megabytes (an Original's full decode, a PNG's rows); spread over several arenas, the
freed ones are not reused by the next photo on another thread, and the process's peak grows
with how the big photos happened to fall on the threads. bench.pipeline's mix, same code, five
runs: 434-588 MB; with two arenas 424 and 428 MB, at the same CPU per image (bench/README.md,
issue 16).

`cap_malloc_arenas(threads)` sets M_ARENA_MAX to max(2, threads) with mallopt, once per
process, before the image pool starts. A user's MALLOC_ARENA_MAX (read by glibc itself at
start-up) is left alone; elsewhere than glibc on Linux it does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)
_done: list[int] = []  # the cap set in this process, once


def cap_malloc_arenas(
    threads: int,
    *,
    mallopt: Callable[[int, int], int] | None = None,
    environ: dict[str, str] | None = None,
) -> int | None:
    """Cap glibc's arenas at max(2, threads); returns the cap set, None when nothing was."""
    env = os.environ if environ is None else environ
    if "MALLOC_ARENA_MAX" in env:
        return None  # the user's, applied by glibc before we ran
    if _done:
        return _done[0]
    call = mallopt if mallopt is not None else _libc_mallopt()
    if call is None:
        return None
    cap = max(2, threads)
    if not call(M_ARENA_MAX, cap):  # 0: refused (musl's mallopt always refuses)
        return None
    _done.append(cap)
    log.debug("malloc arenas capped at %d", cap)
    return cap


def _libc_mallopt() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        raw = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
    raw.argtypes = [ctypes.c_int, ctypes.c_int]
    raw.restype = ctypes.c_int

    def mallopt(param: int, value: int) -> int:
        return int(raw(param, value))

    return mallopt
