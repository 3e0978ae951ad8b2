"""The queries file: Berg/Hays format (keywords, `-negative` terms, `#` comments) plus options.

    argentina                                  a keyword: a free-text search for it
    buenosaires | tags=buenosaires,baires      per-keyword options after a `|`
    #! since=2005-01-01 license=1,2,4          defaults for every keyword below this line
    -birthday                                  a negative term, for every keyword
    # a comment; blank lines are ignored too
    user:George | since=2015-01-01             a source instead of a keyword (source_lines.py)

Unlike the original parser nothing is cut from a keyword and short lines are kept; LF, CRLF and
a UTF-8 BOM all work. A keyword may appear once (case-insensitively): it names an output
directory, so a repeat is an error rather than a silent merge. Options are in `OPTIONS_HELP`.
"""

from __future__ import annotations

import html
import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from harvester.exceptions import QueriesFileError
from harvester.licenses import BY_ID
from harvester.records import DateField, ListKind, PhotoRecord
from harvester.search.source_lines import SourceSpec, is_source_line, option_error, parse_source

OPTIONS_HELP = """\
text="free text"   search this text instead of the keyword itself
tags=a,b           search these tags instead of text; tag_mode=any|all (default any)
date=upload|taken  the date that windows cut on (default upload)
since=2005-01-01   first day searched (or 2005-01-01T12:00:00 UTC, or unix seconds);
                   default 2004-01-01 (upload) or 1900-01-01 (taken)
until=2010-12-31   last day searched, inclusive (a datetime or unix time is exclusive);
                   default now
license=1,2,4      only these licence ids (0-16)
bbox=W,S,E,N       min_lon,min_lat,max_lon,max_lat
has_geo=1|0        only geotagged photos (1) or only photos without a geotag (0)
accuracy=1..16     minimum geotag accuracy (3 country, 6 region, 11 city, 16 street)
user=12345678@N04  only this owner's photos (NSID)"""

_NSID = re.compile(r"\d+@N\d+")
_TAG_MODES = ("any", "all")
_PER_KEYWORD_ONLY = frozenset({"text", "tags"})


@dataclass(frozen=True, slots=True)
class KeywordQuery:
    """One keyword's search: text or tags, date range (unix, `until` exclusive) and filters."""

    keyword: str
    text: str | None = None  # None when searching tags
    tags: tuple[str, ...] = ()
    tag_mode: str = "any"
    date_field: DateField = DateField.UPLOAD
    since: int | None = None
    until: int | None = None
    licenses: tuple[int, ...] = ()  # empty: every licence
    bbox: tuple[float, float, float, float] | None = None
    has_geo: bool | None = None
    user_id: str | None = None
    accuracy: int | None = None
    line: int = 0
    # A source line (`user:…`, `album:…`): as written, then resolved (search/resolve.py) into
    # `user_id`/`group_id` for a search or `listing` for a list walk, and a directory name.
    source: SourceSpec | None = None
    group_id: str | None = None
    listing: tuple[ListKind, str, str | None] | None = None  # (kind, list id, owner NSID)


@dataclass(frozen=True, slots=True)
class QueryFile:
    """A parsed queries file: the keywords in file order and the shared negative terms."""

    path: str
    keywords: tuple[KeywordQuery, ...]
    negatives: tuple[str, ...] = field(default=())


# -- reading -------------------------------------------------------------------------------


def load_queries(path: Path | str, date_field: DateField = DateField.UPLOAD) -> QueryFile:
    """Read and parse a queries file; any problem is a QueriesFileError naming file and line.

    `date_field` is the run's default (`--date-field`); a keyword's `date=` overrides it.
    """
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise QueriesFileError(name, None, "no such file") from None
    except IsADirectoryError:
        raise QueriesFileError(name, None, "is a directory, not a queries file") from None
    except OSError as exc:
        raise QueriesFileError(name, None, f"cannot read: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise QueriesFileError(name, line, "not UTF-8 text") from None
    return parse_queries(text, name, date_field)


def parse_queries(
    text: str, path: str = "<queries>", date_field: DateField = DateField.UPLOAD
) -> QueryFile:
    """Parse queries-file text (see the module docstring for the format)."""
    text = text.removeprefix("\ufeff")
    keywords: list[KeywordQuery] = []
    negatives: dict[str, None] = {}  # ordered set
    defaults: dict[str, Any] = {"date_field": date_field}
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if line.startswith("#!"):
            defaults.update(_options(line[2:], path, number, directive=True))
        elif not line or line.startswith("#"):
            continue
        elif line.startswith("-"):
            negatives.setdefault(_negative(line[1:], path, number), None)
        else:
            kq = _keyword(line, defaults, path, number)
            _check_unique(kq, seen, path)
            keywords.append(kq)
    if not keywords:
        raise QueriesFileError(path, None, "no keywords (every line is a comment or a -term)")
    return QueryFile(path, tuple(keywords), tuple(negatives))


def _check_unique(kq: KeywordQuery, seen: dict[str, int], path: str) -> None:
    key = kq.keyword.casefold()
    if key in seen:
        raise QueriesFileError(
            path, kq.line, f"duplicate keyword {kq.keyword!r} (first on line {seen[key]})"
        )
    seen[key] = kq.line


def _negative(term: str, path: str, line: int) -> str:
    term = " ".join(term.split()).lower()
    if not term:
        raise QueriesFileError(path, line, "a '-' line needs a term after it")
    return term


def _keyword(line: str, defaults: dict[str, Any], path: str, number: int) -> KeywordQuery:
    name, _, rest = line.partition("|")
    name = name.strip()
    if not name:
        raise QueriesFileError(path, number, "missing keyword before '|'")
    if is_source_line(name):
        return _source_line(name, rest, defaults, path, number)
    if any(c in name for c in "/\\\0") or name in {".", ".."}:
        raise QueriesFileError(path, number, f"keyword {name!r} cannot name a directory")
    values = {**defaults, **_options(rest, path, number, directive=False)}
    if values.get("tags"):
        values["text"] = None
    else:
        values.setdefault("text", name)
    kq = KeywordQuery(keyword=name, line=number, **values)
    if kq.since is not None and kq.until is not None and kq.since >= kq.until:
        raise QueriesFileError(path, number, "since must come before until")
    return kq


def _source_line(
    name: str, rest: str, defaults: dict[str, Any], path: str, number: int
) -> KeywordQuery:
    """A `kind:ref` line: its spec, with the options its method can take (an error if not)."""
    try:
        spec = parse_source(name)
    except ValueError as exc:
        raise QueriesFileError(path, number, str(exc)) from None
    own = _options(rest, path, number, directive=False)
    inherited = {k: v for k, v in defaults.items() if k != "date_field" and v is not None}
    why = option_error(spec, [*own, *inherited])
    if why is not None:
        raise QueriesFileError(path, number, why)
    values = {**defaults, **own}
    if spec.searched:
        values.setdefault("text", None)
    else:
        values = {"date_field": values.get("date_field", DateField.UPLOAD)}
    kq = KeywordQuery(keyword=f"{spec.kind}:{spec.ref}", line=number, source=spec, **values)
    if kq.since is not None and kq.until is not None and kq.since >= kq.until:
        raise QueriesFileError(path, number, "since must come before until")
    return kq


def _options(text: str, path: str, number: int, *, directive: bool) -> dict[str, Any]:
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise QueriesFileError(path, number, f"bad quoting: {exc}") from None
    values: dict[str, Any] = {}
    for word in words:
        key, eq, value = word.partition("=")
        parser = _PARSERS.get(key)
        if parser is None or not eq:
            known = ", ".join(_PARSERS)
            raise QueriesFileError(path, number, f"unknown option {word!r} (known: {known})")
        if directive and key in _PER_KEYWORD_ONLY:
            raise QueriesFileError(path, number, f"{key}= belongs on a keyword line, not in #!")
        attr = _FIELDS.get(key, key)
        if attr in values:
            raise QueriesFileError(path, number, f"option {key!r} given twice")
        try:
            values[attr] = parser(value)
        except ValueError as exc:
            raise QueriesFileError(path, number, f"{key}={value!r}: {exc}") from None
    return values


# -- option values ------------------------------------------------------------------------


def _date(value: str, *, end: bool) -> int:
    if value.isdigit():
        return int(value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("expected YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS or unix seconds") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if end and len(value) == 10:  # a bare date: include that whole day
        parsed += timedelta(days=1)
    return int(parsed.timestamp())


def _licenses(value: str) -> tuple[int, ...]:
    ids = tuple(sorted({_int(part) for part in value.split(",")}))
    unknown = [i for i in ids if i not in BY_ID]
    if unknown:
        raise ValueError(f"unknown licence id {unknown[0]} (known: 0-{max(BY_ID)})")
    return ids


def _bbox(value: str) -> tuple[float, float, float, float]:
    parts = value.split(",")
    if len(parts) != 4:
        raise ValueError("expected min_lon,min_lat,max_lon,max_lat")
    try:
        w, s, e, n = (float(p) for p in parts)
    except ValueError:
        raise ValueError("coordinates must be numbers") from None
    if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
        raise ValueError("need -180 <= min_lon < max_lon <= 180, -90 <= min_lat < max_lat <= 90")
    return w, s, e, n


def _int(value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a whole number") from None


def _choice(options: Iterable[str]) -> Callable[[str], str]:
    allowed = tuple(options)

    def parse(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return value

    return parse


def _accuracy(value: str) -> int:
    level = _int(value)
    if not 1 <= level <= 16:
        raise ValueError("expected 1..16")
    return level


def _has_geo(value: str) -> bool:
    return {"1": True, "0": False}[_choice(("1", "0"))(value)]


def _user(value: str) -> str:
    if not _NSID.fullmatch(value):
        raise ValueError("expected an NSID such as 12345678@N04")
    return value


def _tags(value: str) -> tuple[str, ...]:
    tags = tuple(t.strip() for t in value.split(",") if t.strip())
    if not tags:
        raise ValueError("expected tag[,tag...]")
    return tags


def _text(value: str) -> str:
    if not value.strip():
        raise ValueError("expected some text")
    return value


_PARSERS: dict[str, Callable[[str], Any]] = {
    "text": _text,
    "tags": _tags,
    "tag_mode": _choice(_TAG_MODES),
    "date": lambda v: DateField(_choice(("upload", "taken"))(v)),
    "since": lambda v: _date(v, end=False),
    "until": lambda v: _date(v, end=True),
    "license": _licenses,
    "bbox": _bbox,
    "has_geo": _has_geo,
    "accuracy": _accuracy,
    "user": _user,
}
_FIELDS = {"date": "date_field", "license": "licenses", "user": "user_id"}


# -- negative terms -----------------------------------------------------------------------


@lru_cache(maxsize=32)
def _negative_pattern(negatives: tuple[str, ...]) -> re.Pattern[str]:
    words = sorted(negatives, key=len, reverse=True)  # longest first: "children" before "child"
    alternatives = "|".join(r"\s+".join(map(re.escape, w.split())) for w in words)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def _tag_form(term: str) -> str:
    return term.replace(" ", "")  # Flickr's normalised tags: lower case, no spaces


def matches_negative(record: PhotoRecord, negatives: tuple[str, ...]) -> str | None:
    """The negative term found as a whole word in the tags, title or description, if any."""
    if not negatives:
        return None
    tags = {t.lower() for t in record.tags}
    for term in negatives:
        if _tag_form(term) in tags:
            return term
    pattern = _negative_pattern(negatives)
    description = html.unescape(re.sub(r"<[^>]*>", " ", record.description))
    for text in (record.title, description):
        found = pattern.search(text)
        if found:
            return " ".join(found.group(0).lower().split())
    return None
