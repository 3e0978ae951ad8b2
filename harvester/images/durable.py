"""One syncfs(2) per committed store batch, in place of one fsync per file.

The local-files engine writes each photo without fsync (write_atomic, WritePolicy(fsync=False))
and gives a `BatchSync` to the store as its done barrier (Store.set_done_barrier): the store
calls it with the paths of a batch's done rows just before the transaction that marks them
done, and commits only if it returns. So a photo the store calls done has its file, and the
rename that put it in place, on disk: syncfs writes back every dirty page and the journal of
the output's filesystem, which fsync of the file alone did not do for the rename.

Where syncfs is missing (not Linux, or a libc without it) or OUT cannot be opened,
`batch_sync` gives None and the engine keeps one fsync per file in the writer. Where syncfs
fails at run time (EIO, a kernel or sandbox that refuses it) the barrier fsyncs each file of
the batch and its directory instead; a file that cannot be fsynced either raises (OSError,
the store's StoreError: the rows stay uncommitted and the run stops). A file whose directory
is on another filesystem than the output root (a mount inside OUT) is fsynced by itself, as
syncfs(OUT) does not reach it.

Costs: syncfs waits for all dirty data of the filesystem, other processes' too, and it runs
where the store flushes (the event loop); measured in bench/README.md (issue 16).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import cast

log = logging.getLogger(__name__)

#: syncfs(fd): raises OSError on failure.
SyncFs = Callable[[int], None]
#: errnos after which syncfs is not tried again in this barrier (it will not start to work).
_UNSUPPORTED = frozenset({errno.ENOSYS, errno.EPERM, errno.EINVAL, errno.EOPNOTSUPP})
_MAX_DIRS = 4096  # directories remembered as on (or off) the output's filesystem


def libc_syncfs() -> SyncFs | None:
    """syncfs(2) from `os` (Python 3.12+ has none; a later one may) or libc; None without it."""
    own = getattr(os, "syncfs", None)
    if own is not None:
        return cast(SyncFs, own)
    if not sys.platform.startswith("linux"):
        return None
    try:
        raw = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    raw.argtypes = [ctypes.c_int]
    raw.restype = ctypes.c_int

    def syncfs(fd: int) -> None:
        if raw(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"syncfs: {os.strerror(code)}")

    return syncfs


class BatchSync:
    """The store's done barrier for files under `out`: `barrier(paths)` makes them durable.

    The root's descriptor is opened here, before any file is written, and kept: syncfs
    reports a writeback error to a descriptor opened before the error, not after it.
    """

    def __init__(
        self,
        out: Path,
        syncfs: SyncFs | None,
        *,
        fsync: Callable[[int], None] = os.fsync,
    ) -> None:
        self._out = out
        self._syncfs = syncfs
        self._fsync = fsync
        self._fd: int | None = None
        self._dev = -1
        self._same_fs: dict[str, bool] = {}  # directory (relative) -> on the root's filesystem
        self._warned = False
        self._open()

    def __repr__(self) -> str:
        how = "syncfs" if self._syncfs is not None else "fsync each"
        return f"<BatchSync {self._out} {how}>"

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self._out, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            self._dev = os.fstat(self._fd).st_dev
        return self._fd

    def close(self) -> None:
        """Release the root's descriptor (a later call opens it again)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __call__(self, paths: Sequence[str]) -> None:
        """Make the files at `paths` (relative to `out`, forward slashes) and their names
        durable; OSError if that cannot be done."""
        if not paths:
            return
        fd = self._open()
        if self._syncfs is None:
            self.fsync_each(paths)
            return
        elsewhere = [p for p in paths if not self._on_root_fs(p)]
        try:
            self._syncfs(fd)
        except OSError as exc:
            self._fell_back(exc)
            self.fsync_each(paths)
            return
        if elsewhere:
            self.fsync_each(elsewhere)

    def _fell_back(self, exc: OSError) -> None:
        if exc.errno in _UNSUPPORTED:
            self._syncfs = None  # it will not start working: fsync each file from now on
        if not self._warned:
            log.warning("syncfs of %s failed (%s): fsyncing each file instead", self._out, exc)
            self._warned = True

    def _on_root_fs(self, path: str) -> bool:
        directory = str(PurePosixPath(path).parent)
        same = self._same_fs.get(directory)
        if same is None:
            try:
                same = os.stat(self._out / directory).st_dev == self._dev
            except OSError:
                same = False  # fsync_each will raise what is wrong with it
            if len(self._same_fs) >= _MAX_DIRS:
                self._same_fs.clear()
            self._same_fs[directory] = same
        return same

    def fsync_each(self, paths: Sequence[str]) -> None:
        """fsync every file, then each of their directories once (the renames)."""
        directories: dict[Path, None] = {}
        for path in paths:
            full = self._out / path
            _fsync_path(full, os.O_RDONLY, self._fsync)
            directories[full.parent] = None
        for directory in directories:
            _fsync_path(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0), self._fsync)


def _fsync_path(path: Path, flags: int, fsync: Callable[[int], None]) -> None:
    fd = os.open(path, flags)
    try:
        fsync(fd)
    finally:
        os.close(fd)


def batch_sync(out: Path, syncfs: SyncFs | None = None) -> BatchSync | None:
    """The barrier for files written under `out`, or None where syncfs is missing (then the
    writer's own fsync per file is the cheaper way: it runs in the image threads)."""
    found = syncfs if syncfs is not None else libc_syncfs()
    if found is None:
        return None
    try:
        return BatchSync(out, found)
    except OSError as exc:  # `out` cannot be opened: the writer's fsync per file, as before
        log.info("no syncfs barrier for %s (%s): fsync per file", out, exc)
        return None
