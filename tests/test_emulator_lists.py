"""The emulator's albums, galleries, group pools and Commons: shapes, paging, errors and truth.

Shapes follow Flickr's reflection data as docs/flickr-api-sources.md records it.
"""

from __future__ import annotations

import asyncio

import flickrapi
import pytest

from harvester.emulator import RunningEmulator
from harvester.emulator.lists import MAX_GALLERY, Lists, lists_of
from tests.harness import EmulatorFactory, emulator_call


@pytest.fixture
async def em(emulator_factory: EmulatorFactory) -> RunningEmulator:
    return await emulator_factory(photos=6000, seed=3, profile="ideal")


def lists(em: RunningEmulator) -> Lists:
    return lists_of(em.emulator.corpus)


async def test_photoset_pages_have_flickrs_shape_and_no_owner_per_photo(
    em: RunningEmulator,
) -> None:
    album = max((a for a in lists(em).albums.values() if not a.private), key=lambda a: a.rows.size)
    body = await emulator_call(
        em, "flickr.photosets.getPhotos", photoset_id=album.list_id, extras="owner_name"
    )
    block = body["photoset"]
    assert set(block) == {
        "id", "primary", "owner", "ownername", "photo", "page", "per_page", "perpage", "pages",
        "title", "total",
    }  # fmt: skip
    assert block["perpage"] == 500, "photosets default to (and cap at) 500 a page"
    assert block["total"] == str(album.rows.size), "a string, as in real photoset pages"
    assert all("owner" not in p and p["isprimary"] in ("0", "1") for p in block["photo"])
    assert all("ownername" in p for p in block["photo"])
    past = await emulator_call(
        em, "flickr.photosets.getPhotos", photoset_id=album.list_id, page="999"
    )
    assert past["photoset"]["photo"] == []


async def test_every_page_of_a_list_together_is_its_truth(em: RunningEmulator) -> None:
    album = next(a for a in lists(em).albums.values() if not a.private and a.rows.size > 500)
    ids: list[str] = []
    for page in range(1, 10):
        body = await emulator_call(
            em, "flickr.photosets.getPhotos", photoset_id=album.list_id, page=str(page)
        )
        ids += [p["id"] for p in body["photoset"]["photo"]]
    assert ids == await em.truth(photoset_id=album.list_id), "in the album's own order"


async def test_private_and_unknown_albums_are_photoset_not_found(em: RunningEmulator) -> None:
    private = next(a for a in lists(em).albums.values() if a.private)
    for list_id in (private.list_id, "1"):
        for method in ("flickr.photosets.getPhotos", "flickr.photosets.getInfo"):
            body = await emulator_call(em, method, photoset_id=list_id)
            assert body == {"stat": "fail", "code": 1, "message": "Photoset not found"}


async def test_a_list_gone_mid_run_answers_not_found(em: RunningEmulator) -> None:
    gallery = next(iter(lists(em).galleries.values()))
    em.emulator.ctx.gone.add(gallery.list_id)
    body = await emulator_call(em, "flickr.galleries.getPhotos", gallery_id=gallery.list_id)
    assert body["code"] == 1


async def test_galleries_hold_at_most_500_and_page_100_by_default(em: RunningEmulator) -> None:
    assert all(g.rows.size <= MAX_GALLERY for g in lists(em).galleries.values())
    gallery = max(lists(em).galleries.values(), key=lambda g: g.rows.size)
    body = await emulator_call(em, "flickr.galleries.getPhotos", gallery_id=gallery.list_id)
    assert set(body["photos"]) == {"page", "pages", "perpage", "total", "photo"}
    assert body["photos"]["perpage"] == 100
    assert all("owner" in p and "is_primary" in p for p in body["photos"]["photo"])
    info = await emulator_call(em, "flickr.galleries.getInfo", gallery_id=gallery.list_id)
    looked = await emulator_call(em, "flickr.urls.lookupGallery", url=info["gallery"]["url"])
    assert looked["gallery"]["id"] == gallery.list_id
    assert int(info["gallery"]["count_photos"]) == gallery.rows.size


async def test_a_group_pool_is_listed_searched_and_looked_up_alike(em: RunningEmulator) -> None:
    group = next(iter(lists(em).groups.values()))
    pool = await em.truth(group_id=group.list_id)
    assert sorted(pool) == sorted(em.emulator.corpus.photo_id(int(r)) for r in group.rows)
    body = await emulator_call(
        em,
        "flickr.groups.pools.getPhotos",
        group_id=group.list_id,
        per_page="500",
        extras="date_upload",
    )
    assert body["photos"]["total"] == len(pool)
    assert all(p["dateadded"] for p in body["photos"]["photo"])
    search = await emulator_call(em, "flickr.photos.search", group_id=group.list_id, per_page="500")
    assert search["photos"]["total"] == len(pool)
    url = f"https://www.flickr.com/groups/{group.alias}/pool/"
    looked = await emulator_call(em, "flickr.urls.lookupGroup", url=url)
    assert looked["group"] == {"id": group.list_id, "groupname": {"_content": group.title}}
    info = await emulator_call(em, "flickr.groups.getInfo", group_id=group.list_id)
    assert info["group"]["name"] == {"_content": group.title}
    unknown = await emulator_call(em, "flickr.groups.getInfo", group_id="1@N20")
    assert unknown == {"stat": "fail", "code": 1, "message": "Group not found"}


async def test_commons_institutions_in_the_xml_to_json_shape(em: RunningEmulator) -> None:
    body = await emulator_call(em, "flickr.commons.getInstitutions")
    items = body["institutions"]["institution"]
    assert items, "the corpus has institutions among its owners"
    first = items[0]
    assert set(first) == {"nsid", "date_launch", "name", "urls"}
    assert set(first["name"]) == {"_content"}
    assert {u["type"] for u in first["urls"]["url"]} == {"site", "license", "flickr"}
    nsids = {i["nsid"] for i in items}
    truth = await em.truth(commons="1")
    owners = {str(em.emulator.corpus.owner_nsid[int(o)]) for o in em.emulator.corpus.cols["owner"]}
    assert nsids <= owners
    assert len(truth) == sum([len(await em.truth(user_id=n)) for n in nsids])


async def test_the_list_methods_answer_rest_xml_too(em: RunningEmulator) -> None:
    album = next(a for a in lists(em).albums.values() if not a.private)
    root = await emulator_call(
        em, "flickr.photosets.getPhotos", fmt="rest", photoset_id=album.list_id
    )
    assert root.attrib["stat"] == "ok"
    assert root[0].tag == "photoset"
    assert root[0].attrib["owner"] == em.emulator.corpus.owner_nsid[album.owner]


async def test_flickrapi_pages_an_album_and_a_pool_unchanged(em: RunningEmulator) -> None:
    """The real flickrapi (POST, OAuth header, parsed JSON) reads the emulator's lists.

    Its own `walk_set` cannot be used: flickrapi 2.4 calls `Element.getchildren`, which
    Python 3.9 removed.
    """
    api = flickrapi.FlickrAPI(
        em.api_key, "0123456789abcdef", format="parsed-json", store_token=False
    )
    api.REST_URL = em.rest_url
    album = next(a for a in lists(em).albums.values() if not a.private and a.rows.size > 500)
    walked: list[str] = []
    pages = 1
    for page in range(1, 50):
        resp = await asyncio.to_thread(
            api.photosets.getPhotos, photoset_id=album.list_id, page=page, per_page=500
        )
        walked += [p["id"] for p in resp["photoset"]["photo"]]
        pages = int(resp["photoset"]["pages"])
        if page >= pages:
            break
    assert pages > 1
    assert walked == await em.truth(photoset_id=album.list_id)
    group = next(g for g in lists(em).groups.values() if 0 < g.rows.size < 400)
    resp = await asyncio.to_thread(api.groups.pools.getPhotos, group_id=group.list_id, per_page=500)
    pool = {p["id"] for p in resp["photos"]["photo"]}
    assert pool == set(await em.truth(group_id=group.list_id))
