"""The write step per output target: today's write_atomic against the storage room's writers.

    python -m bench.storage [--files 2000] [--rounds 3] [--fsync]

Writes `--files` Large-sized files (210 KB, two parts as the engine hands them over) per writer
per round, rounds interleaved (each starting with another writer) so the shared machine's
load and the page cache's writeback fall on every writer alike, and
reports the median CPU and wall microseconds per file:

- write_atomic: the engine's default write (a local --out without --store), unchanged;
- LocalTarget.put: the webdataset staging area and a local --out given with --store;
- memory:// put: the fsspec path without a network (what an object store adds is its upload);
- write_shard per photo: building one directory's tar + Parquet + stats from 1,000 members.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import common
from harvester.config import WritePolicy
from harvester.images.writer import write_atomic
from harvester.storage.shards import ShardMember, write_shard
from harvester.storage.target import LocalTarget, open_target

FILE_BYTES = 210_000  # a Large JPEG (reference/image-costs.md)

Writer = Callable[[Path, int], None]


def writers(fsync: bool) -> dict[str, Writer]:
    """Each writer, as a function of (a fresh root, the file's number)."""
    data = os.urandom(FILE_BYTES)
    parts: list[bytes | memoryview] = [data[:600], memoryview(data)[600:]]
    policy = WritePolicy(fsync=fsync)
    memory = open_target("memory://bench-storage")

    def today(root: Path, i: int) -> None:
        write_atomic(root / "k" / f"{i // 1000 + 1:05d}" / f"{i}.jpg", parts, policy)

    def local(root: Path, i: int) -> None:
        LocalTarget(root, fsync=fsync).put(f"k/{i // 1000 + 1:05d}/{i}.jpg", parts)

    def in_memory(_root: Path, i: int) -> None:
        memory.put(f"k/{i // 1000 + 1:05d}/{i}.jpg", parts)

    return {"write_atomic (today)": today, "LocalTarget.put": local, "memory:// put": in_memory}


def time_writer(write: Writer, files: int) -> tuple[float, float]:
    """(CPU µs, wall µs) per file over `files` writes into a fresh directory."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write(root, -1)  # directories made, imports done
        cpu, wall = time.process_time(), time.perf_counter()
        for i in range(files):
            write(root, i)
        return (time.process_time() - cpu) / files * 1e6, (time.perf_counter() - wall) / files * 1e6


def time_shard(members: int, fsync: bool) -> tuple[float, float]:
    """(CPU µs, wall µs) per photo of write_shard over one directory of `members`."""
    image = os.urandom(FILE_BYTES)
    batch = [
        ShardMember(key=str(i), image=image, meta={"photo_id": str(i), "record": {"id": str(i)}})
        for i in range(members)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        cpu, wall = time.process_time(), time.perf_counter()
        write_shard(LocalTarget(Path(tmp), fsync=fsync), "k/00001", batch)
        return (time.process_time() - cpu) / members * 1e6, (
            time.perf_counter() - wall
        ) / members * 1e6


def measure(files: int, rounds: int, fsync: bool) -> dict[str, dict[str, float]]:
    """Median CPU and wall µs per file of every writer, rounds interleaved."""
    runs: dict[str, list[tuple[float, float]]] = {}
    chosen = writers(fsync)
    names = list(chosen)
    for r in range(rounds):
        # each round starts with another writer: whoever goes second pays the first's writeback
        for name in names[r % len(names) :] + names[: r % len(names)]:
            runs.setdefault(name, []).append(time_writer(chosen[name], files))
        runs.setdefault("write_shard, per photo", []).append(time_shard(1000, fsync))
    return {
        name: {
            "cpu_us": statistics.median(c for c, _ in values),
            "wall_us": statistics.median(w for _, w in values),
        }
        for name, values in runs.items()
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.storage", description=__doc__)
    p.add_argument("--files", type=int, default=2000, help="files per writer per round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    p.add_argument("--fsync", action="store_true", help="fsync every file (harvest's default)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print the table, write bench/results/storage.json."""
    args = parse_args(argv)
    figures = measure(args.files, args.rounds, args.fsync)
    base = figures["write_atomic (today)"]["cpu_us"]
    rows = [
        [name, f"{f['cpu_us']:.0f}", f"{f['wall_us']:.0f}", f"{f['cpu_us'] / base:.2f}"]
        for name, f in figures.items()
    ]
    common.print_table(["writer", "CPU µs/file", "wall µs/file", "CPU vs today"], rows)
    payload: dict[str, Any] = {"args": vars(args), "machine": common.machine(), "figures": figures}
    print(common.write_result("storage", payload))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
