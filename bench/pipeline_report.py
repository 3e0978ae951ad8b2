"""The pipeline benchmark's report: the table on stdout and bench/results/pipeline.md."""

from __future__ import annotations

import math
from typing import Any

from bench import common


def _rows(payload: dict[str, Any]) -> list[list[object]]:
    rows: list[list[object]] = []
    for tool in ("harvest", "img2dataset"):
        t = payload[tool]
        q = payload["quality"]
        rows.append(
            [
                tool,
                t["images"],
                f"{t['wall_s']:.1f}",
                f"{t['images_per_s']:.1f}",
                f"{t['cpu_s']:.1f}",
                f"{1000 * t['cpu_s_per_image']:.2f}",
                f"{t['images_per_cpu_s']:.1f}",
                f"{t['peak_rss_mb']:.0f}",
                f"{t['bytes_stored'] / 2**20:.0f}",
                f"{q['original'][tool]['mean_psnr']:.2f}",
                f"{q['large'][tool]['mean_psnr']:.2f}",
            ]
        )
    return rows


_HEADERS = (
    "tool",
    "images",
    "wall s",
    "img/s",
    "CPU s",
    "CPU ms/img",
    "img/CPU-s",
    "peak RSS MB",
    "stored MB",
    "PSNR orig dB",
    "PSNR large dB",
)


def report_table(payload: dict[str, Any]) -> None:
    """The table on stdout."""
    print()
    common.print_table(_HEADERS, _rows(payload))
    r = payload["ratios_harvest_over_img2dataset"]
    print("\nharvest / img2dataset: " + ", ".join(f"{k} {v:.2f}x" for k, v in r.items()))
    print(_fingerprint_line(payload["harvest"]))


def _fingerprint_line(h: dict[str, Any]) -> str:
    """harvest's fingerprint CPU per stored image, as its engine counted it (included above)."""
    spent = h["engine"].get("fingerprint_cpu_s")
    if spent is None or not h["images"]:
        return "fingerprints: not measured"
    return (
        f"fingerprints (included above): {1000 * spent / h['images']:.3f} CPU ms per stored "
        f"image, {100 * spent / h['cpu_s']:.1f} % of harvest's CPU (the engine's own count)"
    )


def report_markdown(payload: dict[str, Any]) -> str:
    """bench/results/pipeline.md: the tables, the ratios and how they were measured."""
    r = payload["ratios_harvest_over_img2dataset"]
    h, i, m = payload["harvest"], payload["img2dataset"], payload["machine"]
    lines = [
        "# pipeline: harvest vs img2dataset",
        "",
        f"`{payload['command']}`: {payload['photos']} emulator photos {payload['mix']}, "
        f"{payload['source_mb']:.0f} MB downloaded by each tool. {m['cpu_count']} cores: each "
        f"tool pinned to {common.tool_cores()}, the emulator to core {common.EMULATOR_CORE}; "
        f"load average at start {m['load_avg_at_start'][0]:.1f} (a shared machine).",
        "",
        "| " + " | ".join(_HEADERS) + " |",
        "|" + "---|" * len(_HEADERS),
        *("| " + " | ".join(str(c) for c in row) + " |" for row in _rows(payload)),
        "",
        "harvest / img2dataset: " + ", ".join(f"**{k}** {v:.2f}x" for k, v in r.items()) + ".",
        "",
        f"{_fingerprint_line(h)}.",
        "",
        *_kind_lines(payload),
        *target_lines(payload),
        "## Notes",
        "",
        f"- harvest: {h['statuses']}, {h['reasons'] or 'no skips or failures'}; "
        f"{h['engine'].get('search_calls')} search calls; emulator CPU over the run "
        f"{h['emulator_cpu_s']:.1f} s.",
        f"- img2dataset {i.get('version')}: failures {i['reasons'] or 'none'}; emulator CPU "
        f"{i['emulator_cpu_s']:.1f} s. Command: `{i['command']}`.",
        "- CPU-seconds: the tool's whole process tree, not the emulator's; peak RSS: the largest "
        "sum over the tree. CPU-s per image holds on a shared machine; images/s does not, and "
        "with the tool pinned to one core it is a one-core figure.",
        f"- PSNR: mean over {payload['quality']['original']['compared']} unframed Originals "
        f"and {payload['quality']['large']['compared']} unframed Larges against a float "
        "LANCZOS resize of the downloaded bytes (bench/pipeline_quality.py); harvest keeps "
        "Larges bit for bit (inf).",
    ]
    return "\n".join(lines) + "\n"


def _kind_lines(payload: dict[str, Any]) -> list[str]:
    """Per-kind CPU (when measured) and harvest's imaging alone, with the Originals' floor."""
    costs, kinds = payload["imaging_cpu_ms"], payload["by_kind_cpu_ms"]
    lines: list[str] = []
    if kinds:
        lines += [
            "## Where the ratio comes from",
            "",
            "Each tool on each kind alone (framed ones included), CPU ms per stored image, "
            "its startup (a 10-photo run) taken out:",
            "",
            "| kind | harvest | img2dataset | ratio |",
            "|---|---|---|---|",
            *(
                f"| {k} | {kinds[k]['harvest']:.1f} | {kinds[k]['img2dataset']:.1f} | "
                f"{kinds[k]['ratio']:.2f}x |"
                for k in ("large", "original")
            ),
            "",
        ]
    if costs:
        shown = {k: round(v, 1) for k, v in costs.items() if isinstance(v, float)}
        lines += [f"harvest's `process_image` alone, CPU ms per image (one thread): {shown}.", ""]
    if costs and costs.get("original_formats"):
        lines += [
            "The Originals' floors by format (every PNG and GIF, an even spread of the JPEGs; "
            "the mix's floors weight them by count):",
            "",
            "| format | Originals | measured | mean MB | sound floor ms | Huffman floor ms "
            "| harvest `process_image` ms | harvest / floor |",
            "|---|---|---|---|---|---|---|---|",
            *(
                f"| {fmt} | {f['count']} | {f['measured']} | {f['mb']:.1f} | "
                f"{f['floor_ms']:.1f} | {f['huffman_ms']:.1f} | "
                f"{f.get('harvest_ms', math.nan):.1f} | "
                f"{f.get('harvest_ms', math.nan) / f['floor_ms']:.2f}x |"
                for fmt, f in costs["original_formats"].items()
            ),
            "",
        ]
    floor = costs.get("original_floor") if costs else None
    if kinds and floor:
        share = sum(n for k, n in payload["mix"].items() if k.startswith("original"))
        share /= payload["photos"]
        i2d = (1 - share) * kinds["large"]["img2dataset"] + share * kinds["original"]["img2dataset"]
        huffman = costs.get("original_huffman_floor") or math.nan
        lines += [
            f"Upper bounds on the mix's images per CPU-s ratio (img2dataset {i2d:.1f} ms per "
            "image without its startup), each with every Large free to harvest:",
            "",
            f"- the Originals at harvest's measured cost: "
            f"{i2d / (share * kinds['original']['harvest']):.2f}x;",
            f"- the Originals at the sound floor, {floor:.1f} ms each (a decode just large "
            "enough to cover the 1,024 px output, at the cheapest DCT scale n/8 for a JPEG, "
            "whole for a PNG or GIF, plus one 4:2:0 encode; no resampling, no frame check, no "
            f"metadata, no download, no write): **{i2d / (share * floor):.2f}x**;",
            f"- the JPEG Originals at a 1/8 greyscale decode plus the encode (mean {huffman:.1f} "
            "ms with the PNGs and GIFs as above; Huffman decoding alone, too small an image to "
            "store, so not a sound path): "
            f"{i2d / (share * huffman):.2f}x.",
            "",
        ]
    return lines


#: Issue 16's targets: (what, measured value from the payload or None, bound, ">=" or "<=").
TODAY_RSS_MB = 531.0  # peak RSS on the mix before issue 16 (bench/README)
TODAY_PSNR_DB = 39.84  # PSNR of the downscaled Originals before issue 16


def targets(payload: dict[str, Any]) -> list[tuple[str, float, float, str]]:
    """Each target of issue 16 this run can check, with its measured value."""
    r = payload["ratios_harvest_over_img2dataset"]
    kinds, costs = payload["by_kind_cpu_ms"], payload["imaging_cpu_ms"]
    rows = [
        ("mix: images per CPU-s vs img2dataset", r["images_per_cpu_s"], 2.0, ">="),
        ("PSNR of downscaled Originals, dB", _psnr(payload), TODAY_PSNR_DB, ">="),
        ("peak RSS on the mix, MB", payload["harvest"]["peak_rss_mb"], TODAY_RSS_MB, "<="),
    ]
    if kinds:
        rows.insert(
            0, ("Larges alone: images per CPU-s vs img2dataset", kinds["large"]["ratio"], 3.0, ">=")
        )
    for fmt, f in (costs.get("original_formats") or {}).items():
        if "harvest_ms" in f:
            rows.append(
                (
                    f"{fmt} Originals: process_image / floor",
                    f["harvest_ms"] / f["floor_ms"],
                    1.25,
                    "<=",
                )
            )
    return rows


def _psnr(payload: dict[str, Any]) -> float:
    return float(payload["quality"]["original"]["harvest"]["mean_psnr"])


def target_lines(payload: dict[str, Any]) -> list[str]:
    """The targets table of bench/results/pipeline.md."""
    lines = [
        "## Targets (issue 16)",
        "",
        "| target | measured | bound | met |",
        "|---|---|---|---|",
    ]
    for what, value, bound, sense in targets(payload):
        met = value >= bound if sense == ">=" else value <= bound
        lines.append(f"| {what} | {value:.2f} | {sense} {bound:g} | {'yes' if met else '**no**'} |")
    return [*lines, ""]
