"""The pure side of sources: the built-in map, sources files, and back-fill plans, as tables."""

from __future__ import annotations

import pytest

from harvester.dataset.sources import (
    BUILTIN_SOURCES,
    NameKind,
    SourceMap,
    UserName,
    batch_changes,
    file_owners,
    parse_sources,
    plan_backfill,
)
from harvester.exceptions import ConfigError, SourcesFileError
from harvester.records import PhotoRecord


def test_the_builtin_map_is_the_reports_ten_sources_and_fifteen_owners() -> None:
    nsids = [n for ns in BUILTIN_SOURCES.values() for n in ns]
    assert len(BUILTIN_SOURCES) == 10
    assert len(nsids) == len(set(nsids)) == 15
    assert SourceMap.builtin().source_of("99350217@N03") == "katmai_nps"
    assert SourceMap.builtin().source_of("24662369@N07") == "nasa"


@pytest.mark.parametrize(
    ("text", "kind", "key", "alias_url"),
    [
        ("24662369@N07", NameKind.NSID, "24662369@N07", None),
        ("KatmaiNPS", NameKind.NAME, "katmainps", "https://www.flickr.com/photos/KatmaiNPS/"),
        ("NASA HQ PHOTO", NameKind.NAME, "nasa hq photo", None),  # spaces: no alias
        (
            "https://www.flickr.com/photos/gsfc/",
            NameKind.URL,
            "https://www.flickr.com/photos/gsfc/",
            "https://www.flickr.com/photos/gsfc/",
        ),
        (
            "flickr.com/photos/gsfc",
            NameKind.URL,
            "flickr.com/photos/gsfc",
            "https://flickr.com/photos/gsfc",
        ),
        ("24662369@n07", NameKind.NAME, "24662369@n07", None),  # not an NSID's shape
    ],
)
def test_names_are_told_apart_by_their_shape(
    text: str, kind: NameKind, key: str, alias_url: str | None
) -> None:
    name = UserName(text)
    assert (name.kind, name.key, name.alias_url) == (kind, key, alias_url)


def test_a_sources_file_parses_in_file_order() -> None:
    spec = parse_sources(
        '# my sources\nmuseum = ["12345678@N01", "museumuser"]\narchive = "archive-alias"\n',
        "s.toml",
    )
    assert [(s, [n.text for n in names]) for s, names in spec.sources] == [
        ("museum", ["12345678@N01", "museumuser"]),
        ("archive", ["archive-alias"]),
    ]
    assert [n.text for n in spec.names] == ["12345678@N01", "museumuser", "archive-alias"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('museum = ["a"', "not valid TOML: Unclosed array"),
        ("museum = [\n'a',\n= 3]", "not valid TOML"),
        ("museum = []", "museum: expected a list"),
        ("museum = 3", "museum: expected a list"),
        ("[museum]\nx = 1", "museum: expected a list"),
        ('museum = ["a", 4]', "museum: 4 is not an NSID"),
        ('museum = ["  "]', "is not an NSID"),
        ('"My Museum" = ["a"]', "source name 'My Museum'"),
        ('flickr = ["a"]', "and not 'flickr'"),
        ('a = ["Same"]\nb = ["same"]', "'same' is listed under a and b"),
    ],
)
def test_a_bad_sources_file_is_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(SourcesFileError, match=r"^s\.toml: ") as caught:
        parse_sources(text, "s.toml")
    assert message in str(caught.value)
    assert isinstance(caught.value, ConfigError)  # exit code 2
    assert "\n" not in str(caught.value).strip()


def test_file_owners_overlay_the_builtin_map_and_name_every_unknown_user() -> None:
    spec = parse_sources('museum = ["MuseumUser", "1@N01"]\nnasa_hq = ["nasahqphoto"]', "s.toml")
    resolved = {"museumuser": "7@N07", "1@N01": "1@N01", "nasahqphoto": "35067687@N04"}
    owners = file_owners(spec, resolved)
    assert owners == {"7@N07": "museum", "1@N01": "museum", "35067687@N04": "nasa_hq"}
    smap = SourceMap.builtin(owners)
    assert smap.source_of("35067687@N04") == "nasa_hq"  # the user's file wins
    assert smap.source_of("24662369@N07") == "nasa"
    assert smap.source_of("5@N05") == "flickr"
    with pytest.raises(SourcesFileError, match=r"'MuseumUser', 'nasahqphoto' \(User not found\)"):
        file_owners(spec, {"1@N01": "1@N01"})


def test_two_names_of_one_owner_under_two_sources_are_refused() -> None:
    spec = parse_sources('a = ["alias-one"]\nb = ["alias-two"]', "s.toml")
    with pytest.raises(SourcesFileError, match=r"'alias-two' \(9@N09\) is also in a"):
        file_owners(spec, {"alias-one": "9@N09", "alias-two": "9@N09"})


def test_apply_sets_only_the_mapped_owners() -> None:
    photos = (
        PhotoRecord(id="1", owner="99350217@N03", secret="a", server="1"),
        PhotoRecord(id="2", owner="5@N05", secret="a", server="1"),
    )
    out = SourceMap.builtin().apply(photos)
    assert [p.source for p in out] == ["katmai_nps", "flickr"]
    assert out[1] is photos[1]


def test_the_digest_changes_with_the_map_only() -> None:
    assert SourceMap.builtin().digest == SourceMap.builtin().digest
    assert SourceMap.builtin().digest != SourceMap.builtin({"1@N01": "x"}).digest


def test_a_backfill_plan_counts_photos_per_source_before_and_after() -> None:
    smap = SourceMap.builtin({"7@N07": "museum"})
    rows = [
        ("99350217@N03", "flickr", 5),  # newly known
        ("7@N07", "flickr", 2),
        ("24662369@N07", "nasa", 4),  # already right
        ("5@N05", "old_label", 1),  # a label no map gives any more: back to flickr
        ("5@N06", "flickr", 10),
    ]
    plan = plan_backfill(rows, smap)
    got = {c.source: (c.now, c.after) for c in plan.counts}
    assert got == {
        "flickr": (17, 11),
        "katmai_nps": (0, 5),
        "nasa": (4, 4),
        "museum": (0, 2),
        "old_label": (1, 0),
    }
    assert plan.changes == 8
    assert [c.source for c in plan.counts] == [
        "flickr",
        "katmai_nps",
        "nasa",
        "museum",
        "old_label",
    ]
    assert plan.render().splitlines()[-1] == "8 photos change source"


def test_batch_changes_lists_only_the_rows_that_change() -> None:
    rows = [(1, "99350217@N03", "flickr"), (2, "24662369@N07", "nasa"), (3, "5@N05", "x")]
    assert batch_changes(rows, SourceMap.builtin()) == [("katmai_nps", 1), ("flickr", 3)]
