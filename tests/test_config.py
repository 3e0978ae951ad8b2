"""The config tree: every `harvest run` flag lands on its config field, defaults are RunConfig's."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from harvester.cli import RUN_OPTIONS, build_parser, run_config
from harvester.config import (
    BundledEmulator,
    OutputFormat,
    RunConfig,
    ShardSpec,
    SizePreference,
)
from harvester.exceptions import ConfigError
from harvester.records import DateField

#: flag (and its argument) → the config field it must set, by dotted path, and the value there.
#: Written out independently of cli.RUN_OPTIONS: a flag wired to the wrong field fails here.
FLAG_TABLE: list[tuple[list[str], str, Any]] = [
    (["--emulator"], "emulator", BundledEmulator()),
    (["--emulator", "--emulator-photos", "77"], "emulator.photos", 77),
    (["--emulator", "--emulator-profile", "hostile"], "emulator.profile", "hostile"),
    (["--emulator", "--emulator-seed", "9"], "emulator.seed", 9),
    (["--flickr-url", "http://127.0.0.1:1/rest/"], "api.rest_url", "http://127.0.0.1:1/rest/"),
    (["--calls-per-hour", "1234.5"], "api.calls_per_hour", 1234.5),
    (["--sources", "mine.toml"], "sources_path", Path("mine.toml")),
    (["--metadata-only"], "metadata_only", True),
    (["--retry-failed"], "retry_failed", True),
    (["--workers", "3"], "workers", 3),
    (["--shard", "2/5"], "shard", ShardSpec(index=1, count=5)),
    (["--ray", "auto"], "cluster.address", "auto"),
    (["--ray-cpus", "3"], "cluster.local_cpus", 3),
    (["--ray-flush-s", "2.5"], "cluster.flush_s", 2.5),
    (["--ray-attempts", "5"], "cluster.max_attempts", 5),
    (["--ray-batch", "100"], "cluster.batch_photos", 100),
    (["--window-target", "321"], "planner.window_target", 321),
    (["--date-field", "taken"], "search.date_field", DateField.TAKEN),
    (["--send-negatives"], "search.send_negatives", True),
    (["--size", "original"], "sizes.prefer", SizePreference.ORIGINAL),
    (["--max-side", "2048"], "sizes.max_side", 2048),
    (["--max-side", "2048"], "images.max_side", 2048),
    (["--min-side", "64"], "sizes.min_side", 64),
    (["--min-side", "64"], "images.min_side", 64),
    (["--allow-smaller"], "sizes.allow_smaller", True),
    (["--no-frame-strip"], "images.strip_frames", False),
    (["--concurrency", "5"], "fetch.concurrency", 5),
    (["--image-rate", "12.5"], "fetch.rate_per_s", 12.5),
    (["--threads", "7"], "threads", 7),
    (["--no-fsync"], "write.fsync", False),
    (["--plain"], "plain", True),
    (["--output-format", "webdataset"], "output.format", OutputFormat.WEBDATASET),
]


def _parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["run", "q.txt", *argv])


def _field(cfg: RunConfig, path: str) -> Any:
    value: Any = cfg
    for part in path.split("."):
        value = getattr(value, part)
    return value


@pytest.mark.parametrize(("argv", "path", "expected"), FLAG_TABLE)
def test_flag_sets_its_config_field(argv: list[str], path: str, expected: Any) -> None:
    assert _field(run_config(_parse(*argv)), path) == expected
    if path != "emulator":  # the table's value must differ from the default to prove anything
        default = RunConfig(queries_path=Path(), out_dir=Path(), emulator=BundledEmulator())
        assert _field(default, path) != expected


def test_every_run_flag_is_in_the_table() -> None:
    run = next(
        a
        for a in build_parser()._subparsers._group_actions  # type: ignore[union-attr]
        if isinstance(a, argparse._SubParsersAction)
    ).choices["run"]
    flags = {f for action in run._actions for f in action.option_strings if f.startswith("--")}
    tabled = {argv[-1] if argv[-1].startswith("--") else argv[-2] for argv, _, _ in FLAG_TABLE}
    assert flags - {"--help", "--out", "--store"} == tabled  # the two places, tested below
    assert {opt.flag for opt in RUN_OPTIONS} == tabled


@pytest.mark.parametrize(
    ("argv", "out_dir", "target"),
    [
        ([], Path("out"), None),
        (["--out", "file:///data/q"], Path("/data/q"), None),
        (["--out", "/data/q", "--store", "/state"], Path("/state"), "/data/q"),
        (["--out", "s3://bucket/q", "--store", "/state"], Path("/state"), "s3://bucket/q"),
    ],
)
def test_out_and_store_set_the_stores_directory_and_the_target(
    argv: list[str], out_dir: Path, target: str | None
) -> None:
    cfg = run_config(_parse(*argv))
    assert (cfg.out_dir, cfg.output.target) == (out_dir, target)


def test_a_url_out_without_a_store_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="give --store DIR"):
        run_config(_parse("--out", "gs://bucket/q"))


def test_a_flag_changes_only_its_own_fields() -> None:
    default = RunConfig(queries_path=Path("q.txt"), out_dir=Path("out"))
    cfg = run_config(_parse("--image-rate", "12.5"))
    assert cfg.fetch.concurrency == default.fetch.concurrency
    assert cfg.images == default.images
    assert cfg.sizes == default.sizes


def test_bare_run_is_run_configs_defaults() -> None:
    cfg = run_config(_parse())
    assert cfg == RunConfig(queries_path=Path("q.txt"), out_dir=Path("out"))
    assert cfg.emulator is None


def test_emulator_options_need_emulator() -> None:
    with pytest.raises(ConfigError, match="--emulator"):
        run_config(_parse("--emulator-photos", "5"))


def test_help_shows_configs_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parse("--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "photos a new date window aims for (default: 4000)" in text
    assert "size to download first (default: large)" in text


def test_top_level_help_is_for_users(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    assert "research image datasets" in text
    for verb in ("run", "status", "export", "merge", "emulate"):
        assert f"    {verb} " in text
