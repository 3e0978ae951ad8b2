"""Every error harvest raises, translated from library errors at the boundary.

    HarvestError
    ├── ConfigError              bad option, unwritable output, missing key
    │   ├── QueriesFileError     a queries file that cannot be read or parsed (names file:line)
    │   └── SourcesFileError     a sources file that cannot be read or parsed, or names a user
    │                            Flickr does not know (names the file and the user)
    ├── FlickrError              the API said stat=fail with a permanent code (code, message)
    │   └── InvalidApiKeyError   code 100: fatal, stops the run
    ├── TransientApiError        codes 0/10/105/201, HTTP 429/5xx, bad bodies: retried
    ├── DownloadError            an image could not be fetched (after retries)
    ├── ImageError               an image could not be decoded or processed (corrupt, bomb, ...)
    ├── UnsafeRecordError        a record whose fields could write outside the output directory
    └── StoreError               the SQLite store failed (a full disk: SQLITE_FULL as __cause__)
        └── WriteError           a file could not be written to the output directory
            └── DiskFullError    the output filesystem is full (ENOSPC) or over quota (EDQUOT)

TransientApiError is not a FlickrError: a retryable failure may have no API code at all
(a timeout, a 502). Two private subclasses never leave their module: the Flickr client's
`_NetworkError(TransientApiError)` and the downloader's `_Transient(DownloadError)`.
A deliberate drop (too small, negative term, duplicate) is an outcome, never an exception.
"""

from __future__ import annotations


class HarvestError(Exception):
    """Base of all harvest errors."""


class ConfigError(HarvestError):
    """A configuration or environment problem the user must fix."""


class QueriesFileError(ConfigError):
    """A queries file that cannot be read or parsed."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")


class SourcesFileError(ConfigError):
    """A sources file (`--sources`) that cannot be read or parsed, or names an unknown user."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


class FlickrError(HarvestError):
    """The Flickr API answered stat=fail."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"Flickr API error {code}: {message}")


class InvalidApiKeyError(FlickrError):
    """Code 100: the API key was rejected; nothing can proceed."""


class TransientApiError(HarvestError):
    """A failure worth retrying: HTTP 429/5xx, codes 0/10/105/201, unparsable bodies."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None) -> None:
        self.status = status
        self.code = code
        super().__init__(message)


class DownloadError(HarvestError):
    """An image could not be downloaded."""


class ImageError(HarvestError):
    """An image could not be decoded or processed."""


class UnsafeRecordError(HarvestError):
    """A record field that is not the shape Flickr uses and could escape the output directory."""


class StoreError(HarvestError):
    """The store could not be read or written."""


class WriteError(StoreError):
    """A file could not be written to the output directory."""


class DiskFullError(WriteError):
    """The output filesystem is full (ENOSPC) or over quota (EDQUOT); the run must stop."""
