"""`harvest serve OUT`: the harvest in a local web application, beside a running harvest or after.

    store (read-only; keyset pages and single rows, store/serve.py; counts as `harvest status`)
      ─► StoreLibrary: the views of serve/pages.py (tiles, photo pages with credits, groups,
         the photos that need a person)            ─┐
    harvester.similar's index (loaded on the first   ├─► serve/app.py (aiohttp) on HOST:PORT
      search, refreshed as fingerprints arrive)     ─┘

Nothing is written into OUT. Files reach the app only as paths the store records, resolved
inside OUT here; a request names photo ids.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from harvester.config import ImagePolicy, ServePolicy
from harvester.exceptions import ConfigError
from harvester.licenses import license_for
from harvester.outputs import file_changes
from harvester.publish.changes import from_store
from harvester.publish.credits import credit_of
from harvester.report.model import POLICY_SKIPS, action_for, photo_page
from harvester.serve import pages, query
from harvester.serve.app import make_app
from harvester.similar import Neighbours, SimilarIndex
from harvester.store.report import ReportStore
from harvester.store.serve import GroupMember, PhotoDetail, PhotoQuery, PhotoRow, ServeStore
from harvester.store.sqlite import Store, existing_store

log = logging.getLogger(__name__)

SOURCES_TTL_S = 30.0  # the source list is an index scan: read it again at most this often


class StoreLibrary:
    """The pages' `Library` over the store of the harvest in `out` (opened read-only)."""

    def __init__(self, out: Path, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self._out = out.resolve()
        self._store = store
        self._facts = ServeStore(store)
        self._runs = ReportStore(store)
        self._clock = clock
        self._sources: tuple[float, tuple[str, ...]] | None = None

    @property
    def notices(self) -> tuple[str, ...]:
        """What an older store, opened read-only, cannot do quickly."""
        caps = self._facts.capabilities
        said = []
        if caps.missing_indexes:
            said.append(
                "This store predates harvest serve's browse indexes, so filtered pages scan the"
                " photos (slow on a large harvest). Any writer adds them: `harvest run` or"
                " `harvest dupes` on this output."
            )
        if not caps.dupes:
            said.append("This store predates `harvest dupes`: no duplicate groups to show.")
        return tuple(said)

    def counts(self) -> pages.Counts:
        """The counts `harvest status` prints, and the runs' times."""
        summary = self._store.summary()
        runs = self._runs.runs()
        now = self._clock()
        lines = tuple(
            pages.KeywordLine(
                keyword=k.keyword,
                found=k.claimed + k.done + k.skipped + k.failed,
                pending=k.claimed,
                stored=k.done,
                skipped=k.skipped,
                failed=k.failed,
            )
            for k in summary.keywords
        )
        reasons = sorted(summary.reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        last = runs[-1] if runs else None
        return pages.Counts(
            keywords=lines,
            reasons=tuple(reasons),
            running=last is not None and last.finished_at is None,
            started_at=runs[0].started_at if runs else None,
            finished_at=None if last is None else last.finished_at,
            run_hours=sum(((r.finished_at or now) - r.started_at) for r in runs) / 3600,
        )

    def choices(self) -> pages.FilterChoices:
        """The harvest's keywords, and its sources (cached: an index scan)."""
        now = self._clock()
        if self._sources is None or now - self._sources[0] >= SOURCES_TTL_S:
            self._sources = (now, tuple(self._facts.sources()))
        return pages.FilterChoices(keywords=tuple(self._facts.keywords()), sources=self._sources[1])

    def photos(self, filters: query.Filters, after: int, limit: int) -> list[pages.Tile]:
        """A keyset page of tiles."""
        wanted = PhotoQuery(
            status=filters.status,
            keyword=filters.keyword,
            license=filters.license,
            source=filters.source,
            geotagged=filters.geotagged,
        )
        return [_tile(r) for r in self._facts.page(wanted, after, limit)]

    def photo(self, photo_id: int) -> pages.PhotoView | None:
        """One photo's page: the record's fields, the store's, its credit and its group."""
        detail = self._facts.photo(photo_id)
        if detail is None:
            return None
        members = self._facts.group_of(photo_id)
        return pages.PhotoView(
            tile=_tile(detail.row),
            fields=tuple(_fields(detail)),
            credit=self._credit(detail),
            keywords=detail.keywords,
            group=_group(members) if members else None,
        )

    def _credit(self, detail: PhotoDetail) -> str | None:
        row = detail.row
        if row.status != "done" or row.path is None:
            return None
        facts: dict[str, Any] = {
            **detail.record,
            "path": row.path,
            "license": row.license,
            "source": row.source,
            "size_label": detail.size_label,
            "stored_width": row.width,
            "stored_height": row.height,
        }
        changes = from_store(facts, detail.content) or file_changes(self._out, facts)
        return credit_of(facts, changes).attribution

    def image_file(self, photo_id: int) -> str | None:
        """The stored file of a done photo, if the store's path for it is a file inside OUT."""
        relative = self._facts.stored_path(photo_id)
        if relative is None:
            return None
        path = (self._out / relative).resolve()
        if not path.is_relative_to(self._out) or not path.is_file():
            log.warning("photo %d: its stored path %r is not a file inside OUT", photo_id, relative)
            return None
        return str(path)

    def groups(self, after: int, limit: int) -> list[pages.Group]:
        """Duplicate groups with copies, by representative id."""
        return [_group(g) for g in self._facts.groups(after, limit) if len(g) > 1]

    def attention(self, after: int, limit: int) -> list[pages.Attention]:
        """Failed and error-skipped photos (the policy skips left out, as in the report)."""
        return [
            pages.Attention(
                photo_id=a.photo_id,
                title=a.title,
                keyword=a.keyword,
                status=a.status,
                reason=a.reason,
                attempts=a.attempts,
                last_attempt=pages.utc(a.updated_at),
                flickr_url=photo_page(a.owner, a.photo_id),
                action=action_for(a.status, a.reason),
            )
            for a in self._facts.attention(POLICY_SKIPS, after, limit)
        ]


def _tile(row: PhotoRow) -> pages.Tile:
    return pages.Tile(
        id=row.id,
        title=row.title,
        keyword=row.keyword,
        status=row.status,
        reason=row.reason,
        license=row.license,
        license_name=license_for(row.license).name,
        source=row.source,
        geotagged=row.geotagged,
        stored=row.status == "done" and row.path is not None,
        width=row.width,
        height=row.height,
        flickr_url=photo_page(row.owner, row.id),
    )


def _group(members: list[GroupMember]) -> pages.Group:
    views = [
        pages.Member(
            photo_id=m.photo_id,
            kind=m.kind,
            param=m.param,
            title=m.title,
            stored=m.path is not None,
        )
        for m in members
    ]
    rep = next((v for v in views if v.kind is None), views[0])
    return pages.Group(representative=rep, copies=tuple(v for v in views if v is not rep))


def _text(value: object) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value) or "—"
    if isinstance(value, dict):
        return " ".join(f"{k}={_text(v)}" for k, v in value.items())
    return str(value)


def _fields(detail: PhotoDetail) -> list[tuple[str, str]]:
    """Every field of the record, then what the store knows of the outcome."""
    record = dict(detail.record)
    sizes = record.pop("sizes", None) or []
    said = [(name, _text(value)) for name, value in record.items()]
    said += [
        (f"size {s.get('label')}", f"{s.get('width')}x{s.get('height')} {s.get('url')}")
        for s in sizes
        if isinstance(s, dict)
    ]
    row = detail.row
    said += [
        ("licence", license_for(row.license).name),
        ("keywords", ", ".join(detail.keywords)),
        ("status", row.status),
        ("reason", row.reason or "—"),
        ("attempts", str(row.attempts)),
        ("stored file", row.path or "—"),
        ("stored size", "—" if row.width is None else f"{row.width}x{row.height}"),
        ("size downloaded", detail.size_label or "—"),
        ("sha256", detail.sha256 or "—"),
        ("claimed", pages.utc(detail.claimed_at)),
        ("last update", pages.utc(row.updated_at)),
    ]
    return said


# --- search by image -----------------------------------------------------------------------------


class SimilarSearcher:
    """The pages' `Searcher`: harvester.similar's index of `out`, loaded on the first search
    (not at start-up: the pages need not wait for it). Before a search, at most once every
    RELOAD_S, it asks the store whether fingerprints were added (a cheap read) and reloads if
    so: beside a running harvest of a million photos a reload takes tens of seconds, so a
    search may miss the last minute's photos rather than wait for every one of them."""

    RELOAD_S = 60.0

    def __init__(
        self, out: Path, policy: ImagePolicy, neighbours: Neighbours | None = None
    ) -> None:
        self._out = out
        self._policy = policy
        self._neighbours = neighbours
        self._index: SimilarIndex | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def search(self, image: bytes, k: int) -> Mapping[str, object]:
        """`harvest similar --json`'s answer for `image`."""
        with self._lock:
            now = time.monotonic()
            if self._index is None:
                self._index = SimilarIndex.load(
                    self._out, policy=self._policy, neighbours=self._neighbours
                )
                self._checked = now
            elif now - self._checked >= self.RELOAD_S:
                self._index.refresh()
                self._checked = now
            return self._index.search(image, k=k).as_json()


# --- the server ----------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (the only hosts that keep the pages private)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve(
    out: Path,
    policy: ServePolicy,
    *,
    ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
    neighbours: Neighbours | None = None,
) -> None:
    """Serve the harvest in `out` until `stop` is set (or forever); `ready(url)` once listening.
    `neighbours`: an embedding search's (`harvest serve --embedder`), for looks-alike hits."""
    store = Store.open(existing_store(out), readonly=True)
    try:
        app = make_app(
            StoreLibrary(out, store),
            SimilarSearcher(out, ImagePolicy(max_pixels=policy.max_pixels), neighbours),
            policy,
        )
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, policy.host, policy.port)
            try:
                await site.start()
            except OSError as exc:
                raise ConfigError(
                    f"cannot listen on {policy.host}:{policy.port}: {exc.strerror or exc}"
                ) from exc
            host, port = runner.addresses[0][:2]
            url = f"http://{host}:{port}/" if ":" not in host else f"http://[{host}]:{port}/"
            if not is_loopback(policy.host):
                log.warning("serving beyond this machine on %s: the pages have no login", url)
            if ready is not None:
                ready(url)
            await (stop or asyncio.Event()).wait()
        finally:
            await runner.cleanup()
    finally:
        store.close()


def run_serve(
    out: Path,
    policy: ServePolicy,
    *,
    ready: Callable[[str], None] | None = None,
    embedder: Path | None = None,
) -> None:
    """`harvest serve`: serve until interrupted (KeyboardInterrupt reaches the caller). With
    `embedder`, its index is opened first, so that a missing one is an error before serving."""
    existing_store(out)  # no store: one clear error before any loop starts
    neighbours = None
    if embedder is not None:
        from harvester.embedding import EmbeddingSearch

        neighbours = EmbeddingSearch.open(out, embedder).query
    asyncio.run(serve(out, policy, ready=ready, neighbours=neighbours))
