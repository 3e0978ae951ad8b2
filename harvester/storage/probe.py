"""The shared-storage probe: a file written through the output target from elsewhere must be
visible to the driver, or the run stops before any work with one clear error.

    check_shared(out, elsewhere)       the driver: a fresh name and token, `elsewhere` writes
                                       them, the driver reads them back and removes the file
    elsewhere(out, name, token)        any ProbeWriter: in_subprocess here, a Ray task there
    write_probe(out, name, token)      what a ProbeWriter runs where the work will run

A local --out that is not the same filesystem on every node, or a memory:// target (one per
process), fails here instead of scattering files where the driver cannot see them.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Callable

from harvester.exceptions import ConfigError, WriteError
from harvester.storage.target import open_target

#: (out as the user gave it, a name relative to it, the bytes to write) -> None, run elsewhere.
ProbeWriter = Callable[[str, str, bytes], None]
PROBE_PREFIX = ".harvest-probe-"


def write_probe(out: str, name: str, token: bytes) -> None:
    """Write `token` to `name` through the target `out` names (run this on the worker)."""
    open_target(out, fsync=True).put(name, [token])


def in_subprocess(out: str, name: str, token: bytes) -> None:
    """A ProbeWriter: a child Python process writes the probe."""
    cmd = [sys.executable, "-m", "harvester.storage.probe", out, name, token.hex()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise WriteError(f"the probe writer exited {done.returncode}: {tail[0]}")


def check_shared(out: str, elsewhere: ProbeWriter, *, where: str = "a worker") -> None:
    """ConfigError (exit 2) unless a file `elsewhere` writes through `out` is seen here."""
    name = f"{PROBE_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    token = secrets.token_bytes(16)
    target = open_target(out, fsync=True)
    try:
        elsewhere(out, name, token)
    except Exception as exc:
        raise ConfigError(f"--out {out}: {where} could not write a probe file: {exc}") from exc
    try:
        seen: bytes | None = target.read(name)
    except FileNotFoundError:
        seen = None
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot read the probe file back: {exc}") from exc
    if seen != token:
        what = "does not see" if seen is None else "sees different bytes in"
        raise ConfigError(
            f"--out {out} is not shared: the driver {what} the file {name} that {where} wrote;"
            " use a filesystem every node mounts at the same path, or an object store URL"
            " (s3://, gs://, ...)"
        )
    target.remove(name)


def _main(argv: list[str]) -> int:
    out, name, token = argv
    write_probe(out, name, bytes.fromhex(token))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
