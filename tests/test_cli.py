"""`harvest` on the command line, run in-process against an emulator served from another thread.

Bad input (a missing or malformed queries file, an unknown option, an output directory that is
not writable, a full disk, a missing or rejected API key) gets one clear line and a non-zero
exit, and nothing already harvested is lost. The key never shows in output, logs or files.
`status` and `export` read a harvest.

`harvester.cli.main` runs its own event loop, so these are plain tests and the emulator runs on
an event loop of its own in a background thread (`tests.harness.threaded_emulator`).
"""

from __future__ import annotations

import csv
import errno
import io
import logging
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from PIL import Image

from harvester.exit_codes import EXIT_BAD_KEY, EXIT_DISK_FULL, EXIT_OK, EXIT_USAGE
from harvester.images import writer
from harvester.store import schema as store_schema
from harvester.store import sqlite as store_module
from tests.harness import (
    STORE,
    Snapshot,
    ThreadedEmulator,
    assert_consistent,
    error_line,
    harvest,
    harvest_keywords,
    only_line,
    run_args,
    store_rows,
    threaded_emulator,
    write_queries,
)

#: 31 and 3 matches in the 3,000-photo corpus (seed 0); one photo matches both, one is skipped.
KEYWORDS = ("sunset", "tokyo")
REVOKED_KEY = "deadbeef" * 4  # well-formed, but the emulator is told to reject it


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emu() -> Iterator[ThreadedEmulator]:
    """An ideal 3,000-photo emulator that rejects REVOKED_KEY (as an unknown key)."""
    with threaded_emulator(
        photos=3000, seed=0, profile="ideal", invalid_keys=frozenset({REVOKED_KEY})
    ) as running:
        yield running


@pytest.fixture(scope="module")
def harvested(emu: ThreadedEmulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished harvest of KEYWORDS (made once per module; copy it before changing it)."""
    base = tmp_path_factory.mktemp("harvested")
    return harvest_keywords(emu, base, KEYWORDS)


@pytest.fixture
def prior(harvested: Path, tmp_path: Path) -> Path:
    """This test's own copy of a finished harvest."""
    out = tmp_path / "prior"
    shutil.copytree(harvested, out)
    return out


@pytest.fixture
def keyed(emu: ThreadedEmulator, monkeypatch: pytest.MonkeyPatch) -> ThreadedEmulator:
    """The emulator, with its valid key in FLICKR_API_KEY."""
    monkeypatch.setenv("FLICKR_API_KEY", emu.api_key)
    return emu


# --- bad input -------------------------------------------------------------------------------


BAD_QUERIES: dict[str, tuple[bytes | None, int | None, str]] = {
    # name: (file content, None for no file; the line named; words of the message)
    "missing": (None, None, "no such file"),
    "directory": (b"", None, "is a directory"),
    "unknown option": (b"sunset\n# a comment\ntokyo | colour=red\n", 3, "unknown option"),
    "repeated keyword": (b"sunset\n\n# again:\nSunset\n", 4, "sunset"),
    "not utf-8": (b"sunset\n\xff\xfe tokyo\n", 2, "UTF-8"),
    "no keywords": (b"# only comments\n-birthday\n", None, "no keywords"),
}


@pytest.mark.parametrize("case", list(BAD_QUERIES))
def test_bad_queries_file_one_line_naming_file_and_line(
    case: str,
    keyed: ThreadedEmulator,
    prior: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    content, line, words = BAD_QUERIES[case]
    queries = tmp_path / "my queries.txt"
    if case == "directory":
        queries.mkdir()
    elif content is not None:
        queries.write_bytes(content)
    before, calls = Snapshot.of(prior), keyed.calls()

    assert harvest(*run_args(keyed, queries, prior)) == EXIT_USAGE
    captured = capsys.readouterr()
    message = only_line(captured.err)
    where = f"{queries}:{line}:" if line is not None else f"{queries}:"
    assert where in message, "names the file (and the line)"
    assert words.lower() in message.lower()
    assert captured.out == ""
    assert Snapshot.of(prior) == before, "nothing harvested is lost"
    assert keyed.calls() == calls, "no API call for a run that cannot start"


def test_bad_queries_file_creates_no_output_directory(
    keyed: ThreadedEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "fresh"
    assert harvest(*run_args(keyed, tmp_path / "nope.txt", out)) == EXIT_USAGE
    only_line(capsys.readouterr().err)
    assert not out.exists()


BAD_COMMAND_LINES: dict[str, tuple[list[str], str]] = {
    # name: (arguments after `harvest`, {q} the queries file, {out} the output; words)
    "unknown option": (["run", "{q}", "--out", "{out}", "--frobnicate"], "--frobnicate"),
    "unknown command": (["harvset", "{q}"], "harvset"),
    "missing queries": (["run", "--out", "{out}"], "queries"),
    "bad shard": (["run", "{q}", "--out", "{out}", "--shard", "3/2"], "3/2"),
    "zero budget": (["run", "{q}", "--out", "{out}", "--calls-per-hour", "0"], "calls-per-hour"),
    "not a number": (["run", "{q}", "--out", "{out}", "--concurrency", "lots"], "lots"),
    "bad format": (["export", "{out}", "--format", "xml"], "xml"),
}


@pytest.mark.parametrize("case", list(BAD_COMMAND_LINES))
def test_bad_command_line_one_line_exit_2(
    case: str, keyed: ThreadedEmulator, prior: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template, words = BAD_COMMAND_LINES[case]
    queries = write_queries(prior.parent / "q.txt", KEYWORDS)
    args = [a.format(q=queries, out=prior) for a in template]
    before, calls = Snapshot.of(prior), keyed.calls()

    assert harvest(*args) == EXIT_USAGE
    captured = capsys.readouterr()
    message = only_line(captured.err)
    assert words in message
    assert "usage:" not in captured.err, "one line, not the usage text"
    assert captured.out == ""
    assert Snapshot.of(prior) == before
    assert keyed.calls() == calls


@pytest.mark.parametrize("where", ["out is a file", "parent is a file"])
def test_output_directory_not_writable(
    where: str, keyed: ThreadedEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # We may run as root, for whom a read-only mode does not stop writes: a file in the way does.
    blocker = tmp_path / "results"
    blocker.write_bytes(b"someone's data")
    out = blocker if where == "out is a file" else blocker / "out"
    calls = keyed.calls()

    code = harvest(*run_args(keyed, write_queries(tmp_path / "q.txt", KEYWORDS), out))
    captured = capsys.readouterr()
    assert code == EXIT_USAGE
    message = only_line(captured.err)
    assert str(out) in message
    assert "not writable" in message
    assert blocker.read_bytes() == b"someone's data", "the file in the way is untouched"
    assert keyed.calls() == calls


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_output_directory_read_only(
    keyed: ThreadedEmulator, prior: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = Snapshot.of(prior)
    prior.chmod(0o555)
    try:
        code = harvest(*run_args(keyed, write_queries(prior.parent / "q.txt", KEYWORDS), prior))
    finally:
        prior.chmod(0o755)
    assert code == EXIT_USAGE
    assert "not writable" in only_line(capsys.readouterr().err)
    assert Snapshot.of(prior) == before


def test_missing_api_key(
    emu: ThreadedEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("FLICKR_API_KEY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # no config file there
    calls = emu.calls()
    assert (
        harvest(*run_args(emu, write_queries(tmp_path / "q.txt", KEYWORDS), tmp_path / "out")) == 2
    )
    message = only_line(capsys.readouterr().err)
    assert "FLICKR_API_KEY" in message
    assert emu.calls() == calls


def all_bytes(out: Path) -> Iterator[tuple[Path, bytes]]:
    for path in sorted(out.rglob("*")):
        if path.is_file():
            yield path, path.read_bytes()


def assert_key_nowhere(key: str, out: Path, *texts: str) -> None:
    for text in texts:
        assert key not in text
        assert key.upper() not in text
    for path, data in all_bytes(out):
        assert key.encode() not in data, f"the key is written in {path}"


@pytest.mark.parametrize("key", [REVOKED_KEY, "not-a-flickr-key-0042"])
def test_rejected_key_exit_3_nothing_lost_key_not_shown(
    key: str,
    emu: ThreadedEmulator,
    prior: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("FLICKR_API_KEY", key)
    before = Snapshot.of(prior)
    searches, images = emu.searches(), emu.images()

    code = harvest("-vv", *run_args(emu, write_queries(prior.parent / "q.txt", KEYWORDS), prior))
    captured = capsys.readouterr()
    assert code == EXIT_BAD_KEY
    message = error_line(captured.err)
    assert "API key" in message
    assert emu.stats()["by_key"].get(key), "the key was sent (and rejected)"
    assert emu.searches() == searches, "the run ends before any search"
    assert emu.images() == images
    assert Snapshot.of(prior) == before, "nothing harvested is lost"
    assert_key_nowhere(key, prior, captured.out, captured.err, caplog.text)


def test_key_never_appears_in_output_logs_or_files(
    emu: ThreadedEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    key = "c0ffee00" * 4  # any well-formed key the emulator does not reject
    monkeypatch.setenv("FLICKR_API_KEY", key)
    out = tmp_path / "out"
    queries = write_queries(tmp_path / "q.txt", ("tokyo",))

    assert harvest("-vv", *run_args(emu, queries, out)) == EXIT_OK
    assert harvest("status", out) == EXIT_OK
    assert harvest("export", out, "--format", "jsonl") == EXIT_OK
    captured = capsys.readouterr()
    assert emu.stats()["by_key"].get(key, 0) >= 2, "the key was used (echo and search)"
    assert "tokyo: search finished" in caplog.text, "the run's log is captured here"
    assert set(assert_consistent(out).values()) == {"done"}
    assert_key_nowhere(key, out, captured.out, captured.err, caplog.text)


def test_full_disk_exit_4_keeps_what_was_written_and_the_rerun_finishes(
    keyed: ThreadedEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    args = run_args(keyed, write_queries(tmp_path / "q.txt", ("sunset",)), out)
    real_write = writer._write_file
    room = 5  # files that fit before the disk is "full"
    lock = threading.Lock()
    state = {"writes": 0, "armed": True}

    def filling(temp: Path, parts: Any, fsync: bool) -> int:
        with lock:
            state["writes"] += 1
            full = state["armed"] and state["writes"] > room
        if full:
            temp.write_bytes(b"\xff\xd8 partial")  # a real full disk leaves a partial temp file
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(temp, parts, fsync)

    monkeypatch.setattr(writer, "_write_file", filling)

    assert harvest(*args) == EXIT_DISK_FULL
    message = error_line(capsys.readouterr().err)
    assert "full" in message.lower()
    status = assert_consistent(out)
    written = Snapshot.of(out).files
    assert len(written) == room, "the files written before the disk filled are kept..."
    assert list(status.values()).count("done") == room, "...and recorded as done"
    for name in written:
        with Image.open(out / name) as im:
            im.load()  # whole, not truncated
    assert "claimed" in status.values(), "the rest is still to do"

    state["armed"] = False  # space freed
    assert harvest(*args) == EXIT_OK
    status = assert_consistent(out)
    assert set(status) == keyed.truth("sunset"), "every photo, exactly once"
    assert "claimed" not in status.values()
    assert "failed" not in status.values()
    after = Snapshot.of(out).files
    assert {name: after.get(name) for name in written} == written, "earlier files untouched"


@pytest.fixture
def store_fills_up(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The disk fills under the store: SQLite answers SQLITE_FULL (max_page_count) once armed.

    "commit": a store opened for writing may grow by two pages, so a search's claims no longer
    fit; "flush": the first batch of download outcomes no longer fits.
    """
    plan: dict[str, Any] = {"when": "commit", "armed": True}
    real_connect, real_flush = store_schema.connect, store_module.Store.flush

    def connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
        db = real_connect(path, read_only=read_only)
        if plan["armed"] and plan["when"] == "commit" and not read_only:
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            db.execute(f"PRAGMA max_page_count = {pages + 2}")
        return db

    def flush(self: store_module.Store) -> int:
        if plan["armed"] and plan["when"] == "flush" and self._outcomes:
            pages = self._db.execute("PRAGMA page_count").fetchone()[0]
            self._db.execute(f"PRAGMA max_page_count = {pages}")
        return real_flush(self)

    monkeypatch.setattr(store_module, "connect", connect)
    monkeypatch.setattr(store_module.Store, "flush", flush)
    return plan


@pytest.mark.parametrize("when", ["commit", "flush"])
def test_full_disk_under_the_store_exit_4_nothing_lost(
    when: str,
    store_fills_up: dict[str, Any],
    keyed: ThreadedEmulator,
    prior: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    keywords = (*KEYWORDS, "party")  # the finished harvest, and one keyword more
    args = run_args(keyed, write_queries(prior.parent / "q.txt", keywords), prior)
    before = Snapshot.of(prior)
    store_fills_up["when"] = when

    assert harvest(*args) == EXIT_DISK_FULL
    message = error_line(capsys.readouterr().err)
    assert "full" in message
    after = Snapshot.of(prior)
    assert set(before.photos) <= set(after.photos), "every photo harvested before is kept"
    assert after.files.items() >= before.files.items()

    store_fills_up["armed"] = False
    assert harvest(*args) == EXIT_OK
    status = assert_consistent(prior)  # files written but not recorded were redone in place
    assert set(status) == set().union(*(keyed.truth(kw) for kw in keywords)), "exactly once"
    assert "claimed" not in status.values()
    assert Snapshot.of(prior).files.items() >= before.files.items()


# --- status and export -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["empty directory", "no such directory", "a file"])
def test_status_and_export_without_a_harvest(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    if kind == "empty directory":
        out.mkdir()
    elif kind == "a file":
        out.write_text("not a harvest")
    commands: list[list[str | Path]] = [["status", out], ["export", out, "--format", "csv"]]
    for command in commands:
        assert harvest(*command) == EXIT_USAGE
        captured = capsys.readouterr()
        message = only_line(captured.err)
        assert str(out) in message
        assert "no harvest" in message
        assert captured.out == ""
    assert out.exists() == (kind != "no such directory"), "nothing created"
    assert not (out / STORE).exists()


def test_status_of_a_harvest(harvested: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = Snapshot.of(harvested)
    assert harvest("status", harvested) == EXIT_OK
    table = capsys.readouterr().out.splitlines()
    done = dict(store_rows(harvested, "SELECT status, COUNT(*) FROM photos GROUP BY status"))
    total = next(line for line in table if line.startswith("TOTAL")).split()
    assert str(done["done"]) in total
    assert {line.split()[0] for line in table[1:] if line[:1].strip()} >= {*KEYWORDS, "TOTAL"}
    assert Snapshot.of(harvested) == before


def read_export(text: str, fmt: str) -> list[dict[str, Any]]:
    if fmt == "jsonl":
        return [orjson.loads(line) for line in text.splitlines()]
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        rows.append(
            {
                **row,
                "license": int(row["license"]),
                "date_upload": int(row["date_upload"]),
                "keywords": row["keywords"].split("|"),
                "path": row["path"] or None,
            }
        )
    return rows


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize("to_file", [False, True], ids=["stdout", "file"])
def test_export_after_a_run(
    fmt: str,
    to_file: bool,
    emu: ThreadedEmulator,
    harvested: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = tmp_path / f"photos.{fmt}"
    extra: list[str | Path] = ["--output", target] if to_file else []
    assert harvest("export", harvested, "--format", fmt, *extra) == EXIT_OK
    text = target.read_text(encoding="utf-8") if to_file else capsys.readouterr().out
    rows = read_export(text, fmt)

    truth = {kw: emu.truth(kw) for kw in KEYWORDS}
    by_id = {row["id"]: row for row in rows}
    assert len(by_id) == len(rows), "one row per photo"
    assert set(by_id) == truth["sunset"] | truth["tokyo"]
    assert {row["status"] for row in rows} == {"done", "skipped"}
    for pid, row in by_id.items():
        assert {"id", "owner", "license", "dateupload", "keywords", "status", "path"} <= set(row)
        assert row["owner"].endswith(tuple(f"@N0{n}" for n in range(10)))
        assert row["license"] in range(17)
        assert row["date_upload"] > 1_000_000_000
        assert set(row["keywords"]) == {kw for kw in KEYWORDS if pid in truth[kw]}
        if row["status"] == "done":
            assert (harvested / row["path"]).is_file()
            assert Path(row["path"]).name.startswith(f"{pid}_")
        else:
            assert row["path"] is None
    assert any(len(row["keywords"]) == 2 for row in rows), "a photo both keywords found"


def test_export_to_an_unwritable_file(
    harvested: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "no such dir" / "photos.jsonl"
    assert harvest("export", harvested, "--output", target) != EXIT_OK
    message = only_line(capsys.readouterr().err)
    assert str(target) in message
