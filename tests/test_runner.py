"""The bundled emulator of `harvest run --emulator` keeps its port across runs of one output."""

from __future__ import annotations

import socket
from pathlib import Path

from harvester.config import BundledEmulator
from harvester.runner import EMULATOR_PORT_FILE, bundled_emulator

SPEC = BundledEmulator(photos=200, profile="ideal")


def test_a_resumed_run_gets_the_port_its_claimed_photos_name(tmp_path: Path) -> None:
    """Photos claimed by a run keep image URLs with its emulator's port: the next run of the
    same output serves on that port again, so resuming them fetches, not fails."""
    log = tmp_path / "emulator.log"
    with bundled_emulator(SPEC, log) as first:
        pass
    assert (tmp_path / EMULATOR_PORT_FILE).read_text().strip() in first
    with bundled_emulator(SPEC, log) as second:
        pass
    assert second == first


def test_a_taken_port_falls_back_to_a_free_one(tmp_path: Path) -> None:
    log = tmp_path / "emulator.log"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        (tmp_path / EMULATOR_PORT_FILE).write_text(f"{taken}\n")
        with bundled_emulator(SPEC, log) as url:
            assert f":{taken}/" not in url
    assert (tmp_path / EMULATOR_PORT_FILE).read_text().strip() != str(taken)
