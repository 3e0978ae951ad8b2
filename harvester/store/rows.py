"""What the store hands out: claim results, window rows, pending photos, summaries, and the
functions that turn the store's SQL rows into them (harvester.store.sqlite runs the queries)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harvester.records import PhotoRecord, PhotoStatus, Window, reason_key
from harvester.store.schema import KEYWORD_SEP, NO_LICENSE, record_from_json


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """What a committed window yielded: photos this keyword claimed first, and the rest."""

    new: tuple[PhotoRecord, ...]
    duplicates: int

    @property
    def new_ids(self) -> tuple[str, ...]:
        """Ids of the newly claimed photos."""
        return tuple(photo.id for photo in self.new)


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowRow:
    """A row of the windows table: a searched window of one keyword, as checkpointed.

    `window.license` None means every licence at once (NO_LICENSE in the table).
    """

    keyword: str
    window: Window
    found: int
    new: int
    reported_total: int | None
    capped: bool
    finished_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingPhoto:
    """A claimed photo to download, with where it goes: its keyword and that keyword's seq.

    `seq` numbers a keyword's photos from 0 in claim order, fixed at claim time, so the
    writer's `<keyword>/<NNNNN>/` directory (1,000 per directory) is the same on every resume.
    """

    rowid: int
    keyword: str
    seq: int
    record: PhotoRecord
    keywords: tuple[str, ...]
    attempts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class KeywordSummary:
    """Per-keyword totals: windows searched, photos found/new/duplicate, outcomes."""

    keyword: str
    windows: int = 0
    found: int = 0
    new: int = 0
    duplicates: int = 0
    claimed: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class StoreSummary:
    """Counts for progress, `harvest status` and the end-of-run summary."""

    statuses: Mapping[str, int]
    keywords: tuple[KeywordSummary, ...]
    reasons: Mapping[str, int]  # "skipped: too small" -> count

    @property
    def photos(self) -> int:
        """Photos claimed in total, whatever their status."""
        return sum(self.statuses.values())

    def render(self) -> str:
        """A plain-text table: one line per keyword, a total, then the reasons tally."""
        head = f"{'keyword':<24} {'windows':>8} {'found':>9} {'new':>9} {'dup':>8} "
        head += f"{'pending':>8} {'done':>9} {'skipped':>8} {'failed':>7}"
        lines = [head]
        for k in (*self.keywords, _total(self.keywords)):
            lines.append(
                f"{k.keyword[:24]:<24} {k.windows:>8} {k.found:>9} {k.new:>9} {k.duplicates:>8} "
                f"{k.claimed:>8} {k.done:>9} {k.skipped:>8} {k.failed:>7}"
            )
        lines += [f"  {reason}: {count}" for reason, count in sorted(self.reasons.items())]
        return "\n".join(lines)


def _total(keywords: Sequence[KeywordSummary]) -> KeywordSummary:
    names = ("windows", "found", "new", "duplicates", "claimed", "done", "skipped", "failed")
    sums = {name: sum(getattr(k, name) for k in keywords) for name in names}
    return KeywordSummary(keyword="TOTAL", **sums)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportRow:
    """One photo with everything the store knows about it, for export."""

    record: PhotoRecord
    keyword: str
    keywords: tuple[str, ...]
    status: str
    reason: str | None
    attempts: int
    path: str | None
    sha256: str | None
    width: int | None
    height: int | None
    size_label: str | None
    duplicate_of: int | None = None  # the representative of its duplicate group, if a copy
    duplicate_kind: str | None = None  # what kind of copy of it (`harvest dupes`)


# --- rows to records -------------------------------------------------------------------------

WINDOW_COLUMNS = "keyword, start_s, end_s, license, found, new, reported_total, capped, finished_at"
PENDING_COLUMNS = (
    f"id, keyword, seq, record, (SELECT group_concat(keyword, char({ord(KEYWORD_SEP)}))"
    " FROM photo_keywords k WHERE k.photo_id = photos.id), attempts"
)


def split_keywords(joined: str | None, claimer: str) -> tuple[str, ...]:
    """A photo's keywords from group_concat, sorted; at least the claiming keyword."""
    return tuple(sorted(joined.split(KEYWORD_SEP))) if joined else (claimer,)


def window_row(row: Sequence[Any]) -> WindowRow:
    """A row selected with WINDOW_COLUMNS as a WindowRow."""
    keyword, start, end, lic, found, new, total, capped, finished = row
    return WindowRow(
        keyword=keyword,
        window=Window(start=start, end=end, license=None if lic == NO_LICENSE else lic),
        found=found,
        new=new,
        reported_total=total,
        capped=bool(capped),
        finished_at=finished,
    )


def pending_photo(row: Sequence[Any]) -> PendingPhoto:
    """A row selected with PENDING_COLUMNS as a PendingPhoto."""
    rowid, keyword, seq, record, joined, attempts = row
    return PendingPhoto(
        rowid=rowid,
        keyword=keyword,
        seq=seq,
        record=record_from_json(record),
        keywords=split_keywords(joined, keyword),
        attempts=attempts,
    )


def export_row(row: Sequence[Any]) -> ExportRow:
    """A row of the export query as an ExportRow."""
    record, keyword, joined, status, reason, attempts, path, sha, width, height, size = row[:11]
    duplicate_of, duplicate_kind = row[11:13]
    return ExportRow(
        record=record_from_json(record),
        keyword=keyword,
        keywords=split_keywords(joined, keyword),
        status=status,
        reason=reason,
        attempts=attempts,
        path=path,
        sha256=sha,
        width=width,
        height=height,
        size_label=size,
        duplicate_of=duplicate_of,
        duplicate_kind=duplicate_kind,
    )


def build_summary(
    windows: Iterable[Sequence[Any]],
    by_status: Iterable[Sequence[Any]],
    reasons: Iterable[Sequence[Any]],
) -> StoreSummary:
    """The summary from the three grouped queries of Store.summary."""
    per: dict[str, dict[str, int]] = {}
    for keyword, count, found, new in windows:
        per[keyword] = {"windows": count, "found": found, "new": new, "duplicates": found - new}
    statuses: dict[str, int] = {}
    for keyword, status, count in by_status:
        if status in PhotoStatus.__members__.values():
            per.setdefault(keyword, {})[status] = count
        statuses[status] = statuses.get(status, 0) + count
    keywords = tuple(
        KeywordSummary(keyword=keyword, **counts) for keyword, counts in sorted(per.items())
    )
    tally: dict[str, int] = {}
    for status, reason, count in reasons:
        key = reason_key(status, reason)
        tally[key] = tally.get(key, 0) + count
    return StoreSummary(statuses=statuses, keywords=keywords, reasons=tally)
