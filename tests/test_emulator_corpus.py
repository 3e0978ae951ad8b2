"""The synthetic corpus: determinism, skew, search semantics, and the /_emulator/ ground truth."""

from __future__ import annotations

import aiohttp
import numpy as np

from harvester.emulator import RunningEmulator
from harvester.emulator.corpus import build_corpus
from harvester.emulator.corpus_text import description, tags, title
from harvester.emulator.vocabulary import NEGATIVE_TERMS


def test_same_seed_same_corpus_other_seed_differs() -> None:
    a, b, c = build_corpus(3, 4000), build_corpus(3, 4000), build_corpus(4, 4000)
    for name in a.cols:
        assert np.array_equal(a.cols[name], b.cols[name]), name
    assert np.array_equal(a.kw_photos, b.kw_photos)
    assert [title(a, r) for r in range(50)] == [title(b, r) for r in range(50)]
    assert not np.array_equal(a.cols["id"], c.cols["id"])


def test_corpus_shape() -> None:
    c = build_corpus(0, 20_000)
    up, ids = c.cols["upload"], c.cols["id"]
    assert np.all(np.diff(up) >= 0)
    assert np.all(np.diff(ids) > 0)
    years = (up - up.min()) // (365 * 86400)
    counts = np.bincount(years)
    assert counts[-2] > 3 * counts[0]  # uploads grow over the years
    gaps = np.diff(up)
    assert np.mean(gaps < 60) > 0.2  # bursts: many uploads within a minute of the previous
    assert 0.5 < np.mean(c.cols["license"] == 0) < 0.8  # mostly All Rights Reserved
    assert 0.2 < c.cols["has_geo"].mean() < 0.3
    assert 0.08 < c.cols["frame"].mean() < 0.12
    assert (c.cols["dup_group"] >= 0).sum() > 200
    longest = np.maximum(c.cols["o_w"], c.cols["o_h"])
    assert longest.max() <= 6000
    assert (longest < 500).any()
    assert (c.cols["o_fmt"] == 1).any()
    assert (c.cols["o_fmt"] == 2).any()


def test_keyword_tiers_give_three_orders_of_magnitude() -> None:
    c = build_corpus(0, 50_000)
    n = {w: c.text_rows(w).size for w in ("photo", "travel", "sunset")}
    assert 0.85 * 50_000 < n["photo"] < 0.95 * 50_000
    assert 0.07 * 50_000 < n["travel"] < 0.11 * 50_000
    assert 0.006 * 50_000 < n["sunset"] < 0.012 * 50_000
    assert all(c.text_rows(w).size > 0 for w in NEGATIVE_TERMS[:10])


def test_text_index_agrees_with_rendered_text() -> None:
    c = build_corpus(1, 3000)
    rows, checked = range(0, 3000, 37), 0
    for row in rows:
        words = set(
            (title(c, row) + " " + description(c, row) + " " + tags(c, row))
            .lower()
            .replace("<b>", " ")
            .replace("</b>", " ")
            .replace("&amp;", " ")
            .replace("&#8230;", " ")
            .replace("-", " ")
            .split()
        )
        for kw in c.keywords_of(row):
            assert kw in words
            assert row in set(c.text_rows(kw).tolist())
            checked += 1
    assert checked >= len(rows), f"{checked} keywords in {len(rows)} rows: about one a row or more"


async def test_truth_semantics(emulator: RunningEmulator) -> None:
    photo = set(await emulator.truth(text="photo"))
    canon = set(await emulator.truth(text="canon"))
    both = set(await emulator.truth(text="photo canon"))
    minus = set(await emulator.truth(text="photo -canon"))
    assert both == photo & canon
    assert minus == photo - canon
    assert set(await emulator.truth(text="PHOTO")) == photo
    any_tags = set(await emulator.truth(tags="photo,canon"))
    all_tags = set(await emulator.truth(tags="photo,canon", tag_mode="all"))
    tag_photo, tag_canon = (
        set(await emulator.truth(tags="photo")),
        set(await emulator.truth(tags="canon")),
    )
    assert any_tags == tag_photo | tag_canon
    assert all_tags == tag_photo & tag_canon
    assert tag_photo < photo  # tags only: a keyword in a title alone does not count
    up = emulator.corpus.cols["upload"]
    t = int(up[100])
    inclusive = await emulator.truth(min_upload_date=t, max_upload_date=t)
    assert emulator.corpus.photo_id(100) in inclusive
    mysql = await emulator.truth(min_upload_date="2004-01-01 00:00:00", max_upload_date=t)
    assert len(mysql) >= 101


async def test_control_endpoints(emulator: RunningEmulator) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(emulator.base_url + "/_emulator/vocabulary") as r:
            vocab = {k["word"]: k for k in (await r.json())["keywords"]}
        async with s.get(emulator.base_url + "/_emulator/truth", params={"text": "travel"}) as r:
            truth = await r.json()
        dup = int(np.flatnonzero(emulator.corpus.cols["dup_group"] >= 0)[0])
        pid = emulator.corpus.photo_id(dup)
        async with s.get(f"{emulator.base_url}/_emulator/photo/{pid}") as r:
            photo = await r.json()
    assert vocab["travel"]["text_count"] == truth["count"] == len(truth["ids"])
    assert vocab["travel"]["tag_count"] <= vocab["travel"]["text_count"]
    assert pid in photo["duplicates"]
    assert len(photo["duplicates"]) >= 2
    assert "m" in photo["sizes"]
