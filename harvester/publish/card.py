"""The dataset card, OUT/README.md: a Hugging Face card holding a datasheet for the harvest.

The YAML header is the Hub's (`license: other` naming CREDITS.md for the per-photo licences,
`size_categories` from the count; `task_categories` is the author's to fill). The body has the
sections of Datasheets for Datasets (Gebru et al.), filled from the store where it knows:
composition, collection, preprocessing, distribution. Where only the author can answer, the
Hub's own placeholder, "[More Information Needed]", says so.

A card harvest wrote ends with a marker line holding the SHA-256 of everything above it.
`may_replace` lets harvest rewrite a card only while that still holds: once a person edits it
(or writes their own README.md), harvest never touches it again.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from harvester.publish.changes import ImageChanges
from harvester.publish.columns import source_of
from harvester.publish.credits import API_NOTICE, md_escape, md_link
from harvester.publish.licensing import WARNINGS, Flag, flags, licence

CARD = "README.md"
TODO = "[More Information Needed]"
MARKER = "<!-- harvest card sha256:{digest}: harvest rewrites this card until it is edited -->"
#: The Hub's size categories: the upper bound of each, exclusive.
_SIZES: tuple[tuple[int, str], ...] = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (10**6, "100K<n<1M"),
    (10**7, "1M<n<10M"),
    (10**8, "10M<n<100M"),
    (10**9, "100M<n<1B"),
    (10**10, "1B<n<10B"),
    (10**11, "10B<n<100B"),
    (10**12, "100B<n<1T"),
)


def size_category(n: int) -> str:
    """The Hub's size category for n examples."""
    return next((label for bound, label in _SIZES if n < bound), "n>1T")


@dataclass(slots=True)
class Tally:
    """What the stored photos are, counted in one pass over them."""

    stored: int = 0
    by_keyword: Counter[str] = field(default_factory=Counter)  # the keyword that claimed it
    found_by: Counter[str] = field(default_factory=Counter)  # every keyword that found it
    by_licence: Counter[int] = field(default_factory=Counter)
    by_source: Counter[str] = field(default_factory=Counter)
    by_flag: Counter[Flag] = field(default_factory=Counter)
    upload_years: Counter[int] = field(default_factory=Counter)
    geotagged: int = 0
    copies: Counter[str] = field(default_factory=Counter)  # by duplicate kind
    representatives: set[str] = field(default_factory=set)
    frames_removed: int = 0
    resized: int = 0
    converted: int = 0
    changes_unknown: int = 0

    def add(self, row: Mapping[str, Any], changes: ImageChanges | None) -> None:
        """Count one stored photo (an export row) and what the image stage did to it."""
        self.stored += 1
        self.by_keyword[str(row["keyword"])] += 1
        self.found_by.update(row.get("keywords") or ())
        self.by_licence[int(row["license"])] += 1
        self.by_source[source_of(row)] += 1
        self.by_flag.update(flags(int(row["license"])))
        if row.get("date_upload"):
            self.upload_years[datetime.fromtimestamp(int(row["date_upload"]), UTC).year] += 1
        self.geotagged += row.get("latitude") is not None and row.get("longitude") is not None
        if row.get("duplicate_of"):
            self.copies[str(row.get("duplicate_kind") or "copy")] += 1
            self.representatives.add(str(row["duplicate_of"]))
        self._add_changes(changes)

    def _add_changes(self, changes: ImageChanges | None) -> None:
        if changes is None:
            self.changes_unknown += 1
            return
        self.frames_removed += changes.frame_removed
        self.resized += changes.resized
        self.converted += changes.converted_from is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Collection:
    """How the harvest was made, from the store's runs, windows and outcomes."""

    version: str
    queries_path: str | None
    config: Mapping[str, Any]  # the latest run's configuration
    runs: int
    outcomes: Mapping[str, int]
    first_start_s: float | None
    last_end_s: float | None
    api_calls: int | None  # None: runs made before harvest counted them
    windows: int
    capped_windows: int  # still at the 4,000-result cap: photos probably missed
    licence_windows: int  # split by licence below the date floor
    span_s: tuple[int, int] | None
    statuses: Mapping[str, int]
    reasons: Mapping[str, int]
    dupes_ran: bool


def md_code(text: str) -> str:
    """Text as one inline code span (backslashes show as typed there, so no escaping)."""
    return "`" + " ".join(text.replace("`", "'").split()) + "`"


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "0 %"


def _day(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _table(head: tuple[str, str], rows: list[tuple[str, int]], whole: int) -> list[str]:
    lines = [f"| {head[0]} | {head[1]} | share |", "|---|---:|---:|"]
    lines += [f"| {name} | {n} | {_pct(n, whole)} |" for name, n in rows]
    return [*lines, ""]


def header(name: str, tally: Tally) -> list[str]:
    """The YAML front matter (the Hub reads it) and the title."""
    return [
        "---",
        f"pretty_name: {json.dumps(name)}",
        "license: other",
        "license_name: flickr-mixed",
        "license_link: CREDITS.md",
        "size_categories:",
        f"- {size_category(tally.stored)}",
        "task_categories: []  # yours to fill: image-classification, image-to-text, ...",
        "tags:",
        "- flickr",
        "---",
        "",
        f"# {md_escape(name)}",
        "",
        f"{tally.stored} photos from Flickr, harvested with `harvest`. {TODO}: what it is for.",
        "",
    ]


def motivation() -> list[str]:
    """Only the author knows why."""
    return [
        "## Motivation",
        "",
        f"- Why was the dataset created, and for which task? {TODO}",
        f"- Who created it, on behalf of whom, and who funded it? {TODO}",
        "",
    ]


def composition(tally: Tally, collection: Collection) -> list[str]:
    """What the photos are: counts per keyword, licence, source, place, year, copies."""
    n = tally.stored
    by_kw = [(md_escape(k), c) for k, c in sorted(tally.by_keyword.items())]
    lines = [
        "## Composition",
        "",
        "Each instance is one photo (a JPEG) with its record in",
        "`metadata.jsonl` (`harvest export --format hf`). Photos claimed per keyword"
        " (a photo another keyword also found is counted once, under the first):",
        "",
    ]
    lines += _table(("keyword", "photos"), by_kw, n)
    lines += _table(
        ("licence", "photos"), [_licence_cell(i, c) for i, c in _by_count(tally.by_licence)], n
    )
    lines += _table(
        ("source", "photos"), [(md_escape(s), c) for s, c in _by_count(tally.by_source)], n
    )
    years = sorted(tally.upload_years.items())
    span = f"{years[0][0]}-{years[-1][0]}" if years else "unknown"
    lines += [
        f"- Geotagged: {tally.geotagged} of {n} ({_pct(tally.geotagged, n)}); GPS is kept in the"
        " files' EXIF, so a photo can locate the person who took it.",
        f"- Upload years: {span}.",
        f"- Duplicates: {_duplicates(tally, collection)}",
        "- A sample of Flickr, not all of it: the search API applies its own relevance and"
        " safe-search filters, and the windows below that stayed at the result cap may miss"
        " photos.",
        f"- People and faces are likely in the photos. Sensitive content: {TODO}",
        "",
    ]
    return lines


def _by_count(counts: Counter[Any]) -> list[tuple[Any, int]]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))


def _licence_cell(license_id: int, count: int) -> tuple[str, int]:
    lic = licence(license_id)
    marks = [str(f) for f in flags(license_id) if f in WARNINGS]
    return md_link(lic.name, lic.url) + (f" ({', '.join(marks)})" if marks else ""), count


def _duplicates(tally: Tally, collection: Collection) -> str:
    if not collection.dupes_ran:
        return "not computed (run `harvest dupes OUT`, then write the card again)."
    if not tally.copies:
        return "`harvest dupes` found no copies among the stored photos."
    kinds = ", ".join(f"{kind} {n}" for kind, n in _by_count(tally.copies))
    total = sum(tally.copies.values())
    return (
        f"{total} photos are copies of another ({kinds}), in {len(tally.representatives)}"
        " groups; the export's `duplicate_of` names each one's representative."
    )


def _setting(config: Mapping[str, Any], section: str, name: str) -> str:
    value = (config.get(section) or {}).get(name)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "unknown" if value is None else md_escape(str(value))


def collection(c: Collection) -> list[str]:
    """How it was collected: the queries, the windows, the runs, the API calls, the outcomes."""
    span = "unknown"
    if c.span_s:
        span = f"{_day(c.span_s[0])} to {_day(c.span_s[1])}"
    calls = (
        "not recorded (runs before harvest counted them)" if c.api_calls is None else c.api_calls
    )
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(c.outcomes.items())) or "none"
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(c.statuses.items()))
    lines = [
        "## Collection process",
        "",
        "- Method: `flickr.photos.search`, one call per page of up to 500 results, every field"
        " asked for in the search itself (no call per photo); then one download per photo.",
        f"- Queries file: {md_code(c.queries_path or 'unknown')}; date windows cut on the"
        f" {_setting(c.config, 'search', 'date_field')} date, covering {span}.",
        f"- Windows searched: {c.windows}; split by licence at the date floor:"
        f" {c.licence_windows}; still at the 4,000-result cap (photos probably missed):"
        f" {c.capped_windows}.",
        f"- Runs: {c.runs} ({outcomes}), from {_day(c.first_start_s)} to {_day(c.last_end_s)}.",
        f"- API calls: {calls}.",
        f"- Photos found: {sum(c.statuses.values())} ({statuses}).",
    ]
    lines += [f"  - {md_escape(reason)}: {n}" for reason, n in sorted(c.reasons.items())]
    return [*lines, f"- Who collected it, and were the people shown told? {TODO}", ""]


def preprocessing(tally: Tally, c: Collection) -> list[str]:
    """What the image stage did, with the settings of the latest run."""
    cfg = c.config
    return [
        "## Preprocessing",
        "",
        f"- Size downloaded: {_setting(cfg, 'sizes', 'prefer')} first (Flickr's Large is 1024"
        f" px); images under {_setting(cfg, 'images', 'min_side')} px were skipped.",
        f"- Uniform frames removed: {_setting(cfg, 'images', 'strip_frames')}; removed from"
        f" {tally.frames_removed} photos.",
        f"- Downscaled to at most {_setting(cfg, 'images', 'max_side')} px on the long side:"
        f" {tally.resized} photos; converted to JPEG: {tally.converted}; JPEG quality"
        f" {_setting(cfg, 'images', 'jpeg_quality')} where re-encoded (unchanged pixels are"
        " kept byte for byte).",
        f"- Not recorded for {tally.changes_unknown} photos.",
        "- Every file carries its record: EXIF Artist, Copyright, ImageDescription,"
        " DateTimeOriginal, GPS, and the whole record as JSON (UserComment, JPEG comment).",
        "- Each Flickr photo is stored once, however many keywords found it; copies found by"
        " `harvest dupes` are marked, never deleted.",
        "",
    ]


def uses() -> list[str]:
    """Only the author knows what it is for."""
    return [
        "## Uses",
        "",
        f"- Intended uses: {TODO}",
        f"- Out-of-scope uses: {TODO}",
        f"- Bias, risks and limitations: {TODO} (the keyword, owner and place counts above are"
        " a start)",
        "",
    ]


def distribution(tally: Tally) -> list[str]:
    """The licences: per photo, credited in CREDITS.md and CREDITS.csv."""
    nd, arr = tally.by_flag[Flag.NO_DERIVATIVES], tally.by_flag[Flag.ALL_RIGHTS_RESERVED]
    nc = tally.by_flag[Flag.NON_COMMERCIAL]
    return [
        "## Distribution",
        "",
        "- Every photo keeps its own licence (the table above); `CREDITS.md` and `CREDITS.csv`"
        " give each one's title, author, source page, licence and modifications.",
        f"- Non-commercial only: {nc}; no derivatives: {nd}; all rights reserved: {arr}"
        " (these need the author's permission).",
        f"- How and where it is distributed, and how to ask for a photo's removal: {TODO}",
        f"- {API_NOTICE}",
        "",
    ]


def maintenance(c: Collection) -> list[str]:
    """Who keeps it; how to make it again."""
    queries = c.queries_path or "QUERIES"
    return [
        "## Maintenance",
        "",
        f"- Maintainer and contact: {TODO}",
        f"- Made with harvest {md_escape(c.version)}; the same command resumes or extends it:"
        f" {md_code(f'harvest run {queries} --out OUT')}.",
        "",
    ]


def render_card(name: str, tally: Tally, c: Collection) -> str:
    """The whole card, stamped with its marker."""
    sections = [
        header(name, tally),
        motivation(),
        composition(tally, c),
        collection(c),
        preprocessing(tally, c),
        uses(),
        distribution(tally),
        maintenance(c),
    ]
    return stamp("\n".join(line for section in sections for line in section))


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def stamp(body: str) -> str:
    """The card with its marker line: the SHA-256 of everything above it."""
    body = body.rstrip("\n") + "\n"
    return body + MARKER.format(digest=_digest(body)) + "\n"


def may_replace(existing: str) -> bool:
    """True when `existing` is a card harvest wrote and nobody has edited since."""
    body, _, last = existing.rstrip("\n").rpartition("\n")
    return last == MARKER.format(digest=_digest(body + "\n"))
