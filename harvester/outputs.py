"""The dataset outputs of a harvest: credits, the dataset card, HF metadata and Parquet.

The publish room makes every line from export rows; this module reads the store (read-only,
so it runs beside a live harvest), joins each stored photo with what the image stage did,
and writes the files. Every file is written under a temporary name in its directory and
renamed into place, so a reader never sees half a file and a failure changes nothing.

- CREDITS.csv / CREDITS.md: harvest's own files, rewritten at the end of every run and by
  `harvest export --format credits`.
- README.md (the card): rewritten only while it is the card harvest wrote (publish.card).
- metadata.jsonl (`--format hf`) and `--output` files: never written over; an existing one is
  an error (ConfigError: one line, exit code 2).
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from harvester import __version__
from harvester.exceptions import ConfigError, HarvestError
from harvester.export import export, row_dict
from harvester.images import jpegmeta
from harvester.publish import EXPORT_FORMATS, hf
from harvester.publish import card as cards
from harvester.publish.changes import ImageChanges, from_file_record, from_store
from harvester.publish.credits import (
    CSV_COLUMNS,
    CreditCounts,
    credit_of,
    csv_row,
    markdown_head,
    markdown_row,
)
from harvester.publish.tables import write_parquet
from harvester.store import outputs as facts
from harvester.store.sqlite import Store, existing_store

log = logging.getLogger(__name__)

FORMATS = EXPORT_FORMATS
CREDITS_CSV = "CREDITS.csv"
CREDITS_MD = "CREDITS.md"

Row = dict[str, Any]


# --- files -------------------------------------------------------------------------------------


def _temp_of(path: Path) -> Path:
    # The writer's temporary-name pattern: a run started after a crash removes leftovers.
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside `path`, renamed onto it when the block ends without error."""
    temp = _temp_of(path)
    try:
        yield temp
        with temp.open("rb") as done:
            os.fsync(done.fileno())
        os.replace(temp, path)
    except OSError as exc:
        if exc.filename is None or str(exc.filename) != str(temp):
            raise
        raise type(exc)(exc.errno, exc.strerror, str(path)) from exc  # name the file asked for
    finally:
        temp.unlink(missing_ok=True)


@contextlib.contextmanager
def replacing_text(path: Path) -> Iterator[IO[str]]:
    """A text file that replaces `path` when the block ends without error."""
    with replacing(path) as temp, temp.open("w", encoding="utf-8", newline="") as sink:
        yield sink


def refuse_existing(path: Path, hint: str = "remove it or choose another --output") -> None:
    """An export never writes over a file: ConfigError when `path` exists."""
    if path.exists():
        raise ConfigError(f"{path} exists; {hint}")


# --- rows --------------------------------------------------------------------------------------


def stored_rows(store: Store) -> Iterator[Row]:
    """Export rows of the photos whose file is stored, in id order."""
    return (row_dict(r) for r in store.iter_export() if r.status == "done" and r.path)


def require_stored(store: Store, out: Path) -> int:
    """The number of stored photos; ConfigError when there is none."""
    count = facts.stored_count(store)
    if not count:
        raise ConfigError(f"{out} holds no stored photo yet: nothing to publish")
    return count


def file_changes(out: Path, row: Row) -> ImageChanges | None:
    """What the image stage did, from the record it wrote into the stored file itself."""
    try:
        data = (out / row["path"]).read_bytes()
        info = jpegmeta.parse_jpeg(data)
        com = next((s for s in info.segments if s.marker == jpegmeta.COM), None)
        meta = orjson.loads(com.payload(data)) if com is not None else None
    except (OSError, ValueError, HarvestError):  # orjson's errors are ValueErrors
        return None
    return from_file_record(row, meta) if isinstance(meta, dict) else None


def with_changes(store: Store, out: Path) -> Iterator[tuple[Row, ImageChanges | None]]:
    """Every stored photo with its changes: from the store (the fingerprint's content box,
    joined in id order), else from its file."""
    sizes = facts.content_sizes(store)
    pending = next(sizes, None)
    for row in stored_rows(store):
        pid = int(row["id"])
        while pending is not None and pending[0] < pid:
            pending = next(sizes, None)
        content = (pending[1], pending[2]) if pending is not None and pending[0] == pid else None
        yield row, from_store(row, content) or file_changes(out, row)


# --- credits and card --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Published:
    """What a credits (and card) pass wrote."""

    photos: int
    flagged: Counter[str]
    card: Path | None  # None: an edited card was left alone


def dataset_name(out: Path) -> str:
    """The dataset's name: its directory's."""
    return out.resolve().name or "harvest"


def publish(out: Path, *, card: bool = True) -> Published:
    """Write CREDITS.csv and CREDITS.md (and the card) from one pass over the stored photos."""
    with Store.open(existing_store(out), readonly=True) as store:
        require_stored(store, out)
        counts, tally = CreditCounts(), cards.Tally()
        # CREDITS.md has its counts on top: its rows wait in a temporary file meanwhile.
        rows_path = _temp_of(out / f"{CREDITS_MD}.rows")
        try:
            with (
                replacing_text(out / CREDITS_CSV) as sink,
                rows_path.open("w", encoding="utf-8") as md_rows,
            ):
                writer = csv.writer(sink, lineterminator="\n")
                writer.writerow(CSV_COLUMNS)
                for row, changes in with_changes(store, out):
                    credit = credit_of(row, changes)
                    writer.writerow(csv_row(credit))
                    md_rows.write(markdown_row(credit))
                    counts.add(credit)
                    tally.add(row, changes)
            _assemble_md(out / CREDITS_MD, markdown_head(counts, dataset_name(out)), rows_path)
        finally:
            rows_path.unlink(missing_ok=True)
        written = write_card(out, store, tally) if card else None
    flagged = Counter({str(flag): n for flag, n in counts.by_flag.items()})
    return Published(photos=counts.photos, flagged=flagged, card=written)


def _assemble_md(target: Path, head: str, rows: Path) -> None:
    with replacing_text(target) as sink, rows.open(encoding="utf-8") as lines:
        sink.write(head)
        while chunk := lines.read(1 << 20):
            sink.write(chunk)


def collection_facts(store: Store) -> cards.Collection:
    """How the harvest was made, from the store's runs, windows and outcomes."""
    runs = store.runs()
    windows = store.all_windows()
    summary = store.summary()
    config = orjson.loads(runs[-1]["config"]) if runs else {}
    dated = [w for w in windows if not w.window.is_list_page]  # album/gallery pages: no dates
    starts = [w.window.start for w in dated]
    ends = [w.window.end for w in dated]
    finished = [r["finished_at"] for r in runs if r["finished_at"] is not None]
    return cards.Collection(
        version=__version__,
        queries_path=config.get("queries_path"),
        config=config,
        runs=len(runs),
        outcomes=Counter(str(r["outcome"] or "running") for r in runs),
        first_start_s=min((r["started_at"] for r in runs), default=None),
        last_end_s=max(finished, default=None),
        api_calls=facts.api_calls(store),
        windows=len(windows),
        capped_windows=sum(w.capped for w in windows),
        licence_windows=sum(w.window.license is not None for w in windows),
        span_s=(min(starts), max(ends)) if dated else None,
        statuses=dict(summary.statuses),
        reasons=dict(summary.reasons),
        dupes_ran=facts.dupes_ran(store),
    )


def write_card(
    out: Path, store: Store, tally: cards.Tally, target: Path | None = None
) -> Path | None:
    """Write the card to `target` (default OUT/README.md, unless a person has edited it)."""
    path = target or out / cards.CARD
    if target is not None:
        refuse_existing(target)
    elif path.exists() and not cards.may_replace(path.read_text(encoding="utf-8")):
        log.warning("%s was edited (or is not harvest's card): left as it is", path)
        return None
    text = cards.render_card(dataset_name(out), tally, collection_facts(store))
    with replacing_text(path) as sink:
        sink.write(text)
    return path


def card_only(out: Path, target: Path | None) -> Path:
    """`harvest export --format card`: the card alone (its tally needs one pass over rows)."""
    path = target or out / cards.CARD
    if target is None and path.exists() and not cards.may_replace(path.read_text("utf-8")):
        raise ConfigError(
            f"{path} was edited (or is not harvest's card); harvest leaves it alone:"
            " write a fresh card elsewhere with --output FILE"
        )
    with Store.open(existing_store(out), readonly=True) as store:
        require_stored(store, out)
        tally = cards.Tally()
        for row, changes in with_changes(store, out):
            tally.add(row, changes)
        written = write_card(out, store, tally, target)
    assert written is not None
    return written


def after_run(out: Path) -> None:
    """The end of `harvest run`: credits and card, never failing the run over them."""
    log.info("writing %s, %s and the card", CREDITS_CSV, CREDITS_MD)
    try:
        result = publish(out)
    except ConfigError as exc:  # nothing stored yet
        log.info("no credits written: %s", exc)
    except (HarvestError, OSError) as exc:
        log.warning("could not write the credits and card: %s", exc)
    else:
        log.info("credited %d photos in %s and %s", result.photos, CREDITS_MD, CREDITS_CSV)


# --- Hugging Face and Parquet ------------------------------------------------------------------


def write_hf(out: Path, *, duplicates: bool = True) -> int:
    """OUT/metadata.jsonl for `datasets.load_dataset("imagefolder", data_dir=OUT)`."""
    target = out / hf.METADATA
    with Store.open(existing_store(out), readonly=True) as store:
        require_stored(store, out)
        refuse_existing(target, "remove it to write it again")

        def rows() -> Iterator[Row]:
            for row in stored_rows(store):
                if duplicates or row["duplicate_of"] is None:
                    yield hf.metadata_row(row)

        first = hf.leading_rows(rows())
        leading = {row["id"] for row in first}
        count = 0
        with replacing_text(target) as sink:
            for row in itertools.chain(first, (r for r in rows() if r["id"] not in leading)):
                sink.write(orjson.dumps(row).decode())
                sink.write("\n")
                count += 1
    return count


def write_table(
    out: Path,
    target: Path,
    writer: Callable[[Iterable[Row], Path], int],
    *,
    duplicates: bool = True,
) -> int:
    """Every photo's export row written by `writer` (Parquet) to a new file at `target`."""
    refuse_existing(target)
    with Store.open(existing_store(out), readonly=True) as store:
        if not facts.photo_count(store):
            raise ConfigError(f"{out} holds no photo yet: nothing to export")
        rows = (row_dict(r) for r in store.iter_export() if duplicates or r.duplicate_of is None)
        with replacing(target) as temp:
            return writer(rows, temp)


# --- harvest export ----------------------------------------------------------------------------


def run_export(
    out: Path, fmt: str, output: Path | None, *, duplicates: bool, stdout: IO[str]
) -> str:
    """`harvest export OUT --format FMT [--output FILE]`; returns the line to log."""
    if fmt in ("hf", "credits") and output is not None:
        raise ConfigError(f"--format {fmt} writes into {out} itself; --output does not apply")
    if fmt == "credits":
        result = publish(out, card=False)
        return f"credited {result.photos} photos in {out / CREDITS_MD} and {out / CREDITS_CSV}"
    if fmt == "card":
        return f"wrote the dataset card {card_only(out, output)}"
    if fmt == "hf":
        return f"wrote {write_hf(out, duplicates=duplicates)} rows to {out / hf.METADATA}"
    if fmt == "parquet":
        if output is None:
            raise ConfigError("--format parquet needs --output FILE")
        count = write_table(out, output, write_parquet, duplicates=duplicates)
        return f"exported {count} records to {output}"
    return f"exported {_text_export(out, fmt, output, duplicates, stdout)} records"


def _text_export(
    out: Path, fmt: str, output: Path | None, duplicates: bool, stdout: IO[str]
) -> int:
    """JSONL or CSV, to a new file or streamed to stdout."""
    store = existing_store(out)
    if output is not None:
        refuse_existing(output)
    with Store.open(store, readonly=True) as opened:
        if not facts.photo_count(opened):
            raise ConfigError(f"{out} holds no photo yet: nothing to export")
    if output is None:
        return export(store, fmt, stdout, duplicates=duplicates)
    with replacing_text(output) as sink:
        return export(store, fmt, sink, duplicates=duplicates)
