"""The dataset outputs of a harvest of the emulator: CREDITS.csv/.md and the card after the run,
`harvest export --format credits|card|parquet|hf` read back (Parquet by pyarrow, hf by the real
`datasets` imagefolder loader, offline), and bad input: one line, exit 2, nothing changed.

The harvest downscales to 800 px, so Larges are resized and the emulator's framed photos have
their frames removed: every credit's modifications are checked against the record the image
stage wrote into the file itself.
"""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
import yaml

from harvester.exit_codes import EXIT_OK, EXIT_USAGE
from harvester.export import COLUMNS
from harvester.images import jpegmeta
from harvester.licenses import license_for
from harvester.store.sqlite import Store
from tests.harness import (
    STORE,
    ThreadedEmulator,
    harvest,
    only_line,
    run_args,
    store_rows,
    threaded_emulator,
    write_queries,
)

KEYWORDS = ("sunset", "tokyo")  # 31 and 3 matches in the 3,000-photo corpus (seed 0)
MAX_SIDE = 800


@pytest.fixture(scope="module")
def emu() -> Iterator[ThreadedEmulator]:
    """A fresh ideal 3,000-photo emulator: its call count is this module's harvest's."""
    with threaded_emulator(photos=3000, seed=0, profile="ideal") as running:
        yield running


@pytest.fixture(scope="module")
def harvested(emu: ThreadedEmulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished harvest of KEYWORDS at --max-side 800 (copy it before changing it)."""
    base = tmp_path_factory.mktemp("outputs")
    queries = write_queries(base / "queries.txt", KEYWORDS)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLICKR_API_KEY", emu.api_key)
        code = harvest(*run_args(emu, queries, base / "out", "--max-side", str(MAX_SIDE)))
    assert code == EXIT_OK
    return base / "out"


@pytest.fixture
def out(harvested: Path, tmp_path: Path) -> Path:
    """This test's own copy of the harvest."""
    copy = tmp_path / "out"
    shutil.copytree(harvested, copy)
    return copy


def stored(out: Path) -> dict[str, dict[str, Any]]:
    """Stored photos by id: path, licence, record."""
    rows = store_rows(out, "SELECT id, path, record FROM photos WHERE status = 'done'")
    return {str(i): {"path": p, **orjson.loads(r)} for i, p, r in rows}


def file_record(out: Path, path: str) -> dict[str, Any]:
    """The JSON record the image stage wrote into the file's COM segment."""
    data = (out / path).read_bytes()
    info = jpegmeta.parse_jpeg(data)
    com = next(s for s in info.segments if s.marker == jpegmeta.COM)
    meta: dict[str, Any] = orjson.loads(com.payload(data))
    return meta


def expected_changes(meta: dict[str, Any]) -> str:
    """The modifications, computed independently from the file's record."""
    source = meta["downloaded"]["width"], meta["downloaded"]["height"]
    crop = meta["crop"]
    content = (crop[2] - crop[0], crop[3] - crop[1]) if crop else source
    said = []
    if crop:
        said.append(f"frame removed (kept {content[0]}x{content[1]} of {source[0]}x{source[1]})")
    stored_long = max(meta["stored"]["width"], meta["stored"]["height"])
    if stored_long < max(content):
        said.append(f"resized to {stored_long} px on the long side")
    return "; ".join(said) or "none"


def read_credits(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((out / "CREDITS.csv").read_text(encoding="utf-8"))))


# --- credits -------------------------------------------------------------------------------------


def test_the_run_writes_credits_for_every_stored_photo(harvested: Path) -> None:
    photos = stored(harvested)
    credits = read_credits(harvested)
    assert sorted(c["photo_id"] for c in credits) == sorted(photos), "one line per stored photo"
    kinds: Counter[str] = Counter()
    for c in credits:
        photo = photos[c["photo_id"]]
        lic = license_for(photo["license"])
        assert c["file"] == photo["path"]
        assert (harvested / c["file"]).is_file()
        assert c["title"] == photo["title"]
        assert c["author"] == (photo["owner_name"] or photo["owner"])
        assert c["author_url"] == f"https://www.flickr.com/people/{photo['owner']}/"
        assert c["source_url"] == f"https://www.flickr.com/photos/{photo['owner']}/{photo['id']}/"
        assert (c["license"], c["license_url"]) == (lic.name, lic.url)
        assert c["source"] == photo.get("source", "flickr")
        assert c["no_derivatives"] == ("yes" if "ND" in lic.name else "no")
        assert c["all_rights_reserved"] == ("yes" if photo["license"] == 0 else "no")
        assert c["modifications"] == expected_changes(file_record(harvested, c["file"]))
        kinds.update(part.split(" (")[0] for part in c["modifications"].split("; "))
    assert kinds["frame removed"]
    assert kinds[f"resized to {MAX_SIDE} px on the long side"]


def test_credits_md_counts_on_top_and_one_row_per_photo(harvested: Path) -> None:
    credits = read_credits(harvested)
    text = (harvested / "CREDITS.md").read_text(encoding="utf-8")
    nd = sum(c["no_derivatives"] == "yes" for c in credits)
    arr = sum(c["all_rights_reserved"] == "yes" for c in credits)
    head = text.split("| file |")[0]
    assert f"**no derivatives (ND): {nd}**" in head
    assert f"**all rights reserved: {arr}**" in head
    assert f"{len(credits)} photos" in head
    for name, n in Counter(c["license"] for c in credits).items():
        assert f"| {n} |" in head
        assert name in head
    rows = [line for line in text.splitlines() if line.startswith("| ") and ".jpg" in line]
    assert len(rows) == len(credits)
    flagged = [line for line in rows if "**no-derivatives**" in line]
    assert len(flagged) == nd
    cropped = sum(c["no_derivatives"] == "yes" and "frame removed" in c["modifications"]
                  for c in credits)  # fmt: skip
    assert f"of the ND photos, {cropped} had a frame cut off" in head


def test_without_fingerprints_the_files_say_what_was_done(out: Path) -> None:
    before = (out / "CREDITS.csv").read_bytes()
    db = sqlite3.connect(out / STORE)
    with db:
        db.execute("DELETE FROM photo_signal")
    db.close()
    assert harvest("export", out, "--format", "credits") == EXIT_OK
    assert (out / "CREDITS.csv").read_bytes() == before


def test_export_credits_rewrites_the_same_files(out: Path) -> None:
    before = {name: (out / name).read_bytes() for name in ("CREDITS.csv", "CREDITS.md")}
    (out / "CREDITS.md").unlink()
    (out / "CREDITS.csv").write_text("stale\n")
    assert harvest("export", out, "--format", "credits") == EXIT_OK
    assert {name: (out / name).read_bytes() for name in before} == before
    assert not [p for p in out.iterdir() if ".tmp-" in p.name], "no temporary file left"


# --- the card ------------------------------------------------------------------------------------


def card_header(text: str) -> dict[str, Any]:
    assert text.startswith("---\n")
    header: dict[str, Any] = yaml.safe_load(text.split("---\n")[1])
    return header


def test_the_run_writes_a_card_from_the_store(harvested: Path, emu: ThreadedEmulator) -> None:
    text = (harvested / "README.md").read_text(encoding="utf-8")
    photos = stored(harvested)
    header = card_header(text)
    assert header["license"] == "other"
    assert header["license_link"] == "CREDITS.md"
    assert header["size_categories"] == ["n<1K"]
    assert header["task_categories"] == []
    by_keyword = dict(store_rows(harvested, "SELECT keyword, COUNT(*) FROM photos"
                                 " WHERE status = 'done' GROUP BY keyword"))  # fmt: skip
    for keyword, n in by_keyword.items():
        assert f"| {keyword} | {n} |" in text
    geo = sum(p["latitude"] is not None for p in photos.values())
    assert f"Geotagged: {geo} of {len(photos)}" in text
    windows = store_rows(harvested, "SELECT COUNT(*) FROM windows")[0][0]
    assert f"Windows searched: {windows};" in text
    assert f"API calls: {emu.calls()}." in text, "every call the emulator answered, counted"
    frames = sum(bool(file_record(harvested, p["path"])["crop"]) for p in photos.values())
    assert f"removed from {frames} photos" in text
    assert f"at most {MAX_SIDE} px" in text
    assert "Duplicates: not computed" in text
    for section in ("Motivation", "Composition", "Collection process", "Preprocessing", "Uses",
                    "Distribution", "Maintenance"):  # fmt: skip
        assert f"\n## {section}\n" in text
    assert text.count("[More Information Needed]") >= 8


def test_the_card_says_what_harvest_dupes_found(out: Path) -> None:
    assert harvest("dupes", out) == EXIT_OK
    assert harvest("export", out, "--format", "card") == EXIT_OK
    text = (out / "README.md").read_text(encoding="utf-8")
    copies = store_rows(out, "SELECT COUNT(*) FROM dup_group WHERE kind IS NOT NULL")[0][0]
    line = next(line for line in text.splitlines() if line.startswith("- Duplicates:"))
    assert "not computed" not in line
    assert (f"{copies} photos are copies" in line) if copies else ("found no copies" in line)


def test_an_edited_card_is_never_written_over(
    out: Path, emu: ThreadedEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    card = out / "README.md"
    edited = card.read_text(encoding="utf-8").replace("[More Information Needed]", "Ours", 1)
    card.write_text(edited, encoding="utf-8")
    capsys.readouterr()
    assert harvest("export", out, "--format", "card") == EXIT_USAGE
    assert "edited" in only_line(capsys.readouterr().err)
    credits = (out / "CREDITS.csv").read_bytes()
    (out / "CREDITS.csv").write_text("stale\n")
    queries = write_queries(out.parent / "q.txt", KEYWORDS)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLICKR_API_KEY", emu.api_key)
        assert harvest(*run_args(emu, queries, out, "--max-side", str(MAX_SIDE))) == EXIT_OK
    assert card.read_text(encoding="utf-8") == edited, "a run leaves an edited card alone"
    assert (out / "CREDITS.csv").read_bytes() == credits, "and rewrites the credits"
    assert harvest("export", out, "--format", "card", "--output", out / "CARD.md") == EXIT_OK
    assert card_header((out / "CARD.md").read_text(encoding="utf-8"))["license"] == "other"


# --- parquet and hf ------------------------------------------------------------------------------


def test_parquet_has_the_jsonl_columns_typed(out: Path, tmp_path: Path) -> None:
    target, jsonl = tmp_path / "photos.parquet", tmp_path / "photos.jsonl"
    assert harvest("export", out, "--format", "parquet", "--output", target) == EXIT_OK
    assert harvest("export", out, "--format", "jsonl", "--output", jsonl) == EXIT_OK
    table = pq.read_table(target)
    assert tuple(table.schema.names) == COLUMNS
    types = {name: str(table.schema.field(name).type) for name in COLUMNS}
    assert types["license"] == "int64"
    assert types["latitude"] == "double"
    # Parquet has no seconds unit: pyarrow keeps the seconds as milliseconds
    assert types["date_upload"] == "timestamp[ms, tz=UTC]"
    assert types["date_taken"] == "timestamp[ms]"
    assert types["tags"] == "list<element: string>"
    assert types["sizes"].startswith("list<element: struct<label: string")
    lines = [orjson.loads(line) for line in jsonl.read_text().splitlines()]
    rows = table.to_pylist()
    assert len(rows) == len(lines)
    for row, line in zip(rows, lines, strict=True):
        assert row["id"] == line["id"]
        assert row["tags"] == line["tags"]
        assert int(row["date_upload"].timestamp()) == line["date_upload"]
        assert row["stored_width"] == line["stored_width"]
        assert row["status"] == line["status"]
        assert row["latitude"] == line["latitude"]
        assert row["sizes"] == line["sizes"]


def test_hf_imagefolder_loads_every_stored_image(
    out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    assert harvest("export", out, "--format", "hf") == EXIT_OK
    import datasets

    ds = datasets.load_dataset(
        "imagefolder", data_dir=str(out), split="train", cache_dir=str(tmp_path / "hf-cache")
    )
    photos = stored(out)
    assert ds.num_rows == len(photos)
    assert {"image", "id", "title", "license", "tags", "keywords", "sha256"} <= set(ds.features)
    assert "label" not in ds.features, "metadata columns, not folder labels"
    for example in ds:
        photo = photos[example["id"]]
        assert example["title"] == photo["title"]
        assert example["license"] == photo["license"]
        data = (out / photo["path"]).read_bytes()
        assert example["sha256"] == hashlib.sha256(data).hexdigest()
        assert example["image"].size == (example["stored_width"], example["stored_height"])


# --- bad input -----------------------------------------------------------------------------------

NEW_FORMATS = (
    ["--format", "credits"],
    ["--format", "card"],
    ["--format", "hf"],
    ["--format", "parquet", "--output", "{tmp}/p.parquet"],
)


def _args(args: list[str], tmp: Path) -> list[str]:
    return [a.replace("{tmp}", str(tmp)) for a in args]


@pytest.mark.parametrize("fmt", NEW_FORMATS, ids=lambda a: a[1])
def test_no_store_and_an_empty_harvest(
    fmt: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert harvest("export", empty, *_args(fmt, tmp_path)) == EXIT_USAGE
    assert "no harvest" in only_line(capsys.readouterr().err)
    Store.open(empty / STORE).close()  # a store with no photo in it
    assert harvest("export", empty, *_args(fmt, tmp_path)) == EXIT_USAGE
    message = only_line(capsys.readouterr().err)
    assert str(empty) in message
    assert "holds no" in message
    assert [p.name for p in empty.iterdir() if not p.name.startswith(STORE)] == []
    assert not (tmp_path / "p.parquet").exists()


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "card"])
def test_an_existing_target_is_left_alone(
    fmt: str, out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / f"mine.{fmt}"
    target.write_text("my own file\n")
    assert harvest("export", out, "--format", fmt, "--output", target) == EXIT_USAGE
    message = only_line(capsys.readouterr().err)
    assert str(target) in message
    assert "exists" in message
    assert target.read_text() == "my own file\n"


def test_an_existing_metadata_jsonl_is_left_alone(
    out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (out / "metadata.jsonl").write_text("mine\n")
    assert harvest("export", out, "--format", "hf") == EXIT_USAGE
    assert "metadata.jsonl exists" in only_line(capsys.readouterr().err)
    assert (out / "metadata.jsonl").read_text() == "mine\n"


@pytest.mark.parametrize(
    "args",
    [["--format", "parquet"], ["--format", "hf", "--output", "x"], ["--format", "credits",
     "--output", "x"]],
)  # fmt: skip
def test_outputs_that_do_not_fit_the_format(
    args: list[str], out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert harvest("export", out, *args) == EXIT_USAGE
    assert "output" in only_line(capsys.readouterr().err)
