"""Fixtures: in-process Flickr emulators on free loopback ports (corpora cached per seed).

Helpers live in tests/harness.py; this file holds only fixtures.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from harvester.emulator import EmulatorConfig, RunningEmulator, run_emulator
from tests.harness import EmulatorFactory


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
