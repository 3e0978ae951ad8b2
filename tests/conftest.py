"""Fixtures: in-process Flickr emulators on free loopback ports (corpora cached per seed).

Helpers live in tests/harness.py; this file holds only fixtures.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from harvester.emulator import EmulatorConfig, RunningEmulator, run_emulator
from tests.harness import EmulatorFactory, ServedHarvest, harvest_to_serve, threaded_emulator
from tests.s3_support import moto_s3


@pytest.fixture
async def emulator_factory() -> AsyncIterator[EmulatorFactory]:
    """`await emulator_factory(photos=..., seed=..., profile=..., time_scale=..., **switches)`;
    every emulator started is stopped at teardown."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**kwargs: Any) -> RunningEmulator:
            kwargs.setdefault("photos", 3000)
            return await stack.enter_async_context(run_emulator(EmulatorConfig(**kwargs)))

        yield start


@pytest.fixture
async def emulator(emulator_factory: EmulatorFactory) -> RunningEmulator:
    """An ideal-profile emulator with a few thousand photos."""
    return await emulator_factory(photos=3000, seed=0, profile="ideal")


@pytest.fixture(scope="session")
def served_harvest(tmp_path_factory: pytest.TempPathFactory) -> ServedHarvest:
    """One finished harvest of an ideal 10,000-photo emulator (its corpus has groups of copies:
    nature, london, sky), `harvest dupes` run, shared by the `harvest serve` tests: read it,
    copy it before changing it."""
    with threaded_emulator(photos=10_000, seed=0, profile="ideal") as emu:
        base = tmp_path_factory.mktemp("served")
        out = harvest_to_serve(emu, base, ("nature", "london", "sky"))
        return ServedHarvest(out=Path(out), api_key=emu.api_key)


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    """moto's S3 server on loopback, bucket tests.s3_support.BUCKET made, the AWS_* variables
    pointing at it for the module; yields a boto3 client (tests/s3_support.py)."""
    with moto_s3() as client:
        yield client
