"""Duplicates benchmark: per-kind recall, pairwise precision and time of harvest and imagededup.

Run: python -m bench.dupes [--scenes N] [--work DIR] [--no-imagededup]
     (prints the table; bench/results/dupes.json and dupes.md)

The set (bench/dupes_truth.py) is built at run time from real photographs: every source in 26
copies of 9 kinds, plus hard negatives; about 2,180 JPEGs in DIR/img with DIR/truth.csv.

harvest's side is `harvest dupes`'s own code on those files, in this process: each file's
fingerprint row as `harvester.dupes.file_signal_row` computes it from the file (the 1/8 grey
decode), with the byte digest put back as a harvest-time row has it (`signal_row` digests the
download; a backfilled row has none); the rows as the store's `SignalTable` (upload times in
id order, so a source is the earlier upload; no titles or dates taken, so the metadata channel
proposes nothing); then `harvester.dupes._candidates` (digests, multi-index hashing of the
hash, its 7 turns and the central 80 %) and `_judged` (the classifier, and ORB+RANSAC on the
files for crops and the rest), exactly as `run_dupes` calls them on a first run. Not measured:
the store's reads and writes, the groups.

imagededup (PHash and DHash, `find_duplicates` at its default max_distance_threshold=10) runs in
its own virtual environment (bench/.imagededup-venv), one process per method on DIR/img.

Scores. A pair is a duplicate when both images share a source. Recall of a kind: the share of
(source, copy of that kind) pairs found as a pair; "label" (harvest): found with the right kind
(resized within 1 % of the scale, rotated with the angle, flipped with the axis; tinted and
darkened, which harvest has no kind for, as `recompressed`: same geometry, other pixels).
Precision: found pairs that are duplicates / found pairs, over every pair a tool reported
(copies of copies included). Hard negatives matched: of the (hard negative, source it overlaps
by < 50 %) and (look-alike, look-alike) pairs, how many a tool linked by at least one found pair
between them or their copies (that many false pairs in brackets; they are in precision too).
Time: wall and CPU seconds; harvest's in this process (CPU of all its threads, the set already
built), imagededup's of its whole process tree, interpreter and torch import included.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from bench import common
from bench.dupes_truth import EMULATOR_SCENES, Item, TruthSet, build
from harvester.store.dupes import SignalTable

IDD_VENV = Path(__file__).resolve().parent / ".imagededup-venv"
IDD_VERSION = "0.3.3.post2"
IDD_THRESHOLD = 10  # imagededup's default max_distance_threshold, for PHash and DHash alike

#: The order of the table, with the issue's recall targets.
TARGETS: dict[str, float] = {
    "identical-bytes": 1.0,
    "identical-pixels": 1.0,
    "recompressed": 0.99,
    "resized": 0.99,
    "rotated": 0.98,
    "flipped": 0.98,
    "tinted": 0.95,
    "darkened": 0.95,
    "cropped": 0.95,
}
PRECISION_TARGET = 0.999

Pair = tuple[int, int]

# --- harvest ---------------------------------------------------------------------------------


def run_harvest(ts: TruthSet, *, backfilled: bool = False) -> dict[str, Any]:
    """harvest dupes's fingerprint, candidate and judging code on the set's files.

    `backfilled`: the rows exactly as `file_signal_row` makes them for a harvest made before
    fingerprints (no byte digest; the content size it reads is the 1/8 draft's). Else as the
    harvest-time `batch.signal_row` stores them: the same hashes of the 1/8 grey decode, the
    byte digest, and the content size in the file's pixels.
    """
    from harvester.dataset.classify import MATCH_RADIUS
    from harvester.dataset.fingerprint import src_sha256
    from harvester.dupes import CHANNEL_CROP, _candidates, _judged, add_pairs, file_signal_row
    from harvester.dupes_keypoints import crop_candidates, file_signature
    from harvester.exceptions import HarvestError, ImageError

    phases: dict[str, dict[str, float]] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        value = fn()
        phases[name] = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
        return value

    unreadable: list[str] = []

    def fingerprints() -> list[tuple[Any, ...]]:
        rows = []
        for item in ts.items:
            data = (ts.folder / item.path).read_bytes()
            try:  # what backfill_fingerprints catches: such a photo is left out of the comparison
                row = file_signal_row(item.id, data)
            except (OSError, ImageError, ValueError, HarvestError) as exc:
                unreadable.append(f"{item.path}: {exc}")
                continue
            if not backfilled:
                with Image.open(io.BytesIO(data)) as image:  # the header only
                    size = image.size
                row = (*row[:6], src_sha256(data), *row[7:10], *size, row[12])
            rows.append(row)
        return rows

    rows: list[tuple[Any, ...]] = timed("fingerprint", fingerprints)
    table = _signal_table(rows, {item.id: item.path for item in ts.items})
    new = np.arange(len(table))
    candidates = timed("candidates", lambda: _candidates(table, new, MATCH_RADIUS))

    def signatures() -> dict[int, bytes]:  # what update_signatures stores, one thread here
        return {
            int(i): file_signature((ts.folder / path).read_bytes())
            for i, path in zip(table.ids.tolist(), table.paths, strict=True)
        }

    blobs = timed("keypoint signatures", signatures)
    crop_pairs = timed("keypoint candidates", lambda: crop_candidates(blobs, table, new))
    add_pairs(candidates, crop_pairs, CHANNEL_CROP)
    verdicts = timed("judge", lambda: _judged(table, candidates, ts.folder, MATCH_RADIUS))
    found = {
        (min(v.a, v.b), max(v.a, v.b)): (v.kind.value, v.param, v.a == min(v.a, v.b))
        for v in verdicts
    }
    return {
        "pairs": found,
        "unreadable": unreadable,
        "candidates": len(candidates),
        "crop_channel_candidates": sum(1 for c in candidates.values() if c == "crop"),
        "phases": phases,
        "wall_s": sum(p["wall_s"] for p in phases.values()),
        "cpu_s": sum(p["cpu_s"] for p in phases.values()),
    }


def _signal_table(rows: list[tuple[Any, ...]], paths: dict[int, str]) -> SignalTable:
    """The rows as `DupesStore.signals` returns them (store.dupes.SignalTable)."""

    def blobs(col: int) -> npt.NDArray[np.uint8]:
        joined = b"".join(bytes(r[col]) for r in rows)
        return np.frombuffer(joined, dtype=np.uint8).reshape(len(rows), 32)

    def ints(col: int) -> npt.NDArray[np.int64]:
        return np.array([int(r[col]) for r in rows], dtype=np.int64)

    ids = ints(0)
    return SignalTable(
        ids=ids,
        ph256=blobs(2),
        c80=blobs(3),
        quality=ints(5),
        width=ints(10),
        height=ints(11),
        scale=np.array([np.nan if r[12] is None else float(r[12]) for r in rows]),
        uploaded=ids.copy(),
        compared=np.zeros(len(rows), dtype=bool),
        src_sha256=[r[6] for r in rows],
        scan_sha256=[r[7] for r in rows],
        paths=[paths[int(i)] for i in ids.tolist()],
        titles=[""] * len(rows),
        taken=[""] * len(rows),
    )


# --- imagededup --------------------------------------------------------------------------------

#: Run inside the imagededup venv: argv = method, image dir, output JSON.
#: PyPI's torchvision is a CUDA build; beside a CPU torch its extension does not load and
#: `import torchvision` fails. Only imagededup's CNN method needs it, so then its modules are
#: stubbed before imagededup is imported; the hashing code runs unchanged.
IDD_RUNNER = """
import json, sys, time
stubbed = False
try:
    import torchvision  # noqa: F401
except Exception:
    from unittest import mock
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    for name in ("torchvision", "torchvision.models", "torchvision.transforms",
                 "torchvision.models.vision_transformer"):
        sys.modules[name] = mock.MagicMock()
    stubbed = True
import importlib.metadata
from imagededup import methods
method, folder, out, threshold = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
start = time.perf_counter()
found = getattr(methods, method)(verbose=False).find_duplicates(
    image_dir=folder, max_distance_threshold=threshold)
took = time.perf_counter() - start
json.dump({"duplicates": found, "find_duplicates_wall_s": took, "stubbed_torchvision": stubbed,
           "version": importlib.metadata.version("imagededup")}, open(out, "w"))
"""


def _local_cpu_torch() -> str | None:
    """A CPU build of torch in pip's find-links (saves PyPI's CUDA build, gigabytes), if any."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    for folder in re.findall(r"find-links='([^']+)'", listed):
        for wheel in sorted(Path(folder).glob("torch-*+cpu-*.whl")):
            return wheel.name.split("-")[1]
    return None


def ensure_imagededup() -> Path:
    """The imagededup venv's python, created on first use (never a project dependency)."""
    python = IDD_VENV / "bin" / "python"
    check = [str(python), "-c", "import imagededup"]
    if python.exists() and subprocess.run(check, capture_output=True, check=False).returncode == 0:
        return python
    print(f"creating {IDD_VENV} and installing imagededup (one time)…", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(IDD_VENV)], check=True)
    (IDD_VENV / ".gitignore").write_text("*\n")  # as Python 3.13's venv writes it
    torch = _local_cpu_torch()
    pins = [f"torch=={torch}"] if torch else []
    pip = [str(IDD_VENV / "bin" / "pip"), "install", "--quiet"]
    subprocess.run([*pip, *pins, f"imagededup=={IDD_VERSION}"], check=True)
    return python


def run_imagededup(ts: TruthSet, method: str, work: Path) -> dict[str, Any]:
    """One imagededup method on the set's folder, in its venv, measured as a process tree."""
    python = ensure_imagededup()
    out = work / f"imagededup-{method}.json"
    cmd = [str(python), "-c", IDD_RUNNER, method, str(ts.folder / "img"), str(out)]
    env = {**os.environ}
    env.pop("PYTHONPATH", None)
    code, usage = common.run_measured(
        [*cmd, str(IDD_THRESHOLD)], cwd=work, env=env, log_path=work / f"imagededup-{method}.log"
    )
    if code != 0:
        tail = (work / f"imagededup-{method}.log").read_text()[-2000:]
        raise RuntimeError(f"imagededup {method} exited {code}:\n{tail}")
    result = json.loads(out.read_text())
    by_name = {Path(item.path).name: item.id for item in ts.items}
    pairs: set[Pair] = set()
    for name, dupes in result["duplicates"].items():
        for other in dupes:
            x, y = by_name[name], by_name[other]
            pairs.add((min(x, y), max(x, y)))
    return {
        "pairs": pairs,
        "wall_s": usage.wall_s,
        "cpu_s": usage.cpu_s,
        "find_duplicates_wall_s": result["find_duplicates_wall_s"],
        "peak_rss_mb": usage.peak_rss_bytes / 2**20,
        "stubbed_torchvision": result["stubbed_torchvision"],
        "version": result["version"],
        "threshold": IDD_THRESHOLD,
    }


# --- scores ------------------------------------------------------------------------------------


def label_right(item: Item, kind: str, param: str) -> bool:
    """Whether harvest named the copy's kind (and its parameter) right."""
    if item.kind in ("tinted", "darkened"):
        return kind == "recompressed"
    if kind != item.kind:
        return False
    if item.kind == "resized":
        return abs(float(param) / float(item.param) - 1) <= 0.01
    if item.kind in ("rotated", "flipped"):
        return param == item.param
    return True


def _linked(pairs: Iterable[Pair]) -> Callable[[int], int]:
    """Connected components of the found pairs: each id's representative."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        parent[find(a)] = find(b)
    return find


def score(
    ts: TruthSet, pairs: set[Pair], labels: dict[Pair, tuple[str, str, bool]] | None
) -> dict[str, Any]:
    """Per-kind recall (pair and linked), label accuracy, precision, hard negatives found."""
    group = {item.id: (item.source if item.source > 0 else -item.id) for item in ts.items}
    component = _linked(pairs)
    kinds: dict[str, Counter[str]] = defaultdict(Counter)
    params: dict[str, Counter[str]] = defaultdict(Counter)
    missed: dict[str, list[str]] = defaultdict(list)
    wrong: dict[str, Counter[str]] = defaultdict(Counter)
    for item in ts.items:
        if item.role != "copy":
            continue
        pair = (min(item.source, item.id), max(item.source, item.id))
        tally = kinds[item.kind]
        tally["pairs"] += 1
        params[f"{item.kind} {_param_class(item)}"]["pairs"] += 1
        hit = pair in pairs
        if hit:
            tally["found"] += 1
            params[f"{item.kind} {_param_class(item)}"]["found"] += 1
        else:
            missed[item.kind].append(f"{item.id} ({item.origin} {item.param})")
        if component(item.id) == component(item.source):
            tally["linked"] += 1
        if labels is not None and hit:
            kind, param, _forward = labels[pair]
            if label_right(item, kind, param):
                tally["label"] += 1
            else:
                wrong[item.kind][f"{kind} {param}".strip()] += 1
    false = sorted(p for p in pairs if group[p[0]] != group[p[1]])
    # A hard negative and its overlapping source, or two look-alikes: their copies count too.
    hard_groups = {(min(group[a], group[b]), max(group[a], group[b])) for a, b in ts.hard_negatives}
    hard_found = [
        p
        for p in false
        if (min(group[p[0]], group[p[1]]), max(group[p[0]], group[p[1]])) in hard_groups
    ]
    matched = {(min(group[a], group[b]), max(group[a], group[b])) for a, b in hard_found}
    by_id = ts.by_id()
    return {
        "kinds": {
            k: {
                "pairs": t["pairs"],
                "recall": t["found"] / t["pairs"],
                "linked_recall": t["linked"] / t["pairs"],
                **({"label_right": t["label"] / t["pairs"]} if labels is not None else {}),
            }
            for k, t in kinds.items()
        },
        "by_param": {k: t["found"] / t["pairs"] for k, t in sorted(params.items())},
        "found_pairs": len(pairs),
        "false_pairs": len(false),
        "precision": 1 - len(false) / len(pairs) if pairs else 1.0,
        "false_examples": [
            f"{by_id[a].origin} ({by_id[a].kind or by_id[a].role}) ~ "
            f"{by_id[b].origin} ({by_id[b].kind or by_id[b].role})"
            for a, b in false[:20]
        ],
        "hard_negative_pairs": len(hard_groups),
        "hard_negatives_found": len(matched),
        "hard_negative_false_pairs": len(hard_found),
        "missed": {k: v[:30] for k, v in missed.items()},
        "missed_count": {k: len(v) for k, v in missed.items()},
        "wrong_labels": {k: dict(v) for k, v in wrong.items()},
    }


def _param_class(item: Item) -> str:
    if item.kind == "cropped":
        return "symmetric " + item.variant[3:] if item.variant.startswith("sym") else "asymmetric"
    return item.variant


# --- report ------------------------------------------------------------------------------------


def table_rows(tools: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[object]]]:
    """The headline table: one row per kind, then precision, hard negatives and time."""
    names = list(tools)
    headers = ["kind", "pairs", "target"]
    for name in names:
        headers += [name] + ([f"{name} label"] if name.startswith("harvest") else [])
    rows: list[list[object]] = []
    first = tools[names[0]]["score"]["kinds"]
    for kind, target in TARGETS.items():
        row: list[object] = [kind, first[kind]["pairs"], f"≥ {target:g}"]
        for name in names:
            k = tools[name]["score"]["kinds"][kind]
            row.append(f"{k['recall']:.3f}")
            if name.startswith("harvest"):
                row.append(f"{k['label_right']:.3f}")
        rows.append(row)
    tail: list[tuple[str, str, Callable[[dict[str, Any]], str]]] = [
        ("precision", f"≥ {PRECISION_TARGET}", lambda t: f"{t['score']['precision']:.4f}"),
        (
            "false / found pairs",
            "",
            lambda t: f"{t['score']['false_pairs']}/{t['score']['found_pairs']}",
        ),
        (
            "hard negatives matched",
            "",
            lambda t: (
                f"{t['score']['hard_negatives_found']}/{t['score']['hard_negative_pairs']}"
                f" ({t['score']['hard_negative_false_pairs']} pairs)"
            ),
        ),
        ("wall s", "", lambda t: f"{t['wall_s']:.1f}"),
        ("CPU s", "", lambda t: f"{t['cpu_s']:.1f}"),
    ]
    for label, goal, cell in tail:
        row = [label, "", goal]
        for name in names:
            row.append(cell(tools[name]))
            if name.startswith("harvest"):
                row.append("")
        rows.append(row)
    return headers, rows


def markdown(headers: list[str], rows: list[list[object]], meta: dict[str, Any]) -> str:
    """bench/results/dupes.md."""
    lines = [
        "# Duplicates benchmark",
        "",
        f"`{meta['command']}` — {meta['images']:,} images ({meta['sources']} sources, "
        f"{meta['copies']:,} copies, {meta['negatives']} hard negatives), "
        f"run {meta['started']} UTC, {meta['duration_s']:.0f} s.",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
        *("| " + " | ".join(str(c) for c in row) + " |" for row in rows),
        "",
        "Recall by parameter:",
        "",
        "| kind parameter | " + " | ".join(meta["tools"]) + " |",
        "|---|" + "---|" * len(meta["tools"]),
        *(
            f"| {k} | " + " | ".join(f"{meta['by_param'][t][k]:.3f}" for t in meta["tools"]) + " |"
            for k in meta["by_param"][meta["tools"][0]]
        ),
        "",
        "Recall: (source, copy) pairs of the kind reported as a pair. harvest label: found with",
        "the right kind and parameter (tinted, darkened as `recompressed`). Precision: pairs of",
        "different sources among all pairs found. See bench/dupes.py's docstring.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    """Build the set, run each tool, score, print and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=EMULATOR_SCENES, help="emulator sources")
    parser.add_argument("--work", type=Path, help="keep the set and outputs here")
    parser.add_argument("--no-imagededup", action="store_true", help="harvest's side only")
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    t0 = time.perf_counter()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-dupes-"))
    if (work / "set").exists():
        shutil.rmtree(work / "set")
    print(f"building the set in {work / 'set'}…", flush=True)
    ts = build(work / "set", scenes=args.scenes)
    build_s = time.perf_counter() - t0
    roles = Counter(item.role for item in ts.items)
    print(f"{len(ts.items):,} images ({dict(roles)}) in {build_s:.0f} s; harvest…", flush=True)
    tools: dict[str, dict[str, Any]] = {}
    for name, backfilled in (("harvest", False), ("harvest backfill", True)):
        result = run_harvest(ts, backfilled=backfilled)
        result["score"] = score(ts, set(result["pairs"]), result["pairs"])
        tools[name] = result
    errors: dict[str, str] = {}
    if not args.no_imagededup:
        for method in ("PHash", "DHash"):
            print(f"imagededup {method}…", flush=True)
            try:
                result = run_imagededup(ts, method, work)
            except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
                errors[method] = str(exc)[-800:]
                print(f"imagededup {method} failed: {exc}", flush=True)
                continue
            result["score"] = score(ts, result["pairs"], None)
            tools[f"imagededup {method}"] = result
    headers, rows = table_rows(tools)
    print()
    common.print_table(headers, rows)
    duration = time.perf_counter() - t0
    command = "python -m bench.dupes" + " ".join(
        [""] + [a for a in sys.argv[1:] if not a.startswith("--work") and a != str(args.work)]
    )
    meta = {
        "command": command,
        "started": started,
        "duration_s": duration,
        "build_s": build_s,
        "images": len(ts.items),
        "sources": roles["source"],
        "copies": roles["copy"],
        "negatives": roles["negative"],
        "hard_negative_pairs": len(ts.hard_negatives),
        "origins": sorted({item.origin.split("/")[0] for item in ts.items}),
        "truth_sha256": hashlib.sha256((ts.folder / "truth.csv").read_bytes()).hexdigest(),
    }
    payload = {
        "meta": meta,
        "machine": common.machine(),
        "targets": {"recall": TARGETS, "precision": PRECISION_TARGET},
        "tools": {name: {k: v for k, v in t.items() if k != "pairs"} for name, t in tools.items()},
        "errors": errors,
        "table": {"headers": headers, "rows": rows},
    }
    path = common.write_result("dupes", payload)
    by_param = {name: t["score"]["by_param"] for name, t in tools.items()}
    shown = {**meta, "tools": list(tools), "by_param": by_param}
    (common.RESULTS / "dupes.md").write_text(markdown(headers, rows, shown))
    print(f"\nwrote {path.relative_to(common.ROOT)} and dupes.md in {duration:.0f} s")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
