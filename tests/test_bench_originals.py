"""bench.originals: each variant changes one setting, and the table reads the changes right."""

from __future__ import annotations

from dataclasses import fields

from bench.originals import DEFAULT, VARIANTS, report


def test_every_variant_changes_exactly_one_setting() -> None:
    names = iter(VARIANTS)
    assert VARIANTS[next(names)] == DEFAULT  # the first row is the defaults
    for name in names:
        changed = [
            f.name
            for f in fields(DEFAULT)
            if getattr(VARIANTS[name], f.name) != getattr(DEFAULT, f.name)
        ]
        assert len(changed) == 1, (name, changed)


def test_the_table_shows_each_row_against_the_defaults() -> None:
    first, second = list(VARIANTS)[:2]
    table = {
        first: {"jpeg": {"n": 2, "cpu_ms": 50.0, "psnr_db": 39.5}},
        second: {"jpeg": {"n": 2, "cpu_ms": 45.0, "psnr_db": 39.0}},
    }
    lines = report(table).splitlines()
    assert lines[2] == f"| {first} | 50.0 (+0%) | 39.50 (+0.00) | - | - |"
    assert lines[3] == f"| {second} | 45.0 (-10%) | 39.00 (-0.50) | - | - |"
