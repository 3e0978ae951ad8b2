"""img2dataset for the pipeline benchmark: its own venv, the like-for-like command, its outputs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import common
from bench.pipeline_corpus import Photo

I2D_VENV = Path(__file__).resolve().parent / ".img2dataset-venv"
I2D_VERSION = "1.47.0"  # the version reference/peers.md was measured with


def ensure_img2dataset() -> Path:
    """The img2dataset executable in its own venv, created on first use (never a project dep)."""
    exe = I2D_VENV / "bin" / "img2dataset"
    if exe.exists():
        return exe
    print(f"creating {I2D_VENV} and installing img2dataset (one time)…", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(I2D_VENV)], check=True)
    pip = I2D_VENV / "bin" / "pip"
    subprocess.run([str(pip), "install", "--quiet", f"img2dataset=={I2D_VERSION}"], check=True)
    return exe


def installed_version() -> str | None:
    """The img2dataset version in its venv, if it is installed."""
    python = I2D_VENV / "bin" / "python"
    if not python.exists():
        return None
    found = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('img2dataset'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.strip() or None


def img2dataset_command(
    exe: Path, urls_csv: Path, out_dir: Path, *, processes: int, threads: int, quality: int
) -> list[str]:
    """The like-for-like command of reference/peers.md §2.9 (long side 1024, files output)."""
    return [
        str(exe),
        *("--url_list", str(urls_csv), "--input_format", "csv", "--url_col", "url"),
        *("--output_folder", str(out_dir), "--output_format", "files"),
        *("--incremental_mode", "incremental", "--image_size", "1024"),
        *("--resize_mode", "keep_ratio_largest", "--resize_only_if_bigger", "True"),
        *("--encode_format", "jpg", "--encode_quality", str(quality)),
        *("--processes_count", str(processes), "--thread_count", str(threads)),
        *("--number_sample_per_shard", "500", "--min_image_size", "500"),
        *("--timeout", "30", "--retries", "2", "--max_shard_retry", "0"),
        *("--disallowed_header_directives", "[]", "--enable_wandb", "False"),
        *("--compute_hash", "None", "--extract_exif", "False"),
        *("--distributor", "multiprocessing"),
    ]


def write_urls(photos: Sequence[Photo], path: Path) -> None:
    """The chosen URL of every photo, in the order harvest's store feeds them (photo id)."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["url", "photo_id"])
        for p in photos:
            writer.writerow([p.choice.url, p.record.id])


def outputs(out_dir: Path) -> dict[str, Any]:
    """Stored files by URL and failure tally, from the per-sample .json sidecars."""
    found: dict[str, str] = {}
    errors: Counter[str] = Counter()
    for meta in out_dir.glob("*/*.json"):
        info = json.loads(meta.read_text())
        image = meta.with_suffix(".jpg")
        if info.get("status") == "success" and image.exists():
            found[info["url"]] = str(image)
        else:
            errors[str(info.get("error_message") or info.get("status"))[:60]] += 1
    return {"by_url": found, "errors": dict(errors)}


def measure_img2dataset(
    photos: Sequence[Photo],
    work: Path,
    *,
    processes: int,
    threads: int,
    quality: int,
    name: str = "img2dataset",
) -> dict[str, Any]:
    """img2dataset in its own venv and pinned process tree, measured like harvest.

    Output in `work/<name>-out`, its URL list `work/<name>-urls.csv`, its log `work/<name>.log`.
    """
    exe = ensure_img2dataset()
    out = work / f"{name}-out"
    urls = work / f"{name}-urls.csv"
    write_urls(photos, urls)
    cmd = img2dataset_command(exe, urls, out, processes=processes, threads=threads, quality=quality)
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"}
    env.pop("PYTHONPATH", None)
    code, usage = common.run_measured(
        common.pinned(cmd, common.tool_cores()),
        cwd=work,
        env=env,
        log_path=work / f"{name}.log",
    )
    found = outputs(out)
    by_id = {p.choice.url: p.record.id for p in photos}
    paths = {by_id[url]: path for url, path in found["by_url"].items() if url in by_id}
    stored = {"paths": paths, "reasons": found["errors"]}
    figures = common.tool_figures(usage, code, stored)
    shown = img2dataset_command(
        Path("img2dataset"),
        Path("urls.csv"),
        Path("OUT"),
        processes=processes,
        threads=threads,
        quality=quality,
    )
    return figures | {"command": " ".join(shown), "version": installed_version()}
