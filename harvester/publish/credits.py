"""Credits: title, author, source and licence (TASL) of every stored photo, and what was done.

`credit_of` makes one `Credit` from an export row and its image changes; `CSV_COLUMNS` and
`csv_row` are the machine-readable file, `markdown_head` and `markdown_row` the one for
people. Everything that came from Flickr (titles, names) is escaped before it reaches
Markdown: a title is data, never markup, whatever pipes, brackets, HTML or newlines it holds.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from harvester.publish.changes import (
    FRAME_REMOVED,
    NONE,
    UNKNOWN,
    ImageChanges,
    modifications_text,
)
from harvester.publish.columns import source_of
from harvester.publish.licensing import WARNINGS, Flag, flags, licence

PAGE_URL = "https://www.flickr.com/photos/{owner}/{id}/"
PROFILE_URL = "https://www.flickr.com/people/{owner}/"
API_NOTICE = "This product uses the Flickr API but is not endorsed or certified by Flickr."


@dataclass(frozen=True, slots=True, kw_only=True)
class Credit:
    """One stored photo's credit line."""

    file: str
    photo_id: str
    title: str
    author: str
    author_nsid: str
    author_url: str
    page_url: str
    source: str
    license_id: int
    license_name: str
    license_url: str
    flags: tuple[Flag, ...]
    modifications: str

    @property
    def attribution(self) -> str:
        """The TASL sentence, with the source page and the modifications appended."""
        title = f'"{self.title}"' if self.title else "This work"
        if Flag.ALL_RIGHTS_RESERVED in self.flags:
            text = f"{title} by {self.author}: all rights reserved (no licence granted)."
        else:
            verb = "is marked with" if Flag.PUBLIC_DOMAIN in self.flags else "is licensed under"
            text = f"{title} by {self.author} {verb} {self.license_name}."
        if self.license_url:
            text += f" To view the terms, visit {self.license_url}."
        return f"{text} Source: {self.page_url}. Modifications: {self.modifications}."


def _url_part(text: str) -> str:
    return quote(text, safe="@")


def credit_of(row: Mapping[str, Any], changes: ImageChanges | None) -> Credit:
    """The credit of an exported stored photo (`path` set) and what the image stage did."""
    owner, pid = str(row["owner"]), str(row["id"])
    lic = licence(int(row["license"]))
    return Credit(
        file=str(row["path"]),
        photo_id=pid,
        title=str(row.get("title") or ""),
        author=str(row.get("owner_name") or owner),
        author_nsid=owner,
        author_url=PROFILE_URL.format(owner=_url_part(owner)),
        page_url=PAGE_URL.format(owner=_url_part(owner), id=_url_part(pid)),
        source=source_of(row),
        license_id=lic.id,
        license_name=lic.name,
        license_url=lic.url,
        flags=flags(lic.id),
        modifications=modifications_text(changes),
    )


# --- CSV ---------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "file",
    "photo_id",
    "title",
    "author",
    "author_nsid",
    "author_url",
    "source_url",
    "source",
    "license_id",
    "license",
    "license_url",
    "no_derivatives",
    "all_rights_reserved",
    "flags",
    "modifications",
    "attribution",
)


def csv_row(credit: Credit) -> list[str]:
    """The credit's cells, in CSV_COLUMNS order (flags `|`-joined, the two warnings as yes/no)."""
    return [
        credit.file,
        credit.photo_id,
        credit.title,
        credit.author,
        credit.author_nsid,
        credit.author_url,
        credit.page_url,
        credit.source,
        str(credit.license_id),
        credit.license_name,
        credit.license_url,
        _yes(Flag.NO_DERIVATIVES in credit.flags),
        _yes(Flag.ALL_RIGHTS_RESERVED in credit.flags),
        "|".join(credit.flags),
        credit.modifications,
        credit.attribution,
    ]


def _yes(value: bool) -> str:
    return "yes" if value else "no"


# --- counts ------------------------------------------------------------------------------------


@dataclass(slots=True)
class CreditCounts:
    """Tallies over the credits, for the counts on top of CREDITS.md and the card."""

    photos: int = 0
    by_flag: Counter[Flag] = field(default_factory=Counter)
    by_licence: Counter[tuple[int, str, str]] = field(default_factory=Counter)  # id, name, url
    modified: int = 0
    unknown_changes: int = 0
    nd_cropped: int = 0  # ND photos whose frame was cut off: a crop is an adaptation

    def add(self, credit: Credit) -> None:
        """Count one credit."""
        self.photos += 1
        self.by_flag.update(credit.flags)
        self.by_licence[(credit.license_id, credit.license_name, credit.license_url)] += 1
        self.modified += credit.modifications not in (NONE, UNKNOWN)
        self.unknown_changes += credit.modifications == UNKNOWN
        cropped = credit.modifications.startswith(FRAME_REMOVED)
        self.nd_cropped += cropped and Flag.NO_DERIVATIVES in credit.flags


# --- Markdown ----------------------------------------------------------------------------------

#: Characters that are markup inside a Markdown table cell: backslash, code, emphasis, strike,
#: links and images, the cell separator. `<`, `>` and `&` become entities instead.
_MARKUP = re.compile(r"([\\`*_~\[\]|])")
#: Control characters (Unicode category Cc) and the direction overrides that reorder a line.
_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def md_escape(text: str) -> str:
    """Text as literal Markdown inside a table cell: one line, no markup, no HTML."""
    text = " ".join(text.split())  # newlines (any Unicode line break) and tabs become spaces
    text = _INVISIBLE.sub("", text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKUP.sub(r"\\\1", text)


def md_link(text: str, url: str) -> str:
    """`[text](url)` with the text escaped; the escaped text alone when there is no URL."""
    shown = md_escape(text)
    if not url:
        return shown
    return f"[{shown}](<{url.replace('<', '%3C').replace('>', '%3E')}>)"


_WARNING_TEXT = {
    Flag.NO_DERIVATIVES: (
        "no derivatives (ND)",
        "may be shared only as they are: crops and other adaptations of them may not be"
        " shared (a resize for another medium arguably is not one).",
    ),
    Flag.ALL_RIGHTS_RESERVED: (
        "all rights reserved",
        "grant no licence at all: using them needs the author's permission.",
    ),
}


def markdown_head(counts: CreditCounts, name: str) -> str:
    """The top of CREDITS.md: counts, the flagged photos first, then one line per licence."""
    lines = [
        f"# Credits: {md_escape(name)}",
        "",
        f"{counts.photos} photos, each credited below with its title, author, source page,"
        " licence and the modifications harvest made to it.",
        "",
    ]
    for flag in WARNINGS:
        label, meaning = _WARNING_TEXT[flag]
        lines.append(
            f"- **{label}: {counts.by_flag[flag]}** photos, flagged `{flag}`; they {meaning}"
        )
    lines += [
        f"- of the ND photos, {counts.nd_cropped} had a frame cut off, which is a crop: leave"
        " them out or harvest them again with `--no-frame-strip` before sharing them.",
        f"- modified: {counts.modified}; modifications not recorded: {counts.unknown_changes}",
        "",
        "| licence | photos |",
        "|---|---:|",
    ]
    for (_id, lic_name, url), n in sorted(counts.by_licence.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {md_link(lic_name, url)} | {n} |")
    lines += ["", API_NOTICE, "", _TABLE_HEAD, "|---|---|---|---|---|---|---|"]
    return "\n".join(lines) + "\n"


_TABLE_HEAD = "| file | title | author | source | licence | flags | modifications |"


def markdown_row(credit: Credit) -> str:
    """One photo as a table row (its file, linked page, author profile and licence)."""
    title = md_escape(credit.title) if credit.title else "*untitled*"
    flagged = ", ".join(f"**{f}**" if f in WARNINGS else str(f) for f in credit.flags)
    cells = (
        md_escape(credit.file),
        title,
        md_link(credit.author, credit.author_url),
        md_link(f"flickr {credit.photo_id}", credit.page_url)
        + (f" ({md_escape(credit.source)})" if credit.source != "flickr" else ""),
        md_link(credit.license_name, credit.license_url),
        flagged,
        md_escape(credit.modifications),
    )
    return "| " + " | ".join(cells) + " |\n"
