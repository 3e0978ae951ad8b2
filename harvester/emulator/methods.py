"""The REST methods: each takes the call's parameters and returns the response payload."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harvester.emulator import corpus_text as ct
from harvester.emulator import list_methods, people, quirks
from harvester.emulator.config import EmulatorConfig
from harvester.emulator.corpus import Corpus
from harvester.emulator.faults import unit
from harvester.emulator.photojson import (
    RecordBuilder,
    farm_of,
    geom,
    image_url,
    original_format,
    taken_text,
)
from harvester.emulator.search import SearchError, order, parse_filters
from harvester.emulator.sizes import available, fmt_secret
from harvester.licenses import LICENSES

Json = dict[str, Any]
Params = Mapping[str, str]
DEFAULT_EXTRAS = ""


class ApiError(SearchError):
    """Any stat=fail answer (code, message)."""


@dataclass(slots=True)
class MethodContext:
    """What every method may read: the corpus, the config, this server's URL, owner lookups."""

    corpus: Corpus
    config: EmulatorConfig
    base_url: str = ""
    seq: int = 0  # the call's sequence number (drives transient quirks)
    _by_nsid: dict[str, int] = field(default_factory=dict)
    _by_name: dict[str, int] = field(default_factory=dict)
    _by_alias: dict[str, int] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)  # list ids deleted mid-run (a test's switch)

    def owners(self) -> dict[str, int]:
        """NSID → owner index."""
        if not self._by_nsid:
            self._by_nsid.update({n: i for i, n in enumerate(self.corpus.owner_nsid)})
        return self._by_nsid

    def owner_aliases(self) -> dict[str, int]:
        """Lower-cased path alias → owner index (owners without an alias are not in it)."""
        if not self._by_alias:
            aliases = enumerate(self.corpus.owner_alias)
            self._by_alias.update({a.lower(): i for i, a in aliases if a is not None})
        return self._by_alias

    def owner_names(self) -> dict[str, int]:
        """Lower-cased user name → owner index."""
        if not self._by_name:
            self._by_name.update({n.lower(): i for i, n in enumerate(self.corpus.owner_name)})
        return self._by_name


def search(ctx: MethodContext, params: Params) -> Json:
    """flickr.photos.search with the profile's quirks."""
    cfg = ctx.config
    f = list_methods.with_pool(ctx, parse_filters(ctx.corpus, params, ctx.owners()), params)
    rows = order(ctx.corpus, quirks.quirky_rows(ctx.corpus, f, cfg), params.get("sort", ""))
    page, per_page = quirks.paging(params)
    qhash = quirks.query_hash(params)
    cut = quirks.cut_page(rows.size, page, per_page, qhash, cfg)
    shown = rows[cut.start : cut.end].tolist()
    drop = quirks.short_page(len(shown), page, cut.pages, ctx.seq, cfg)
    if drop:
        at = int(unit(cfg.seed, ctx.seq, 8) * (len(shown) - drop))
        del shown[at : at + drop]
    builder = RecordBuilder(
        ctx.corpus, ctx.base_url, params.get("extras", "").split(","), bool(cfg.loose_types)
    )
    return {
        "photos": {
            "page": page,
            "pages": _pages_value(cut.pages, qhash, cfg),
            "perpage": per_page,
            "total": _total_value(cut.total, ctx.seq, cfg),
            "photo": [builder.record(r) for r in shown],
        },
        "stat": "ok",
    }


def _total_value(total: int, seq: int, cfg: EmulatorConfig) -> int | str:
    if unit(cfg.seed, seq, 9) < float(cfg.empty_total_rate or 0):
        return ""
    return str(total) if cfg.loose_types else total


def _pages_value(pages: int, qhash: int, cfg: EmulatorConfig) -> int | str:
    return str(pages) if unit(cfg.seed, qhash, 10) < float(cfg.string_pages_rate or 0) else pages


def _row(ctx: MethodContext, params: Params) -> int:
    raw = params.get("photo_id", "").strip()
    row = ctx.corpus.row_of_id(int(raw)) if raw.isdigit() else None
    if row is None:
        raise ApiError(1, "Photo not found")
    return row


def get_sizes(ctx: MethodContext, params: Params) -> Json:
    """flickr.photos.getSizes: every available size with its source URL."""
    corpus, row = ctx.corpus, _row(ctx, params)
    nsid = corpus.owner_nsid[int(corpus.cols["owner"][row])]
    page = f"https://www.flickr.com/photos/{nsid}/{corpus.photo_id(row)}/sizes"
    sizes = [
        {
            "label": s.label,
            "width": w,
            "height": h,
            "source": image_url(ctx.base_url, corpus, row, s),
            "url": f"{page}/{s.suffix or 'm'}/",
            "media": "photo",
        }
        for s, w, h in available(geom(corpus, row))
    ]
    return {"sizes": {"canblog": 0, "canprint": 0, "candownload": 1, "size": sizes}, "stat": "ok"}


def get_info(ctx: MethodContext, params: Params) -> Json:
    """flickr.photos.getInfo: the photo's owner, title, dates, tags and location."""
    corpus, row = ctx.corpus, _row(ctx, params)
    c = corpus.cols
    owner = int(c["owner"][row])
    server, pid = int(c["server"][row]), corpus.photo_id(row)
    nsid, name = corpus.owner_nsid[owner], corpus.owner_name[owner]
    photo: Json = {
        "id": pid,
        "secret": fmt_secret(int(c["secret"][row])),
        "server": str(server),
        "farm": farm_of(server),
        "dateuploaded": str(int(c["upload"][row])),
        "isfavorite": 0,
        "license": str(int(c["license"][row])),
        "safety_level": "0",
        "rotation": 0,
        "owner": {
            "nsid": nsid,
            "username": name,
            "realname": "",
            "location": "",
            "iconserver": "0",
            "iconfarm": 0,
            "path_alias": corpus.owner_alias[owner],
        },
        "title": {"_content": ct.title(corpus, row)},
        "description": {"_content": ct.description(corpus, row)},
        "visibility": {"ispublic": 1, "isfriend": 0, "isfamily": 0},
        "dates": _dates(corpus, row),
        "views": str(int(c["views"][row])),
        "tags": {"tag": _tags(corpus, row, nsid, name)},
        "media": "photo",
    }
    if bool(c["orig_visible"][row]):
        photo["originalsecret"] = fmt_secret(int(c["osecret"][row]))
        photo["originalformat"] = original_format(corpus, row)
    if bool(c["has_geo"][row]):
        photo["location"] = {
            "latitude": f"{float(c['lat'][row]):.6f}",
            "longitude": f"{float(c['lon'][row]):.6f}",
            "accuracy": str(int(c["accuracy"][row])),
            "context": "0",
        }
    photo["urls"] = {
        "url": [{"type": "photopage", "_content": f"https://www.flickr.com/photos/{nsid}/{pid}/"}]
    }
    return {"photo": photo, "stat": "ok"}


def _dates(corpus: Corpus, row: int) -> Json:
    c = corpus.cols
    up = int(c["upload"][row])
    return {
        "posted": str(up),
        "taken": taken_text(int(c["taken"][row])),
        "takengranularity": str(int(c["taken_gran"][row])),
        "takenunknown": "1" if bool(c["taken_unknown"][row]) else "0",
        "lastupdate": str(up + int(c["look"][row]) % 86_400),
    }


def _tags(corpus: Corpus, row: int, nsid: str, name: str) -> list[Json]:
    words = ct.tags(corpus, row).split()
    pid = corpus.photo_id(row)
    return [
        {
            "id": f"{pid}-{i}",
            "author": nsid,
            "authorname": name,
            "raw": w,
            "_content": w,
            "machine_tag": 0,
        }
        for i, w in enumerate(words)
    ]


def licenses(ctx: MethodContext, params: Params) -> Json:
    """flickr.photos.licenses.getInfo: the 17 licences in Flickr's order."""
    items = [{"id": lic.id, "name": lic.name, "url": lic.url} for lic in LICENSES]
    return {"licenses": {"license": items}, "stat": "ok"}


def echo(ctx: MethodContext, params: Params) -> Json:
    """flickr.test.echo: every parameter back as {"_content": value}."""
    out: Json = {k: {"_content": v} for k, v in params.items()}
    out["stat"] = "ok"
    return out


METHODS: dict[str, Callable[[MethodContext, Params], Json]] = {
    "flickr.photos.search": search,
    "flickr.photos.getSizes": get_sizes,
    "flickr.photos.getInfo": get_info,
    "flickr.photos.licenses.getInfo": licenses,
    "flickr.people.findByUsername": people.find_by_username,
    "flickr.people.getInfo": people.get_info,
    "flickr.urls.lookupUser": people.lookup_user,
    "flickr.test.echo": echo,
    **list_methods.LIST_METHODS,
}
