"""Sources and unknown dates end to end: `harvest run` on the emulator, then `harvest sources`.

The emulator's owners include the institutions of the built-in map (harvester/emulator/
institutions.py): "sky" in the 3,000-photo corpus (seed 0) finds 83 photos of four sources,
4 of them with an unknown date taken. Files are read back with exiftool where it is installed
and with Pillow everywhere.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from PIL import Image

from harvester.dataset.sources import SourceMap
from harvester.emulator.corpus import cached_corpus
from harvester.exit_codes import EXIT_OK, EXIT_USAGE
from harvester.images import jpegmeta
from tests.harness import (
    STORE,
    Snapshot,
    ThreadedEmulator,
    assert_consistent,
    harvest,
    harvest_keywords,
    only_line,
    run_args,
    store_rows,
    threaded_emulator,
    write_queries,
)

KEYWORDS = ("sky",)
PHOTOS, SEED = 3000, 0
NEEDS_EXIFTOOL = pytest.mark.skipif(
    shutil.which("exiftool") is None, reason="exiftool not installed (libimage-exiftool-perl)"
)
LOOKUPS = ("flickr.people.findByUsername", "flickr.urls.lookupUser", "flickr.people.getInfo")


@pytest.fixture(scope="module")
def emu() -> Iterator[ThreadedEmulator]:
    """An ideal 3,000-photo emulator."""
    with threaded_emulator(photos=PHOTOS, seed=SEED, profile="ideal") as running:
        yield running


@pytest.fixture(scope="module")
def harvested(emu: ThreadedEmulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished harvest of KEYWORDS (made once per module; copy it before changing it)."""
    return harvest_keywords(emu, tmp_path_factory.mktemp("harvested"), KEYWORDS)


@pytest.fixture
def prior(harvested: Path, tmp_path: Path) -> Path:
    """This test's own copy of the finished harvest."""
    out = tmp_path / "prior"
    shutil.copytree(harvested, out)
    return out


@pytest.fixture
def keyed(emu: ThreadedEmulator, monkeypatch: pytest.MonkeyPatch) -> ThreadedEmulator:
    """The emulator, with its key in the environment (look-ups need one)."""
    monkeypatch.setenv("FLICKR_API_KEY", emu.api_key)
    return emu


def _photos(out: Path) -> list[dict[str, Any]]:
    rows = store_rows(out, "SELECT id, status, path, source, record FROM photos ORDER BY id")
    return [
        {"id": str(i), "status": st, "path": p, "source": src, "record": orjson.loads(rec)}
        for i, st, p, src, rec in rows
    ]


def _file_record(path: Path) -> dict[str, Any]:
    return dict(json.loads(Image.open(path).info["comment"]))


def _lookups(emu: ThreadedEmulator) -> int:
    by_method = emu.stats()["by_method"]
    return sum(int(by_method.get(m, 0)) for m in LOOKUPS)


def _flickr_owners(out: Path, n: int) -> list[str]:
    """`n` owners of done photos whom no map names (so their photos are "flickr")."""
    counts: dict[str, int] = {}
    for p in _photos(out):
        if p["status"] == "done" and p["source"] == "flickr":
            counts[p["record"]["owner"]] = counts.get(p["record"]["owner"], 0) + 1
    return sorted(counts, key=lambda o: (-counts[o], o))[:n]


def _identities(nsid: str) -> tuple[str, str | None]:
    corpus = cached_corpus(SEED, PHOTOS)
    owner = corpus.owner_nsid.index(nsid)
    return corpus.owner_name[owner], corpus.owner_alias[owner]


# --- a harvest ---------------------------------------------------------------------------------


def test_every_photo_of_a_harvest_has_its_owners_source(harvested: Path) -> None:
    photos = _photos(harvested)
    smap = SourceMap.builtin()
    assert all(p["source"] == smap.source_of(p["record"]["owner"]) for p in photos)
    assert all(p["record"]["source"] == p["source"] for p in photos)  # column and JSON agree
    sources = {p["source"] for p in photos if p["status"] == "done"}
    assert {"flickr", "nasa", "bio_diversity"} <= sources
    for p in photos:
        if p["status"] == "done":
            assert _file_record(harvested / p["path"])["source"] == p["source"]


@NEEDS_EXIFTOOL
def test_exiftool_reads_the_source_in_the_files_metadata_json(harvested: Path) -> None:
    done = [p for p in _photos(harvested) if p["status"] == "done"]
    chosen = [next(p for p in done if p["source"] == s) for s in ("flickr", "nasa")]
    paths = [str(harvested / p["path"]) for p in chosen]
    out = subprocess.run(
        ["exiftool", "-j", "-Comment", "-UserComment", *paths],
        capture_output=True,
        check=True,
        text=True,
    )
    got = json.loads(out.stdout)
    assert [json.loads(g["Comment"])["source"] for g in got] == ["flickr", "nasa"]
    assert [json.loads(g["UserComment"])["source"] for g in got] == ["flickr", "nasa"]


def _date_time_original(path: Path) -> str | None:
    value = Image.open(path).getexif().get_ifd(0x8769).get(0x9003)
    return None if value is None else str(value)


def test_an_unknown_date_taken_is_kept_and_written_as_no_date_time_original(
    harvested: Path,
) -> None:
    corpus = cached_corpus(SEED, PHOTOS)
    done = [p for p in _photos(harvested) if p["status"] == "done"]
    unknown = {p["id"] for p in done if p["record"]["date_taken_unknown"]}
    truth = {
        p["id"] for p in done if bool(corpus.cols["taken_unknown"][corpus.row_of_id(int(p["id"]))])
    }
    assert unknown == truth
    assert unknown, "the harvest holds photos whose date taken Flickr does not know"
    for p in done:
        path = harvested / p["path"]
        expected = p["record"]["date_taken"].replace("-", ":")
        assert _date_time_original(path) == (None if p["id"] in unknown else expected)
        assert _file_record(path)["date_taken_unknown"] is (p["id"] in unknown)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_exports_carry_source_and_date_taken_unknown(
    fmt: str, harvested: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert harvest("export", harvested, "--format", fmt) == EXIT_OK
    text = capsys.readouterr().out
    if fmt == "jsonl":
        rows = [orjson.loads(line) for line in text.splitlines()]
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
    got = {str(r["id"]): (r["source"], str(r["date_taken_unknown"])) for r in rows}
    want = {
        p["id"]: (p["source"], str(p["record"]["date_taken_unknown"])) for p in _photos(harvested)
    }
    assert got == want
    assert {"True", "False"} <= {flag for _source, flag in got.values()}


# --- harvest run --sources -----------------------------------------------------------------------


def test_a_sources_file_names_owners_by_nsid_username_and_alias_resolved_once(
    keyed: ThreadedEmulator, harvested: Path, tmp_path: Path
) -> None:
    owners = _flickr_owners(harvested, 8)
    by_alias = next(o for o in owners if _identities(o)[1])  # one that has an alias
    by_name, by_nsid = [o for o in owners if o != by_alias][:2]
    sources = tmp_path / "mine.toml"
    sources.write_text(
        f'museum = ["{_identities(by_name)[0].upper()}", "{by_nsid}"]\n'
        f'archive = ["{_identities(by_alias)[1]}"]\nnasa_hq = ["NASA HQ PHOTO"]\n'
    )
    queries = write_queries(tmp_path / "q.txt", KEYWORDS)
    out = tmp_path / "out"
    before = _lookups(keyed)
    assert harvest(*run_args(keyed, queries, out, "--sources", str(sources))) == EXIT_OK
    asked = _lookups(keyed) - before
    assert 4 <= asked <= 5  # name, NSID, alias (findByUsername then lookupUser), NASA HQ
    want = {by_name: "museum", by_nsid: "museum", by_alias: "archive", "35067687@N04": "nasa_hq"}
    for p in _photos(out):
        owner = p["record"]["owner"]
        assert p["source"] == want.get(owner, SourceMap.builtin().source_of(owner))
    assert {p["source"] for p in _photos(out)} >= {"museum", "archive", "flickr", "nasa"}
    # The same command again: resumed, nothing asked twice (the store cached every answer).
    assert harvest(*run_args(keyed, queries, out, "--sources", str(sources))) == EXIT_OK
    assert _lookups(keyed) - before == asked
    names = store_rows(out, "SELECT name, nsid FROM source_names")
    assert dict(names)[_identities(by_alias)[1] or ""] == by_alias


# --- harvest sources OUT -------------------------------------------------------------------------


def _museum(prior: Path, tmp_path: Path) -> tuple[Path, str]:
    owner = _flickr_owners(prior, 1)[0]
    sources = tmp_path / "museum.toml"
    sources.write_text(f'museum = ["{owner}"]\n')
    return sources, owner


def test_sources_is_a_dry_run_by_default(
    keyed: ThreadedEmulator, prior: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sources, owner = _museum(prior, tmp_path)
    before = Snapshot.of(prior)
    held = sum(1 for p in _photos(prior) if p["record"]["owner"] == owner)
    assert harvest("sources", prior, "--sources", sources, "--flickr-url", keyed.rest_url) == 0
    table = capsys.readouterr().out.splitlines()
    museum = next(line.split() for line in table if line.startswith("museum"))
    assert museum[1:] == [str(held), "0", f"+{held}"]
    assert f"{held} photos change source" in table
    assert Snapshot.of(prior) == before
    assert "museum" not in {p["source"] for p in _photos(prior)}
    assert store_rows(prior, "SELECT COUNT(*) FROM owner_sources") == [(0,)]  # not kept


def test_apply_then_rewrite_files_keeps_the_image_data_byte_identical(
    keyed: ThreadedEmulator, prior: Path, tmp_path: Path
) -> None:
    sources, owner = _museum(prior, tmp_path)
    theirs = [p for p in _photos(prior) if p["record"]["owner"] == owner and p["status"] == "done"]
    scans = {p["id"]: bytes(jpegmeta.image_data((prior / p["path"]).read_bytes())) for p in theirs}
    url = ["--flickr-url", keyed.rest_url]
    assert harvest("sources", prior, "--sources", sources, "--apply", *url) == EXIT_OK
    assert {p["source"] for p in _photos(prior) if p["record"]["owner"] == owner} == {"museum"}
    assert all(_file_record(prior / p["path"])["source"] == "flickr" for p in theirs)
    assert harvest("sources", prior, "--apply", "--rewrite-files", *url) == EXIT_OK  # kept file
    for p in theirs:
        data = (prior / p["path"]).read_bytes()
        assert _file_record(prior / p["path"])["source"] == "museum"
        assert bytes(jpegmeta.image_data(data)) == scans[p["id"]]
    assert_consistent(prior)  # every file's sha256 in the store is the file's
    assert store_rows(prior, "SELECT value FROM meta WHERE key = 'sources_backfill'") == []


def test_a_killed_backfill_resumes_and_ends_as_an_uninterrupted_one(
    keyed: ThreadedEmulator, prior: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harvester.store import sources as store_sources

    sources, _owner = _museum(prior, tmp_path)
    reference = tmp_path / "reference"
    shutil.copytree(prior, reference)
    url = ["--flickr-url", keyed.rest_url]
    args: list[str | Path] = ["--sources", sources, "--apply", "--rewrite-files", *url]
    assert harvest("sources", reference, *args) == EXIT_OK

    monkeypatch.setattr(store_sources, "BATCH", 10)
    real_batch = store_sources.SourcesStore.backfill_batch
    real_sha = store_sources.SourcesStore.set_sha256
    calls = {"rows": 0, "files": 0}

    def dies_in_batch_3(self: Any, *a: Any, **kw: Any) -> Any:
        calls["rows"] += 1
        if calls["rows"] == 3:
            raise KeyboardInterrupt  # as a kill between two transactions
        return real_batch(self, *a, **kw)

    monkeypatch.setattr(store_sources.SourcesStore, "backfill_batch", dies_in_batch_3)
    assert harvest("sources", prior, *args) == 130
    progress = "SELECT value FROM meta WHERE key = 'sources_backfill'"
    saved = orjson.loads(store_rows(prior, progress)[0][0])
    assert (saved["stage"], saved["after"] > 0) == ("rows", True)

    def dies_before_saving_shas(self: Any, *a: Any, **kw: Any) -> Any:
        calls["files"] += 1
        raise KeyboardInterrupt  # the files of a batch are written, their sha256 not yet

    monkeypatch.setattr(store_sources.SourcesStore, "backfill_batch", real_batch)
    monkeypatch.setattr(store_sources.SourcesStore, "set_sha256", dies_before_saving_shas)
    assert harvest("sources", prior, *args) == 130
    with pytest.raises(AssertionError):
        assert_consistent(prior)  # a re-stamped file whose new sha256 the store lacks

    monkeypatch.setattr(store_sources.SourcesStore, "set_sha256", real_sha)
    assert harvest("sources", prior, *args) == EXIT_OK
    assert_consistent(prior)
    assert Snapshot.of(prior) == Snapshot.of(reference)
    assert _photos(prior) == _photos(reference)


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('museum = ["unclosed"', "not valid TOML"),
        ('museum = ["nobody-by-this-name"]', "'nobody-by-this-name' (User not found)"),
        ('museum = ["1@N01"]', "'1@N01' (User not found)"),
        ("Museum = 3", "source name 'Museum'"),
    ],
)
def test_a_bad_sources_file_is_one_line_and_changes_nothing(
    content: str,
    message: str,
    keyed: ThreadedEmulator,
    prior: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sources = tmp_path / "bad.toml"
    sources.write_text(content)
    before = Snapshot.of(prior)
    url = ["--flickr-url", keyed.rest_url]
    assert harvest("sources", prior, "--sources", sources, "--apply", *url) == EXIT_USAGE
    line = only_line(capsys.readouterr().err)
    assert str(sources) in line
    assert message in line
    assert Snapshot.of(prior) == before
    queries = write_queries(tmp_path / "q.txt", KEYWORDS)
    assert harvest(*run_args(keyed, queries, prior, "--sources", str(sources))) == EXIT_USAGE
    assert message in only_line(capsys.readouterr().err)
    assert Snapshot.of(prior) == before


def test_sources_without_a_harvest_or_with_rewrite_alone_is_usage(
    prior: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert harvest("sources", empty) == EXIT_USAGE
    assert "no harvest" in only_line(capsys.readouterr().err)
    assert not (empty / STORE).exists()
    before = Snapshot.of(prior)
    assert harvest("sources", prior, "--rewrite-files") == EXIT_USAGE
    assert "--apply" in only_line(capsys.readouterr().err)
    assert Snapshot.of(prior) == before


def test_a_version_2_harvest_is_back_filled_in_place(prior: Path) -> None:
    """An old harvest: no source column, records without source; the store migrates."""
    db = sqlite3.connect(prior / STORE)
    db.executescript(
        "DROP INDEX photos_source; DROP INDEX photos_source_status;"
        " ALTER TABLE photos DROP COLUMN source;"
        "UPDATE photos SET record = json_remove(record, '$.source');"
        "UPDATE meta SET value = '2' WHERE key = 'schema_version';"
    )
    db.close()
    assert harvest("sources", prior, "--apply") == EXIT_OK
    photos = _photos(prior)
    smap = SourceMap.builtin()
    for p in photos:  # a record without "source" (unchanged since) reads as "flickr"
        source = p["record"].get("source", "flickr")
        assert p["source"] == source == smap.source_of(p["record"]["owner"])
    assert len({p["source"] for p in photos}) >= 3


def _as_written_before_sources(path: Path) -> bytes:
    """Rewrite a file's record (COM only) as harvest wrote it before sources: the downloaded
    size under "source", no source name, no date_taken_unknown; returns its image data."""
    data = path.read_bytes()
    info = jpegmeta.parse_jpeg(data)
    meta = _file_record(path)
    meta["source"] = meta.pop("downloaded")
    del meta["date_taken_unknown"]
    app1 = next(s for s in info.segments if s.marker == jpegmeta.APP1)
    com = jpegmeta.com_segment(orjson.dumps(meta))
    path.write_bytes(b"".join(jpegmeta.embed_parts(data, info, data[app1.start : app1.end], com)))
    return bytes(jpegmeta.image_data(data))


def test_rewrite_files_brings_files_of_an_older_harvest_up_to_date(prior: Path) -> None:
    done = [p for p in _photos(prior) if p["status"] == "done"]
    theirs = [p for p in done if p["source"] != "flickr"][:2]
    old = [*theirs, next(p for p in done if p["source"] == "flickr")]
    scans = {p["id"]: _as_written_before_sources(prior / p["path"]) for p in old}
    sizes = {p["id"]: _file_record(prior / p["path"])["source"] for p in old}
    db = sqlite3.connect(prior / STORE)  # the store agrees with its files, as before
    for p in old:
        sha = hashlib.sha256((prior / p["path"]).read_bytes()).hexdigest()
        db.execute("UPDATE photos SET sha256 = ? WHERE id = ?", (sha, int(p["id"])))
    db.commit()
    db.close()
    assert_consistent(prior)
    assert harvest("sources", prior, "--apply", "--rewrite-files") == EXIT_OK
    for p in old:
        meta = _file_record(prior / p["path"])
        assert meta["source"] == p["source"]
        assert meta["downloaded"] == sizes[p["id"]]
        assert meta["date_taken_unknown"] is p["record"]["date_taken_unknown"]
        assert bytes(jpegmeta.image_data((prior / p["path"]).read_bytes())) == scans[p["id"]]
    assert_consistent(prior)
