"""`harvest dupes` end to end: a harvest of the emulator, whose copies are known, then dupes.

The emulator's near-duplicate groups hold a source and copies of every kind (identical bytes,
recompressed, resized, rotated, flipped, tinted, darkened, cropped), and its truth names each
copy's source. Every copy pair of the harvest must be found, with the right kind; outputs
(store, CSV, the VISE SQLite layout, export) are read back; a second run is incremental, and
a harvest made before fingerprints gets them from its files.
"""

from __future__ import annotations

import contextlib
import csv
import io
import shutil
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from harvester.dupes import run_dupes
from harvester.dupes_keypoints import CropMode
from harvester.emulator.control import photo_truth
from harvester.emulator.corpus import cached_corpus
from harvester.exit_codes import EXIT_OK, EXIT_USAGE
from tests.harness import (
    ThreadedEmulator,
    harvest,
    harvest_keywords,
    store_count,
    store_rows,
    threaded_emulator,
)

SEED, PHOTOS = 0, 10_000
KEYWORDS = ("nature", "london", "sky", "nikon", "travel", "canon")
#: What each emulator copy kind is called by harvest (tint and darkening keep the geometry).
EXPECTED = {
    "identical": {"identical-bytes"},
    "recompressed": {"recompressed"},
    "resized": {"resized"},
    "rotated": {"rotated"},
    "flipped": {"flipped"},
    "tinted": {"recompressed"},
    "darkened": {"recompressed"},
    "cropped": {"cropped"},
}


@pytest.fixture(scope="module")
def emu() -> Iterator[ThreadedEmulator]:
    with threaded_emulator(photos=PHOTOS, seed=SEED, profile="ideal") as running:
        yield running


@pytest.fixture(scope="module")
def harvested(emu: ThreadedEmulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished harvest, fingerprinted as it went (copy it before changing it)."""
    base = tmp_path_factory.mktemp("dupes")
    return harvest_keywords(emu, base, KEYWORDS)


@pytest.fixture
def out(harvested: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(harvested, copy)
    return copy


def copy_pairs(out: Path) -> dict[frozenset[int], str]:
    """The truth: {copy, source} → the copy's kind, for pairs both of whose photos are stored."""
    corpus = cached_corpus(SEED, PHOTOS)
    stored = {int(r[0]) for r in store_rows(out, "SELECT id FROM photos WHERE status = 'done'")}
    row_of = {int(corpus.photo_id(r)): r for r in range(PHOTOS)}
    pairs = {}
    for photo in stored:
        truth = photo_truth(corpus, row_of[photo])
        source = truth.get("copy_of")
        if source is not None and int(source) in stored:
            pairs[frozenset((photo, int(source)))] = str(truth["copy_kind"])
    return pairs


def found_pairs(out: Path) -> dict[frozenset[int], str]:
    return {frozenset((a, b)): k for a, b, k in store_rows(out, "SELECT a, b, kind FROM dup_pair")}


def test_every_photo_is_fingerprinted_while_harvesting(harvested: Path) -> None:
    done = store_count(harvested, "SELECT COUNT(*) FROM photos WHERE status = 'done'")
    signed = store_count(harvested, "SELECT COUNT(*) FROM photo_signal")
    assert done > 500
    assert signed == done


def test_every_copy_is_found_with_its_kind(out: Path) -> None:
    run_dupes(out, crops=CropMode.OFF)  # the emulator's scenes overlap: see the crop test
    truth, found = copy_pairs(out), found_pairs(out)
    kinds = Counter(truth.values())
    assert len(kinds) >= 6, f"the harvest should hold most kinds of copy, has {kinds}"
    missed = {tuple(sorted(p)): k for p, k in truth.items() if p not in found}
    assert not missed, f"copies not found: {missed}"
    wrong = {
        tuple(sorted(p)): (k, found[p]) for p, k in truth.items() if found[p] not in EXPECTED[k]
    }
    assert not wrong, f"copies found as another kind: {wrong}"


def test_groups_name_a_representative_and_export_says_so(out: Path) -> None:
    assert harvest("dupes", out, "--crops", "off") == EXIT_OK
    members = store_rows(out, "SELECT photo_id, group_id, kind FROM dup_group")
    reps = {g for _p, g, k in members if k is None}
    assert reps, "no groups"
    assert all(g in reps for _p, g, _k in members), "every member points at a representative"
    copies = {p: (g, k) for p, g, k in members if k is not None}
    cases: list[tuple[list[str], bool]] = [([], True), (["--no-duplicates"], False)]
    for extra, keep_copies in cases:
        lines = _export("export", out, *extra)
        by_id = {int(row["id"]): row for row in lines}
        for photo, (group, kind) in copies.items():
            if keep_copies:
                assert by_id[photo]["duplicate_of"] == str(group)
                assert by_id[photo]["duplicate_kind"] == kind
            else:
                assert photo not in by_id
        assert all(int(r) in by_id for r in reps)


def _export(*args: str | Path) -> list[dict[str, Any]]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert harvest(*args) == EXIT_OK
    return [orjson.loads(line) for line in buffer.getvalue().splitlines()]


def test_pairs_csv_and_the_vise_layout_read_back(out: Path, tmp_path: Path) -> None:
    pairs_csv, vise = tmp_path / "pairs.csv", tmp_path / "vise.sqlite"
    assert (
        harvest("dupes", out, "--crops", "off", "--pairs", pairs_csv, "--sqlite", vise) == EXIT_OK
    )
    with pairs_csv.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["a", "b", "kind", "param", "distance"]
    assert {frozenset((int(a), int(b))) for a, b, *_ in rows[1:]} == set(found_pairs(out))
    db = sqlite3.connect(vise)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables >= {
        "fileid_to_filename_map",
        "identical_list",
        "identical_list_stat",
        "transform_resize",
        "transform_rotate90i",
        "transform_other",
        "transform_list_stat",
        "transform_flip",
    }
    files = db.execute("SELECT COUNT(*) FROM fileid_to_filename_map").fetchone()[0]
    assert files == store_count(out, "SELECT COUNT(*) FROM photo_signal")
    angles = {r[0] for r in db.execute("SELECT angle FROM transform_rotate90i")}
    assert angles
    assert angles <= {90, 180, 270}
    stat = dict(db.execute("SELECT transform, pair_count FROM transform_list_stat").fetchall())
    kinds = Counter(k for _a, _b, k in store_rows(out, "SELECT a, b, kind FROM dup_pair"))
    assert stat.get("transform_rotate90i", 0) == kinds["rotated"]
    assert stat.get("transform_flip", 0) == kinds["flipped"]
    sets = dict(db.execute("SELECT set_size, set_count FROM identical_list_stat").fetchall())
    assert (
        sum(size * n for size, n in sets.items())
        == db.execute("SELECT COUNT(*) FROM identical_list").fetchone()[0]
    )
    db.close()
    assert harvest("dupes", out, "--sqlite", vise) == EXIT_USAGE  # never overwrites


def test_a_second_run_compares_only_new_photos(out: Path) -> None:
    first = run_dupes(out, crops=CropMode.OFF)  # the crop channel has its own test below
    assert first.compared == first.photos
    second = run_dupes(out, crops=CropMode.OFF)
    assert second.compared == 0
    assert second.pairs_by_kind == first.pairs_by_kind
    # Forget one photo of a copy pair: the next run compares just it, and finds the pair again.
    a, b = next(iter(found_pairs(out)))
    db = sqlite3.connect(out / "harvest.sqlite")
    db.execute("DELETE FROM dup_pair WHERE a = ? OR b = ? OR a = ? OR b = ?", (a, a, b, b))
    db.execute("UPDATE photo_signal SET compared = 0 WHERE photo_id = ?", (b,))
    db.commit()
    db.close()
    third = run_dupes(out, crops=CropMode.OFF)
    assert third.compared == 1
    assert frozenset((a, b)) in found_pairs(out)


def test_a_harvest_without_fingerprints_gets_them_from_its_files(out: Path) -> None:
    db = sqlite3.connect(out / "harvest.sqlite")
    db.execute("DELETE FROM photo_signal")
    db.commit()
    db.close()
    report = run_dupes(out, crops=CropMode.OFF)
    assert report.backfilled == store_count(
        out, "SELECT COUNT(*) FROM photos WHERE status = 'done'"
    )
    assert store_count(out, "SELECT COUNT(*) FROM photo_signal WHERE src_sha256 IS NULL") == (
        report.backfilled
    )
    smaller = store_count(  # the content is in downloaded pixels: never under the stored file
        out,
        "SELECT COUNT(*) FROM photo_signal s JOIN photos p ON p.id = s.photo_id"
        " WHERE s.content_w < p.width OR s.content_h < p.height",
    )
    assert smaller == 0
    truth, found = copy_pairs(out), found_pairs(out)
    missed = [p for p, kind in truth.items() if p not in found and kind != "identical"]
    assert not missed, f"copies not found from the files: {missed}"


def test_dupes_on_a_directory_without_a_harvest(tmp_path: Path) -> None:
    assert harvest("dupes", tmp_path) == EXIT_USAGE


def test_a_file_without_harvests_record_keeps_its_own_size() -> None:
    """A file harvest did not write (no record in it): its content is the whole image."""
    from PIL import Image

    from harvester.dupes import file_signal_row
    from harvester.store.schema import SIGNAL_COLUMNS

    buffer = io.BytesIO()
    Image.new("RGB", (1024, 683), (90, 140, 200)).save(buffer, "JPEG")
    row = dict(zip(SIGNAL_COLUMNS, file_signal_row(7, buffer.getvalue()), strict=True))
    assert (row["content_w"], row["content_h"]) == (1024, 683)
    assert row["src_sha256"] is None  # the download is gone: no byte digest
    assert row["original_scale"] is None


def test_two_flat_pictures_are_copies_only_by_their_digests(tmp_path: Path) -> None:
    """Black frames hash alike; unless their bytes or pixels agree they are not a pair."""
    import numpy as np

    from harvester.dupes import _candidates, _judged
    from harvester.store.dupes import SignalTable

    n = 3
    code = np.zeros((n, 32), np.uint8)  # three identical hashes, as flat pictures give
    table = SignalTable(
        ids=np.arange(1, n + 1, dtype=np.int64),
        ph256=code,
        c80=code.copy(),
        quality=np.zeros(n, np.int64),
        width=np.full(n, 1024, np.int64),
        height=np.full(n, 683, np.int64),
        scale=np.full(n, np.nan),
        uploaded=np.zeros(n, np.int64),
        compared=np.zeros(n, bool),
        src_sha256=[b"a" * 32, b"a" * 32, b"b" * 32],  # 1 and 2 are the same file
        scan_sha256=[None, None, None],
        paths=["x/1.jpg", "x/2.jpg", "x/3.jpg"],
        titles=["", "", ""],
        taken=["", "", ""],
    )
    verdicts = _judged(table, _candidates(table, np.arange(n), 31), tmp_path, 31)
    assert [(v.a, v.b, v.kind.value) for v in verdicts] == [(1, 2, "identical-bytes")]


def test_crops_are_found_by_their_keypoints_without_titles_or_dates(out: Path) -> None:
    """With the metadata channel blind, only the keypoint channel proposes most crops.

    The emulator renders every photo from a small pool of scenes, so its photos share
    keypoints far more than real ones do (13 candidates per photo): the harvest is cut down to
    the cropped copies, their sources and 300 other photos, which stay as distractors.
    """
    truth = {p for p, kind in copy_pairs(out).items() if kind == "cropped"}
    assert len(truth) >= 5, "the harvest should hold cropped copies"
    keep = {i for pair in truth for i in pair}
    others = [int(r[0]) for r in store_rows(out, "SELECT id FROM photos WHERE status = 'done'")]
    keep |= set([i for i in others if i not in keep][:300])
    db = sqlite3.connect(out / "harvest.sqlite")
    db.execute("UPDATE photos SET record = json_set(record, '$.title', '', '$.date_taken', '')")
    db.execute("CREATE TEMP TABLE keep (id INTEGER PRIMARY KEY)")
    db.executemany("INSERT INTO keep VALUES (?)", [(i,) for i in keep])
    db.execute("DELETE FROM photos WHERE id NOT IN (SELECT id FROM keep)")
    db.commit()
    db.close()
    blind = tmp_copy(out)
    off = run_dupes(blind, crops=CropMode.OFF)
    missed_off = truth - set(found_pairs(blind))
    assert not off.crop_channel
    assert missed_off, "the hashes alone should miss some crops"
    on = run_dupes(out, crops=CropMode.ON)
    assert on.crop_channel
    assert on.keypointed == on.photos == len(keep)
    found = found_pairs(out)
    assert {p: found.get(p) for p in truth} == dict.fromkeys(truth, "cropped")
    again = run_dupes(out, crops=CropMode.ON)  # signatures are kept: nothing recomputed
    assert again.keypointed == 0
    assert again.compared == 0


@pytest.mark.parametrize(
    ("mode", "photos", "wanted"),
    [
        (CropMode.AUTO, 100_000, True),
        (CropMode.AUTO, 100_001, False),
        (CropMode.ON, 10**7, True),
        (CropMode.OFF, 10, False),
    ],
)
def test_the_crop_channel_runs_where_its_index_fits(
    mode: CropMode, photos: int, wanted: bool
) -> None:
    assert mode.wanted(photos) is wanted


def tmp_copy(out: Path) -> Path:
    copy = out.with_name(out.name + "-copy")
    shutil.copytree(out, copy)
    return copy
