"""Writer: shard layout, safe names, validation of hostile records, atomic writes, cleanup."""

from __future__ import annotations

import errno
import os
from dataclasses import replace
from pathlib import Path

import pytest

from harvester.config import WritePolicy
from harvester.exceptions import DiskFullError, StoreError, UnsafeRecordError
from harvester.images import writer
from harvester.images.writer import (
    cleanup_temp_files,
    photo_path,
    safe_dirname,
    shard_dir,
    write_atomic,
)
from harvester.records import PhotoRecord

RECORD = PhotoRecord(id="315157387", owner="23812473@N00", secret="c36ba74681", server="100")
FAST = WritePolicy(fsync=False)


def write_photo(
    out: Path,
    keyword: str,
    seq: int,
    record: PhotoRecord,
    parts: list[bytes | memoryview],
    policy: WritePolicy,
) -> Path:
    """Place and write one photo, as the engine does: photo_path (validates), then write_atomic."""
    path = photo_path(out, keyword, seq, record)
    write_atomic(path, parts, policy)
    return path


@pytest.mark.parametrize(
    ("seq", "expected"),
    [(0, "00001"), (999, "00001"), (1000, "00002"), (2499, "00003"), (99_999_999, "100000")],
)
def test_shard_dir_table(seq: int, expected: str) -> None:
    assert shard_dir(seq) == expected


def test_original_layout(tmp_path: Path) -> None:
    path = photo_path(tmp_path, "Argentina", 14_000, RECORD)
    assert path == tmp_path / "Argentina" / "00015" / "315157387_c36ba74681_100_23812473@N00.jpg"


def test_directory_rule_over_2500_files_is_stable(tmp_path: Path) -> None:
    for seq in range(2500):
        record = replace(RECORD, id=str(10_000 + seq))
        write_photo(tmp_path, "paris", seq, record, [b"x"], FAST)
    dirs = sorted(p.name for p in (tmp_path / "paris").iterdir())
    assert dirs == ["00001", "00002", "00003"]
    counts = [len(list((tmp_path / "paris" / d).iterdir())) for d in dirs]
    assert counts == [1000, 1000, 500]
    again = photo_path(tmp_path, "paris", 1234, replace(RECORD, id=str(11_234)))
    assert again.exists()
    assert again.parent.name == "00002"


@pytest.mark.parametrize(
    "hostile",
    [
        replace(RECORD, owner="../../x"),
        replace(RECORD, owner="123@N00/../../x"),
        replace(RECORD, secret="ab/cd"),
        replace(RECORD, secret="ABCDEF"),
        replace(RECORD, server=".."),
        replace(RECORD, server="1/2"),
        replace(RECORD, id="12a"),
        replace(RECORD, id="١٢٣"),  # Arabic-Indic digits are \d in Unicode regexes, not Flickr ids
        replace(RECORD, original_secret="../x"),
        replace(RECORD, original_format="jpg/../../x"),
    ],
)
def test_hostile_records_are_rejected_without_writing(tmp_path: Path, hostile: PhotoRecord) -> None:
    with pytest.raises(UnsafeRecordError):
        write_photo(tmp_path, "kw", 0, hostile, [b"data"], FAST)
    assert list(tmp_path.rglob("*")) == []


@pytest.mark.parametrize(
    "keyword",
    [
        "../etc",
        "a/b",
        "a\\b",
        "CON",
        "con.txt",
        "trailing. ",
        ".hidden",
        "",
        "tab\there",
        "x" * 400,
        "日本" * 100,
    ],
)
def test_keyword_directory_names_are_safe(keyword: str) -> None:
    name = safe_dirname(keyword)
    assert name
    assert "/" not in name
    assert "\\" not in name
    assert not name.startswith(".")
    assert not name.endswith((".", " "))
    assert name.split(".")[0].lower() not in {"con", "prn", "aux", "nul"}
    assert len(name.encode()) <= writer.MAX_DIRNAME_BYTES + 9
    assert all(ord(c) >= 32 for c in name)


def test_sanitised_names_do_not_collide() -> None:
    assert safe_dirname("a/b") != safe_dirname("a\\b")
    assert safe_dirname("paris") == "paris"
    assert safe_dirname("São Paulo") == "São Paulo"
    decomposed = "Sa\u0303o Paulo"
    assert safe_dirname(decomposed) != safe_dirname("São Paulo")  # changed by NFC: hashed


def test_atomic_write_leaves_no_temp_and_writes_all_parts(tmp_path: Path) -> None:
    parts: list[bytes | memoryview] = [b"\xff\xd8", memoryview(b"abc" * 1000), b"\xff\xd9"]
    path = write_photo(tmp_path, "kw", 5, RECORD, parts, WritePolicy(fsync=True, fsync_dir=True))
    assert path.read_bytes() == b"".join(bytes(p) for p in parts)
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_disk_full_is_a_distinct_error_and_removes_the_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, parts: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "writev", full)  # the writer's os is this module
    with pytest.raises(DiskFullError) as info:
        write_photo(tmp_path, "kw", 0, RECORD, [b"data"], FAST)
    assert isinstance(info.value, StoreError)
    assert list((tmp_path / "kw" / "00001").iterdir()) == []


def test_cleanup_removes_only_dead_writers_temp_files(tmp_path: Path) -> None:
    shard = tmp_path / "kw" / "00001"
    shard.mkdir(parents=True)
    dead = shard / ".1_ab_1_1@N01.jpg.tmp-999999999"
    live = shard / f".2_ab_1_1@N01.jpg.tmp-{os.getppid()}"
    kept = shard / "3_ab_1_1@N01.jpg"
    for p in (dead, live, kept):
        p.write_bytes(b"x")
    assert cleanup_temp_files(tmp_path) == 1
    assert not dead.exists()
    assert live.exists()
    assert kept.exists()
