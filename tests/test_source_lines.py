"""Source lines of the queries file, the list walk and the list-method parsing: pure, as tables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from harvester.config import PlannerConfig
from harvester.exceptions import FlickrError, QueriesFileError
from harvester.flickr.listings import (
    list_params,
    parse_gallery_info,
    parse_group,
    parse_institutions,
    parse_list_page,
    parse_photoset_info,
)
from harvester.flickr.parse import EXTRAS
from harvester.records import ListKind, ListQuery, PhotoRecord, SearchPage, SearchQuery
from harvester.search.listings import DonePage, SourceGone, search_source, walk_listing
from harvester.search.queries import KeywordQuery, load_queries, parse_queries
from harvester.search.source_lines import (
    RefForm,
    SourceIdentity,
    SourceKind,
    SourceSpec,
    directory_name,
    parse_source,
    resolved_query,
)

PHOTOSTREAM = "https://www.flickr.com/photos/george/"


@pytest.mark.parametrize(
    ("text", "kind", "ref", "form"),
    [
        ("user:George Oates", SourceKind.USER, "George Oates", RefForm.NAME),
        ("user:34427469121@N01", SourceKind.USER, "34427469121@N01", RefForm.ID),
        (f"user:{PHOTOSTREAM}", SourceKind.USER, PHOTOSTREAM, RefForm.URL),
        (
            "USER:flickr.com/people/george",
            SourceKind.USER,
            "https://www.flickr.com/people/george",
            RefForm.URL,
        ),
        ("album:72157624618609504", SourceKind.ALBUM, "72157624618609504", RefForm.ID),
        (
            "album:https://www.flickr.com/photos/george/albums/72157624618609504",
            SourceKind.ALBUM,
            "72157624618609504",
            RefForm.ID,
        ),
        ("album:https://flickr.com/photos/x/sets/123/", SourceKind.ALBUM, "123", RefForm.ID),
        ("group:34427469792@N01", SourceKind.GROUP, "34427469792@N01", RefForm.ID),
        ("group:flickrcentral", SourceKind.GROUP, "flickrcentral", RefForm.NAME),
        (
            "group:https://www.flickr.com/groups/flickrcentral/pool/",
            SourceKind.GROUP,
            "https://www.flickr.com/groups/flickrcentral/pool/",
            RefForm.URL,
        ),
        (
            "gallery:6065-72157617483228192",
            SourceKind.GALLERY,
            "6065-72157617483228192",
            RefForm.ID,
        ),
        (
            "gallery:https://www.flickr.com/photos/straup/galleries/72157617483228192/",
            SourceKind.GALLERY,
            "https://www.flickr.com/photos/straup/galleries/72157617483228192/",
            RefForm.URL,
        ),
        ("commons:*", SourceKind.COMMONS, "*", RefForm.ID),
        (
            "commons:The Library of Congress",
            SourceKind.COMMONS,
            "The Library of Congress",
            RefForm.NAME,
        ),
        ("commons:8623220@N02", SourceKind.COMMONS, "8623220@N02", RefForm.ID),
    ],
)
def test_source_references_parse(text: str, kind: SourceKind, ref: str, form: RefForm) -> None:
    assert parse_source(text) == SourceSpec(kind=kind, ref=ref, form=form)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("user:", "needs an id, URL or name"),
        ("album:holiday", "an album id is digits"),
        ("gallery:72157617483228192", "a gallery id looks like"),
        ("user:https://www.example.com/photos/x/", "not a flickr.com URL"),
        ("user:https://www.flickr.com/groups/x/", "not a photostream URL"),
        ("group:https://www.flickr.com/photos/x/", "not a group URL"),
        ("album:https://www.flickr.com/photos/x/", "not an album URL"),
        ("gallery:https://www.flickr.com/photos/x/albums/1", "not a gallery URL"),
        ("commons:https://www.flickr.com/photos/x/", "takes a name or NSID, not a URL"),
        ("group:two words", "not an id, URL or name"),
    ],
)
def test_bad_references_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_source(text)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("album:1 | license=4", 1, "album: lines cannot take license="),
        ("gallery:1-2 | has_geo=1 until=2010-01-01", 1, "cannot take has_geo=, until="),
        ("#! since=2010-01-01\nnewyork\nalbum:1", 3, "album: lines cannot take since="),
        ("user:x | user=1@N01", 1, "user= cannot be given too"),
        ("commons:* | user=1@N01", 1, "user= cannot be given too"),
        ("newyork\nalbum:abc", 2, "an album id is digits"),
        ("user:x | since=2010-01-01 until=2009-01-01", 1, "since must come before until"),
        ("user:george\nuser:George", 2, "duplicate keyword"),
    ],
)
def test_source_lines_with_options_their_method_cannot_take_name_the_line(
    text: str, line: int, message: str
) -> None:
    with pytest.raises(QueriesFileError, match=message) as err:
        parse_queries(text, "q.txt")
    assert err.value.line == line
    assert str(err.value).startswith(f"q.txt:{line}: ")


def test_searched_sources_keep_their_options_and_lists_keep_none() -> None:
    # A list line must come before #! defaults its method cannot take: a licence filter the
    # walk silently ignored would put photos in the dataset that the file excludes.
    text = "album:7\n#! license=4,9 date=taken\nuser:george | since=2010-01-01 has_geo=1\n-cat\n"
    parsed = parse_queries(text)
    album, user = parsed.keywords
    assert (user.licenses, user.has_geo, user.text, user.since) == ((4, 9), True, None, 1262304000)
    assert user.source == SourceSpec(kind=SourceKind.USER, ref="george", form=RefForm.NAME)
    assert (album.licenses, album.text, album.since) == ((), None, None)
    assert parsed.negatives == ("cat",)


@pytest.mark.parametrize(
    ("identity", "keyword", "fields"),
    [
        (
            SourceIdentity(kind=SourceKind.USER, source_id="34427469121@N01", name="George"),
            "user-george-34427469121atn01",
            {"user_id": "34427469121@N01"},
        ),
        (
            SourceIdentity(
                kind=SourceKind.GROUP, source_id="34427469792@N01", name="FlickrCentral"
            ),
            "group-flickrcentral-34427469792atn01",
            {"group_id": "34427469792@N01"},
        ),
        (
            SourceIdentity(
                kind=SourceKind.ALBUM, source_id="721", name="Mah Kittehs!", owner="1@N01"
            ),
            "album-mah-kittehs-721",
            {"listing": (ListKind.PHOTOSET, "721", "1@N01")},
        ),
        (
            SourceIdentity(kind=SourceKind.GALLERY, source_id="6065-7215", name="../../etc"),
            "gallery-etc-6065-7215",
            {"listing": (ListKind.GALLERY, "6065-7215", None)},
        ),
    ],
)
def test_a_resolved_source_becomes_a_keyword_with_a_safe_directory(
    identity: SourceIdentity, keyword: str, fields: dict[str, object]
) -> None:
    line = {SourceKind.ALBUM: "album:1", SourceKind.GALLERY: "gallery:1-2"}.get(identity.kind)
    kq = parse_queries(line or f"{identity.kind}:x1").keywords[0]
    out = resolved_query(kq, identity)
    assert out.keyword == keyword
    assert "/" not in out.keyword
    for name, value in fields.items():
        assert getattr(out, name) == value
    assert directory_name(identity.kind, identity.name, identity.source_id) == keyword


# --- the list walk --------------------------------------------------------------------------


def _photo(i: int) -> PhotoRecord:
    return PhotoRecord(id=str(i), owner="1@N01", secret="ab", server="1", title=f"p{i}")


class FakeList:
    """A list of `n` photos served 500 a page; raises code 1 from page `gone_at` on."""

    def __init__(self, n: int, gone_at: int | None = None) -> None:
        self.n, self.gone_at = n, gone_at
        self.asked: list[int] = []

    async def list_page(self, query: ListQuery) -> SearchPage:
        self.asked.append(query.page)
        if self.gone_at is not None and query.page >= self.gone_at:
            raise FlickrError(1, "Photoset not found")
        lo = (query.page - 1) * 500
        photos = tuple(_photo(i) for i in range(lo, min(lo + 500, self.n)))
        pages = -(-self.n // 500)
        return SearchPage(page=query.page, pages=pages, per_page=500, total=self.n, photos=photos)

    async def search(self, query: SearchQuery) -> SearchPage:
        raise AssertionError("a list is never searched")


def _album_query() -> KeywordQuery:
    kq = parse_queries("album:9\n").keywords[0]
    identity = SourceIdentity(kind=SourceKind.ALBUM, source_id="9", name="trip", owner="1@N01")
    return resolved_query(kq, identity)


@pytest.mark.parametrize(
    ("n", "done", "asked"),
    [
        (1234, [], [1, 2, 3]),
        (1000, [], [1, 2]),
        (0, [], [1]),
        (1234, [(1, 1234)], [2, 3]),
        (1234, [(1, 1234), (3, 1234)], [2]),
        (1234, [(1, 1234), (2, 1234), (3, 1234)], []),
    ],
)
async def test_the_walk_asks_only_for_pages_not_checkpointed(
    n: int, done: Sequence[tuple[int, int]], asked: list[int]
) -> None:
    backend = FakeList(n)
    kq = _album_query()
    done_pages = [DonePage(page=p, reported_total=t) for p, t in done]
    results = [r async for r in walk_listing(kq, backend, done=done_pages)]
    assert backend.asked == asked
    assert [r.window.start for r in results] == asked
    assert all(r.calls == 1 for r in results)


async def test_a_list_that_vanishes_mid_walk_ends_with_a_reason() -> None:
    backend = FakeList(2000, gone_at=3)
    kq = _album_query()
    stream = search_source(kq, backend, backend, plan_config=PlannerConfig(), now=0)
    results = [r async for r in stream]
    assert [type(r).__name__ for r in results] == ["WindowResult", "WindowResult", "SourceGone"]
    gone = results[-1]
    assert isinstance(gone, SourceGone)
    assert "Photoset not found" in gone.reason


async def test_negatives_apply_to_list_pages() -> None:
    backend = FakeList(10)
    kq = _album_query()
    (result,) = [r async for r in walk_listing(kq, backend, negatives=("p3",))]
    assert len(result.photos) == 9
    assert result.filtered_negative == 1


# --- list-method parsing --------------------------------------------------------------------


def test_list_params_ask_for_the_search_extras_at_500_a_page() -> None:
    for kind, method, id_param in [
        (ListKind.PHOTOSET, "flickr.photosets.getPhotos", "photoset_id"),
        (ListKind.GALLERY, "flickr.galleries.getPhotos", "gallery_id"),
        (ListKind.POOL, "flickr.groups.pools.getPhotos", "group_id"),
    ]:
        params = list_params(ListQuery(kind=kind, list_id="X", owner="1@N01", page=3, per_page=900))
        assert params["method"] == method
        assert params[id_param] == "X"
        assert params["extras"] == ",".join(EXTRAS)
        assert (params["page"], params["per_page"]) == ("3", "500")
        assert ("user_id" in params) == (kind is ListKind.PHOTOSET)


def test_a_photosets_photos_get_the_sets_owner() -> None:
    body = {
        "photoset": {
            "id": "4",
            "primary": "2483",
            "owner": "34427469121@N01",
            "ownername": "George",
            "photo": [{"id": "2484", "secret": "123456", "server": "1", "title": "my photo"}],
            "page": "1",
            "per_page": 500,
            "perpage": 500,
            "pages": 1,
            "title": "Mah Kittehs",
            "total": "1",
        },
        "stat": "ok",
    }
    page = parse_list_page(ListKind.PHOTOSET, body).page
    assert (page.page, page.pages, page.total, page.per_page) == (1, 1, 1, 500)
    assert page.photos[0].owner == "34427469121@N01"


def test_standard_photo_lists_parse_like_search() -> None:
    body = {
        "photos": {
            "page": 1,
            "pages": 1,
            "perpage": 500,
            "total": 1,
            "photo": [
                {"id": "2645", "owner": "1@N01", "secret": "a9f4", "server": "2", "dateadded": "1"}
            ],
        },
        "stat": "ok",
    }
    for kind in (ListKind.GALLERY, ListKind.POOL):
        assert parse_list_page(kind, body).page.photos[0].id == "2645"


def test_look_ups_parse_the_documented_shapes() -> None:
    photoset = {
        "photoset": {
            "id": "7",
            "owner": "1@N01",
            "count_photos": "43",
            "title": {"_content": "Kit"},
        }
    }
    assert parse_photoset_info(photoset).name == "Kit"
    assert parse_photoset_info(photoset).count == 43
    gallery = {
        "gallery": {
            "id": "6065-721",
            "owner": "2@N01",
            "count_photos": "17",
            "title": {"_content": "Cats"},
        }
    }
    assert parse_gallery_info(gallery, "x").source_id == "6065-721"
    assert (
        parse_group({"group": {"id": "3@N21", "groupname": {"_content": "FC"}}}, "x").name == "FC"
    )
    assert parse_group({"group": {"id": "3@N21", "name": {"_content": "GNE"}}}, "x").name == "GNE"
    institutions = {
        "institutions": {
            "institution": [
                {"nsid": "8623220@N02", "date_launch": "1200470400", "name": {"_content": "LoC"}}
            ]
        }
    }
    (loc,) = parse_institutions(institutions)
    assert (loc.nsid, loc.name, loc.launched) == ("8623220@N02", "LoC", 1200470400)


def test_the_example_sources_file_parses() -> None:
    parsed = load_queries(Path(__file__).resolve().parent.parent / "queries" / "sources.txt")
    kinds = [kq.source.kind for kq in parsed.keywords if kq.source is not None]
    assert kinds == ["album", "gallery", "commons", "user", "group"]
    assert parsed.keywords[2].licenses == (7, 8, 9, 10)


def test_an_album_url_naming_its_owners_nsid_keeps_it_for_user_id() -> None:
    spec = parse_source("album:https://www.flickr.com/photos/34427469121@N01/albums/72157")
    assert (spec.ref, spec.owner) == ("72157", "34427469121@N01")
    assert parse_source("album:https://www.flickr.com/photos/george/albums/72157").owner is None
