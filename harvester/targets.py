"""`harvest run`'s output side: the target the files go to, and WebDataset shards finalised.

    resolve_out(out, store)   --out / --store → (the store's directory, the target or None)
    prepare_output(cfg)       before work: target writable, pointer written, target recorded
    engine_files(cfg)         the Target the engine writes each photo through (None: as today)
    Finaliser                 webdataset: builds each directory's tar once it can get no more
                              photos (its 1,000 decided, or its keyword searched to the end
                              with nothing pending), in a background thread, and at the end
    sweep_dir(store, t, dir)  one photo directory: delete what the store does not hold as done
    sweep_output(cfg)         at start, an object store: the same over the whole prefix, the
                              temporary objects and unfinished uploads of killed runs

With `--output-format webdataset` each photo is staged (written atomically, like a file of the
files layout) under STORE_DIR/harvest.staging/ before the store records it done (under
`--ray`, on the output target itself, in the files layout, where every node can write and read:
staging_target); a directory's tar is built (pack_dir: from a DirPlan of the store's rows, so a
Ray task can do it) from the staged photos, the photos a tar of it already holds (a rebuild after
more photos came) and the store's rows; only once the tar, Parquet and stats are all in place
are the staged files removed. A kill at any point leaves staged files the next run finishes
from, never a partial tar (temp + rename, or one whole-object upload).
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from harvester.config import OutputFormat, RunConfig
from harvester.exceptions import ConfigError, HarvestError
from harvester.images.writer import FILES_PER_DIR, pid_alive, safe_dirname
from harvester.outputs import CREDITS_CSV, CREDITS_MD
from harvester.publish.card import CARD, may_replace
from harvester.storage.probe import PROBE_PREFIX
from harvester.storage.shards import (
    ShardDropped,
    ShardManifest,
    ShardMember,
    open_shard,
    photo_meta,
    shard_names,
)
from harvester.storage.shards import write_shard as write_shard
from harvester.storage.target import (
    WRITE_TEST_PREFIX,
    LocalTarget,
    Target,
    check_writable,
    is_remote,
    local_path,
    open_target,
)
from harvester.store.batches import done_paths
from harvester.store.shards import (
    DirPhoto,
    dir_photos,
    record_output,
    recorded_output,
    requeue,
    stored_keywords,
)
from harvester.store.sqlite import STORE_FILENAME, STORE_POINTER, Store, store_pointer

log = logging.getLogger(__name__)

STAGING_DIR = "harvest.staging"  # beside the store: photos waiting for their directory's tar


def resolve_out(out: str, store: Path | None) -> tuple[Path, str | None]:
    """The store's directory and the target (None: the files go beside the store)."""
    if store is not None:
        return store, out
    if is_remote(out):
        raise ConfigError(
            f"--out {out} is not a local directory: give --store DIR, a directory on this"
            " machine's disk for the SQLite store (SQLite must not sit on a network filesystem"
            " or an object store)"
        )
    return local_path(out), None


def output_spec(cfg: RunConfig) -> str:
    """`--out` as the target is opened from: a URL, or the directory the files go to."""
    return cfg.output.target or str(cfg.out_dir)


def output_target(cfg: RunConfig) -> Target:
    """Where the files (or shards) finally go."""
    return open_target(output_spec(cfg), fsync=cfg.write.fsync, spool_dir=staging_dir(cfg))


def staging_dir(cfg: RunConfig) -> Path:
    """Where webdataset photos wait for their tar on one machine (and uploads are spooled)."""
    return cfg.out_dir / STAGING_DIR


def staging_target(cfg: RunConfig) -> Target:
    """Where webdataset photos wait for their tar, in the files layout: beside the store on
    one machine; under `--ray`, the output target itself, which every node writes to."""
    if cfg.cluster.address is not None:
        return output_target(cfg)
    return LocalTarget(staging_dir(cfg), fsync=cfg.write.fsync)


def photos_on_target(cfg: RunConfig) -> bool:
    """Whether photo files sit on the output target in the files layout (so its sweeps
    look at them): the files format, or webdataset photos staged there under `--ray`."""
    return cfg.output.format is OutputFormat.FILES or cfg.cluster.address is not None


def engine_files(cfg: RunConfig) -> Target | None:
    """The target the engine writes each photo through; None: straight under out_dir."""
    if cfg.output.format is OutputFormat.WEBDATASET:
        return staging_target(cfg)
    if cfg.output.target is None:
        return None
    return output_target(cfg)


def prepare_output(cfg: RunConfig) -> None:
    """Before any work: check the target, point the output at the store, keep them together."""
    spec = cfg.output.target
    if cfg.output.format is OutputFormat.WEBDATASET:
        staging_dir(cfg).mkdir(parents=True, exist_ok=True)  # also where tars are spooled
    if spec is None:
        _refuse_pointer(cfg.out_dir)
        recorded = "."
    else:
        target = output_target(cfg)
        check_writable(target)
        root = target.local_root
        if root is not None:
            _point(root, cfg.out_dir)
        recorded = spec if root is None else str(root.resolve())
        if root is not None and root.resolve() == cfg.out_dir.resolve():
            recorded = "."  # --out DIR --store DIR: the same harvest as --out DIR alone
    with Store.open(cfg.out_dir / STORE_FILENAME) as store:
        _same_output(store, recorded, cfg.output.format.value)
        if cfg.output.format is OutputFormat.WEBDATASET:
            _same_staging(store, cfg, recorded)


def _refuse_pointer(out: Path) -> None:
    pointed = store_pointer(out)
    if pointed is not None:
        raise ConfigError(
            f"{out}'s store is {pointed} ({out / STORE_POINTER}): run with --store {pointed.parent}"
        )


def _point(root: Path, store_dir: Path) -> None:
    """OUT/harvest.store names the store, so `harvest status OUT` (and the rest) find it."""
    store = (store_dir / STORE_FILENAME).resolve()
    if (root / STORE_FILENAME).exists() and root.resolve() != store_dir.resolve():
        raise ConfigError(f"{root} holds its own store: run without --store")
    pointed = store_pointer(root)
    if pointed is not None and pointed.resolve() != store:
        raise ConfigError(f"{root}'s store is {pointed}, not {store}: run with that --store")
    if pointed is None and root.resolve() != store_dir.resolve():
        LocalTarget(root, fsync=True).put(STORE_POINTER, [f"{store}\n".encode()])


def _same_output(store: Store, spec: str, fmt: str) -> None:
    recorded = recorded_output(store)
    if recorded is None:
        record_output(store, spec, fmt)
        return
    if recorded.get("target") != spec:
        raise ConfigError(f"this store's files go to {recorded.get('target')}, not {spec}")
    if recorded.get("format") != fmt:
        raise ConfigError(
            f"this harvest is written as {recorded.get('format')}: keep"
            f" --output-format {recorded.get('format')}"
        )


#: Where webdataset photos wait for their tar: beside the store, or on the output (`--ray`).
STAGED_LOCALLY, STAGED_ON_OUTPUT = "local", "output"


def _same_staging(store: Store, cfg: RunConfig, spec: str) -> None:
    """A webdataset harvest switched to or from `--ray` would look for its staged photos in
    the other place and never pack them: refuse while the earlier place still holds any."""
    now = STAGED_ON_OUTPUT if cfg.cluster.address is not None else STAGED_LOCALLY
    recorded = recorded_output(store) or {}
    before = recorded.get("staging", STAGED_LOCALLY)  # before this was recorded: no --ray
    if before != now:
        if before == STAGED_ON_OUTPUT:
            earlier: Target = output_target(cfg)
        else:
            earlier = LocalTarget(staging_dir(cfg), fsync=cfg.write.fsync)
        waiting = sum(1 for name in earlier.find() if _PHOTO.fullmatch(name))
        if waiting:
            place = "the output" if before == STAGED_ON_OUTPUT else str(staging_dir(cfg))
            switch = "with --ray" if before == STAGED_ON_OUTPUT else "without --ray"
            raise ConfigError(
                f"{waiting} photos of this webdataset harvest wait for their tar in {place}:"
                f" run it {switch} until they are packed"
            )
    if recorded.get("staging") != now:
        record_output(store, spec, cfg.output.format.value, staging=now)


# --- webdataset: building the tars ----------------------------------------------------------


def dir_key(keyword: str, number: int) -> str:
    """`<keyword dir>/<NNNNN>`: the directory (and shard) name."""
    return f"{safe_dirname(keyword)}/{number:05d}"


def is_complete(photos: Sequence[DirPhoto], *, searched: bool) -> bool:
    """No photo of the directory pending, and none can come (full, or its search is over)."""
    if any(p.status == "claimed" for p in photos):
        return False
    return searched or len(photos) >= FILES_PER_DIR


def member_meta(photo: DirPhoto) -> dict[str, object]:
    """A photo's {key}.json: the store's row, the record exactly as the store holds it."""
    return photo_meta(
        photo_id=str(photo.id),
        keyword=photo.keyword,
        keywords=photo.keywords,
        status=photo.status,
        path=photo.path,
        sha256=photo.sha256,
        width=photo.width,
        height=photo.height,
        size_label=photo.size_label,
        record_json=photo.record,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedMember:
    """A done photo of a directory to pack: its key, its staged name, its {key}.json."""

    key: str
    path: str | None
    meta: dict[str, object]


@dataclass(frozen=True, slots=True, kw_only=True)
class DirPlan:
    """What the tar of one complete directory holds, read from the store (by the driver):
    packing it needs only the target, so it can run anywhere (a Ray task)."""

    key: str  # "<keyword dir>/<NNNNN>"
    members: tuple[PlannedMember, ...]
    dropped: tuple[ShardDropped, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Packed:
    """What pack_dir did: the shard written (None: nothing stored), or the photos it lacked."""

    key: str
    manifest: ShardManifest | None
    missing: tuple[int, ...] = ()


#: Packs a list of plans (in this thread, or as Ray tasks) and returns what each did.
Packer = Callable[[Sequence[DirPlan]], list[Packed]]


def plan_dir(store: Store, keyword: str, number: int) -> DirPlan:
    """The store's rows of one directory, as its tar and Parquet will hold them."""
    lo = (number - 1) * FILES_PER_DIR
    members, dropped = [], []
    for photo in dir_photos(store, keyword, lo, lo + FILES_PER_DIR):
        meta = member_meta(photo)
        if photo.status == "done":
            members.append(PlannedMember(key=str(photo.id), path=photo.path, meta=meta))
        else:
            reason = photo.reason or ""
            dropped.append(
                ShardDropped(key=str(photo.id), status=photo.status, reason=reason, meta=meta)
            )
    return DirPlan(key=dir_key(keyword, number), members=tuple(members), dropped=tuple(dropped))


def pack_dir(plan: DirPlan, target: Target, staging: Target) -> Packed:
    """Write the directory's tar, Parquet and stats from its staged photos (and those its
    tar already holds: a rebuild after more photos came), then drop the staged photos.

    Nothing is written, and nothing dropped, when a done photo is neither staged nor in the
    tar: those are returned as missing, for the store to queue again. The tar is written one
    photo at a time, each read from staging or from the old tar as it goes.
    """
    staged = set(staging.find(plan.key))
    sweep_shard_temps(target, plan.key)
    with open_shard(target, plan.key) as old:
        members, missing = [], []
        for m in plan.members:
            if m.path is not None and m.path in staged:
                members.append(
                    ShardMember(key=m.key, image=_reader(staging, m.path, m.key), meta=m.meta)
                )
            elif m.key in old:
                members.append(ShardMember(key=m.key, image=old[m.key], meta=m.meta))
            else:
                missing.append(int(m.key))
        if missing:
            return Packed(key=plan.key, manifest=None, missing=tuple(missing))
        try:
            manifest = (
                write_shard(target, plan.key, members, dropped=plan.dropped) if members else None
            )
        except _Vanished as gone:  # deleted between the listing and its read: nothing written
            return Packed(key=plan.key, manifest=None, missing=(int(gone.key),))
    clear_staged(staging, plan.key)
    return Packed(key=plan.key, manifest=manifest)


def sweep_shard_temps(target: Target, dir_key: str) -> int:
    """Remove the temporary files of this directory's shard that dead writers left beside it
    (`.<name>.tmp-<pid>`: a pack task killed mid-tar, which Ray runs again in another worker
    while the run goes on). An object store has none: its writers spool on their node."""
    root = target.local_root
    if root is None:
        return 0
    removed = 0
    for name in shard_names(dir_key):
        path = root / name
        for temp in path.parent.glob(f".{path.name}.tmp-*"):
            pid = temp.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not pid_alive(int(pid)):
                temp.unlink(missing_ok=True)
                removed += 1
    return removed


class _Vanished(Exception):
    """A staged photo listed for a tar was gone when the tar came to read it."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _reader(staging: Target, name: str, key: str) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            return staging.read(name)
        except FileNotFoundError as exc:
            raise _Vanished(key) from exc

    return read


def clear_staged(staging: Target, key: str) -> None:
    """Remove a packed directory's staged photos (and the directory, on a filesystem)."""
    root = staging.local_root
    if root is not None:
        shutil.rmtree(root / key, ignore_errors=True)
        return
    for name in staging.find(key):
        staging.remove(name)


def local_packer(target: Target, staging: Target) -> Packer:
    """Pack in this thread, one directory after another."""
    return lambda plans: [pack_dir(plan, target, staging) for plan in plans]


def build_dir(
    store: Store, target: Target, staging: Target, keyword: str, number: int
) -> ShardManifest | None:
    """Write the tar of one complete directory, then drop its staged photos.

    None when nothing was written: no photo stored, or some were lost and are queued again.
    """
    plan = plan_dir(store, keyword, number)
    return _settled(store, local_packer(target, staging)([plan])[0])


def _settled(store: Store, packed: Packed) -> ShardManifest | None:
    if packed.missing:
        # Lost outside harvest (a staged file deleted by hand): redo them, never drop them.
        requeue(store, list(packed.missing))
        log.warning(
            "%s: %d photos done but neither staged nor in its tar: redone",
            packed.key,
            len(packed.missing),
        )
    return packed.manifest


def staged_dirs(staging: Target, keywords: Collection[str]) -> list[tuple[str, int]]:
    """(keyword, number) of every directory with staged photos, for these keywords."""
    names = {safe_dirname(k): k for k in keywords}
    found = set()
    for name in staging.find():
        match = _PHOTO.fullmatch(name)
        if match is not None and match.group(1) in names:
            found.add((names[match.group(1)], int(match.group(2))))
    return sorted(found)


#: Directories packed at once (each plan holds its rows' records: a few MB a directory).
PACK_AT_ONCE = 8


def finalise_ready(
    cfg: RunConfig,
    keywords: Collection[str],
    searched: Collection[str],
    *,
    packer: Packer | None = None,
) -> int:
    """Build every complete directory of `keywords`; returns how many tars were written."""
    staging = staging_target(cfg)
    if staging.local_root is not None and not staging.local_root.is_dir():
        return 0
    pack = packer or local_packer(output_target(cfg), staging)
    built = 0
    with Store.open(cfg.out_dir / STORE_FILENAME) as store:
        ready = []
        for keyword, number in staged_dirs(staging, keywords):
            lo = (number - 1) * FILES_PER_DIR
            photos = dir_photos(store, keyword, lo, lo + FILES_PER_DIR)
            if is_complete(photos, searched=keyword in searched):
                ready.append((keyword, number))
        for at in range(0, len(ready), PACK_AT_ONCE):
            plans = [plan_dir(store, k, n) for k, n in ready[at : at + PACK_AT_ONCE]]
            for packed in pack(plans):
                manifest = _settled(store, packed)
                if manifest is not None:
                    built += 1
                    log.info("wrote %s (%d photos)", manifest.tar, len(manifest.keys))
    return built


class Finaliser:
    """Runs finalise_ready in a background thread while the run goes on, then once at its end."""

    def __init__(
        self,
        cfg: RunConfig,
        keywords: Sequence[str],
        searched: Callable[[], Collection[str]],
        *,
        packer: Packer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cfg = cfg
        self._packer = packer
        self._keywords = tuple(keywords)
        self._searched = searched
        self._clock = clock
        self._last = clock()
        self._thread: threading.Thread | None = None
        self.error: HarvestError | None = None
        self.built = 0

    def __repr__(self) -> str:
        busy = self._thread is not None and self._thread.is_alive()
        return f"<Finaliser built={self.built} busy={busy} error={self.error!r}>"

    def poll(self) -> None:
        """Start a background pass when one is due and none is running."""
        if self._thread is not None and self._thread.is_alive():
            return
        if self._clock() - self._last < self._cfg.output.finalise_every_s:
            return
        self._last = self._clock()
        searched = frozenset(self._searched())
        self._thread = threading.Thread(
            target=self._pass, args=(searched,), name="finalise", daemon=True
        )
        self._thread.start()

    def _pass(self, searched: frozenset[str]) -> None:
        try:
            self.built += finalise_ready(self._cfg, self._keywords, searched, packer=self._packer)
        except HarvestError as exc:
            log.error("could not finalise shards: %s", exc)
            self.error = exc  # the next pass tries again; finish() raises the last one's
            return
        self.error = None

    def finish(self) -> None:
        """Wait for a pass in flight, then build what is complete now; raise if that last
        pass failed (an earlier pass's error that a later pass got past is only logged)."""
        if self._thread is not None:
            self._thread.join()
        self._pass(frozenset(self._searched()))
        if self.error is not None:
            raise self.error


# --- sweeps: what a killed run or an earlier attempt left -----------------------------------

_PHOTO = re.compile(r"([^/]+)/([0-9]{5,})/([^/]+)")  # <keyword dir>/<NNNNN>/<file>
_SHARD = re.compile(r"([^/]+)/([0-9]{5,})(?:\.tar|\.parquet|_stats\.json)")  # webdataset
_TEMP_PID = re.compile(
    rf"(?:{re.escape(WRITE_TEST_PREFIX)}|{re.escape(PROBE_PREFIX)})([0-9]+)(?:-.*)?"
    r"|\..+\.tmp-([0-9]+)"
)
#: Names at the top of a target that are the harvest's own (kept by the sweep).
_OWN_NAMES = frozenset({STORE_POINTER, *(CREDITS_CSV, CREDITS_MD, CARD)})
_REPORTED = 5  # names shown in the one line about objects that are not the harvest's


def _photo_id(name: str) -> int | None:
    head = name.rsplit("/", 1)[-1].split("_", 1)[0]
    return int(head) if head.isdigit() else None


def _written_for(name: str) -> int | None:
    """The photo a file or its temporary file (`.<id>_<secret>.jpg.tmp-<pid>`) is for."""
    return _photo_id(name.rsplit("/", 1)[-1].lstrip("."))


def _not_done(name: str, done: dict[int, str]) -> bool:
    """Whether a photo directory's file is not its photo's done file (`done`: done_paths)."""
    photo = _photo_id(name)
    return photo is None or done.get(photo) != name


def sweep_dir(
    store: Store, target: Target, directory: str, *, spare: Collection[int] = frozenset()
) -> int:
    """Delete the files of one photo directory (`<keyword>/<NNNNN>`) that the store does not
    hold as done at that path: an earlier attempt that got further, a photo that failed since.
    Returns how many. Nothing may be writing to the directory but the photos in `spare`
    (photo ids), whose files and temporary files are left alone."""
    names = target.find(directory)
    done = done_paths(store, [i for n in names if (i := _photo_id(n)) is not None])
    removed = 0
    for name in names:
        if _written_for(name) in spare:
            continue
        if _not_done(name, done):
            target.remove(name)
            log.info("swept %s", name)
            removed += 1
    return removed


def sweep_output(cfg: RunConfig) -> int:
    """At the start of a run on an object store, before anything writes: delete what a killed
    run left under the prefix. Returns how many objects were deleted.

    - in a photo directory of the store's keywords (`<keyword>/<NNNNN>/...`, files layout):
      every object the store does not hold as done at that name, as sweep_dir does;
    - the temporary objects of harvest runs no longer alive (the write test, the node probe);
    - kept: the done photos, the webdataset tars with their Parquet and stats, the credits,
      the card and the store pointer;
    - anything else is not the harvest's: left where it is, and named in one warning line;
    - unfinished uploads (S3 multipart: a tar's upload killed midway) at a name of the
      harvest's are aborted, others named in one warning line (sweep_uploads).

    A local or shared --out is not listed here: its temporary files go at start-up
    (writer.cleanup_temp_files), and a `--ray` run sweeps each directory after its commit.
    One LIST request per 1,000 objects.
    """
    spec = cfg.output.target
    if spec is None or not is_remote(spec):
        return 0
    target = output_target(cfg)
    names = target.find()
    files = photos_on_target(cfg)
    with Store.open(cfg.out_dir / STORE_FILENAME) as store:
        dirs = {safe_dirname(k) for k in stored_keywords(store)}
        photos = {n for n in names if (m := _PHOTO.fullmatch(n)) and m.group(1) in dirs and files}
        done = done_paths(store, [i for n in photos if (i := _photo_id(n)) is not None])
    removed, foreign = 0, []
    for name in names:
        temp = _TEMP_PID.fullmatch(name.rsplit("/", 1)[-1])
        if name in photos:
            orphan = _not_done(name, done)
        elif temp is not None:
            orphan = not pid_alive(int(temp.group(1) or temp.group(2)))
        else:
            if not _is_ours(name, dirs, files=files):
                foreign.append(name)
            continue
        if orphan:
            target.remove(name)
            log.info("swept %s/%s", target.url, name)
            removed += 1
    if removed:
        log.info("%s: swept %d objects left by an earlier run", target.url, removed)
    _name_foreign(target, "objects", foreign)
    sweep_uploads(target, dirs, files=files)
    return removed


def sweep_uploads(target: Target, dirs: Collection[str], *, files: bool) -> int:
    """Abort the unfinished uploads at names of the harvest's (`dirs`: its keyword
    directories, `files`: the files layout, else WebDataset shards). At the start of a run
    nothing of this harvest is uploading, so each is a killed writer's. Returns how many.
    Never fails the run: without the permission to list or abort them, one warning (a
    bucket lifecycle rule can expire them instead)."""
    aborted, foreign = 0, []
    try:
        for upload in target.unfinished_uploads():
            if not _is_ours(upload.name, dirs, files=files):
                foreign.append(upload.name)
                continue
            target.abort_upload(upload)
            log.info("aborted the unfinished upload of %s/%s", target.url, upload.name)
            aborted += 1
    except HarvestError as exc:
        log.warning("%s: unfinished uploads not swept: %s", target.url, exc)
    if aborted:
        log.info("%s: aborted %d uploads a killed run left unfinished", target.url, aborted)
    _name_foreign(target, "unfinished uploads", foreign)
    return aborted


def _is_ours(name: str, dirs: Collection[str], *, files: bool) -> bool:
    """A name the harvest writes: a photo (files layout) or a shard of its keyword
    directories, a temporary object, a file of its own at the top."""
    if name in _OWN_NAMES or _TEMP_PID.fullmatch(name.rsplit("/", 1)[-1]) is not None:
        return True
    match = (_PHOTO.fullmatch(name) if files else None) or _SHARD.fullmatch(name)
    return match is not None and match.group(1) in dirs


def _name_foreign(target: Target, what: str, names: Sequence[str]) -> None:
    """One warning line naming the first few of what the sweep left as not the harvest's."""
    if not names:
        return
    shown = ", ".join(names[:_REPORTED]) + (", ..." if len(names) > _REPORTED else "")
    log.warning(
        "%s holds %d %s that are not this harvest's, left in place: %s",
        target.url,
        len(names),
        what,
        shown,
    )


def target_root(cfg: RunConfig) -> Path | None:
    """The target's own directory when it is local and not the store's (temp files swept)."""
    spec = cfg.output.target
    if spec is None or is_remote(spec):
        return None
    return local_path(spec)


# --- after the run: the credits and the card beside the files -------------------------------

#: What `harvest run` writes beside the store at its end (outputs.after_run), copied to a target
#: that is not the store's directory, so a bucket or share holds a dataset that credits itself.
EXTRAS = (CREDITS_CSV, CREDITS_MD, CARD)


def copy_extras(cfg: RunConfig) -> int:
    """Copy the credits and the card to the target; never fails the run; returns how many."""
    if cfg.output.target is None:
        return 0
    copied = 0
    try:
        target = output_target(cfg)
        root = target.local_root
        if root is not None and root.resolve() == cfg.out_dir.resolve():
            return 0
        for name in EXTRAS:
            path = cfg.out_dir / name
            if path.is_file() and _may_write(target, name):
                target.put(name, [path.read_bytes()])
                copied += 1
    except (HarvestError, OSError) as exc:
        log.warning("could not copy the credits and card to %s: %s", cfg.output.target, exc)
    return copied


def _may_write(target: Target, name: str) -> bool:
    """Never over a README someone wrote (the card's own marker says it is ours)."""
    if name != CARD:
        return True
    try:
        existing = target.read(name)
    except FileNotFoundError:
        return True
    return may_replace(existing.decode("utf-8", errors="replace"))
