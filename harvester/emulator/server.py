"""The emulator as an aiohttp app: build it, run it in-process, or serve it until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from harvester.emulator.config import EmulatorConfig
from harvester.emulator.control import Control, truth_ids
from harvester.emulator.corpus import Corpus, corpus_for
from harvester.emulator.faults import Stats
from harvester.emulator.methods import MethodContext
from harvester.emulator.rest import RestEndpoint
from harvester.emulator.static import StaticHost

log = logging.getLogger(__name__)

#: A valid (32 hex) key that tests and benchmarks can use.
DEFAULT_API_KEY = "0123456789abcdef0123456789abcdef"


class Emulator:
    """The corpus plus the aiohttp application serving REST, images and /_emulator/."""

    def __init__(self, config: EmulatorConfig, corpus: Corpus | None = None) -> None:
        self.config = config
        self.corpus = corpus or corpus_for(config)
        self.stats = Stats()
        self.ctx = MethodContext(self.corpus, config)
        self.rest = RestEndpoint(self.ctx, self.stats)
        self.static = StaticHost(self.corpus, config, self.stats)
        self.control = Control(self.ctx, self.stats)
        self.app = self._build_app()

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("GET", "/services/rest/", self.rest.handle)
        app.router.add_route("POST", "/services/rest/", self.rest.handle)
        app.router.add_route("GET", "/services/rest", self.rest.handle)
        app.router.add_route("POST", "/services/rest", self.rest.handle)
        app.router.add_get("/_emulator/truth", self.control.truth)
        app.router.add_get("/_emulator/stats", self.control.stats_view)
        app.router.add_get("/_emulator/vocabulary", self.control.vocabulary_view)
        app.router.add_get("/_emulator/photo/{photo_id}", self.control.photo)
        app.router.add_get("/{tail:.*}", self.static.handle)
        return app

    def set_base_url(self, base_url: str) -> None:
        """Where this emulator is reachable; image URLs in responses point here."""
        self.ctx.base_url = base_url.rstrip("/")


@dataclass(slots=True)
class RunningEmulator:
    """A started emulator: its URLs, a valid key, and direct access to stats and ground truth."""

    emulator: Emulator
    base_url: str
    api_key: str = DEFAULT_API_KEY

    @property
    def rest_url(self) -> str:
        """The REST endpoint."""
        return self.base_url + "/services/rest/"

    @property
    def config(self) -> EmulatorConfig:
        """The emulator's config."""
        return self.emulator.config

    @property
    def corpus(self) -> Corpus:
        """The emulator's corpus."""
        return self.emulator.corpus

    async def stats(self) -> dict[str, Any]:
        """Request counters (as /_emulator/stats)."""
        return self.emulator.stats.as_dict()

    async def truth(self, **filters: Any) -> list[str]:
        """Ids matching search filters exactly (as /_emulator/truth)."""
        params = {k: str(v) for k, v in filters.items()}
        return truth_ids(self.emulator.ctx, params)


async def _start(emulator: Emulator) -> tuple[web.AppRunner, str]:
    cfg = emulator.config
    runner = web.AppRunner(emulator.app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, cfg.host, cfg.port)
    await site.start()
    port = int(runner.addresses[0][1])
    base = cfg.public_url.rstrip("/") if cfg.public_url else f"http://{cfg.host}:{port}"
    emulator.set_base_url(base)
    return runner, base


@contextlib.asynccontextmanager
async def run_emulator(
    config: EmulatorConfig, corpus: Corpus | None = None
) -> AsyncIterator[RunningEmulator]:
    """Build (in a thread, the corpus may be large), start on the configured port, then stop."""
    if corpus is None:
        corpus = await asyncio.to_thread(corpus_for, config)
    emulator = Emulator(config, corpus)
    runner, base = await _start(emulator)
    try:
        yield RunningEmulator(emulator, base)
    finally:
        await runner.cleanup()


async def _serve(config: EmulatorConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with run_emulator(config) as running:
        sys.stdout.write(running.base_url + "\n")
        sys.stdout.flush()
        log.info(
            "emulator serving %d photos (%s) at %s", config.photos, config.profile, running.base_url
        )
        await stop.wait()


def serve_forever(config: EmulatorConfig) -> None:
    """Serve until SIGINT/SIGTERM; prints exactly one line, the base URL, once listening."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is optional off Linux
        pass
    asyncio.run(_serve(config))
