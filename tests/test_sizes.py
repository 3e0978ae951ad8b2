"""Size choice as tables: which url_X a photo gets under each policy, and when it is skipped."""

from __future__ import annotations

from dataclasses import replace

import pytest

from harvester.config import SizePolicy, SizePreference
from harvester.images.sizes import (
    NoSize,
    SizeChoice,
    choose_size,
    known_long_side,
    original_variant,
)
from harvester.records import PhotoRecord, SizeVariant

HOST = "http://127.0.0.1:8410"

#: Each label with dimensions of a 4:3 landscape photo whose original is 4000x3000.
DIMS = {
    "s": (240, 180),
    "m": (500, 375),
    "z": (640, 480),
    "c": (800, 600),
    "l": (1024, 768),
    "h": (1600, 1200),
    "k": (2048, 1536),
    "o": (4000, 3000),
}


def variant(label: str, dims: tuple[int, int] | None = None) -> SizeVariant:
    """A size as the search returns it, on the test host."""
    width, height = dims or DIMS[label]
    suffix = {"m": "", "l": "_b", "o": "_o"}.get(label, f"_{label}")
    secret = "0ffe1234ab" if label != "o" else "a1b2c3d4e5"
    return SizeVariant(
        label=label, url=f"{HOST}/65535/123_{secret}{suffix}.jpg", width=width, height=height
    )


def photo(
    *labels: str,
    server: str = "65535",
    original_secret: str | None = None,
    original_format: str | None = None,
    o_width: int | None = None,
    o_height: int | None = None,
) -> PhotoRecord:
    """A record with the given url_X sizes (and, if given, what builds an original's URL)."""
    return PhotoRecord(
        id="123",
        owner="1@N01",
        secret="0ffe1234ab",
        server=server,
        original_secret=original_secret,
        original_format=original_format,
        o_width=o_width,
        o_height=o_height,
        sizes=tuple(variant(label) for label in labels),
    )


LARGE = SizePolicy()
SMALLER = SizePolicy(allow_smaller=True)
K2048 = SizePolicy(prefer=SizePreference.LARGE2048)
ORIG = SizePolicy(prefer=SizePreference.ORIGINAL)


@pytest.mark.parametrize(
    ("labels", "policy", "expected"),
    [
        (("s", "m", "z", "c", "l", "o"), LARGE, "l"),
        (("s", "m", "z", "c", "l"), LARGE, "l"),
        (("s", "m", "z", "c", "o"), LARGE, "o"),
        (("s", "m", "z", "c"), SMALLER, "c"),
        (("s", "m", "z"), SMALLER, "z"),
        (("s", "m", "z", "c", "l", "h", "k", "o"), K2048, "k"),
        (("s", "m", "z", "c", "l", "h", "o"), K2048, "h"),
        (("s", "m", "z", "c", "l", "o"), K2048, "l"),
        (("s", "m", "c", "o"), K2048, "o"),
        (("s", "m", "z", "c", "l", "h", "k", "o"), ORIG, "o"),
        (("s", "m", "z", "c", "l", "h", "k"), ORIG, "k"),
        (("l", "h", "k", "o"), SizePolicy(max_side=1600), "h"),
        (("l", "o"), SizePolicy(max_side=1600), "o"),
        (("l",), SizePolicy(max_side=1600), "l"),
        (("c", "l"), SizePolicy(max_side=1600, allow_smaller=True), "l"),
    ],
)
def test_choice_by_policy(labels: tuple[str, ...], policy: SizePolicy, expected: str) -> None:
    choice = choose_size(photo(*labels), policy)
    assert isinstance(choice, SizeChoice)
    assert choice.label == expected
    assert choice.url == variant(expected).url
    assert (choice.width, choice.height) == DIMS[expected]


@pytest.mark.parametrize(
    ("labels", "policy", "reason_start"),
    [
        ((), LARGE, "no size"),
        (("s", "m", "z", "c"), LARGE, "no size: no large or original"),
        (("s",), SMALLER, "too small: 240 px < 500"),
    ],
)
def test_skips_are_outcomes(labels: tuple[str, ...], policy: SizePolicy, reason_start: str) -> None:
    choice = choose_size(photo(*labels), policy)
    assert isinstance(choice, NoSize)
    assert choice.reason.startswith(reason_start)


def test_small_original_is_skipped_not_downloaded() -> None:
    record = replace(photo("s", "m"), sizes=(variant("m", (400, 300)), variant("o", (480, 360))))
    assert choose_size(record, SMALLER) == NoSize("too small: 480 px < 500")


def test_below_min_side_gives_way_to_a_bigger_size() -> None:
    # A panorama-ish original known to be tiny on its long side loses to a smaller label
    # whose size is unknown but nominally above min_side.
    record = replace(photo(), sizes=(variant("z", (0, 0)), variant("o", (450, 200))))
    choice = choose_size(record, SMALLER)
    assert isinstance(choice, SizeChoice)
    assert choice.label == "z"
    assert choice.long_side is None


def test_min_side_zero_accepts_anything() -> None:
    choice = choose_size(photo("s"), SizePolicy(min_side=0, allow_smaller=True))
    assert isinstance(choice, SizeChoice)
    assert choice.label == "s"


def test_original_built_from_originalsecret_on_the_record_host() -> None:
    record = photo(
        "m", "z", original_secret="deadbeef01", original_format="png", o_width=3000, o_height=6000
    )
    choice = choose_size(record, LARGE)
    assert choice == SizeChoice(
        photo_id="123", label="o", url=f"{HOST}/65535/123_deadbeef01_o.png", width=3000, height=6000
    )


def test_original_built_on_flickr_cdn_when_no_other_url() -> None:
    record = photo(original_secret="deadbeef01", original_format="jpg")
    built = original_variant(record)
    assert built is not None
    assert built.url == "https://live.staticflickr.com/65535/123_deadbeef01_o.jpg"
    assert (built.width, built.height) == (0, 0)


def test_url_o_wins_over_a_built_original() -> None:
    record = photo("o", original_secret="deadbeef01", original_format="png")
    built = original_variant(record)
    assert built is not None
    assert built.url == variant("o").url


@pytest.mark.parametrize(
    ("secret", "fmt", "server"),
    [
        ("../../etc", "jpg", "65535"),
        ("deadbeef01", "jpg?x=1", "65535"),
        ("deadbeef01", "exe", "65535"),
        ("deadbeef01", "jpg", "65535/../x"),
        (None, "jpg", "65535"),
        ("deadbeef01", None, "65535"),
    ],
)
def test_original_never_built_from_odd_fields(
    secret: str | None, fmt: str | None, server: str
) -> None:
    record = photo("m", original_secret=secret, original_format=fmt, server=server)
    assert original_variant(record) is None


@pytest.mark.parametrize(
    ("label", "dims", "expected"),
    [("l", (1024, 683), 1024), ("l", (683, 1024), 1024), ("c", (0, 0), 800), ("o", (0, 0), None)],
)
def test_known_long_side(label: str, dims: tuple[int, int], expected: int | None) -> None:
    assert known_long_side(variant(label, dims)) == expected
