"""Typed records shared by the stages: photos as parsed from search results, the date windows
they are searched in, and their outcomes."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

#: The source of a photo whose owner no source map names (Openverse's default provider).
DEFAULT_SOURCE = "flickr"


class PhotoStatus(StrEnum):
    """Where a photo stands in the store."""

    CLAIMED = "claimed"  # found by a search, not yet harvested
    DONE = "done"  # file durably written and committed
    SKIPPED = "skipped"  # dropped by policy (too small, no usable size, ...): not retried
    FAILED = "failed"  # an error (download, corrupt image, ...): retried by --retry-failed


def reason_head(reason: str | None) -> str:
    """A reason's tally key: the text before its first colon or " (", "unknown" if none.

    Reasons read "head: detail" or "head (detail)": "too small: 400x300 < 500" and
    "not found (http 404)" are tallied as "too small" and "not found".
    """
    head = (reason or "").split(":", 1)[0].split(" (", 1)[0].strip()
    return head or "unknown"


def reason_key(status: str, reason: str | None) -> str:
    """The summaries' key for a skipped or failed photo: "skipped: too small"."""
    return f"{status}: {reason_head(reason)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SizeVariant:
    """One downloadable size of a photo, from a url_X extra (or built from originalsecret)."""

    label: str  # the extra's suffix: "l" for url_l, "o" for url_o, "k", "c", ...
    url: str
    width: int
    height: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PhotoRecord:
    """A photo as flickr.photos.search returns it with harvest's extras, types normalised."""

    id: str
    owner: str
    secret: str
    server: str
    farm: int = 0
    title: str = ""
    description: str = ""
    owner_name: str = ""
    tags: tuple[str, ...] = ()
    license: int = 0
    date_upload: int = 0  # unix seconds, UTC
    date_taken: str | None = None  # "YYYY-MM-DD HH:MM:SS", owner's local time
    date_taken_granularity: int = 0
    # Flickr did not know when it was taken and put the upload time in date_taken instead
    # (`datetakenunknown` = 1): that date is no date taken, and no file says it is.
    date_taken_unknown: bool = False
    latitude: float | None = None  # None when not geotagged (Flickr sends 0/0/0)
    longitude: float | None = None
    accuracy: int | None = None
    views: int | None = None
    original_secret: str | None = None
    original_format: str | None = None
    o_width: int | None = None
    o_height: int | None = None
    media: str = "photo"
    sizes: tuple[SizeVariant, ...] = field(default=())
    # Who the photo comes from: an institution named by its owner (harvester.dataset.sources),
    # else Flickr itself; set when the photo is claimed, back-filled by `harvest sources`.
    source: str = DEFAULT_SOURCE

    def size(self, label: str) -> SizeVariant | None:
        """The size with this url_X label, if the search returned it."""
        for variant in self.sizes:
            if variant.label == label:
                return variant
        return None

    @property
    def is_geotagged(self) -> bool:
        """True when the photo has a real geotag (Flickr reports 0,0 for none)."""
        return self.latitude is not None and self.longitude is not None


class DateField(StrEnum):
    """Which date a search window cuts on."""

    UPLOAD = "upload"
    TAKEN = "taken"


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchQuery:
    """One flickr.photos.search call, in harvest's terms; the client maps it to API parameters.

    Dates are unix seconds and both bounds are inclusive, as Flickr's are. For taken dates the
    client sends them as MySQL datetimes (Flickr's taken dates are owner-local, no time zone).
    """

    min_date: int
    max_date: int
    text: str | None = None
    tags: tuple[str, ...] = ()
    tag_mode: str = "any"
    date_field: DateField = DateField.UPLOAD
    licenses: tuple[int, ...] = ()
    bbox: tuple[float, float, float, float] | None = None
    has_geo: bool | None = None
    user_id: str | None = None
    accuracy: int | None = None
    group_id: str | None = None  # a group pool (a `group:` source line)
    sort: str = "date-posted-asc"
    page: int = 1
    per_page: int = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchPage:
    """One page of search results; `total`/`pages` are None when Flickr sent "" or nothing."""

    page: int
    pages: int | None
    per_page: int
    total: int | None
    photos: tuple[PhotoRecord, ...]


@dataclass(frozen=True, slots=True, order=True, kw_only=True)
class Window:
    """A half-open date range `[start, end)` in unix seconds, optionally one licence only."""

    start: int
    end: int
    license: int | None = None

    def contains(self, date: int) -> bool:
        """True when `date` lies in `[start, end)`."""
        return self.start <= date < self.end

    @property
    def is_list_page(self) -> bool:
        """A page of an album or gallery walk, checkpointed as `[page, page + 1)`: no dates
        (a date window is at least one floor bucket, minutes, wide)."""
        return self.end - self.start == 1


class ListKind(StrEnum):
    """A Flickr list of photos walked page by page (not searched): its method and id param."""

    PHOTOSET = "photoset"  # flickr.photosets.getPhotos, photoset_id
    GALLERY = "gallery"  # flickr.galleries.getPhotos, gallery_id
    POOL = "pool"  # flickr.groups.pools.getPhotos, group_id


@dataclass(frozen=True, slots=True, kw_only=True)
class ListQuery:
    """One page of a list method: which list, which page (`owner`: a photoset's user_id)."""

    kind: ListKind
    list_id: str
    owner: str | None = None
    page: int = 1
    per_page: int = 500
