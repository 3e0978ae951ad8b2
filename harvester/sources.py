"""`harvest sources` and the run's source map: which institution each photo comes from.

A sources file's usernames, URL aliases and NSIDs are resolved once through the API
(findByUsername, then urls.lookupUser for an alias; people.getInfo checks an NSID), each call
taken from the key's shared budget, and cached in the store, so a resumed run or a second
back-fill asks nothing. A name Flickr does not know stops the command before anything is
written. The back-fill (`--apply`) then walks the photos in short batched transactions that a
kill interrupts harmlessly, and `--rewrite-files` re-stamps each stored file's metadata.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from harvester.config import ApiPolicy, WritePolicy
from harvester.dataset.sources import (
    BackfillPlan,
    NameKind,
    SourceMap,
    SourcesFile,
    UserName,
    batch_changes,
    file_owners,
    parse_sources,
    plan_backfill,
)
from harvester.exceptions import DiskFullError, HarvestError, SourcesFileError
from harvester.flickr.budget import BUDGET_FILENAME, SharedBudget, budget_name
from harvester.flickr.client import FlickrClient
from harvester.flickr.people import FlickrUser
from harvester.images.restamp import restamped
from harvester.images.writer import write_atomic
from harvester.records import PhotoRecord
from harvester.store.sources import SourcesStore
from harvester.store.sqlite import Store, existing_store

log = logging.getLogger(__name__)

FILES_BATCH = 200  # files re-stamped between two progress saves


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiAccess:
    """How to reach the API if a name must be resolved: the key is only asked for then."""

    out_dir: Path
    api: ApiPolicy
    key: Callable[[], str]

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[FlickrClient]:
        """A client on the key's shared budget (the one `harvest run` counts against)."""
        key = self.key()
        budget = SharedBudget(
            self.out_dir / BUDGET_FILENAME, budget_name(key), self.api.calls_per_hour
        )
        try:
            async with aiohttp.ClientSession() as session:
                yield FlickrClient(session, key, budget, rest_url=self.api.rest_url)
        finally:
            budget.close()


def load_sources_file(path: Path) -> SourcesFile:
    """Read and parse a sources file; SourcesFileError (exit 2) when it cannot be."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise SourcesFileError(str(path), f"cannot read it: {reason}") from None
    return parse_sources(text, str(path))


def source_map(
    store: Store, spec: SourcesFile | None, access: ApiAccess, *, keep: bool
) -> SourceMap:
    """The map in force: built-in, overlaid by `spec` (resolved) or else by the store's file.

    `keep` makes `spec` the store's file in force (a run, an applied back-fill).
    """
    sources = SourcesStore(store)
    if spec is None:
        return SourceMap.builtin(sources.file_owners())
    known = sources.cached_names()
    missing = [name for name in spec.names if name.key not in known]
    if missing:
        found = asyncio.run(_resolve(missing, access))
        sources.cache_names((key, user.nsid, via) for key, (user, via) in found.items())
        known.update({key: user.nsid for key, (user, _via) in found.items()})
    owners = file_owners(spec, known)
    if keep:
        written = {known[n.key]: n.text for _source, names in spec.sources for n in names}
        sources.replace_file_owners({nsid: (src, written[nsid]) for nsid, src in owners.items()})
    log.info("sources: %d owners of %d sources from %s", len(owners), len(spec.sources), spec.path)
    return SourceMap.builtin(owners)


async def _resolve(
    names: Sequence[UserName], access: ApiAccess
) -> dict[str, tuple[FlickrUser, str]]:
    found: dict[str, tuple[FlickrUser, str]] = {}
    async with access.client() as client:
        for name in names:
            user, via = await _look_up(client, name)
            log.info("sources: %r is %s (%s)", name.text, user.nsid if user else "no one", via)
            if user is not None:
                found[name.key] = (user, via)
    return found


async def _look_up(client: FlickrClient, name: UserName) -> tuple[FlickrUser | None, str]:
    url = name.alias_url
    if name.kind is NameKind.NSID:
        return await client.person(name.text), "flickr.people.getInfo"
    if name.kind is NameKind.NAME:
        user = await client.find_by_username(name.text)
        if user is not None or url is None:
            return user, "flickr.people.findByUsername"
    assert url is not None  # a URL, or a name that can be an alias
    return await client.lookup_user(url), "flickr.urls.lookupUser"


# --- the back-fill -------------------------------------------------------------------------------


@dataclass(slots=True)
class BackfillResult:
    """What `--apply` did: photos read and changed, files re-stamped, files it could not."""

    photos: int = 0
    changed: int = 0
    batches: int = 0
    resumed_after: int = 0
    files: int = 0
    file_errors: Counter[str] = field(default_factory=Counter)

    def render(self) -> str:
        """Lines for the command's output."""
        since = f", resumed after photo {self.resumed_after}" if self.resumed_after else ""
        lines = [f"applied: {self.changed} of {self.photos} photos changed{since}"]
        if self.files or self.file_errors:
            lines.append(f"files re-stamped: {self.files}")
            lines += [
                f"  not re-stamped, {why}: {n}" for why, n in sorted(self.file_errors.items())
            ]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True, kw_only=True)
class SourcesReport:
    """The dry run's plan, and what was applied (None for a dry run)."""

    plan: BackfillPlan
    applied: BackfillResult | None

    def render(self) -> str:
        """The table, then what was done or how to do it."""
        if self.applied is None:
            return self.plan.render() + "\n(dry run: nothing written; --apply writes it)"
        return self.plan.render() + "\n" + self.applied.render()


def run_sources(
    out: Path,
    sources_path: Path | None,
    access: ApiAccess,
    *,
    apply: bool,
    rewrite_files: bool,
    write: WritePolicy,
) -> SourcesReport:
    """`harvest sources OUT`: count per source, and with `apply` write the sources."""
    store_path = existing_store(out)
    spec = load_sources_file(sources_path) if sources_path is not None else None
    with Store.open(store_path) as store:
        smap = source_map(store, spec, access, keep=apply)
        plan = plan_backfill(SourcesStore(store).owner_counts(smap.by_owner), smap)
        if not apply:
            return SourcesReport(plan=plan, applied=None)
        result = backfill(store, smap, out=out, rewrite_files=rewrite_files, write=write)
    return SourcesReport(plan=plan, applied=result)


def backfill(
    store: Store, smap: SourceMap, *, out: Path, rewrite_files: bool, write: WritePolicy
) -> BackfillResult:
    """Set every photo's source from `smap`, resuming a killed back-fill of the same map."""
    sources = SourcesStore(store)
    saved = sources.progress() or {}
    same = saved.get("map") == smap.digest
    stage = saved.get("stage", "rows") if same else "rows"
    after = int(saved.get("after", 0)) if same else 0
    result = BackfillResult(resumed_after=after)
    if stage == "rows":
        _rows(sources, smap, after, result)
        after = 0
    if rewrite_files:
        _files(sources, smap, out, after, write, result)
    sources.save_progress(None)
    return result


def _rows(sources: SourcesStore, smap: SourceMap, after: int, result: BackfillResult) -> None:
    progress = {"map": smap.digest, "stage": "rows"}

    def decide(rows: list[tuple[int, str, str]]) -> list[tuple[str, int]]:
        return batch_changes(rows, smap)

    while (done := sources.backfill_batch(after, decide, progress)) is not None:
        after, photos, changed = done
        result.photos += photos
        result.changed += changed
        result.batches += 1
        log.info("sources: %d photos changed up to photo %d", result.changed, after)
    sources.save_progress({**progress, "stage": "files", "after": 0})


def _files(
    sources: SourcesStore,
    smap: SourceMap,
    out: Path,
    after: int,
    write: WritePolicy,
    result: BackfillResult,
) -> None:
    progress: dict[str, Any] = {"map": smap.digest, "stage": "files"}
    while batch := sources.done_files(after, FILES_BATCH):
        updates: list[tuple[str, int]] = []
        for item in batch:
            sha = _restamp_one(out / item.path, item.record, write, result)
            if sha is not None and sha != item.sha256:
                updates.append((sha, item.photo_id))
        after = batch[-1].photo_id
        sources.set_sha256(updates, {**progress, "after": after})


def _restamp_one(
    path: Path, record: PhotoRecord, write: WritePolicy, result: BackfillResult
) -> str | None:
    """The file's sha256 after re-stamping it if it needs it; None when it cannot be read."""
    try:
        data = path.read_bytes()
        parts = restamped(data, record)
        if parts is None:  # already current (perhaps by a pass killed before its sha was saved)
            return hashlib.sha256(data).hexdigest()
        write_atomic(path, parts, write)
    except DiskFullError:
        raise  # the command stops; the pass resumes from its last saved batch
    except FileNotFoundError:
        result.file_errors["missing"] += 1
        return None
    except (HarvestError, OSError, ValueError) as exc:
        result.file_errors[type(exc).__name__] += 1
        log.warning("sources: %s not re-stamped: %s", path, exc)
        return None
    result.files += 1
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()
