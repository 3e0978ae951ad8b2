"""`--shard K/N` and `harvest merge OUT1 OUT2 … --into OUT`: shards run apart, merged once.

Two shards of one queries file (whose keywords overlap: some photos match keywords of both
shards) are harvested from the emulator into two directories and merged. The merged output holds
every photo once, as a file and as a row, in the usual layout, with every keyword that found it
and the status it had; `harvest run` on it searches and downloads nothing; merging again, or
again after a merge was cut short, duplicates nothing. A synthetic pair of stores covers
numbering past 1,000 photos and a harvested copy replacing an unfinished one.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from harvester import merge
from harvester.emulator.config import EmulatorConfig
from harvester.exit_codes import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from harvester.images.writer import FILES_PER_DIR, photo_path
from harvester.records import PhotoRecord, SizeVariant, Window
from harvester.store.sqlite import Store
from tests.harness import (
    STORE,
    Snapshot,
    ThreadedEmulator,
    assert_consistent,
    harvest,
    only_line,
    run_args,
    store_rows,
    threaded_emulator,
    write_queries,
)

#: 7, 20, 19, 4 and 7 matches in the 3,000-photo corpus (seed 0). Shard 1/2 takes city, party
#: and street, shard 2/2 park and river (crc32 of the keyword); park shares photos with city and
#: party, river one with street, so some photos are found by both shards.
KEYWORDS = ("city", "party", "street", "park", "river")
LAYOUT = re.compile(r"(?P<kw>[^/]+)/(?P<dir>[0-9]{5})/(?P<id>[0-9]+)_[0-9a-f]+_[0-9]+_[^/]+\.jpg")


@dataclass(frozen=True)
class Shards:
    emu: ThreadedEmulator
    queries: Path
    outs: tuple[Path, Path]
    truth: dict[str, set[str]]


@pytest.fixture(scope="module")
def emu() -> Iterator[ThreadedEmulator]:
    with threaded_emulator(photos=3000, seed=0, profile="ideal") as running:
        yield running


@pytest.fixture(scope="module")
def shards(emu: ThreadedEmulator, tmp_path_factory: pytest.TempPathFactory) -> Shards:
    """Shards 1/2 and 2/2 of KEYWORDS, each harvested into its own directory (once a module)."""
    base = tmp_path_factory.mktemp("shards")
    queries = write_queries(base / "queries.txt", KEYWORDS)
    # The corpus's own "now", not the clock's: a later run in another 5-minute bucket of the
    # clock would rightly search the new bucket, and "searches nothing" would hang on timing.
    until = EmulatorConfig().end_ts
    queries.write_text(f"#! until={until}\n" + queries.read_text(encoding="utf-8"))
    outs = (base / "shard1", base / "shard2")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLICKR_API_KEY", emu.api_key)
        for k, out in enumerate(outs, start=1):
            assert harvest(*run_args(emu, queries, out, "--shard", f"{k}/2")) == EXIT_OK
    return Shards(emu, queries, outs, {kw: emu.truth(kw) for kw in KEYWORDS})


@pytest.fixture
def sources(shards: Shards, tmp_path: Path) -> tuple[Path, Path]:
    """This test's own copies of the shard outputs (a merge must not change them either)."""
    copies = (tmp_path / "shard1", tmp_path / "shard2")
    for src, dst in zip(shards.outs, copies, strict=True):
        shutil.copytree(src, dst)
    return copies


def statuses(out: Path) -> dict[str, str]:
    return {str(pid): st for pid, st in store_rows(out, "SELECT id, status FROM photos")}


def exported(out: Path, tmp_path: Path) -> dict[str, dict[str, Any]]:
    """`harvest export OUT --format jsonl`, by photo id."""
    target = tmp_path / f"{out.name}-export.jsonl"
    assert harvest("export", out, "--format", "jsonl", "--output", target) == EXIT_OK
    rows = [orjson.loads(line) for line in target.read_text().splitlines()]
    by_id = {row["id"]: row for row in rows}
    assert len(by_id) == len(rows)
    return by_id


def keyword_links(out: Path) -> list[tuple[Any, ...]]:
    return store_rows(out, "SELECT photo_id, keyword FROM photo_keywords ORDER BY 1, 2")


# --- sharding ----------------------------------------------------------------------------------


def test_shards_split_the_keywords_and_overlap_in_photos(shards: Shards) -> None:
    searched = [
        {kw for (kw,) in store_rows(out, "SELECT DISTINCT keyword FROM windows")}
        for out in shards.outs
    ]
    assert all(searched), "each shard has keywords"
    assert not searched[0] & searched[1], "a keyword belongs to one shard"
    assert searched[0] | searched[1] == set(KEYWORDS)
    for out, mine in zip(shards.outs, searched, strict=True):
        expected = set().union(*(shards.truth[kw] for kw in mine))
        assert set(statuses(out)) == expected, "a shard harvests exactly its keywords' photos"
        assert_consistent(out)
    both = set(statuses(shards.outs[0])) & set(statuses(shards.outs[1]))
    assert both, "some photo matches keywords of both shards (what merge must deduplicate)"


# --- merge -------------------------------------------------------------------------------------


def test_merged_output_holds_every_photo_once(
    shards: Shards, sources: tuple[Path, Path], tmp_path: Path
) -> None:
    into = tmp_path / "merged"
    src_before = [Snapshot.of(src) for src in sources]
    assert harvest("merge", *sources, "--into", into) == EXIT_OK

    assert [Snapshot.of(src) for src in sources] == src_before, "sources are left as they were"
    merged = assert_consistent(into)  # one file per done photo, each photo once
    shard_status = [statuses(src) for src in sources]
    everything = set().union(*shards.truth.values())
    assert set(merged) == set(shard_status[0]) | set(shard_status[1]) == everything
    for pid, status in merged.items():
        had = {s[pid] for s in shard_status if pid in s}
        assert status == ("done" if "done" in had else had.pop()), f"status of {pid} carried over"
    assert Counter(merged.values())["done"] > 30

    # Layout: OUT/<keyword>/<NNNNN>/<id>_…, numbered by the keyword's sequence, ≤ 1,000 a dir.
    rows = store_rows(into, "SELECT id, keyword, seq, path, sha256 FROM photos")
    per_dir: Counter[str] = Counter()
    for pid, keyword, seq, path, _sha in rows:
        if path is None:
            continue
        m = LAYOUT.fullmatch(path)
        assert m, path
        assert (m["kw"], m["id"]) == (keyword, str(pid))
        assert m["dir"] == f"{seq // FILES_PER_DIR + 1:05d}"
        per_dir[path.rsplit("/", 1)[0]] += 1
    assert max(per_dir.values()) <= FILES_PER_DIR
    seqs = [(keyword, seq) for _pid, keyword, seq, _path, _sha in rows]
    assert len(seqs) == len(set(seqs)), "no two photos share a keyword's number"
    source_sha: dict[str, str] = {}  # the first source's copy wins
    for src in sources:
        for pid, sha in store_rows(src, "SELECT id, sha256 FROM photos WHERE status = 'done'"):
            source_sha.setdefault(str(pid), sha)
    for pid, _kw, _seq, path, sha in rows:
        if path is not None:
            assert sha == source_sha[str(pid)], "the harvested file itself, not a redo"

    # Every keyword that found a photo, across shards, is recorded (and exported).
    export = exported(into, tmp_path)
    for pid, row in export.items():
        assert set(row["keywords"]) == {kw for kw in KEYWORDS if pid in shards.truth[kw]}, pid
        assert row["status"] == merged[pid]
    across = [row for row in export.values() if {"city", "party", "street"} & set(row["keywords"])]
    assert any({"park", "river"} & set(row["keywords"]) for row in across), "cross-shard photos"


def test_run_on_merged_output_searches_and_downloads_nothing(
    shards: Shards, sources: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    into = tmp_path / "merged"
    assert harvest("merge", *sources, "--into", into) == EXIT_OK
    before = Snapshot.of(into)
    emu = shards.emu
    searches, images = emu.searches(), emu.images()

    monkeypatch.setenv("FLICKR_API_KEY", emu.api_key)
    assert harvest(*run_args(emu, shards.queries, into)) == EXIT_OK

    assert emu.searches() == searches, "finished windows of both shards are not searched again"
    assert emu.images() == images, "nothing already there is downloaded"
    assert Snapshot.of(into) == before


def test_merging_again_duplicates_nothing(sources: tuple[Path, Path], tmp_path: Path) -> None:
    into = tmp_path / "merged"
    assert harvest("merge", *sources, "--into", into) == EXIT_OK
    first, links = Snapshot.of(into), keyword_links(into)
    windows = store_rows(into, "SELECT keyword, start_s, end_s, license FROM windows")

    assert merge.merge_outputs(list(sources), into) == 0, "nothing to add the second time"
    assert harvest("merge", *reversed(sources), "--into", into) == EXIT_OK
    assert Snapshot.of(into) == first
    assert keyword_links(into) == links
    assert store_rows(into, "SELECT keyword, start_s, end_s, license FROM windows") == windows


@pytest.fixture
def cut_short(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Make the merge stop (as Ctrl-C would) at its 10th file, before or after placing it."""
    real_place = merge._place
    plan: dict[str, Any] = {"at": 10, "after": False, "placed": 0, "armed": True}

    def place(source: Path, target: Path) -> None:
        plan["placed"] += 1
        stop = plan["armed"] and plan["placed"] == plan["at"]
        if stop and not plan["after"]:
            raise KeyboardInterrupt
        real_place(source, target)
        if stop:
            raise KeyboardInterrupt

    monkeypatch.setattr(merge, "_place", place)
    return plan


@pytest.mark.parametrize("after", [False, True], ids=["before-placing", "after-placing"])
def test_interrupted_merge_run_again_duplicates_nothing(
    after: bool,
    cut_short: dict[str, Any],
    sources: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clean = tmp_path / "clean"
    cut_short["armed"] = False
    assert harvest("merge", *sources, "--into", clean) == EXIT_OK
    cut_short.update(armed=True, placed=0, after=after)

    into = tmp_path / "merged"
    capsys.readouterr()
    assert harvest("merge", *sources, "--into", into) == EXIT_INTERRUPTED
    assert "interrupted" in only_line(capsys.readouterr().err)
    cut_short["armed"] = False
    assert harvest("merge", *sources, "--into", into) == EXIT_OK

    merged = assert_consistent(into)  # in particular: no photo has two files
    assert merged == statuses(clean)
    assert keyword_links(into) == keyword_links(clean)
    names = {Path(p).name for p in Snapshot.of(into).files}
    assert names == {Path(p).name for p in Snapshot.of(clean).files}


def test_run_after_an_interrupted_merge_loses_nothing(
    shards: Shards,
    cut_short: dict[str, Any],
    sources: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    into = tmp_path / "merged"
    assert harvest("merge", *sources, "--into", into) == EXIT_INTERRUPTED
    monkeypatch.setenv("FLICKR_API_KEY", shards.emu.api_key)
    # Not the merge again but a run: what the merge had not brought over is harvested afresh.
    assert harvest(*run_args(shards.emu, shards.queries, into)) == EXIT_OK
    merged = assert_consistent(into)
    assert set(merged) == set().union(*shards.truth.values()), "no photo lost"
    assert "claimed" not in merged.values()


def test_merge_bad_input_one_line(
    sources: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    blocker = tmp_path / "a file"
    blocker.write_text("in the way")
    cases = [
        ([sources[0], empty], str(empty)),  # not a harvest
        ([sources[0], sources[1]], "merge target"),  # the target is one of the sources
        ([*sources], str(blocker)),  # a file where the target should be
    ]
    targets = [tmp_path / "merged", sources[1], blocker]
    for (srcs, words), into in zip(cases, targets, strict=True):
        before = [Snapshot.of(src) for src in sources]
        assert harvest("merge", *srcs, "--into", into) == EXIT_USAGE
        assert words in only_line(capsys.readouterr().err)
        assert [Snapshot.of(src) for src in sources] == before
    assert blocker.read_text() == "in the way"

    missing = next(iter(Snapshot.of(sources[0]).files))
    (sources[0] / missing).unlink()  # recorded as harvested, but the file is gone
    assert harvest("merge", *sources, "--into", tmp_path / "merged2") == EXIT_USAGE
    assert missing in only_line(capsys.readouterr().err)


# --- synthetic stores: numbering past 1,000, a harvested copy beats an unfinished one ----------


def fake_record(i: int) -> PhotoRecord:
    url = f"http://127.0.0.1:1/65535/{i}_abc123_b.jpg"
    return PhotoRecord(
        id=str(i),
        owner="7478087@N06",
        secret="abc123",
        server="65535",
        license=4,
        date_upload=1_500_000_000 + i,
        sizes=(SizeVariant(label="l", url=url, width=1024, height=768),),
    )


def synthetic_source(
    out: Path, keyword: str, ids: range, done: set[int], skipped: frozenset[int] = frozenset()
) -> None:
    """A harvest of `ids` under `keyword`: `done` have files, `skipped` a reason, others wait."""
    out.mkdir()
    records = [fake_record(i) for i in ids]
    with Store.in_dir(out) as store:
        store.commit_window(
            keyword,
            Window(start=0, end=10**9),
            records,
            reported_total=len(records),
            capped=False,
            lease_new=False,
        )
        for seq, rec in enumerate(records):  # a fresh keyword numbers its photos in claim order
            if int(rec.id) in done:
                path = photo_path(out, keyword, seq, rec)
                path.parent.mkdir(parents=True, exist_ok=True)
                data = f"image {rec.id} from {out.name}".encode()
                path.write_bytes(data)
                store.mark_done(
                    rec.id,
                    path=path.relative_to(out).as_posix(),
                    sha256=hashlib.sha256(data).hexdigest(),
                    width=1024,
                    height=768,
                    size_label="l",
                )
            elif int(rec.id) in skipped:
                store.mark_skipped(rec.id, "too small: 400x300 < 500")


def test_merge_numbers_afresh_with_at_most_1000_per_directory(tmp_path: Path) -> None:
    a, b, into = tmp_path / "a", tmp_path / "b", tmp_path / "merged"
    # a: 1..1200, done except 1191..1200 (unfinished); b: 1101..1600, 1101..1250 done,
    # 1500..1509 skipped, the rest unfinished.
    synthetic_source(a, "lighthouse", range(1, 1201), done=set(range(1, 1191)))
    synthetic_source(
        b,
        "lighthouse",
        range(1101, 1601),
        done=set(range(1101, 1251)),
        skipped=frozenset(range(1500, 1510)),
    )
    assert harvest("merge", a, b, "--into", into) == EXIT_OK

    merged = assert_consistent(into)
    assert set(merged) == {str(i) for i in range(1, 1601)}
    expected = {str(i): "done" for i in range(1, 1251)}
    expected |= {str(i): "claimed" for i in range(1251, 1601)}
    expected |= {str(i): "skipped" for i in range(1500, 1510)}
    assert merged == expected, "a harvested copy beats an unfinished one; outcomes carried over"
    files = Snapshot.of(into).files
    per_dir = Counter(name.rsplit("/", 1)[0] for name in files)
    assert per_dir == {"lighthouse/00001": 1000, "lighthouse/00002": 250}
    for name in files:
        pid = int(Path(name).name.split("_", 1)[0])
        source = "a" if pid <= 1190 else "b"  # the first source that harvested it
        assert (into / name).read_bytes() == f"image {pid} from {source}".encode()
    reasons = store_rows(into, "SELECT DISTINCT reason FROM photos WHERE status = 'skipped'")
    assert reasons == [("too small: 400x300 < 500",)]
    seqs = store_rows(into, "SELECT seq FROM photos")
    assert len(seqs) == len(set(seqs)), "numbered afresh, no two alike"
    # An unfinished photo keeps its number: a later run writes it where it belongs.
    with Store.in_dir(into) as store:
        pending = {p.record.id: p for p in store.pending(1000)}
    assert len(pending) == 340
    for p in pending.values():
        assert not photo_path(into, p.keyword, p.seq, p.record).exists()
    assert (into / STORE).is_file()


def test_merge_cut_short_at_a_directory_boundary_run_again_duplicates_nothing(
    cut_short: dict[str, Any], tmp_path: Path
) -> None:
    # Cut after the 1,000th file is placed, before its row says so: run again, the photo must
    # go to the same path (00001), not to a second one under a fresh number (00002).
    a, into = tmp_path / "a", tmp_path / "merged"
    synthetic_source(a, "harbour", range(1, 1001), done=set(range(1, 1001)))
    cut_short.update(at=1000, after=True)
    assert harvest("merge", a, "--into", into) == EXIT_INTERRUPTED
    cut_short["armed"] = False
    assert harvest("merge", a, "--into", into) == EXIT_OK
    merged = assert_consistent(into)
    assert merged == {str(i): "done" for i in range(1, 1001)}
    assert Counter(name.rsplit("/", 1)[0] for name in Snapshot.of(into).files) == {
        "harbour/00001": 1000
    }
