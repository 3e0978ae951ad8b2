"""`harvest merge OUT1 OUT2 … --into OUT`: join shard outputs, each photo once.

Shards run with `--shard K/N` own disjoint keywords, but one photo can match keywords of two
shards. The merged output holds every photo once, under the keyword of the first source that
harvested it (a harvested copy beats an unfinished one), with every keyword that found it, in
the usual `OUT/<keyword>/<NNNNN>/` layout numbered afresh. Finished windows are merged too, so
`harvest run` on the merged output resumes without searching them again.

Files are hard-linked when the sources share the filesystem, copied otherwise, and placed
(temporary name, fsync, rename) before their row says done; a new photo's row (unfinished, with
its keyword and number) is written before its file is placed, so the file of a merge cut short
lands on the same path when the merge is run again. A source's windows are merged after its
photos, so an interrupted merge never marks a window finished whose photos are missing (a
`harvest run` on it would never claim them). An interrupted merge is simply run again.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import replace
from pathlib import Path

from harvester.exceptions import ConfigError
from harvester.images.writer import cleanup_temp_files, photo_path
from harvester.records import PhotoStatus
from harvester.store.merge import MergeStore
from harvester.store.rows import ExportRow
from harvester.store.sqlite import Store, existing_store

log = logging.getLogger(__name__)

BATCH = 500


def merge_outputs(sources: list[Path], into: Path) -> int:
    """Merge the harvest outputs `sources` into `into`; returns the photos added or upgraded."""
    for src in sources:
        existing_store(src)
        if src.resolve() == into.resolve():
            raise ConfigError(f"{src} is the merge target; list only the other outputs")
    try:
        into.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the merge target {into}: {exc.strerror}") from exc
    cleanup_temp_files(into)  # left by a merge that was killed
    merged = 0
    with Store.in_dir(into) as target:
        dest = MergeStore(target)
        for src in sources:
            with Store.open(existing_store(src), readonly=True) as store:
                batch: list[ExportRow] = []
                for row in store.iter_export():
                    batch.append(row)
                    if len(batch) >= BATCH:
                        merged += _merge_batch(dest, src, into, batch)
                        batch = []
                merged += _merge_batch(dest, src, into, batch)
                windows = dest.import_windows(store.all_windows())
            log.info("merged %s: %d windows", src, windows)
    return merged


def _merge_batch(dest: MergeStore, src: Path, into: Path, rows: list[ExportRow]) -> int:
    states = dest.photo_states([row.record.id for row in rows])
    merged = 0
    for row in rows:
        done_path = row.path if row.status == PhotoStatus.DONE.value else None
        state = states.get(row.record.id)
        if state is not None and (state[0] == PhotoStatus.DONE.value or done_path is None):
            dest.add_keywords(row.record.id, row.keywords)
            continue
        merged += 1
        if state is None:
            keyword, seq = row.keyword, dest.reserve_seq(row.keyword)
            # Recorded (a done photo as unfinished) before its file is placed: see the top.
            dest.import_photo(row, seq, None)
        else:
            keyword, seq = state[1], state[2]
        if done_path is not None:
            target = photo_path(into, keyword, seq, row.record)
            _place(src / done_path, target)
            path = target.relative_to(into).as_posix()
            dest.import_photo(_with_keyword(row, keyword), seq, path)
    return merged


def _with_keyword(row: ExportRow, keyword: str) -> ExportRow:
    return replace(row, keyword=keyword)


def _place(source: Path, target: Path) -> None:
    """Hard-link (or copy) `source` to `target` atomically."""
    if not source.is_file():
        raise ConfigError(f"{source} is recorded as harvested but missing; run `harvest run` there")
    if target.exists() and os.path.samefile(source, target):
        return  # linked by a merge that was cut short (renaming a link onto itself is a no-op)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    temp.unlink(missing_ok=True)
    try:
        os.link(source, temp)
    except OSError:
        shutil.copyfile(source, temp)
        with temp.open("rb") as fh:
            os.fsync(fh.fileno())
    os.replace(temp, target)
