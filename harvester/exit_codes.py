"""Exit codes of the `harvest` command, and which error maps to which."""

from __future__ import annotations

from harvester.exceptions import ConfigError, InvalidApiKeyError
from harvester.writer import DiskFullError

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
    if isinstance(exc, DiskFullError):
        return EXIT_DISK_FULL
    if isinstance(exc, ConfigError):
        return EXIT_USAGE
    return EXIT_FAILED
