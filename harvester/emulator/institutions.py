"""The institutions among the emulator's owners: the accounts of Openverse's Flickr
sub-provider map (reference/provenance-report.md §1.1), with their NSIDs and display names, so
that a harvest of the emulator finds photos of several sources. The path aliases are the
emulator's own, except `katmainps`, which the report quotes.
"""

from __future__ import annotations

#: (NSID, username, path alias) of the institutions, in the order they are given owners.
INSTITUTIONS: tuple[tuple[str, str, str], ...] = (
    ("24662369@N07", "NASA Goddard Photo and Video", "gsfc"),
    ("61021753@N02", "BioDivLibrary", "biodivlibrary"),
    ("130608600@N05", "Official SpaceX Photos", "spacex"),
    ("136629440@N06", "WOCinTech Chat", "wocintechchat"),
    ("99350217@N03", "Katmai National Park Service", "katmainps"),
    ("35067687@N04", "NASA HQ PHOTO", "nasahqphoto"),
    ("138361426@N08", "East Riding Archives", "eastridingarchives"),
    ("126377022@N07", "Internet Archive Book Images", "internetarchivebookimages"),
    ("98304311@N03", "Regionaal Archief Alkmaar Commons", "archiefalkmaar"),
    ("26577438@N06", "Gulbenkian Art Library", "bibgulbenkian"),
    ("150408343@N02", "Valence Romans Agglomeration Media Library", "valenceromans"),
    ("29988733@N04", "NASA Johnson", "nasajohnson"),
    ("28634332@N05", "NASA's Marshall Space Flight Center", "nasamarshall"),
    ("108488366@N07", "NASAKennedy", "nasakennedy"),
    ("136485307@N06", "Apollo Image Gallery", "apolloimagegallery"),
)
#: Owner index of the first institution and the step between them: owners are Pareto-ranked
#: (owner 0 holds a quarter of the photos), so these mid-ranked ones hold about 4 % together.
FIRST_INSTITUTION, INSTITUTION_STEP = 9, 5


def institution_owner(j: int) -> int:
    """The owner index that the j-th institution takes."""
    return FIRST_INSTITUTION + INSTITUTION_STEP * j


def with_institutions(
    nsids: list[str], names: list[str], aliases: list[str | None]
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str | None, ...]]:
    """The owner identities with institutions in their places (as many as there are owners)."""
    taken = {nsid for nsid, _name, _alias in INSTITUTIONS}
    for i, nsid in enumerate(nsids):  # a drawn NSID may not be an institution's
        while nsid in taken:
            number, _, tail = nsid.partition("@")
            nsid = f"{int(number) + 1}@{tail}"
        nsids[i] = nsid
    for j, (nsid, name, alias) in enumerate(INSTITUTIONS):
        owner = institution_owner(j)
        if owner < len(nsids):
            nsids[owner], names[owner], aliases[owner] = nsid, name, alias
    return tuple(nsids), tuple(names), tuple(aliases)
