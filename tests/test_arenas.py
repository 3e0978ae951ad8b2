"""images/arenas.py: glibc's malloc arenas capped once per process, the user's setting kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harvester.images import arenas
from tests.harness import harvest, run_args, threaded_emulator, write_queries


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(arenas, "_done", [])


class Recorder:
    def __init__(self, answer: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.answer = answer

    def __call__(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.answer


@pytest.mark.parametrize(("threads", "cap"), [(1, 2), (2, 2), (6, 6)])
def test_the_cap_follows_the_image_threads_and_is_set_once(threads: int, cap: int) -> None:
    call = Recorder()
    assert arenas.cap_malloc_arenas(threads, mallopt=call, environ={}) == cap
    assert arenas.cap_malloc_arenas(threads + 5, mallopt=call, environ={}) == cap, "once"
    assert call.calls == [(arenas.M_ARENA_MAX, cap)]


def test_the_users_malloc_arena_max_is_left_alone() -> None:
    call = Recorder()
    assert arenas.cap_malloc_arenas(2, mallopt=call, environ={"MALLOC_ARENA_MAX": "4"}) is None
    assert call.calls == []


def test_a_refused_mallopt_sets_nothing() -> None:
    refusing = Recorder(answer=0)  # musl's stub
    assert arenas.cap_malloc_arenas(2, mallopt=refusing, environ={}) is None
    assert arenas.cap_malloc_arenas(2, mallopt=Recorder(), environ={}) == 2, "tried again later"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_libc_takes_the_cap_in_a_fresh_process() -> None:
    """The real mallopt, in a child without MALLOC_ARENA_MAX: glibc accepts the parameter."""
    code = "from harvester.images.arenas import cap_malloc_arenas as c; print(c(2, environ={}))"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    libc = subprocess.run(["ldd", "--version"], capture_output=True, text=True, check=False)
    glibc = "GLIBC" in (libc.stdout + libc.stderr).upper() or "GNU" in libc.stdout
    assert shown.stdout.strip() == ("2" if glibc else "None")


def test_a_harvest_caps_the_arenas_for_its_image_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    seen = Recorder()
    monkeypatch.setattr(arenas, "_libc_mallopt", lambda: seen)
    with threaded_emulator(photos=300, seed=0, profile="ideal") as emu:
        monkeypatch.setenv("FLICKR_API_KEY", emu.api_key)
        queries = write_queries(tmp_path / "q.txt", ("sky",))
        assert harvest(*run_args(emu, queries, tmp_path / "out", "--threads", "3")) == 0
    assert seen.calls == [(arenas.M_ARENA_MAX, 3)], "set once, at the image threads' count"
