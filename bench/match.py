"""Collection-matching benchmark: `harvest match DIR --against OUT` on hi-res masters (issue 11).

Run: python -m bench.match [--photos N] [--masters N] [--distractors N] [--work DIR]
     (prints the table; bench/results/match.json and match.md)

OUT is a harvest of an in-process emulator (`harvest run`, as tests/test_match.py makes one:
keywords "nature" and "sky", fingerprints computed at harvest time). DIR is built at run time:
`--masters` stored photos, picked at random (seeded), each written once as a "hi-res master"
made from its stored file, upscaled ×2 (bicubic) and then one transform in turn — plain TIFF,
plain PNG, JPEG q95, tinted (sepia, JPEG q95), cropped (5–10 % a side, TIFF), flipped
(left-right, PNG), rotated (90/180/270°, JPEG q95) — in sub-folders by transform; plus
`--distractors` pictures that are in no harvest: scikit-image's photos (each whole, and
mirrored) and emulator renders of another seed (the emulator's generator, not this corpus).

Albums (`group,file`): the masters grouped by the harvested photo's owner, or by its keyword;
the distractors in one group of their own. `harvest match` runs through `harvester.cli.main`
in this process, once without albums and once per album layout, and its --csv is scored.

Scores, per transform and overall: recall (verdict `match` with the right photo id), wrong
(`match` with another id), ambiguous, none, error; precision of `match` over masters and
distractors; distractors given `match`; `larger` right (of the right matches: the file has more
pixels than the photo's Flickr original, o_width × o_height of its record). Time: wall and CPU
seconds of each `harvest match` (this process's CPU, all threads), the harvest and DIR built.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import skimage.data
from PIL import Image, ImageOps

from bench import common
from harvester.dataset.classify import MATCH_RADIUS
from harvester.exit_codes import EXIT_OK
from harvester.match import Harvest
from tests.harness import harvest, run_args, threaded_emulator, write_queries

SEED = 0
KEYWORDS = ("nature", "sky")
TRANSFORMS = ("tiff", "png", "jpeg95", "tinted", "cropped", "flipped", "rotated")
SKIMAGE = (
    "astronaut",
    "brick",
    "camera",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "page",
    "rocket",
    "text",
)
DISTRACTOR_SEED = 4242  # emulator renders of another corpus seed: pictures no harvest holds


@dataclass(frozen=True, slots=True)
class Master:
    """One file of DIR and its truth (photo_id None: a distractor)."""

    name: str
    transform: str
    photo_id: int | None
    larger: bool | None
    param: str = ""  # the crop a side (%) or the turn (°)
    owner: str = ""
    keyword: str = ""


def _sepia(image: Image.Image) -> Image.Image:
    return ImageOps.colorize(ImageOps.grayscale(image), "#3b2a14", "#f5e6c8")


def make_master(
    image: Image.Image, transform: str, rng: random.Random
) -> tuple[Image.Image, str, str]:
    """The ×2 master of a stored photo under `transform`, its file suffix and its parameter."""
    big = image.resize((image.width * 2, image.height * 2), Image.Resampling.BICUBIC)
    if transform == "tiff":
        return big, ".tif", ""
    if transform == "png":
        return big, ".png", ""
    if transform == "jpeg95":
        return big, ".jpg", ""
    if transform == "tinted":
        return _sepia(big), ".jpg", "sepia"
    if transform == "cropped":
        f = rng.uniform(0.05, 0.10)
        w, h = big.size
        box = (int(w * f), int(h * f), w - int(w * f), h - int(h * f))
        return big.crop(box), ".tif", f"{100 * f:.1f}"
    if transform == "flipped":
        return ImageOps.mirror(big), ".png", "left-right"
    if transform == "rotated":
        angle = rng.choice((90, 180, 270))
        return big.rotate(angle, expand=True), ".jpg", str(angle)
    raise ValueError(transform)


def _save(image: Image.Image, path: Path) -> None:
    if path.suffix == ".jpg":
        image.save(path, quality=95)
    elif path.suffix == ".tif":
        image.save(path, compression="tiff_lzw")
    else:
        image.save(path)


def distractors(count: int, seed: int) -> list[Image.Image]:
    """Pictures in no harvest: scikit-image's (whole, and mirrored) then emulator renders."""
    from harvester.emulator.images import RenderSpec, render

    out: list[Image.Image] = []
    for name in SKIMAGE:
        pixels = np.asarray(getattr(skimage.data, name)())
        image = Image.fromarray(pixels).convert("RGB")
        out += [image, ImageOps.mirror(image)]
    rng = random.Random(seed)
    k = 0
    while len(out) < count:
        spec = RenderSpec(
            look=rng.randrange(1 << 20),
            width=1600,
            height=1200 if k % 2 else 1066,
            frame_permille=(0, 0, 0, 0),
            frame_color=0,
            grain_phase=k,
        )
        out.append(Image.fromarray(np.asarray(render(DISTRACTOR_SEED, spec), dtype=np.uint8)))
        k += 1
    return out[:count]


def build_dir(
    out: Path, root: Path, masters: int, distractor_count: int, seed: int
) -> list[Master]:
    """Write DIR: the masters of `masters` random stored photos, then the distractors."""
    h = Harvest.load(out)
    rng = random.Random(seed)
    keyword = dict(common_keywords(out))
    rows = rng.sample(range(len(h.table)), min(masters, len(h.table)))
    truth: list[Master] = []
    for n, row in enumerate(rows):
        transform = TRANSFORMS[n % len(TRANSFORMS)]
        with Image.open(out / h.table.paths[row]) as stored:
            image, suffix, param = make_master(stored.convert("RGB"), transform, rng)
        name = f"{transform}/master{n:04d}{suffix}"
        (root / transform).mkdir(parents=True, exist_ok=True)
        _save(image, root / name)
        photo_id = int(h.table.ids[row])
        larger = image.width * image.height > float(h.original_px[row])
        truth.append(
            Master(
                name,
                transform,
                photo_id,
                larger,
                param,
                h.owners[row],
                keyword.get(photo_id, ""),
            )
        )
    (root / "distractors").mkdir(parents=True, exist_ok=True)
    for n, image in enumerate(distractors(distractor_count, seed)):
        name = f"distractors/other{n:03d}" + (".png" if n % 2 else ".jpg")
        _save(image, root / name)
        truth.append(Master(name, "distractor", None, None))
    return truth


def common_keywords(out: Path) -> list[tuple[int, str]]:
    """(photo id, the keyword it was harvested for) from OUT's store."""
    import sqlite3

    with sqlite3.connect(f"file:{out / 'harvest.sqlite'}?mode=ro", uri=True) as db:
        return [(int(i), str(k)) for i, k in db.execute("SELECT id, keyword FROM photos")]


def write_albums(truth: list[Master], path: Path, by: str) -> int:
    """`group,file` rows: masters by owner or keyword, distractors in their own group."""
    groups: set[str] = set()
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("group", "file"))
        for m in truth:
            group = "distractors" if m.photo_id is None else f"{by}:{getattr(m, by)}"
            groups.add(group)
            writer.writerow((group, m.name))
    return len(groups)


def run_match(root: Path, out: Path, table: Path, albums: Path | None) -> dict[str, Any]:
    """The real `harvest match` in this process; its rows by file, wall and CPU seconds."""
    args: list[str | Path] = ["match", root, "--against", out, "--csv", table]
    if albums is not None:
        args += ["--albums", albums]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    code = harvest(*args)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    if code != EXIT_OK:
        raise RuntimeError(f"harvest match exited {code}")
    with table.open(newline="", encoding="utf-8") as f:
        rows = {r["file"]: r for r in csv.DictReader(f)}
    return {"rows": rows, "wall_s": wall, "cpu_s": cpu}


def _twin(h: Harvest, a: int, b: int) -> bool:
    """Whether two harvested photos are near twins themselves (pHash-256 within MATCH_RADIUS):
    the emulator's corpus has near-duplicate groups, so a master can be as near to a copy."""
    ra, rb = h.row_of[a], h.row_of[b]
    bits = np.unpackbits(np.bitwise_xor(h.table.ph256[ra], h.table.ph256[rb]))
    return int(bits.sum()) <= MATCH_RADIUS


def score(truth: list[Master], rows: dict[str, dict[str, str]], h: Harvest) -> dict[str, Any]:
    """Per transform (and overall, and distractors): the verdicts against the truth."""
    tally: dict[str, Counter[str]] = defaultdict(Counter)
    stages: Counter[str] = Counter()
    misses: list[str] = []
    for m in truth:
        row = rows[m.name]
        got = int(row["photo_id"]) if row["photo_id"] else None
        verdict = row["verdict"]
        for group in {m.transform, "distractor" if m.photo_id is None else "all masters"}:
            t = tally[group]
            t["files"] += 1
            if m.photo_id is None:
                t["false match" if verdict == "match" else verdict] += 1
            elif verdict == "match" and got == m.photo_id:
                t["right"] += 1
                t["larger right"] += row["larger"] == str(m.larger).lower()
                t["right, not larger"] += m.larger is False
            elif verdict == "match":
                t["wrong"] += 1
                t["wrong, a twin"] += got is not None and _twin(h, m.photo_id, got)
            else:
                t[verdict] += 1
        if verdict == "match" and m.photo_id is not None and got == m.photo_id:
            stages[row["stage"]] += 1
        elif m.photo_id is not None or verdict == "match":
            twin = bool(got and m.photo_id and _twin(h, m.photo_id, got))
            misses.append(
                f"{m.name} ({m.param or m.transform}, truth {m.photo_id}): {verdict}"
                f" {row['photo_id']} d={row['distance']}"
                + (" (a twin of the truth in the harvest)" if twin else "")
            )
    crops: dict[str, Counter[str]] = defaultdict(Counter)
    for m in truth:
        if m.transform == "cropped":
            band = "5-7.5 %" if float(m.param) < 7.5 else "7.5-10 %"
            crops[band]["files"] += 1
            row = rows[m.name]
            crops[band]["right"] += row["verdict"] == "match" and row["photo_id"] == str(m.photo_id)
    matched = sum(tally[g]["right"] + tally[g]["wrong"] for g in ("all masters",))
    false = tally["all masters"]["wrong"] + tally["distractor"]["false match"]
    return {
        "groups": {g: dict(t) for g, t in tally.items()},
        "precision": tally["all masters"]["right"] / (matched + tally["distractor"]["false match"])
        if matched + tally["distractor"]["false match"]
        else 1.0,
        "false_matches": false,
        "right_by_stage": dict(stages),
        "cropped_recall": {b: c["right"] / c["files"] for b, c in sorted(crops.items())},
        "misses": misses[:60],
    }


def table_rows(runs: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[object]]]:
    """One row per transform (and overall) per run."""
    headers = [
        "run",
        "set",
        "files",
        "recall",
        "wrong (twin)",
        "ambig.",
        "none",
        "larger ok",
        "prec.",
    ]
    rows: list[list[object]] = []
    for name, run in runs.items():
        groups = run["score"]["groups"]
        for g in [*TRANSFORMS, "all masters", "distractor"]:
            t = groups.get(g, {})
            files = t.get("files", 0)
            if g == "distractor":
                rows.append(
                    [
                        name,
                        g,
                        files,
                        "",
                        f"{t.get('false match', 0)} false",
                        t.get("ambiguous", 0),
                        t.get("none", 0),
                        "",
                        "",
                    ]
                )
                continue
            right = t.get("right", 0)
            rows.append(
                [
                    name,
                    g,
                    files,
                    f"{right / files:.3f}" if files else "",
                    f"{t.get('wrong', 0)} ({t.get('wrong, a twin', 0)})",
                    t.get("ambiguous", 0),
                    t.get("none", 0) + t.get("error", 0),
                    f"{t.get('larger right', 0)}/{right}"
                    + (f" ({t['right, not larger']} no)" if t.get("right, not larger") else ""),
                    f"{run['score']['precision']:.3f}" if g == "all masters" else "",
                ]
            )
        rows.append([name, "time", "", f"{run['wall_s']:.1f} s wall", "", "", "",
                     f"{run['cpu_s']:.1f} s CPU", ""])  # fmt: skip
    return headers, rows


def markdown(headers: list[str], rows: list[list[object]], meta: dict[str, Any]) -> str:
    """bench/results/match.md."""
    lines = [
        "# Collection-matching benchmark (`harvest match`)",
        "",
        f"`{meta['command']}` — a harvest of {meta['harvested']:,} photos (emulator corpus of "
        f"{meta['photos']:,}, keywords {', '.join(KEYWORDS)}), DIR of {meta['masters']} ×2 "
        f"masters and {meta['distractors']} distractors; run {meta['started']} UTC, "
        f"{meta['duration_s']:.0f} s (harvest {meta['harvest_s']:.0f} s, `harvest dupes` "
        f"{meta['dupes_s']:.0f} s, DIR "
        f"{meta['build_s']:.0f} s).",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
        *("| " + " | ".join(str(c) for c in row) + " |" for row in rows),
        "",
        "Cropped masters' recall by crop a side: "
        + "; ".join(
            f"{run}: " + ", ".join(f"{b} {r:.2f}" for b, r in meta["cropped"][run].items())
            for run in meta["cropped"]
        )
        + ".",
        "",
        "recall: `match` with the right photo id; wrong: `match` with another (twin: that photo",
        "is itself within pHash-256 31 of the right one, an emulator near-duplicate also",
        "harvested); none includes errors; larger ok: of the right matches, `larger` as the",
        "truth has it (n no: n of them are not larger than the original); precision: right /",
        "all `match` verdicts (masters and distractors). See bench/match.py's docstring.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    """Harvest, build DIR, run `harvest match` without and with albums, score, write."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--photos", type=int, default=5000, help="emulator corpus size")
    parser.add_argument("--masters", type=int, default=154, help="hi-res masters (7 transforms)")
    parser.add_argument("--distractors", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", type=Path, help="keep OUT, DIR and the CSVs here")
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    t0 = time.perf_counter()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-match-"))
    for sub in ("out", "dir", "csv"):
        shutil.rmtree(work / sub, ignore_errors=True)
    (work / "csv").mkdir(parents=True)
    out, root = work / "out", work / "dir"
    print(f"harvesting {KEYWORDS} from an emulator of {args.photos:,} photos…", flush=True)
    with threaded_emulator(photos=args.photos, seed=SEED, profile="ideal") as emu:
        queries = write_queries(work / "queries.txt", KEYWORDS)
        os.environ["FLICKR_API_KEY"] = emu.api_key
        if harvest(*run_args(emu, queries, out)) != EXIT_OK:
            raise RuntimeError("harvest run failed")
    harvest_s = time.perf_counter() - t0
    # The documented order: `harvest dupes` stores the keypoint signatures match's last stage uses.
    if harvest("dupes", out, "--crops", "on") != EXIT_OK:
        raise RuntimeError("harvest dupes failed")
    dupes_s = time.perf_counter() - t0 - harvest_s
    print(f"harvest dupes (keypoint signatures) in {dupes_s:.0f} s", flush=True)
    h = Harvest.load(out)
    harvested = len(h.table)
    print(f"{harvested:,} photos harvested in {harvest_s:.0f} s; building DIR…", flush=True)
    t1 = time.perf_counter()
    truth = build_dir(out, root, args.masters, args.distractors, args.seed)
    build_s = time.perf_counter() - t1
    albums: dict[str, Path | None] = {"no albums": None}
    groups: dict[str, int] = {}
    for by in ("owner", "keyword"):
        path = work / "csv" / f"albums-{by}.csv"
        groups[by] = write_albums(truth, path, by)
        albums[f"albums by {by}"] = path
    runs: dict[str, dict[str, Any]] = {}
    for name, path in albums.items():
        print(f"harvest match, {name}…", flush=True)
        table = work / "csv" / f"{name.replace(' ', '-')}.csv"
        result = run_match(root, out, table, path)
        result["score"] = score(truth, result.pop("rows"), h)
        runs[name] = result
    headers, rows = table_rows(runs)
    print()
    common.print_table(headers, rows)
    duration = time.perf_counter() - t0
    command = "python -m bench.match" + " ".join(
        [""] + [a for a in sys.argv[1:] if not a.startswith("--work") and a != str(args.work)]
    )
    meta = {
        "command": command,
        "started": started,
        "duration_s": duration,
        "harvest_s": harvest_s,
        "dupes_s": dupes_s,
        "build_s": build_s,
        "photos": args.photos,
        "harvested": harvested,
        "masters": sum(m.photo_id is not None for m in truth),
        "distractors": sum(m.photo_id is None for m in truth),
        "album_groups": groups,
        "transforms": Counter(m.transform for m in truth),
    }
    payload = {
        "meta": meta,
        "machine": common.machine(),
        "runs": runs,
        "table": {"headers": headers, "rows": rows},
    }
    path = common.write_result("match", payload)
    cropped = {name: run["score"]["cropped_recall"] for name, run in runs.items()}
    (common.RESULTS / "match.md").write_text(markdown(headers, rows, {**meta, "cropped": cropped}))
    print(f"\nwrote {path.relative_to(common.ROOT)} and match.md in {duration:.0f} s")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
