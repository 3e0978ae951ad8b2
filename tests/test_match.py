"""`harvest match DIR --against OUT` end to end: a harvest of the emulator, then a folder built
from its stored files (hi-res TIFF and PNG, turned, mirrored, re-oriented, multi-page, tinted,
framed, skewed) with distractors and bad files; every verdict, photo and flag is checked, and
DIR must be left exactly as it was.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageOps

from harvester.config import ImagePolicy
from harvester.dataset.fingerprint import dihedral_many, hamming_many
from harvester.exit_codes import EXIT_OK, EXIT_USAGE
from harvester.match import (
    CSV_COLUMNS,
    Harvest,
    Verdict,
    probe_file,
    reduction,
    run_match,
    verdict_of,
)
from harvester.match_albums import _best_hits
from tests.harness import ThreadedEmulator, harvest, harvest_keywords, threaded_emulator

SEED, PHOTOS = 0, 2000
KEYWORDS = ("nature", "sky")
ORIENTATION = 0x0112


@dataclass(frozen=True, slots=True)
class Expected:
    """What one file of the folder must come out as."""

    photo_id: int | None
    verdict: Verdict
    kinds: frozenset[str] = frozenset()
    larger: bool | None = None


@pytest.fixture(scope="module")
def emu() -> Iterator[ThreadedEmulator]:
    with threaded_emulator(photos=PHOTOS, seed=SEED, profile="ideal") as running:
        yield running


@pytest.fixture(scope="module")
def out(emu: ThreadedEmulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("match")
    return harvest_keywords(emu, base, KEYWORDS)


def lonely_rows(h: Harvest) -> list[int]:
    """Photos far from every other photo and from their own turns: their verdicts are sure."""
    t = h.table
    variants = dihedral_many(t.ph256)
    rows = []
    for row in range(len(t)):
        own = hamming_many(variants[row, 1:], t.ph256[row])
        others = [
            int(hamming_many(np.delete(variants[:, g], row, axis=0), t.ph256[row]).min())
            for g in range(8)
        ]
        if t.quality[row] >= 50 and own.min() >= 40 and min(others) >= 64:
            rows.append(row)
    return rows


def _stored(out: Path, h: Harvest, row: int) -> Image.Image:
    with Image.open(out / h.table.paths[row]) as image:
        return image.convert("RGB")


def _sepia(image: Image.Image) -> Image.Image:
    return ImageOps.colorize(ImageOps.grayscale(image), "#3b2a14", "#f5e6c8")


def _skewed(image: Image.Image, angle: float, crop: float) -> Image.Image:
    w, h = image.size
    turned = image.rotate(angle, resample=Image.Resampling.BICUBIC)
    return turned.crop((int(w * crop), int(h * crop), w - int(w * crop), h - int(h * crop)))


@dataclass(frozen=True, slots=True)
class Folder:
    """The DIR under test, what each file must give, and the album cases."""

    root: Path
    expected: dict[str, Expected]
    near: str  # beyond the global radius, within the album one
    near_id: int
    skewed: str  # no hash places it: only local features, against a few candidates
    skewed_id: int
    others: tuple[int, int]


def _near_radius(out: Path, h: Harvest, rows: list[int], scratch: Path) -> tuple[int, Image.Image]:
    """A 1° turn (cropped) of a photo whose distance lands between 31 and 51."""
    for row in rows:
        image = _skewed(_stored(out, h, row), 1.0, 0.02)
        path = scratch / f"near_{row}.jpg"
        image.save(path, quality=90)
        hits = _best_hits(probe_file(path, path.name, max_pixels=10**9), h, np.array([row]))
        if 31 < hits[0].distance <= 51:
            return row, image
    raise AssertionError("no photo whose 1° turn lands between the radii")


@pytest.fixture(scope="module")
def folder(out: Path, tmp_path_factory: pytest.TempPathFactory) -> Folder:
    h = Harvest.load(out)
    rows = lonely_rows(h)
    small = [r for r in rows if not h.table.scale[r] > 1.8]  # ×2 beats the original's pixels
    assert len(rows) >= 13, f"{len(rows)} photos far from all others"
    assert len(small) >= 2, f"{len(small)} photos whose original ×2 is smaller"
    root, scratch = tmp_path_factory.mktemp("dir"), tmp_path_factory.mktemp("scratch")
    (root / "hires").mkdir()
    (root / "sub" / "deeper").mkdir(parents=True)
    ids = [int(h.table.ids[r]) for r in range(len(h.table))]
    expected: dict[str, Expected] = {}

    def put(name: str, image: Image.Image, row: int, kinds: set[str], **kw: object) -> None:
        image.save(root / name, **kw)  # type: ignore[arg-type]
        expected[name] = Expected(ids[row], Verdict.MATCH, frozenset(kinds), None)

    a, b = small[0], small[1]
    rest = [r for r in rows if r not in (a, b)]
    for name, row in (("hires/a.tif", a), ("hires/b.png", b)):
        image = _stored(out, h, row)
        put(name, image.resize((image.width * 2, image.height * 2)), row, {"resized"})
        expected[name] = Expected(ids[row], Verdict.MATCH, frozenset({"resized"}), True)
    put("flipped.jpg", ImageOps.mirror(_stored(out, h, rest[0])), rest[0], {"flipped"})
    put("sub/rotated.jpg", _stored(out, h, rest[1]).rotate(90, expand=True), rest[1], {"rotated"})
    # Pixels turned a quarter counter-clockwise, with the tag that turns them back for display.
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    upright = _stored(out, h, rest[2])
    put("sub/deeper/oriented.JPG", upright.transpose(Image.Transpose.ROTATE_90), rest[2],
        {"recompressed"}, exif=exif, quality=88)  # fmt: skip
    first = _stored(out, h, rest[3])
    first.save(
        root / "pages.tiff", save_all=True, append_images=[Image.fromarray(skimage.data.coffee())]
    )
    expected["pages.tiff"] = Expected(ids[rest[3]], Verdict.MATCH, frozenset({"recompressed"}))
    put("tinted.jpg", _sepia(_stored(out, h, rest[4])), rest[4], {"recompressed"}, quality=80)
    framed = ImageOps.expand(_stored(out, h, rest[5]), border=60, fill="white")
    put("framed.png", framed, rest[5], {"resized", "recompressed"})
    for name in ("astronaut", "coffee", "rocket", "camera"):
        Image.fromarray(getattr(skimage.data, name)()).save(root / f"other_{name}.jpg")
        expected[f"other_{name}.jpg"] = Expected(None, Verdict.NONE)
    good = (root / "flipped.jpg").read_bytes()
    (root / "corrupt.jpg").write_bytes(good[:200])
    (root / "fake.png").write_text("not a picture\n")
    for name in ("corrupt.jpg", "fake.png"):
        expected[name] = Expected(None, Verdict.ERROR)
    (root / "notes.txt").write_text("a non-image file, skipped\n")
    grey = np.asarray(_stored(out, h, rest[6]).convert("L"), dtype=np.uint16) * 257
    Image.fromarray(grey).save(root / "grey16.tif")  # a scanner's 16-bit master: I;16
    expected["grey16.tif"] = Expected(ids[rest[6]], Verdict.MATCH, frozenset({"recompressed"}))
    del rest[6]
    near_row, near = _near_radius(out, h, rest[6:], scratch)
    near.save(root / "near.jpg", quality=90)
    skew_row = next(r for r in rest[6:] if r != near_row)
    _skewed(_stored(out, h, skew_row), 5.0, 0.1).save(root / "skewed.jpg", quality=90)
    others = tuple(ids[r] for r in rest[6:] if r not in (near_row, skew_row))[:2]
    return Folder(
        root,
        expected,
        "near.jpg",
        ids[near_row],
        "skewed.jpg",
        ids[skew_row],
        (others[0], others[1]),
    )


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        p.relative_to(root).as_posix(): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in sorted(root.rglob("*"))
    }


def _rows(path: Path) -> tuple[list[str], dict[str, dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), {r["file"]: r for r in reader}


def test_every_file_gets_its_verdict_and_dir_is_untouched(
    folder: Folder, out: Path, tmp_path: Path
) -> None:
    before = _snapshot(folder.root)
    table = tmp_path / "match.csv"
    assert harvest("match", folder.root, "--against", out, "--csv", table) == EXIT_OK
    assert _snapshot(folder.root) == before
    header, rows = _rows(table)
    assert tuple(header) == CSV_COLUMNS
    assert "notes.txt" not in rows
    wrong = {}
    for name, want in folder.expected.items():
        row = rows[name]
        got = (int(row["photo_id"]) if row["photo_id"] else None, row["verdict"])
        if got != (want.photo_id, want.verdict.value) or (
            want.kinds and row["kind"] not in want.kinds
        ):
            wrong[name] = (row, want)
        if want.larger is not None and row["larger"] != str(want.larger).lower():
            wrong[name] = (row, want)
    assert not wrong, wrong
    assert rows["flipped.jpg"]["larger"] == "false"
    assert rows["corrupt.jpg"]["kind"], "an error row names its reason"
    assert rows[folder.near]["verdict"] != Verdict.MATCH
    assert rows[folder.skewed]["verdict"] != Verdict.MATCH


def test_albums_resolve_what_the_global_pass_cannot(
    folder: Folder, out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    albums = tmp_path / "albums.csv"
    ids = " | ".join(str(i) for i in (folder.others[0], folder.skewed_id, folder.others[1]))
    albums.write_text(f"file,candidate_ids\n{folder.skewed},{ids}\n", encoding="utf-8")
    result = run_match(folder.root, out, albums=albums)
    by = {r.file: r for r in result.files}
    assert (by[folder.skewed].verdict, by[folder.skewed].photo_id) == (
        Verdict.MATCH,
        folder.skewed_id,
    )
    assert by[folder.skewed].stage == "geometry"
    groups = tmp_path / "groups.csv"
    members = ["hires/a.tif", "flipped.jpg", "sub/rotated.jpg", folder.near]
    groups.write_text("group,file\n" + "".join(f"g1,{m}\n" for m in members), encoding="utf-8")
    table = tmp_path / "m.csv"
    args = ("match", folder.root, "--against", out, "--albums", groups, "--csv", table)
    assert harvest(*args) == EXIT_OK
    _header, rows = _rows(table)
    near = rows[folder.near]
    assert (near["verdict"], int(near["photo_id"]), near["stage"]) == (
        "match",
        folder.near_id,
        "album",
    )
    assert rows["flipped.jpg"]["stage"] == "global"
    printed = capsys.readouterr().out
    assert "matched after each stage: global" in printed
    assert "album" in printed


def test_per_photo_names_each_photos_best_file(folder: Folder, out: Path, tmp_path: Path) -> None:
    target = tmp_path / "per_photo.csv"
    assert harvest("match", folder.root, "--against", out, "--per-photo", target) == EXIT_OK
    with target.open(newline="", encoding="utf-8") as f:
        rows = {int(r["photo_id"]): r for r in csv.DictReader(f)}
    assert len(rows) == len(Harvest.load(out).table)
    for name, want in folder.expected.items():
        if want.verdict is Verdict.MATCH and want.photo_id is not None:
            assert (rows[want.photo_id]["file"], rows[want.photo_id]["verdict"]) == (name, "match")
    assert sum(r["verdict"] == "none" for r in rows.values()) > 0


def test_the_bomb_limit_makes_error_rows(folder: Folder, out: Path) -> None:
    result = run_match(folder.root, out, policy=ImagePolicy(max_pixels=1_500_000))
    by = {r.file: r for r in result.files}
    assert by["hires/a.tif"].verdict is Verdict.ERROR
    assert "bomb" in by["hires/a.tif"].kind
    assert by["flipped.jpg"].verdict is Verdict.MATCH


def test_usage_errors(folder: Folder, out: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.txt").write_text("no pictures here\n")
    assert harvest("match", empty, "--against", out) == EXIT_USAGE
    assert harvest("match", folder.root, "--against", tmp_path) == EXIT_USAGE
    inside = folder.root / "result.csv"
    assert harvest("match", folder.root, "--against", out, "--csv", inside) == EXIT_USAGE
    assert not inside.exists()
    copy = tmp_path / "dir"
    shutil.copytree(folder.root, copy)
    bad = tmp_path / "albums.csv"
    bad.write_text("name,photos\nx,1\n", encoding="utf-8")
    assert harvest("match", copy, "--against", out, "--albums", bad) == EXIT_USAGE


@pytest.mark.parametrize(
    ("distances", "verdict"),
    [
        ([], Verdict.NONE),
        ([5], Verdict.MATCH),
        ([5, 13], Verdict.MATCH),
        ([5, 12], Verdict.AMBIGUOUS),
        ([31, 31], Verdict.AMBIGUOUS),
    ],
)
def test_verdict_table(distances: list[int], verdict: Verdict) -> None:
    from harvester.dataset.fingerprint import Dihedral
    from harvester.match import Hit

    hits = [
        Hit(row=i, distance=d, key=0, variant=Dihedral.IDENTITY, channel="hash")
        for i, d in enumerate(distances)
    ]
    assert verdict_of(hits) is verdict


@pytest.mark.parametrize(
    ("size", "factor"),
    [((100, 80), 1), ((640, 480), 7), ((1024, 768), 8), ((8000, 6000), 8), ((6000, 100), 1)],
)
def test_reduction_keeps_64_px_a_short_side(size: tuple[int, int], factor: int) -> None:
    assert reduction(*size) == factor
    assert min(size) // factor >= min(64, min(size))


def test_albums_csv_layouts(tmp_path: Path) -> None:
    from harvester.exceptions import ConfigError
    from harvester.match_albums import Album, read_albums

    rows = tmp_path / "rows.csv"
    absolute = (tmp_path / "a" / "x.tif").as_posix()
    rows.write_text(f"file,candidate_ids\na/y.jpg,1 2|3\n{absolute},4\n", encoding="utf-8")
    assert read_albums(rows, tmp_path) == [
        Album(name="row 2", files=("a/y.jpg",), candidates=(1, 2, 3)),
        Album(name="row 3", files=("a/x.tif",), candidates=(4,)),
    ]
    groups = tmp_path / "groups.csv"
    groups.write_text("group,file\ng1,a.jpg\ng2,b.jpg\ng1,c.jpg\n", encoding="utf-8")
    assert read_albums(groups, tmp_path) == [
        Album(name="g1", files=("a.jpg", "c.jpg"), candidates=None),
        Album(name="g2", files=("b.jpg",), candidates=None),
    ]
    for text in ("name,photos\nx,1\n", "file,candidate_ids\nx.jpg,12 abc\n", ""):
        groups.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError):
            read_albums(groups, tmp_path)


def test_crops_no_hash_places_are_matched_by_keypoints_once_dupes_stored_them(
    folder: Folder, out: Path, tmp_path: Path
) -> None:
    h = Harvest.load(out)
    row = h.row_of[folder.others[0]]
    image = _stored(out, h, row)
    w, ht = image.size
    root = tmp_path / "dir"
    root.mkdir()
    cut = (int(0.06 * w), int(0.04 * ht), w, ht - int(0.08 * ht))  # asymmetric: hashes miss it
    image.crop(cut).resize((2 * (cut[2] - cut[0]), 2 * (cut[3] - cut[1]))).save(root / "crop.jpg")
    shutil.copy(folder.root / folder.skewed, root / "skewed.jpg")
    shutil.copy(folder.root / "other_astronaut.jpg", root / "other.jpg")
    before = {r.file: r for r in run_match(root, out).files}
    assert before["crop.jpg"].verdict is Verdict.NONE, "no hash should place this crop"
    keyed = tmp_path / "out"
    shutil.copytree(out, keyed)
    assert harvest("dupes", keyed, "--crops", "on") == EXIT_OK
    after = {r.file: r for r in run_match(root, keyed).files}
    found = {name: (r.verdict, r.photo_id, r.stage, r.kind) for name, r in after.items()}
    assert found == {
        "crop.jpg": (Verdict.MATCH, folder.others[0], "geometry", "cropped"),
        "skewed.jpg": (Verdict.MATCH, folder.skewed_id, "geometry", "other"),
        "other.jpg": (Verdict.NONE, None, None, ""),
    }
