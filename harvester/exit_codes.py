"""Exit codes of the `harvest` command, and which error maps to which."""

from __future__ import annotations

import errno
import sqlite3

from harvester.exceptions import ConfigError, DiskFullError, InvalidApiKeyError

EXIT_OK = 0
EXIT_FAILED = 1  # an error that is not one of the below (API down past every retry, a bug)
EXIT_USAGE = 2  # bad command line, queries file or output directory
EXIT_BAD_KEY = 3  # Flickr rejected the API key
EXIT_DISK_FULL = 4  # the output filesystem is full; everything written so far is kept
EXIT_INTERRUPTED = 130  # stopped by Ctrl-C or SIGTERM; the same command resumes


def exit_code_for(exc: BaseException) -> int:
    """The exit code for an error that ends a run."""
    if isinstance(exc, InvalidApiKeyError):
        return EXIT_BAD_KEY
    if is_disk_full(exc):
        return EXIT_DISK_FULL
    if isinstance(exc, ConfigError):
        return EXIT_USAGE
    return EXIT_FAILED


def is_disk_full(exc: BaseException) -> bool:
    """Whether the error is a full disk: an image write, any OS call, or the store's SQLite."""
    if isinstance(exc, DiskFullError):
        return True
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    # A StoreError is raised from the sqlite3 error (store.sqlite._translated), and Engine.run
    # re-raises a task's error with its cause, so the SQLite code is still there to read.
    cause = exc.__cause__
    return isinstance(cause, sqlite3.Error) and cause.sqlite_errorcode == sqlite3.SQLITE_FULL
