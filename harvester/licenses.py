"""Flickr's licence table (ids 0-16), as licenses.getInfo returned it on 2025-06-19."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
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
    License(0, "All Rights Reserved", _ARR_URL),
    License(4, "CC BY 2.0", "https://creativecommons.org/licenses/by/2.0/"),
    License(6, "CC BY-ND 2.0", "https://creativecommons.org/licenses/by-nd/2.0/"),
    License(3, "CC BY-NC-ND 2.0", "https://creativecommons.org/licenses/by-nc-nd/2.0/"),
    License(2, "CC BY-NC 2.0", "https://creativecommons.org/licenses/by-nc/2.0/"),
    License(1, "CC BY-NC-SA 2.0", "https://creativecommons.org/licenses/by-nc-sa/2.0/"),
    License(5, "CC BY-SA 2.0", "https://creativecommons.org/licenses/by-sa/2.0/"),
    License(7, "No known copyright restrictions", "https://www.flickr.com/commons/usage/"),
    License(8, "United States Government Work", "https://www.usa.gov/government-copyright"),
    License(
        9, "Public Domain Dedication (CC0)", "https://creativecommons.org/publicdomain/zero/1.0/"
    ),
    License(10, "Public Domain Mark", "https://creativecommons.org/publicdomain/mark/1.0/"),
    License(11, "CC BY 4.0", "https://creativecommons.org/licenses/by/4.0/"),
    License(12, "CC BY-SA 4.0", "https://creativecommons.org/licenses/by-sa/4.0/"),
    License(13, "CC BY-ND 4.0", "https://creativecommons.org/licenses/by-nd/4.0/"),
    License(14, "CC BY-NC 4.0", "https://creativecommons.org/licenses/by-nc/4.0/"),
    License(15, "CC BY-NC-SA 4.0", "https://creativecommons.org/licenses/by-nc-sa/4.0/"),
    License(16, "CC BY-NC-ND 4.0", "https://creativecommons.org/licenses/by-nc-nd/4.0/"),
)

BY_ID: dict[int, License] = {lic.id: lic for lic in LICENSES}
ALL_IDS: tuple[int, ...] = tuple(sorted(BY_ID))


def license_for(license_id: int) -> License:
    """The licence with this id; an unknown id (Flickr may add more) gets a placeholder."""
    return BY_ID.get(license_id, License(license_id, f"Flickr licence {license_id}", ""))
