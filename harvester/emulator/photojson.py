"""Photo records as flickr.photos.search returns them (the JSON shape; XML reuses it)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from harvester.emulator import corpus_text as ct
from harvester.emulator.corpus import Corpus
from harvester.emulator.sizes import (
    FORMATS,
    LADDER,
    PhotoGeom,
    SizeClass,
    available,
    derived_secret,
    fmt_secret,
)

Json = dict[str, Any]

#: Bits of the per-photo `loose` column: which fields go out as strings in realistic profiles.
_STR_DIMS, _STR_LATLON, _STR_ACCURACY = 1, 2, 4


def geom(corpus: Corpus, row: int) -> PhotoGeom:
    """The size-relevant facts of one photo."""
    c = corpus.cols
    return PhotoGeom(
        o_w=int(c["o_w"][row]),
        o_h=int(c["o_h"][row]),
        upload=int(c["upload"][row]),
        large_allowed=bool(c["large_allowed"][row]),
        orig_visible=bool(c["orig_visible"][row]),
    )


def original_format(corpus: Corpus, row: int) -> str:
    """jpg, png or gif."""
    return FORMATS[int(corpus.cols["o_fmt"][row])]


def secret_for(corpus: Corpus, row: int, size: SizeClass) -> str:
    """The secret in this size's URL (shared below h, own secrets for h and up and the original)."""
    c = corpus.cols
    if size.own_secret == -1:
        return fmt_secret(int(c["osecret"][row]))
    if size.own_secret == 0:
        return fmt_secret(int(c["secret"][row]))
    return fmt_secret(derived_secret(int(c["hsecret"][row]), size.own_secret))


def image_url(base_url: str, corpus: Corpus, row: int, size: SizeClass) -> str:
    """The static-host URL of one size of a photo, on this emulator."""
    c = corpus.cols
    ext = original_format(corpus, row) if size.extra == "o" else "jpg"
    suffix = f"_{size.suffix}" if size.suffix else ""
    pid, server = int(c["id"][row]), int(c["server"][row])
    return f"{base_url}/{server}/{pid}_{secret_for(corpus, row, size)}{suffix}.{ext}"


def farm_of(server: int) -> int:
    """The farm number Flickr pairs with a server id."""
    return 66 if server == 65535 else 1 + server % 9


def taken_text(local_s: int) -> str:
    """A local-naive timestamp as Flickr's "YYYY-MM-DD HH:MM:SS"."""
    return datetime.fromtimestamp(local_s, UTC).strftime("%Y-%m-%d %H:%M:%S")


class RecordBuilder:
    """Builds search records for one response: extras requested, host, loose typing."""

    def __init__(self, corpus: Corpus, base_url: str, extras: Iterable[str], loose: bool) -> None:
        self.corpus = corpus
        self.base_url = base_url
        self.extras = frozenset(e.strip().lower() for e in extras if e.strip())
        self.loose = loose
        self.url_sizes = [s for s in LADDER if f"url_{s.extra}" in self.extras]

    def record(self, row: int) -> Json:
        """One photo's record with the requested extras, in Flickr's key order."""
        c, x = self.corpus.cols, self.extras
        server = int(c["server"][row])
        rec: Json = {
            "id": self.corpus.photo_id(row),
            "owner": self.corpus.owner_nsid[int(c["owner"][row])],
            "secret": fmt_secret(int(c["secret"][row])),
            "server": str(server),
            "farm": farm_of(server),
            "title": ct.title(self.corpus, row),
            "ispublic": 1,
            "isfriend": 0,
            "isfamily": 0,
        }
        if "license" in x:
            rec["license"] = str(int(c["license"][row]))
        if "safety_level" in x:
            rec["safety_level"] = "0"
        self._dates(rec, row)
        self._owner(rec, row)
        self._counts(rec, row)
        if "tags" in x:
            rec["tags"] = ct.tags(self.corpus, row)
        if "machine_tags" in x:
            rec["machine_tags"] = ""
        self._original(rec, row)
        if "geo" in x:
            self._geo(rec, row)
        if "media" in x:
            rec.update(media="photo", media_status="ready")
        if "content_type" in x:
            rec["content_type"] = "0"
        self._urls(rec, row)
        if "path_alias" in x:
            rec["pathalias"] = self._alias(row)
        if "description" in x:
            rec["description"] = {"_content": ct.description(self.corpus, row)}
        return rec

    def _dates(self, rec: Json, row: int) -> None:
        c, x = self.corpus.cols, self.extras
        if "date_upload" in x:
            rec["dateupload"] = str(int(c["upload"][row]))
        if "last_update" in x:
            rec["lastupdate"] = str(int(c["upload"][row]) + int(c["look"][row]) % 86_400)
        if "date_taken" in x:
            unknown = bool(c["taken_unknown"][row])
            gran = int(c["taken_gran"][row])
            rec["datetaken"] = taken_text(int(c["taken"][row]))
            # Real pages send granularity as a number exactly where the taken date is unknown.
            rec["datetakengranularity"] = gran if self.loose and unknown else str(gran)
            rec["datetakenunknown"] = "1" if unknown else "0"

    def _owner(self, rec: Json, row: int) -> None:
        c, x = self.corpus.cols, self.extras
        name = self.corpus.owner_name[int(c["owner"][row])]
        if "owner_name" in x:
            rec["ownername"] = name
        if "realname" in x and int(c["look"][row]) % 5:
            rec["realname"] = name.capitalize()
        if "icon_server" in x:
            rec.update(iconserver=str(int(c["owner"][row]) % 8000 + 1), iconfarm=9)

    def _counts(self, rec: Json, row: int) -> None:
        views = int(self.corpus.cols["views"][row])
        if "views" in self.extras:
            rec["views"] = str(views)
        if "count_views" in self.extras:
            rec["count_views"] = str(views)
        if "count_comments" in self.extras:
            rec["count_comments"] = str(views // 97)
        if "count_faves" in self.extras:
            rec["count_faves"] = str(views // 41)

    def _original(self, rec: Json, row: int) -> None:
        c = self.corpus.cols
        if "original_format" in self.extras and bool(c["orig_visible"][row]):
            rec["originalsecret"] = fmt_secret(int(c["osecret"][row]))
            rec["originalformat"] = original_format(self.corpus, row)
        if "o_dims" in self.extras and bool(c["has_odims"][row]):
            rec["o_width"] = str(int(c["o_w"][row]))
            rec["o_height"] = str(int(c["o_h"][row]))

    def _geo(self, rec: Json, row: int) -> None:
        c = self.corpus.cols
        if not bool(c["has_geo"][row]):
            rec.update(latitude=0, longitude=0, accuracy=0, context=0)
            return
        bits = int(c["loose"][row]) if self.loose else 0
        lat, lon = round(float(c["lat"][row]), 6), round(float(c["lon"][row]), 6)
        acc = int(c["accuracy"][row])
        look = int(c["look"][row])
        rec["latitude"] = f"{lat:.6f}" if bits & _STR_LATLON else lat
        rec["longitude"] = f"{lon:.6f}" if bits & _STR_LATLON else lon
        rec["accuracy"] = str(acc) if bits & _STR_ACCURACY else acc
        rec["context"] = 0
        rec["place_id"] = f"{look:x}"[:18]
        rec["woeid"] = str(look % 30_000_000)
        rec.update(geo_is_public=1, geo_is_contact=0, geo_is_friend=0, geo_is_family=0)

    def _urls(self, rec: Json, row: int) -> None:
        if not self.url_sizes:
            return
        wanted = {s.extra for s in self.url_sizes}
        as_str = self.loose and bool(int(self.corpus.cols["loose"][row]) & _STR_DIMS)
        for size, w, h in available(geom(self.corpus, row)):
            if size.extra not in wanted:
                continue
            rec[f"url_{size.extra}"] = image_url(self.base_url, self.corpus, row, size)
            rec[f"height_{size.extra}"] = str(h) if as_str else h
            rec[f"width_{size.extra}"] = str(w) if as_str else w

    def _alias(self, row: int) -> str | None:
        return self.corpus.owner_alias[int(self.corpus.cols["owner"][row])]
