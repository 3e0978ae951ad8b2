"""Ray benchmark: what `--ray` costs on one machine, and how it scales over fake nodes.

    python -m bench.ray [--photos 1000] [--scale-photos 10000]     # see bench/README.md

In one run, side by side:

1. **CPU per image**: the same emulator photos (bench/pipeline_corpus.py's Large-heavy mix,
   image cache warmed first) harvested by the plain engine (`bench.pipeline`'s
   `measure_image_half`) and by the engine with the Ray dispatcher over a private
   `--ray local` Ray (2 CPUs), each as a process tree pinned to the same core(s); CPU-seconds
   per stored image of each tree, Ray's own processes included, and their ratio; then both
   again on the first half of the photos, for the CPU of each further image (the difference
   of the two runs over the difference of their images: every fixed cost left out).
2. **Start-up and memory**: `ray.init` of that private Ray (wall seconds, the first task's
   round trip) and the RSS of the Ray processes it starts, idle.
3. **Scaling**: committed photos/s of a `--ray` run on `ray.cluster_utils.Cluster` with two
   fake nodes of one CPU each against one node, on work that is CPU- and latency-bound as
   reference/distributed.md §7.7 T1 has it (the emulator adds 200 ms to each image GET, small
   images, 8 in flight per task); each node warmed by a first run, the second timed.

Writes bench/results/ray.json; prints the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from bench import common
from bench.pipeline import (
    EmptySearch,
    _stored,
    bench_queries,
    harvest_config,
    measure_image_half,
    preclaim,
    warm_up,
)
from bench.pipeline_corpus import corpus_size, select_photos
from harvester.cli import build_run_config
from harvester.config import ClusterPolicy, RunConfig
from harvester.emulator import DEFAULT_API_KEY
from harvester.progress import RunStats
from harvester.records import PhotoRecord
from harvester.store.sqlite import STORE_FILENAME, Store

log = logging.getLogger("bench.ray")

SCALE_KEYWORDS = ("nature", "london", "sky", "nikon")
SCALE_IMAGE_SCALE = 0.25  # small images: the CPU part stays small beside the latency


# --- 1. CPU per image: the engine with the Ray dispatcher, as a measured process tree -----------


def measure_ray(records: Sequence[PhotoRecord], out: Path, cpus: int) -> dict[str, Any]:
    """`measure_image_half`'s twin: the same pre-claimed photos through `--ray local`."""
    preclaim(out, records)
    result = out.parent / f"{out.name}-ray.json"
    cmd = [sys.executable, "-m", "bench.ray", "--worker", "ray", "--out", str(out)]
    cmd += ["--result", str(result), "--cpus", str(cpus)]
    code, usage = common.run_measured(
        common.pinned(cmd, common.tool_cores()),
        cwd=common.ROOT,
        log_path=out.parent / f"{out.name}.log",
    )
    figures = common.tool_figures(usage, code, _stored(out))
    inner = json.loads(result.read_text()) if result.exists() else {}
    return figures | {"driver": inner}


def ray_worker(args: argparse.Namespace) -> int:
    """Entry point of the measured `--ray local` process: engine + dispatcher, no search."""
    from harvester.cluster_engine import Dispatcher, ray_session
    from harvester.engine import Engine
    from harvester.runner import run_loop

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    cluster = ClusterPolicy(address="local", local_cpus=args.cpus)
    cfg = dataclasses.replace(harvest_config(args.out, 16, 2, fsync=True), cluster=cluster)
    started = time.monotonic()
    with ray_session(cfg.cluster):
        ready = time.monotonic() - started

        async def main() -> int:
            store = Store.open(cfg.out_dir / STORE_FILENAME)
            stats = RunStats(budget_per_hour=cfg.api.calls_per_hour)
            try:
                dispatcher = Dispatcher(cfg, stats)
                queries = bench_queries()
                engine = Engine(
                    cfg, queries.keywords, store, EmptySearch(), None, stats, image_half=dispatcher
                )
                await engine.run()
            finally:
                store.close()
            return 0

        code = run_loop(main())
    args.result.write_text(json.dumps({"ray_init_s": ready, "run_s": time.monotonic() - started}))
    return code


# --- 2. start-up and memory of a private Ray ---------------------------------------------------


def startup_worker(args: argparse.Namespace) -> int:
    """Start a private Ray as `--ray local` does; time it and its first task; RSS idle."""
    import ray

    started = time.monotonic()
    ray.init(num_cpus=args.cpus, include_dashboard=False, object_store_memory=128 * 2**20)
    init_s = time.monotonic() - started
    ray.get(ray.remote(lambda: 1).remote())
    first_task_s = time.monotonic() - started
    time.sleep(2.0)  # let the idle workers settle
    me = psutil.Process()
    procs = me.children(recursive=True)
    rss = sum(p.memory_info().rss for p in procs if p.is_running())
    ray.shutdown()
    payload = {
        "init_s": init_s,
        "first_task_s": first_task_s,
        "ray_processes": len(procs),
        "ray_rss_mb": rss / 2**20,
    }
    args.result.write_text(json.dumps(payload))
    return 0


def measure_startup(work: Path, cpus: int) -> dict[str, Any]:
    """Run `startup_worker` in a child; its figures plus the whole tree's CPU."""
    result = work / "startup.json"
    cmd = [sys.executable, "-m", "bench.ray", "--worker", "startup", "--cpus", str(cpus)]
    code, usage = common.run_measured(
        [*cmd, "--result", str(result)], cwd=common.ROOT, log_path=work / "startup.log"
    )
    figures: dict[str, Any] = json.loads(result.read_text()) if result.exists() else {}
    return figures | {"exit_code": code, "cpu_s": usage.cpu_s, "wall_s": usage.wall_s}


# --- 3. scaling over fake nodes --------------------------------------------------------------


def scale_worker(args: argparse.Namespace) -> int:
    """On a Cluster of `--nodes` fake nodes of 1 CPU: a warm-up run, then the timed run."""
    import ray
    from ray.cluster_utils import Cluster

    from harvester.runner import run_command

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    node: dict[str, Any] = {"num_cpus": 1, "object_store_memory": 96 * 2**20}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    for _ in range(args.nodes - 1):
        cluster.add_node(**node)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    figures: dict[str, Any] = {"nodes": args.nodes}
    try:
        warm = _scale_config(args, args.out / "warm", SCALE_KEYWORDS[:1], batch=10)
        run_command(warm)
        timed = _scale_config(args, args.out / "timed", SCALE_KEYWORDS, batch=50)
        started = time.monotonic()
        figures["exit_code"] = run_command(timed).code
        figures["wall_s"] = time.monotonic() - started
        with Store.open(timed.out_dir / STORE_FILENAME, readonly=True) as store:
            figures["done"] = store.count("done")
        figures["photos_per_s"] = figures["done"] / figures["wall_s"]
    finally:
        ray.shutdown()
        cluster.shutdown()  # type: ignore[no-untyped-call]
    args.result.write_text(json.dumps(figures))
    return 0


def _scale_config(
    args: argparse.Namespace, base: Path, keywords: Sequence[str], *, batch: int
) -> RunConfig:
    base.mkdir(parents=True, exist_ok=True)
    queries = base / "queries.txt"
    queries.write_text("\n".join(keywords) + "\n", encoding="utf-8")
    given = {
        "api.rest_url": args.url,
        "api.calls_per_hour": 1e7,
        "cluster.address": "auto",
        "cluster.batch_photos": batch,
        "fetch.concurrency": args.scale_inflight,  # T1: 8 in flight per task
        "fetch.rate_per_s": 1e5,
        "sizes.min_side": 0,
        "images.min_side": 0,
        "plain": True,
    }
    return build_run_config(queries, base / "out", given)


def measure_scaling(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """One node, then two, against one latency-bound emulator of small images."""
    photos = args.scale_photos
    extra = ["--image-delay", str(args.scale_delay), "--image-scale", str(SCALE_IMAGE_SCALE)]
    runs: dict[str, Any] = {}
    with common.emulator_process(photos, extra=extra) as emu:
        env = {**os.environ, "FLICKR_API_KEY": DEFAULT_API_KEY}
        for nodes in (1, 2):
            out = work / f"scale-{nodes}"
            result = work / f"scale-{nodes}.json"
            cmd = [sys.executable, "-m", "bench.ray", "--worker", "scale"]
            cmd += ["--nodes", str(nodes), "--url", emu.base_url + "/services/rest/"]
            cmd += ["--out", str(out), "--result", str(result)]
            cmd += ["--scale-inflight", str(args.scale_inflight)]
            code, usage = common.run_measured(
                cmd, cwd=common.ROOT, env=env, log_path=work / f"scale-{nodes}.log"
            )
            figures = json.loads(result.read_text()) if result.exists() else {}
            runs[str(nodes)] = figures | {"child_exit": code, "tree_cpu_s": usage.cpu_s}
            print(f"scaling, {nodes} node(s): {figures}", flush=True)
    one, two = runs["1"].get("photos_per_s", 0), runs["2"].get("photos_per_s", 0)
    return {
        "runs": runs,
        "speedup_2_over_1": two / one if one else 0.0,
        "delay_s": args.scale_delay,
        "inflight_per_task": args.scale_inflight,
        "load_average": os.getloadavg(),
    }


# --- the comparison ------------------------------------------------------------------------


def compare(args: argparse.Namespace) -> dict[str, Any]:
    """All three parts, in one run."""
    work: Path = args.work
    cache = work / "emulator-cache"
    with common.emulator_process(corpus_size(args.photos), image_cache=cache) as emu:
        photos = select_photos(emu.base_url, args.photos)
        warm_up(photos)
        records = [p.record for p in photos]
        plain = measure_image_half(records, work / "plain")
        print(f"plain: {plain['images']} images, {plain['cpu_s_per_image'] * 1e3:.1f} ms CPU each")
        ray = measure_ray(records, work / "ray", args.cpus)
        print(f"ray: {ray['images']} images, {ray['cpu_s_per_image'] * 1e3:.1f} ms CPU each")
        # The same again on the first half: the difference is what each further image costs,
        # with every fixed cost (interpreters, imports, Ray's processes and their imports) out.
        half = records[: len(records) // 2]
        plain_half = measure_image_half(half, work / "plain-half")
        ray_half = measure_ray(half, work / "ray-half", args.cpus)
    startup = measure_startup(work, args.cpus)
    scaling = measure_scaling(args, work)
    plain_cpu, ray_cpu = plain["cpu_s_per_image"], ray["cpu_s_per_image"]
    less_startup = (ray["cpu_s"] - startup["cpu_s"]) / max(1, ray["images"])
    marginal = {"plain": marginal_cpu(plain_half, plain), "ray": marginal_cpu(ray_half, ray)}
    for figures in (plain, ray, plain_half, ray_half):
        figures.pop("paths", None)
    return {
        "benchmark": "ray",
        "command": " ".join(["python", "-m", "bench.ray", *sys.argv[1:]]),
        "machine": common.machine(),
        "photos": len(records),
        "plain": plain,
        "ray": ray,
        "half": {"plain": plain_half, "ray": ray_half},
        "marginal_cpu_s_per_image": marginal,
        "startup": startup,
        "scaling": scaling,
        "ratios": {
            "cpu_per_image_ray_over_plain": ray_cpu / plain_cpu,
            "cpu_per_image_ray_less_startup_over_plain": less_startup / plain_cpu,
            "marginal_cpu_per_image_ray_over_plain": marginal["ray"] / marginal["plain"],
            "images_per_s_ray_over_plain": ray["images_per_s"] / plain["images_per_s"],
            "peak_rss_ray_over_plain": ray["peak_rss_mb"] / plain["peak_rss_mb"],
            "scaling_2_nodes_over_1": scaling["speedup_2_over_1"],
        },
    }


def marginal_cpu(half: dict[str, Any], full: dict[str, Any]) -> float:
    """CPU-seconds per further image: the two runs' difference over their images' difference."""
    images = full["images"] - half["images"]
    return float((full["cpu_s"] - half["cpu_s"]) / images) if images > 0 else float("nan")


def report(payload: dict[str, Any]) -> None:
    """The table on stdout."""
    plain, ray, start = payload["plain"], payload["ray"], payload["startup"]
    ratios, runs = payload["ratios"], payload["scaling"]["runs"]
    less = ratios["cpu_per_image_ray_less_startup_over_plain"]
    marginal = payload["marginal_cpu_s_per_image"]
    common.print_table(
        ["measure", "plain", "--ray local", "ratio", "target"],
        [
            ["CPU ms / image", plain["cpu_s_per_image"] * 1e3, ray["cpu_s_per_image"] * 1e3,
             ratios["cpu_per_image_ray_over_plain"], "<= 1.10"],
            ["  less Ray start-up", "", "", less, ""],
            ["  each further image (1/2 to all)", marginal["plain"] * 1e3,
             marginal["ray"] * 1e3, ratios["marginal_cpu_per_image_ray_over_plain"], "<= 1.10"],
            ["images/s", plain["images_per_s"], ray["images_per_s"],
             ratios["images_per_s_ray_over_plain"], ""],
            ["peak RSS MB (tree)", plain["peak_rss_mb"], ray["peak_rss_mb"],
             ratios["peak_rss_ray_over_plain"], ""],
            ["Ray init s / first task s", "", f"{start.get('init_s', 0):.1f} / "
             f"{start.get('first_task_s', 0):.1f}", "", ""],
            ["Ray RSS idle MB (procs)", "", f"{start.get('ray_rss_mb', 0):.0f} "
             f"({start.get('ray_processes', 0)})", "", ""],
            ["photos/s, 1 vs 2 fake nodes", runs["1"].get("photos_per_s", 0),
             runs["2"].get("photos_per_s", 0), ratios["scaling_2_nodes_over_1"], ">= 1.8"],
        ],
    )  # fmt: skip


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options (the hidden ones start the measured children)."""
    p = argparse.ArgumentParser(
        prog="python -m bench.ray",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--photos", type=int, default=1000, help="photos of the CPU comparison")
    p.add_argument("--scale-photos", type=int, default=10000, help="corpus of the scaling runs")
    p.add_argument("--scale-delay", type=float, default=0.2, help="image latency (T1: 0.2 s)")
    p.add_argument("--scale-inflight", type=int, default=8, help="per task (T1: 8)")
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the private Ray")
    p.add_argument("--work", type=Path, default=common.RESULTS / "ray-work")
    p.add_argument("--worker", choices=("ray", "startup", "scale"), help=argparse.SUPPRESS)
    p.add_argument("--nodes", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison and write bench/results/ray.json."""
    args = parse_args(argv)
    workers = {"ray": ray_worker, "startup": startup_worker, "scale": scale_worker}
    if args.worker:
        return workers[args.worker](args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    work: Path = args.work
    for old in work.glob("*") if work.exists() else ():
        if old.name != "emulator-cache":
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    work.mkdir(parents=True, exist_ok=True)
    payload = compare(args)
    print(f"wrote {common.write_result('ray', payload)}")
    report(payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
