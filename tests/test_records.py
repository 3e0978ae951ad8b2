"""The shared records' helpers: the reason tally key used by the engine, store and downloader."""

from __future__ import annotations

import pytest

from harvester.records import PhotoStatus, reason_head, reason_key


@pytest.mark.parametrize(
    ("reason", "head"),
    [
        ("too small: 400x300 < 500", "too small"),
        ("download: not found (http 404)", "download"),
        ("not found (http 404)", "not found"),
        ("not an image (text/html, 512 bytes)", "not an image"),
        ("http 403", "http 403"),
        ("  spaced : out", "spaced"),
        ("", "unknown"),
        (None, "unknown"),
        (": no head", "unknown"),
    ],
)
def test_reason_head_table(reason: str | None, head: str) -> None:
    assert reason_head(reason) == head


def test_reason_key_prefixes_the_status() -> None:
    assert reason_key(PhotoStatus.SKIPPED, "too small: 1x1 < 500") == "skipped: too small"
    assert reason_key("failed", None) == "failed: unknown"
