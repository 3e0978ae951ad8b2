"""Source lines end to end against the emulator's truth: users, albums, groups, galleries, Commons.

Each source is harvested alone into its own output, its photos compared with the emulator's
ground truth (recall 100 %, no foreign id) and its API calls, counted by the emulator, held to
the target: a list walk costs exactly `ceil(N/500)` list calls, a search at most a tenth more
than that bound (the planner's probes), and one look-up resolves the line. Bad source lines
stop the run with one line naming the file and line (exit 2) before anything is claimed; a
source that vanishes mid-run is a recorded reason; a run killed in the middle of an album
resumes without asking for a page it had.
"""

from __future__ import annotations

import math
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harvester.emulator import methods as emulator_methods
from harvester.emulator.lists import Lists, lists_of
from harvester.exit_codes import EXIT_USAGE
from harvester.outputs import collection_facts
from harvester.search.source_lines import SourceKind, directory_name
from harvester.store.sqlite import Store
from tests.harness import (
    ThreadedEmulator,
    assert_consistent,
    harvest,
    harvest_args,
    run_args,
    run_harvest,
    store_count,
    store_rows,
    threaded_emulator,
)

LIST_METHODS = {"flickr.photosets.getPhotos", "flickr.galleries.getPhotos"}
LOOKUPS = {
    "flickr.people.getInfo",
    "flickr.people.findByUsername",
    "flickr.urls.lookupUser",
    "flickr.photosets.getInfo",
    "flickr.galleries.getInfo",
    "flickr.urls.lookupGallery",
    "flickr.groups.getInfo",
    "flickr.urls.lookupGroup",
    "flickr.commons.getInstitutions",
}


@pytest.fixture(scope="module")
def emu() -> Iterator[ThreadedEmulator]:
    """A realistic emulator (4,000 cap, fuzzy edges, under-reported totals) of 20,000 photos:
    its owner 0 and its first album and pool hold over 5,000 photos each."""
    with threaded_emulator(photos=20_000, seed=7, profile="realistic") as running:
        yield running


def lists(emu: ThreadedEmulator) -> Lists:
    return lists_of(emu.running.emulator.corpus)


def truth(emu: ThreadedEmulator, **query: str) -> set[str]:
    return set(emu._call(emu.running.truth(**query)))


def by_method(emu: ThreadedEmulator) -> dict[str, int]:
    return {k: int(v) for k, v in emu.stats()["by_method"].items()}


def run_lines(
    emu: ThreadedEmulator, base: Path, text: str, *extra: str
) -> tuple[int, dict[str, int], Path]:
    """Harvest a queries file of `text` (metadata only unless `extra` says otherwise)."""
    base.mkdir(parents=True, exist_ok=True)
    queries = base / "q.txt"
    queries.write_text(text, encoding="utf-8")
    before = by_method(emu)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLICKR_API_KEY", emu.api_key)
        code = harvest(*run_args(emu, queries, base / "out", *(extra or ("--metadata-only",))))
    after = by_method(emu)
    calls = {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}
    return code, calls, base / "out"


def stored_ids(out: Path) -> set[str]:
    return {str(pid) for (pid,) in store_rows(out, "SELECT id FROM photos")}


def _user(emu: ThreadedEmulator) -> tuple[str, dict[str, str]]:
    nsid = emu.running.emulator.corpus.owner_nsid[0]
    return f"user:{nsid}", {"user_id": nsid}


def _user_by_url(emu: ThreadedEmulator) -> tuple[str, dict[str, str]]:
    corpus = emu.running.emulator.corpus
    owner = next(i for i, a in enumerate(corpus.owner_alias) if a is not None)
    url = f"https://www.flickr.com/photos/{corpus.owner_alias[owner]}/"
    return f"user:{url}", {"user_id": corpus.owner_nsid[owner]}


def _user_by_name(emu: ThreadedEmulator) -> tuple[str, dict[str, str]]:
    corpus = emu.running.emulator.corpus
    return f"user:{corpus.owner_name[3]}", {"user_id": corpus.owner_nsid[3]}


def _album(emu: ThreadedEmulator) -> tuple[str, dict[str, str]]:
    album = next(a for a in lists(emu).albums.values() if not a.private)
    return f"album:{album.list_id}", {"photoset_id": album.list_id}


def _album_by_url(emu: ThreadedEmulator) -> tuple[str, dict[str, str]]:
    album = list(lists(emu).albums.values())[2]
    url = f"https://www.flickr.com/photos/someone/albums/{album.list_id}"
    return f"album:{url}", {"photoset_id": album.list_id}


def _group(emu: ThreadedEmulator) -> tuple[str, dict[str, str]]:
    group = next(iter(lists(emu).groups.values()))
    return f"group:{group.list_id}", {"group_id": group.list_id}


def _group_by_url(emu: ThreadedEmulator) -> tuple[str, dict[str, str]]:
    group = list(lists(emu).groups.values())[1]
    return f"group:https://www.flickr.com/groups/{group.alias}/pool/", {"group_id": group.list_id}


def _gallery(emu: ThreadedEmulator) -> tuple[str, dict[str, str]]:
    gallery = next(iter(lists(emu).galleries.values()))
    return f"gallery:{gallery.list_id}", {"gallery_id": gallery.list_id}


def _gallery_by_url(emu: ThreadedEmulator) -> tuple[str, dict[str, str]]:
    gallery = list(lists(emu).galleries.values())[1]
    url = f"https://www.flickr.com/photos/curator/galleries/{gallery.alias}/"
    return f"gallery:{url}", {"gallery_id": gallery.list_id}


def _commons(emu: ThreadedEmulator) -> tuple[str, dict[str, str]]:
    return "commons:*", {"commons": "1"}


SOURCES: dict[str, Callable[[ThreadedEmulator], tuple[str, dict[str, str]]]] = {
    "user-nsid": _user,
    "user-url": _user_by_url,
    "user-name": _user_by_name,
    "album-id": _album,
    "album-url": _album_by_url,
    "group-id": _group,
    "group-url": _group_by_url,
    "gallery-id": _gallery,
    "gallery-url": _gallery_by_url,
    "commons-all": _commons,
}


def call_target(kind: str, emu: ThreadedEmulator, query: dict[str, str], n: int) -> int:
    """The calls a source may cost: the bound for a list walk, a tenth over it for a search;
    `commons:*` is a search per institution, so its bound is the sum of theirs."""
    if kind == "commons-all":
        corpus = emu.running.emulator.corpus
        sizes = [len(truth(emu, user_id=nsid)) for nsid, *_ in lists_of(corpus).institutions]
        return sum(max(1, math.ceil(s / 500)) for s in sizes)
    bound = max(1, math.ceil(n / 500))
    return bound if kind.startswith(("album", "gallery")) else bound + max(1, bound // 10)


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_each_source_type_harvests_exactly_its_truth_within_the_call_target(
    emu: ThreadedEmulator, tmp_path: Path, kind: str
) -> None:
    line, query = SOURCES[kind](emu)
    expected = truth(emu, **query)
    assert expected, "the source has photos"
    code, calls, out = run_lines(emu, tmp_path, f"{line}\n")
    assert code == 0
    got = stored_ids(out)
    assert got - expected == set(), "no foreign photo"
    assert expected - got == set(), "recall 100 %"
    photo_calls = sum(n for m, n in calls.items() if m in LIST_METHODS | {"flickr.photos.search"})
    assert photo_calls <= call_target(kind, emu, query, len(expected)), calls
    assert sum(n for m, n in calls.items() if m in LOOKUPS) == 1, "resolved with one look-up"
    if kind.startswith(("album", "gallery")):
        assert "flickr.photos.search" not in calls


def test_a_resumed_run_resolves_nothing_again_and_asks_nothing_of_a_finished_walk(
    emu: ThreadedEmulator, tmp_path: Path
) -> None:
    line, _query = _album(emu)
    text = f"{line}\n{_gallery(emu)[0]}\n{_user_by_name(emu)[0]}\n"
    assert run_lines(emu, tmp_path, text)[0] == 0
    code, calls, _out = run_lines(emu, tmp_path, text)
    assert code == 0
    assert not set(calls) & LOOKUPS, "the look-ups come from the store's cache"
    assert not set(calls) & LIST_METHODS, "finished walks are not walked again"


def test_sources_claim_across_lines_and_negatives_apply(
    emu: ThreadedEmulator, tmp_path: Path
) -> None:
    album = next(a for a in lists(emu).albums.values() if not a.private)
    owner = emu.running.emulator.corpus.owner_nsid[album.owner]
    text = f"album:{album.list_id}\nuser:{owner}\n-photo\n"
    code, _calls, out = run_lines(emu, tmp_path, text)
    assert code == 0
    rows = store_rows(out, "SELECT keyword, COUNT(*) FROM photos GROUP BY keyword")
    per_keyword = dict(rows)
    album_kw = directory_name_of(out, "album-")
    assert per_keyword[album_kw] > 0
    claims = store_count(out, "SELECT COUNT(*) FROM photo_keywords")
    assert claims > sum(per_keyword.values()), "the user line found the album's photos again"
    user_ids = truth(emu, user_id=owner)
    assert stored_ids(out) <= user_ids, "no photo outside the owner's"
    assert len(stored_ids(out)) < len(user_ids), "photos with the negative term were dropped"


def directory_name_of(out: Path, prefix: str) -> str:
    names = [str(kw) for (kw,) in store_rows(out, "SELECT DISTINCT keyword FROM photos")]
    return next(kw for kw in names if kw.startswith(prefix))


def test_a_gallery_is_harvested_to_files_with_its_records(
    emu: ThreadedEmulator, tmp_path: Path
) -> None:
    gallery = next(g for g in lists(emu).galleries.values() if 1 < g.rows.size <= 10)
    code, _calls, out = run_lines(
        emu, tmp_path, f"gallery:{gallery.list_id}\n", "--concurrency", "4", "--no-fsync"
    )
    assert code == 0
    status = assert_consistent(out)
    assert set(status) == truth(emu, gallery_id=gallery.list_id)
    keyword = directory_name(SourceKind.GALLERY, gallery.title, gallery.list_id)
    assert (out / keyword).is_dir(), "its own output directory, named from the resolved title"
    done = [s for s in status.values() if s == "done"]
    assert len(done) == len(list((out / keyword).rglob("*.jpg")))
    with Store.open(out / "harvest.sqlite", readonly=True) as store:
        assert collection_facts(store).span_s is None, "list pages are no date span on the card"


def _bad_lines(emu: ThreadedEmulator) -> list[tuple[str, str]]:
    private = next(a for a in lists(emu).albums.values() if a.private)
    return [
        ("user:nobody-at-all-here", "no such user"),
        ("user:12345@N99", "no such user"),
        ("album:1234567", "no such album, or a private one"),
        (f"album:{private.list_id}", "no such album, or a private one"),
        ("group:999@N20", "no such group"),
        ("group:https://www.flickr.com/groups/nosuchgroup/", "no such group"),
        ("gallery:1-2", "no such gallery"),
        ("commons:Nobody Museum", "no Flickr Commons institution"),
        ("user:https://www.flickr.com/groups/x/", "not a photostream URL"),
        ("album:https://www.example.com/photos/x/albums/1", "not a flickr.com URL"),
        ("gallery:https://www.flickr.com/photos/x/", "not a gallery URL"),
        (f"album:{private.list_id} | license=4", "album: lines cannot take license="),
        ("gallery:1-2 | since=2010-01-01", "gallery: lines cannot take since="),
        ("user:george | user=1@N01", "user= cannot be given too"),
    ]


@pytest.mark.parametrize("index", range(14))
def test_a_bad_source_line_is_one_line_naming_file_and_line_and_exit_2(
    emu: ThreadedEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], index: int
) -> None:
    line, message = _bad_lines(emu)[index]
    code, calls, out = run_lines(emu, tmp_path, f"# sources\nnewyork\n{line}\n")
    assert code == EXIT_USAGE == 2
    err = [e for e in capsys.readouterr().err.splitlines() if e.startswith("harvest")]
    assert len(err) == 1, err
    assert f"{tmp_path / 'q.txt'}:3:" in err[0]
    assert message in err[0]
    assert "flickr.photos.search" not in calls, "nothing searched before the error"
    assert store_count(out, "SELECT COUNT(*) FROM photos") == 0


def test_two_lines_naming_one_source_are_an_error(emu: ThreadedEmulator, tmp_path: Path) -> None:
    line, _ = _album(emu)
    album_id = line.split(":", 1)[1]
    text = f"{line}\nalbum:https://www.flickr.com/photos/x/albums/{album_id}/\n"
    assert run_lines(emu, tmp_path, text)[0] == 2


def test_a_source_that_vanishes_mid_run_is_a_recorded_reason(
    emu: ThreadedEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    album = next(a for a in lists(emu).albums.values() if not a.private and a.rows.size > 1500)
    ctx = emu.running.emulator.ctx
    real = emulator_methods.METHODS["flickr.photosets.getPhotos"]

    def vanishing(mctx: Any, params: Any) -> dict[str, Any]:
        answer = real(mctx, params)
        if params.get("page") == "2":
            ctx.gone.add(album.list_id)  # deleted after its second page was served
        return answer

    monkeypatch.setitem(emulator_methods.METHODS, "flickr.photosets.getPhotos", vanishing)
    try:
        code, _calls, out = run_lines(emu, tmp_path, f"album:{album.list_id}\nnewyork\n")
    finally:
        ctx.gone.discard(album.list_id)
    assert code == 0, "the run goes on"
    assert store_count(out, "SELECT COUNT(*) FROM photos") > 0
    gone = store_rows(out, "SELECT key, value FROM meta WHERE key LIKE 'source_gone:%'")
    assert len(gone) == 1
    assert "Photoset not found" in gone[0][1]
    kinds = {kw for (kw,) in store_rows(out, "SELECT DISTINCT keyword FROM photos")}
    assert "newyork" in kinds, "the other lines were harvested"
    with Store.open(out / "harvest.sqlite", readonly=True) as store:
        reasons = store.summary().reasons
    assert reasons == {f"source gone: {gone[0][0].split(':', 1)[1]}": 1}, "in the summary too"
    assert run_lines(emu, tmp_path, f"album:{album.list_id}\nnewyork\n")[0] == 0  # it is back
    assert not store_rows(out, "SELECT key FROM meta WHERE key LIKE 'source_gone:%'")


async def test_kill_minus_9_in_the_middle_of_an_album_resumes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pages: list[str] = []
    real = emulator_methods.METHODS["flickr.photosets.getPhotos"]

    def recording(mctx: Any, params: Any) -> dict[str, Any]:
        pages.append(params.get("page", "1"))
        return real(mctx, params)

    monkeypatch.setitem(emulator_methods.METHODS, "flickr.photosets.getPhotos", recording)
    # Every REST answer takes 0.3 s, so the kill lands between pages of the walk.
    with threaded_emulator(photos=20_000, seed=7, profile="ideal", rate_slow=1.0, slow_s=0.3) as e:
        album = max(lists(e).albums.values(), key=lambda a: 0 if a.private else a.rows.size)
        expected = truth(e, photoset_id=album.list_id)
        queries = tmp_path / "q.txt"
        queries.write_text(f"album:{album.list_id}\n", encoding="utf-8")
        out = tmp_path / "out"
        args = harvest_args(e, queries, out, "--metadata-only")
        windows = "SELECT COUNT(*) FROM windows"
        first = await run_harvest(e, args, stop_when=lambda: store_count(out, windows) >= 3)
        assert first.signalled
        assert first.code == -signal.SIGKILL
        done_pages = {str(s) for (s,) in store_rows(out, "SELECT start_s FROM windows")}
        assert 3 <= len(done_pages) < math.ceil(len(expected) / 500), "killed mid-walk"
        asked_before = len(pages)
        second = await run_harvest(e, args)
        assert second.code == 0, second.err[-2000:]
    again = set(pages[asked_before:]) & done_pages
    assert again == set(), f"pages checkpointed before were asked again: {sorted(again)}"
    assert stored_ids(out) == expected


def test_sources_are_sharded_among_workers_like_keywords(
    emu: ThreadedEmulator, tmp_path: Path
) -> None:
    lines = [SOURCES[k](emu) for k in ("commons-all", "album-url", "gallery-id", "group-url")]
    expected = set().union(*(truth(emu, **query) for _line, query in lines))
    text = "".join(f"{line}\n" for line, _query in lines)
    code, calls, out = run_lines(emu, tmp_path, text, "--metadata-only", "--workers", "2")
    assert code == 0
    assert stored_ids(out) == expected
    assert sum(n for m, n in calls.items() if m in LOOKUPS) == 4, "resolved once, not per worker"


def test_a_pool_that_vanishes_mid_search_is_a_recorded_reason(
    emu: ThreadedEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = next(iter(lists(emu).groups.values()))  # over the cap: several windows
    ctx = emu.running.emulator.ctx
    real = emulator_methods.METHODS["flickr.photos.search"]
    served = {"pool": 0}

    def vanishing(mctx: Any, params: Any) -> dict[str, Any]:
        if params.get("group_id") == group.list_id:
            served["pool"] += 1
            if served["pool"] == 3:
                ctx.gone.add(group.list_id)  # the group is deleted during its search
        return real(mctx, params)

    monkeypatch.setitem(emulator_methods.METHODS, "flickr.photos.search", vanishing)
    try:
        code, _calls, out = run_lines(emu, tmp_path, f"group:{group.list_id}\n")
    finally:
        ctx.gone.discard(group.list_id)
    assert code == 0
    (reason,) = [
        v for (v,) in store_rows(out, "SELECT value FROM meta WHERE key LIKE 'source_gone:%'")
    ]
    assert "permission to view this pool" in reason
