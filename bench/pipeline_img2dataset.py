"""img2dataset for the pipeline benchmark: its own venv, the like-for-like command, its outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

I2D_VENV = Path(__file__).resolve().parent / ".img2dataset-venv"


def ensure_img2dataset() -> Path:
    """The img2dataset executable in its own venv, created on first use (never a project dep)."""
    exe = I2D_VENV / "bin" / "img2dataset"
    if exe.exists():
        return exe
    print(f"creating {I2D_VENV} and installing img2dataset (one time)…", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(I2D_VENV)], check=True)
    pip = I2D_VENV / "bin" / "pip"
    subprocess.run([str(pip), "install", "--quiet", "img2dataset"], check=True)
    return exe


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


def img2dataset_outputs(out_dir: Path) -> dict[str, str]:
    """url -> stored .jpg path, from the per-sample .json sidecars of a `files` output."""
    found: dict[str, str] = {}
    for meta in out_dir.glob("*/*.json"):
        info = json.loads(meta.read_text())
        image = meta.with_suffix(".jpg")
        if info.get("status") == "success" and image.exists():
            found[info["url"]] = str(image)
    return found
