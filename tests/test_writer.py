"""Writer: shard layout, safe names, validation of hostile records, atomic writes, cleanup."""

from __future__ import annotations

import errno
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harvester.config import WritePolicy
from harvester.exceptions import DiskFullError, StoreError, UnsafeRecordError
from harvester.images import writer
from harvester.images.writer import (
    cleanup_temp_files,
    clear_path_cache,
    file_name,
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
    ("field", "value"),
    [
        ("id", ".."),
        ("id", ""),
        ("id", "1/2"),
        ("id", "1\x00"),
        ("id", " 1"),
        ("secret", ".."),
        ("secret", "ab\\cd"),
        ("secret", "ab\ncd"),
        ("secret", "c36ba74681/"),
        ("server", "100/.."),
        ("server", "-1"),
        ("owner", ".."),
        ("owner", "23812473@N00/"),
        ("owner", "23812473@n00"),
        ("owner", "/23812473@N00"),
        ("owner", "23812473@N00\x00"),
        ("owner", "23812473@N00\u2215x"),  # DIVISION SLASH: no look-alike separator either
    ],
)
def test_file_name_rejects_every_hostile_field(tmp_path: Path, field: str, value: str) -> None:
    fields: dict[str, Any] = {field: value}
    hostile = replace(RECORD, **fields)
    with pytest.raises(UnsafeRecordError):
        file_name(hostile)
    with pytest.raises(UnsafeRecordError):
        photo_path(tmp_path, "kw", 0, hostile)
    assert list(tmp_path.rglob("*")) == []


def test_an_accepted_file_name_is_one_plain_component() -> None:
    name = file_name(replace(RECORD, id="9" * 20, secret="f" * 40, owner="1@N9999"))
    assert name == Path(name).name
    assert set(name) <= set("0123456789abcdef_@N.jpg")
    assert ".." not in name


def test_a_shard_directory_linked_out_of_out_is_refused_every_time(tmp_path: Path) -> None:
    out, outside = tmp_path / "out", tmp_path / "elsewhere"
    (out / "kw").mkdir(parents=True)
    outside.mkdir()
    (out / "kw" / "00001").symlink_to(outside, target_is_directory=True)
    for _ in range(2):  # a failure is not cached
        with pytest.raises(UnsafeRecordError, match="escapes"):
            photo_path(out, "kw", 0, RECORD)
    (out / "kw" / "00001").unlink()
    assert photo_path(out, "kw", 0, RECORD) == out / "kw" / "00001" / file_name(RECORD)


def test_a_keyword_directory_linked_out_of_out_is_refused(tmp_path: Path) -> None:
    out, outside = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    outside.mkdir()
    (out / "kw").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafeRecordError):
        photo_path(out, "kw", 0, RECORD)


def test_a_link_that_stays_inside_out_is_allowed(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "kw").symlink_to(tmp_path / "real", target_is_directory=True)
    path = write_photo(tmp_path, "kw", 0, RECORD, [b"x"], FAST)
    assert (tmp_path / "real" / "00001" / path.name).read_bytes() == b"x"


def test_a_shard_linked_away_after_its_check_is_seen_once_the_cache_is_cleared(
    tmp_path: Path,
) -> None:
    """The documented trade-off of photo_path's cache: one resolution per shard directory."""
    out, outside = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    outside.mkdir()
    photo_path(out, "kw", 0, RECORD)  # checked (and cached) before the directory exists
    (out / "kw").mkdir()
    (out / "kw" / "00001").symlink_to(outside, target_is_directory=True)
    assert photo_path(out, "kw", 1, replace(RECORD, id="2")).parent == out / "kw" / "00001"
    clear_path_cache()
    with pytest.raises(UnsafeRecordError):
        photo_path(out, "kw", 1, replace(RECORD, id="2"))


def test_photo_path_is_the_same_path_with_and_without_the_cache(tmp_path: Path) -> None:
    first = photo_path(tmp_path, "São Paulo", 1500, RECORD)
    clear_path_cache()
    assert photo_path(tmp_path, "São Paulo", 1500, RECORD) == first
    assert first == tmp_path / safe_dirname("São Paulo") / "00002" / file_name(RECORD)


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
