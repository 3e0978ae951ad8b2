"""A request's filters, keyset cursor, page size and ids, parsed: pure, no aiohttp.

Anything the pages do not accept is `BadQuery`, which the app answers 400 with its message.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlencode

from harvester.licenses import LICENSES
from harvester.records import PhotoStatus

T = TypeVar("T")
STATUSES: tuple[str, ...] = tuple(PhotoStatus)
LICENCE_IDS = frozenset(lic.id for lic in LICENSES)
MAX_TEXT = 200  # a filter value longer than this is no keyword or source of ours
MAX_ID = 2**63 - 1  # SQLite's integer range: a cursor or id beyond it is no photo


class BadQuery(ValueError):
    """A request whose filter, cursor or id is not one the pages accept (HTTP 400).

    Raised and caught inside the serve room only; its message is shown to the user.
    """


# --- parsing a request ---------------------------------------------------------------------------


def parse_int(text: str, what: str, *, least: int = 0, most: int = MAX_ID) -> int:
    """A whole number in [least, most] written in plain decimal digits, or BadQuery."""
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise BadQuery(f"{what} must be a whole number, got {text[:40]!r}")
    value = int(text)
    if not least <= value <= most:
        raise BadQuery(f"{what} must be between {least} and {most}, got {value}")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Filters:
    """The browse filters; None is "any". The status always applies (stored photos by default)."""

    status: str = PhotoStatus.DONE.value
    keyword: str | None = None
    license: int | None = None
    source: str | None = None
    geotagged: bool | None = None

    def params(self) -> dict[str, str]:
        """The filters as query parameters (only those set)."""
        given: dict[str, str] = {"status": self.status}
        if self.keyword is not None:
            given["keyword"] = self.keyword
        if self.license is not None:
            given["license"] = str(self.license)
        if self.source is not None:
            given["source"] = self.source
        if self.geotagged is not None:
            given["geotagged"] = "yes" if self.geotagged else "no"
        return given

    def link(self, after: int | None = None) -> str:
        """The query string of this filter's page after `after` (the first page if None)."""
        given = self.params()
        if after is not None:
            given["after"] = str(after)
        return urlencode(given)


def parse_filters(params: Mapping[str, str], keywords: Collection[str]) -> Filters:
    """The filters of a request's query; empty values are "any", anything unknown is BadQuery."""

    def given(name: str) -> str | None:
        value = params.get(name, "")
        if len(value) > MAX_TEXT:
            raise BadQuery(f"{name} is too long")
        return value or None

    status = given("status") or PhotoStatus.DONE.value
    if status not in STATUSES:
        raise BadQuery(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    keyword = given("keyword")
    if keyword is not None and keyword not in keywords:
        raise BadQuery(f"no keyword {keyword!r} in this harvest")
    lic = given("license")
    license_id = None if lic is None else parse_int(lic, "license", most=max(LICENCE_IDS))
    if license_id is not None and license_id not in LICENCE_IDS:
        raise BadQuery(f"no Flickr licence has id {license_id}")
    geo = given("geotagged")
    if geo not in (None, "yes", "no"):
        raise BadQuery(f"geotagged must be yes or no, got {geo!r}")
    return Filters(
        status=status,
        keyword=keyword,
        license=license_id,
        source=given("source"),
        geotagged=None if geo is None else geo == "yes",
    )


def parse_after(params: Mapping[str, str]) -> int:
    """The keyset cursor: the last id of the previous page (0: the first page)."""
    text = params.get("after", "")
    return parse_int(text, "after") if text else 0


def parse_limit(params: Mapping[str, str], default: int, most: int) -> int:
    """How many rows a page holds: `limit`, 1..most."""
    text = params.get("limit", "")
    return parse_int(text, "limit", least=1, most=most) if text else default


def one_page(rows: Sequence[T], limit: int, key: Callable[[T], int]) -> tuple[list[T], int | None]:
    """A page from `limit + 1` rows read: its first `limit`, and the next page's cursor (the
    last shown row's key) if there was one more, else None."""
    shown = list(rows[:limit])
    return shown, key(shown[-1]) if len(rows) > limit and shown else None
