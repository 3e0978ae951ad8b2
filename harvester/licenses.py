"""Flickr's licence table (ids 0-16), as licenses.getInfo returned it on 2025-06-19."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class License:
    """One Flickr licence: numeric id, short name and canonical URL."""

    id: int
    name: str
    url: str


_ARR_URL = (
    "https://www.flickrhelp.com/hc/en-us/articles/"
    "10710266545556-Using-Flickr-images-shared-by-other-members"
)

#: In the order the API returns them (reference/flickr-api.md §D).
LICENSES: tuple[License, ...] = (
    License(id=0, name="All Rights Reserved", url=_ARR_URL),
    License(id=4, name="CC BY 2.0", url="https://creativecommons.org/licenses/by/2.0/"),
    License(id=6, name="CC BY-ND 2.0", url="https://creativecommons.org/licenses/by-nd/2.0/"),
    License(id=3, name="CC BY-NC-ND 2.0", url="https://creativecommons.org/licenses/by-nc-nd/2.0/"),
    License(id=2, name="CC BY-NC 2.0", url="https://creativecommons.org/licenses/by-nc/2.0/"),
    License(id=1, name="CC BY-NC-SA 2.0", url="https://creativecommons.org/licenses/by-nc-sa/2.0/"),
    License(id=5, name="CC BY-SA 2.0", url="https://creativecommons.org/licenses/by-sa/2.0/"),
    License(
        id=7, name="No known copyright restrictions", url="https://www.flickr.com/commons/usage/"
    ),
    License(
        id=8, name="United States Government Work", url="https://www.usa.gov/government-copyright"
    ),
    License(
        id=9,
        name="Public Domain Dedication (CC0)",
        url="https://creativecommons.org/publicdomain/zero/1.0/",
    ),
    License(
        id=10, name="Public Domain Mark", url="https://creativecommons.org/publicdomain/mark/1.0/"
    ),
    License(id=11, name="CC BY 4.0", url="https://creativecommons.org/licenses/by/4.0/"),
    License(id=12, name="CC BY-SA 4.0", url="https://creativecommons.org/licenses/by-sa/4.0/"),
    License(id=13, name="CC BY-ND 4.0", url="https://creativecommons.org/licenses/by-nd/4.0/"),
    License(id=14, name="CC BY-NC 4.0", url="https://creativecommons.org/licenses/by-nc/4.0/"),
    License(
        id=15, name="CC BY-NC-SA 4.0", url="https://creativecommons.org/licenses/by-nc-sa/4.0/"
    ),
    License(
        id=16, name="CC BY-NC-ND 4.0", url="https://creativecommons.org/licenses/by-nc-nd/4.0/"
    ),
)

BY_ID: dict[int, License] = {lic.id: lic for lic in LICENSES}
ALL_IDS: tuple[int, ...] = tuple(sorted(BY_ID))


def license_for(license_id: int) -> License:
    """The licence with this id; an unknown id (Flickr may add more) gets a placeholder."""
    return BY_ID.get(
        license_id, License(id=license_id, name=f"Flickr licence {license_id}", url="")
    )
