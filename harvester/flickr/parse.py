"""Pure Flickr REST helpers: search parameters out, loosely typed JSON bodies in, typed records.

No I/O here. The real API mixes ints and numeric strings freely (reference/flickr-api.md §A.4),
so every field goes through a tolerant coercion, and a record that lacks what the pipeline
needs is rejected with a counted reason instead of raising.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from harvester.exceptions import FlickrError, InvalidApiKeyError, TransientApiError
from harvester.records import DateField, PhotoRecord, SearchPage, SearchQuery, SizeVariant

#: Size labels in ascending order; `url_<label>` carries the URL, width_/height_ its dimensions.
SIZE_LABELS: tuple[str, ...] = ("s", "m", "z", "c", "l", "h", "k", "o")

#: Every field later stages need, fetched in the search call so no photo costs another call.
EXTRAS: tuple[str, ...] = (
    "description",
    "license",
    "date_upload",
    "date_taken",
    "owner_name",
    "tags",
    "geo",
    "o_dims",
    "views",
    "media",
    "original_format",
    *(f"url_{label}" for label in SIZE_LABELS),
)

#: Codes Flickr uses for "try again later" (B.2): 0 and 201 are undocumented but seen in the wild.
TRANSIENT_CODES: frozenset[int] = frozenset({0, 10, 105, 201})
INVALID_KEY_CODE = 100
_UNAVAILABLE = "not currently available"
_JSONP_PREFIX = b"jsonFlickrApi("
_REQUIRED = ("id", "owner", "secret", "server")

JsonObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ParsedPage:
    """A search page plus the tally of records dropped as malformed, by reason."""

    page: SearchPage
    rejected: Counter[str]


class MalformedRecordError(ValueError):
    """A photo record missing a field the pipeline cannot do without (internal to parsing)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


# --- request side ----------------------------------------------------------------------------


def mysql_datetime(unix_s: int) -> str:
    """A unix time as the MySQL datetime Flickr's taken-date parameters expect."""
    return datetime.fromtimestamp(unix_s, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def search_params(query: SearchQuery) -> dict[str, str]:
    """The flickr.photos.search parameters for a query (without api_key/format envelope)."""
    params = {
        "method": "flickr.photos.search",
        "extras": ",".join(EXTRAS),
        "media": "photos",
        "sort": query.sort,
        "page": str(query.page),
        "per_page": str(query.per_page),
    }
    params.update(_date_params(query))
    params.update(_filter_params(query))
    return params


def _date_params(query: SearchQuery) -> dict[str, str]:
    if query.date_field is DateField.TAKEN:
        lo, hi = mysql_datetime(query.min_date), mysql_datetime(query.max_date)
        return {"min_taken_date": lo, "max_taken_date": hi}
    return {"min_upload_date": str(query.min_date), "max_upload_date": str(query.max_date)}


def _filter_params(query: SearchQuery) -> dict[str, str]:
    params: dict[str, str] = {}
    if query.text:
        params["text"] = query.text
    if query.tags:
        params["tags"] = ",".join(query.tags)
        params["tag_mode"] = query.tag_mode
    if query.licenses:
        params["license"] = ",".join(str(lic) for lic in query.licenses)
    if query.bbox is not None:
        params["bbox"] = ",".join(repr(float(edge)) for edge in query.bbox)
    if query.has_geo is not None:
        params["has_geo"] = "1" if query.has_geo else "0"
    if query.user_id:
        params["user_id"] = query.user_id
    if query.accuracy is not None:
        params["accuracy"] = str(query.accuracy)
    if query.group_id:
        params["group_id"] = query.group_id
    return params


# --- response envelope -----------------------------------------------------------------------


def decode_response(status: int, body: bytes) -> JsonObject:
    """The JSON object of an HTTP response, or the harvest error it stands for.

    Raises TransientApiError for what is worth retrying, InvalidApiKeyError for code 100 and
    FlickrError for every other stat=fail. Error texts never quote the request.
    """
    _check_http_status(status, body)
    data = _load_json(body)
    stat = data.get("stat")
    if stat == "ok":
        return data
    if stat == "fail":
        raise api_error(as_int(data.get("code")), as_str(data.get("message")))
    raise TransientApiError(f"response without stat=ok/fail (stat={stat!r})", status=status)


def _check_http_status(status: int, body: bytes) -> None:
    if status == 200:
        return
    if status == 429 or status >= 500:
        raise TransientApiError(f"HTTP {status} from the Flickr API", status=status)
    if status == 400 and _UNAVAILABLE.encode() in body.lower():
        raise TransientApiError("HTTP 400: service not currently available", status=status)
    raise FlickrError(-status, f"HTTP {status} from the Flickr API endpoint")


def _load_json(body: bytes) -> JsonObject:
    text = body.strip()
    if text.startswith(_JSONP_PREFIX) and text.endswith(b")"):
        text = text[len(_JSONP_PREFIX) : -1]
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise TransientApiError(f"body is not JSON ({len(body)} bytes; truncated?)") from None
    if not isinstance(data, dict):
        raise TransientApiError(f"body is JSON but not an object ({type(data).__name__})")
    return data


def api_error(code: int | None, message: str) -> FlickrError | TransientApiError:
    """The exception for a stat=fail envelope: transient, rejected key, or permanent."""
    if code == INVALID_KEY_CODE:
        return invalid_key_error(message)
    if code is None or code in TRANSIENT_CODES or _UNAVAILABLE in message.lower():
        return TransientApiError(f"Flickr API error {code}: {message}", code=code)
    return FlickrError(code, message)


def invalid_key_error(message: str) -> InvalidApiKeyError:
    """Code 100, worded for the one line the CLI prints before it stops."""
    error = InvalidApiKeyError(INVALID_KEY_CODE, message)
    error.args = (f"Flickr rejected the API key (code 100: {message})",)
    return error


# --- search page -----------------------------------------------------------------------------


def parse_search_page(data: Mapping[str, Any]) -> ParsedPage:
    """A stat=ok flickr.photos.search body as a SearchPage; malformed photos are tallied."""
    photos = data.get("photos")
    if not isinstance(photos, dict):
        raise TransientApiError("stat=ok but no 'photos' object in the search response")
    raw = photos.get("photo")
    records, rejected = parse_photos(raw if isinstance(raw, list) else [])
    page = SearchPage(
        page=as_int(photos.get("page")) or 1,
        pages=as_int(photos.get("pages")),
        per_page=as_int(photos.get("perpage")) or len(records),
        total=as_int(photos.get("total")),
        photos=records,
    )
    return ParsedPage(page=page, rejected=rejected)


def parse_photos(raw: list[Any]) -> tuple[tuple[PhotoRecord, ...], Counter[str]]:
    """Typed records for the raw photo objects, and the tally of rejected ones by reason."""
    records: list[PhotoRecord] = []
    rejected: Counter[str] = Counter()
    for item in raw:
        try:
            records.append(parse_photo(item))
        except MalformedRecordError as exc:
            rejected[exc.reason] += 1
    return tuple(records), rejected


def parse_photo(raw: Any) -> PhotoRecord:
    """One photo object as a PhotoRecord; raises MalformedRecordError naming what is missing."""
    if not isinstance(raw, dict):
        raise MalformedRecordError("not_an_object")
    ident = _identity(raw)
    latitude, longitude, accuracy = parse_geo(raw)
    return PhotoRecord(
        **ident,
        farm=as_int(raw.get("farm")) or 0,
        title=as_str(raw.get("title")),
        description=parse_description(raw.get("description")),
        owner_name=as_str(raw.get("ownername")),
        tags=tuple(as_str(raw.get("tags")).split()),
        license=as_int(raw.get("license")) or 0,
        date_upload=as_int(raw.get("dateupload")) or 0,
        date_taken=as_str(raw.get("datetaken")) or None,
        date_taken_granularity=as_int(raw.get("datetakengranularity")) or 0,
        date_taken_unknown=as_int(raw.get("datetakenunknown")) == 1,
        latitude=latitude,
        longitude=longitude,
        accuracy=accuracy,
        views=as_int(raw.get("views")),
        original_secret=as_str(raw.get("originalsecret")) or None,
        original_format=as_str(raw.get("originalformat")) or None,
        o_width=as_int(raw.get("o_width")),
        o_height=as_int(raw.get("o_height")),
        media=as_str(raw.get("media")) or "photo",
        sizes=parse_sizes(raw),
    )


def _identity(raw: Mapping[str, Any]) -> dict[str, str]:
    ident = {name: as_str(raw.get(name)).strip() for name in _REQUIRED}
    for name in _REQUIRED:
        if not ident[name]:
            raise MalformedRecordError(f"missing_{name}")
    if not ident["id"].isdigit():
        # The store keys photos on the numeric id; anything else is not a Flickr photo.
        raise MalformedRecordError("bad_id")
    return ident


def parse_sizes(raw: Mapping[str, Any]) -> tuple[SizeVariant, ...]:
    """The url_X sizes present in a record; a missing url_X means that size does not exist."""
    sizes: list[SizeVariant] = []
    for label in SIZE_LABELS:
        url = as_str(raw.get(f"url_{label}"))
        if not url:
            continue
        width = as_int(raw.get(f"width_{label}")) or 0
        height = as_int(raw.get(f"height_{label}")) or 0
        sizes.append(SizeVariant(label=label, url=url, width=width, height=height))
    return tuple(sizes)


def parse_geo(raw: Mapping[str, Any]) -> tuple[float | None, float | None, int | None]:
    """Latitude, longitude, accuracy; Flickr's 0/0 placeholder for "not geotagged" → None."""
    latitude, longitude = as_float(raw.get("latitude")), as_float(raw.get("longitude"))
    if latitude is None or longitude is None or (latitude == 0 and longitude == 0):
        return None, None, None
    return latitude, longitude, as_int(raw.get("accuracy")) or None


def parse_description(value: Any) -> str:
    """The description text: `{"_content": ...}` in JSON, tolerated as a bare string."""
    if isinstance(value, dict):
        return as_str(value.get("_content"))
    return as_str(value)


# --- scalar coercion -------------------------------------------------------------------------


def as_int(value: Any) -> int | None:
    """An int from an int, an integral float or a numeric string; None for "", null or junk."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("+-").isdigit():
            return int(text)
        number = as_float(text)
        return int(number) if number is not None and number.is_integer() else None
    return None


def as_float(value: Any) -> float | None:
    """A float from a number or numeric string; None for "", null, junk or non-finite."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number - number == 0 else None  # rejects inf and nan


def as_str(value: Any) -> str:
    """A string field: strings as is, numbers as their decimal text, anything else as ""."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""
