"""What each Flickr licence asks of someone who reuses a photo, as flags.

From the licence texts (reference/provenance-report.md §4): ND forbids sharing adaptations
(a crop is one; a resize for another medium arguably is not), NC forbids commercial use, SA
asks adaptations to be shared alike, all rights reserved (id 0) grants nothing, and the public
domain marks (7-10) need no attribution, though the credit is kept all the same.
"""

from __future__ import annotations

from enum import StrEnum

from harvester.licenses import License, license_for


class Flag(StrEnum):
    """A licence property worth flagging next to a photo."""

    ALL_RIGHTS_RESERVED = "all-rights-reserved"
    NO_DERIVATIVES = "no-derivatives"
    NON_COMMERCIAL = "non-commercial"
    SHARE_ALIKE = "share-alike"
    PUBLIC_DOMAIN = "public-domain"
    UNKNOWN = "unknown-licence"


_FLAGS: dict[int, frozenset[Flag]] = {
    0: frozenset({Flag.ALL_RIGHTS_RESERVED}),
    1: frozenset({Flag.NON_COMMERCIAL, Flag.SHARE_ALIKE}),
    2: frozenset({Flag.NON_COMMERCIAL}),
    3: frozenset({Flag.NON_COMMERCIAL, Flag.NO_DERIVATIVES}),
    4: frozenset(),
    5: frozenset({Flag.SHARE_ALIKE}),
    6: frozenset({Flag.NO_DERIVATIVES}),
    7: frozenset({Flag.PUBLIC_DOMAIN}),
    8: frozenset({Flag.PUBLIC_DOMAIN}),
    9: frozenset({Flag.PUBLIC_DOMAIN}),
    10: frozenset({Flag.PUBLIC_DOMAIN}),
    11: frozenset(),
    12: frozenset({Flag.SHARE_ALIKE}),
    13: frozenset({Flag.NO_DERIVATIVES}),
    14: frozenset({Flag.NON_COMMERCIAL}),
    15: frozenset({Flag.NON_COMMERCIAL, Flag.SHARE_ALIKE}),
    16: frozenset({Flag.NON_COMMERCIAL, Flag.NO_DERIVATIVES}),
}

#: The flags a credits file calls out (and counts) first: they limit what may be shared.
WARNINGS: tuple[Flag, ...] = (Flag.NO_DERIVATIVES, Flag.ALL_RIGHTS_RESERVED)


def flags(license_id: int) -> tuple[Flag, ...]:
    """The licence's flags in Flag order; UNKNOWN for an id Flickr may add later."""
    found = _FLAGS.get(license_id, frozenset({Flag.UNKNOWN}))
    return tuple(flag for flag in Flag if flag in found)


def licence(license_id: int) -> License:
    """The licence's name and URL (a placeholder name for an unknown id)."""
    return license_for(license_id)
