"""Output targets: where a harvest's files go, a local directory or any fsspec URL.

    open_target("out")                 LocalTarget   temp name + fsync + os.replace
    open_target("file:///data/out")    LocalTarget   (file:// is a local path)
    open_target("s3://bucket/prefix")  FsspecTarget  a whole-object put: visible only when complete
    open_target("memory://x")          FsspecTarget  (tests)
    target.find("sky/00001")           every file under a directory, by relative name (the sweeps)
    target.unfinished_uploads()        S3 multipart uploads a killed writer never completed

Names are relative, with forward slashes (`<keyword>/<NNNNN>.tar`). Every write is all or
nothing: a reader never sees half a file, whatever kills the writer. Library errors become ours
here, in one place: a full disk is DiskFullError, any other failure WriteError.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import urlsplit

from harvester.exceptions import ConfigError, DiskFullError, WriteError

Parts = Sequence[bytes | memoryview]
WRITE_TEST_PREFIX = ".write-test-"  # check_writable's object: `.write-test-<pid>`


@dataclass(frozen=True)
class Upload:
    """An upload begun under the target and neither completed nor aborted: on S3, a multipart
    upload whose writer died (s3fs aborts the ones that fail; a kill -9 leaves them, unseen by
    any listing of objects, billed until a lifecycle rule or an abort removes them)."""

    name: str  # relative, as Target names are
    upload_id: str


class Target(Protocol):
    """What the writers need of an output target."""

    @property
    def url(self) -> str:
        """The target as the user named it (a path or a URL), for messages."""
        ...

    @property
    def local_root(self) -> Path | None:
        """The directory on this machine, or None for an object store."""
        ...

    def put(self, name: str, parts: Parts) -> int:
        """Write `name` whole (all or nothing); returns the bytes written."""
        ...

    def writer(self, name: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        """A file to stream `name` into; it appears only when the block ends without error."""
        ...

    def read(self, name: str) -> bytes:
        """The bytes of `name`; FileNotFoundError when there is none."""
        ...

    def opened(self, name: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        """`name` as a seekable file, never read into memory whole (an object is fetched into
        a local spool file first); FileNotFoundError when there is none."""
        ...

    def exists(self, name: str) -> bool:
        """Whether `name` exists."""
        ...

    def remove(self, name: str) -> None:
        """Delete `name` if it exists."""
        ...

    def find(self, prefix: str = "") -> list[str]:
        """Every file under the directory `prefix` (all when empty), as sorted relative names;
        empty when there is none. Always a fresh listing, never a cached one."""
        ...

    def unfinished_uploads(self) -> list[Upload]:
        """Uploads under the target begun and never finished, sorted by name (see Upload)."""
        ...

    def abort_upload(self, upload: Upload) -> None:
        """Discard an unfinished upload and the parts it holds."""
        ...


def is_remote(spec: str) -> bool:
    """Whether `--out` names something other than a directory on this machine."""
    scheme = urlsplit(spec).scheme
    return "://" in spec and scheme not in ("", "file")


def local_path(spec: str) -> Path:
    """The directory a local `--out` names (`file:///x` → `/x`)."""
    if spec.startswith("file://"):
        return Path(urlsplit(spec).path)
    return Path(spec)


def open_target(spec: str, *, fsync: bool = True, spool_dir: Path | None = None) -> Target:
    """The target `--out` names; ConfigError when its scheme has no installed filesystem."""
    if not is_remote(spec):
        return LocalTarget(local_path(spec), fsync=fsync)
    return FsspecTarget(spec, spool_dir=spool_dir)


class LocalTarget:
    """A directory on this machine (or a shared filesystem mounted on it)."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self._root = root
        self._fsync = fsync

    def __repr__(self) -> str:
        return f"<LocalTarget {self._root} fsync={self._fsync}>"

    @property
    def url(self) -> str:
        """The directory, as a path."""
        return str(self._root)

    @property
    def local_root(self) -> Path | None:
        """The directory."""
        return self._root

    def path(self, name: str) -> Path:
        """The file `name` names."""
        return self._root / name

    def put(self, name: str, parts: Parts) -> int:
        """Temp name in the same directory, one writev, fsync, os.replace (as write_atomic)."""
        path = self.path(name)
        temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        total = sum(len(p) for p in parts)
        with _translated(f"write {path}"):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                _write_fd(temp, parts, total, fsync=self._fsync)
                os.replace(temp, path)
            except OSError:
                temp.unlink(missing_ok=True)
                raise
        return total

    @contextlib.contextmanager
    def writer(self, name: str) -> Iterator[IO[bytes]]:
        """`.<name>.tmp-<pid>` beside the file (swept by writer.cleanup_temp_files), renamed."""
        path = self.path(name)
        temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with _translated(f"write {path}"):
            path.parent.mkdir(parents=True, exist_ok=True)
            f = temp.open("wb")
        try:
            with f:
                yield f  # the caller's errors pass untranslated, and leave no file
                with _translated(f"write {path}"):
                    f.flush()
                    if self._fsync:
                        os.fsync(f.fileno())
            with _translated(f"write {path}"):
                os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)

    def read(self, name: str) -> bytes:
        """The file's bytes."""
        return self.path(name).read_bytes()

    def opened(self, name: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        """The file itself (a later os.replace of `name` leaves this handle on the old one)."""
        return self.path(name).open("rb")

    def exists(self, name: str) -> bool:
        """Whether the file exists."""
        return self.path(name).exists()

    def remove(self, name: str) -> None:
        """Unlink the file if it is there."""
        with _translated(f"remove {self.path(name)}"):
            self.path(name).unlink(missing_ok=True)

    def find(self, prefix: str = "") -> list[str]:
        """os.walk under the directory (symlinks not followed)."""
        top = self.path(prefix) if prefix else self._root
        found = []
        with _translated(f"list {top}"):
            for directory, _dirs, files in os.walk(top):
                base = Path(directory).relative_to(self._root).as_posix()
                found += [name if base == "." else f"{base}/{name}" for name in files]
        return sorted(found)

    def unfinished_uploads(self) -> list[Upload]:
        """None: a directory's half-written files are temp files (writer.cleanup_temp_files)."""
        return []

    def abort_upload(self, upload: Upload) -> None:
        """Nothing to discard (there are no unfinished uploads)."""


class FsspecTarget:
    """Any fsspec filesystem: S3 (s3fs), GCS (gcsfs), Azure (adlfs), memory://, ..."""

    def __init__(self, url: str, *, spool_dir: Path | None = None) -> None:
        self._url = url.rstrip("/")
        self._spool_dir = spool_dir
        self._fs, self._root = _filesystem(self._url)

    def __repr__(self) -> str:
        return f"<FsspecTarget {self._url}>"

    @property
    def url(self) -> str:
        """The URL."""
        return self._url

    @property
    def local_root(self) -> Path | None:
        """None: an object store has no local directory."""
        return None

    @property
    def fs(self) -> Any:
        """The fsspec filesystem (for tests and tools that list it)."""
        return self._fs

    def full(self, name: str) -> str:
        """The filesystem path of `name` (no scheme)."""
        return f"{self._root}/{name}" if self._root else name

    def put(self, name: str, parts: Parts) -> int:
        """One whole-object upload: an object store shows it only once it is complete."""
        data = b"".join(parts)
        with _translated(f"write {self._url}/{name}"):
            self._fs.pipe_file(self.full(name), data)
        return len(data)

    @contextlib.contextmanager
    def writer(self, name: str) -> Iterator[IO[bytes]]:
        """Spooled to a local temp file, uploaded whole when the block ends without error.

        Streaming into the store's own file object would publish a half-written object when
        the block raises (its close completes the upload); a spool never does. The spool's
        name ends in `.tmp-<pid>`, so a killed run's is swept like any temp file.
        """
        suffix = f".tmp-{os.getpid()}"
        with tempfile.NamedTemporaryFile(dir=self._spool_dir, prefix=".spool-", suffix=suffix) as f:
            yield f
            with _translated(f"write {self._url}/{name}"):
                f.flush()
                self._fs.put_file(f.name, self.full(name))

    def read(self, name: str) -> bytes:
        """The object's bytes."""
        data: bytes = self._fs.cat_file(self.full(name))
        return data

    @contextlib.contextmanager
    def opened(self, name: str) -> Iterator[IO[bytes]]:
        """The object fetched whole into a spool file (one GET, not a range request per read),
        named like the writer's spool so that a killed run's is swept."""
        suffix = f".tmp-{os.getpid()}"
        with tempfile.NamedTemporaryFile(dir=self._spool_dir, prefix=".spool-", suffix=suffix) as f:
            self._fs.get_file(self.full(name), f.name)  # FileNotFoundError when there is none
            f.seek(0)
            yield f

    def exists(self, name: str) -> bool:
        """Whether the object exists."""
        return bool(self._fs.exists(self.full(name)))

    def remove(self, name: str) -> None:
        """Delete the object if it is there."""
        with _translated(f"remove {self._url}/{name}"), contextlib.suppress(FileNotFoundError):
            self._fs.rm_file(self.full(name))

    def find(self, prefix: str = "") -> list[str]:
        """fsspec's find: one LIST request per 1,000 objects on S3 (the listing cache is
        dropped first, so objects other processes wrote since are seen)."""
        top = self.full(prefix.strip("/")) if prefix else self._root
        with _translated(f"list {self._url}/{prefix}"):
            self._fs.invalidate_cache(top)
            paths = self._fs.find(top)
        start = f"{self._root}/" if self._root else ""
        return sorted(str(p).removeprefix(start) for p in paths if str(p).startswith(start))

    def unfinished_uploads(self) -> list[Upload]:
        """S3's multipart uploads under the prefix (ListMultipartUploads, 1,000 a request).

        s3fs uploads a file of 100 MiB or more (a WebDataset tar) in parts, at its final key;
        a writer killed between the first part and the completion leaves the parts. Other
        stores need nothing here: GCS resumable sessions and Azure's uncommitted blocks
        expire by themselves within a week, and fsspec's put is whole-object elsewhere.
        """
        call = getattr(self._fs, "call_s3", None)
        if call is None:
            return []
        bucket, _, key = self._root.partition("/")
        start = f"{key}/" if key else ""
        found: list[Upload] = []
        markers: dict[str, str] = {}
        with _translated(f"list the unfinished uploads of {self._url}"):
            while True:
                page = call("list_multipart_uploads", Bucket=bucket, Prefix=start, **markers)
                found += [
                    Upload(str(u["Key"]).removeprefix(start), str(u["UploadId"]))
                    for u in page.get("Uploads") or ()
                    if str(u["Key"]).startswith(start)
                ]
                if not page.get("IsTruncated"):
                    break
                markers = {
                    "KeyMarker": page["NextKeyMarker"],
                    "UploadIdMarker": page["NextUploadIdMarker"],
                }
        return sorted(found, key=lambda u: (u.name, u.upload_id))

    def abort_upload(self, upload: Upload) -> None:
        """AbortMultipartUpload; one that is already gone is not an error."""
        call = getattr(self._fs, "call_s3", None)
        if call is None:
            return
        bucket, _, key = self._root.partition("/")
        full = f"{key}/{upload.name}" if key else upload.name
        # s3fs's NoSuchUpload is FileNotFoundError: completed or aborted meanwhile.
        with (
            _translated(f"abort the upload of {self._url}/{upload.name}"),
            contextlib.suppress(FileNotFoundError),
        ):
            call("abort_multipart_upload", Bucket=bucket, Key=full, UploadId=upload.upload_id)


def _write_fd(temp: Path, parts: Parts, total: int, *, fsync: bool) -> None:
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        written = os.writev(fd, parts)
        if written < total:  # a short writev: the rest with plain writes
            rest = memoryview(b"".join(parts))[written:]
            while rest:
                rest = rest[os.write(fd, rest) :]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _filesystem(url: str) -> tuple[Any, str]:
    try:
        import fsspec
    except ImportError as exc:  # pragma: no cover - fsspec is a core dependency
        raise ConfigError(f"--out {url} needs fsspec: pip install fsspec") from exc
    try:
        fs, root = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        scheme = urlsplit(url).scheme
        extra = " (pip install 'harvest[s3]')" if scheme in ("s3", "s3a") else ""
        raise ConfigError(f"--out {url}: no filesystem for {scheme}://{extra}: {exc}") from exc
    return fs, str(root).rstrip("/")


@contextlib.contextmanager
def _translated(action: str) -> Iterator[None]:
    """OSError and the filesystems' own errors become WriteError / DiskFullError."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(f"output full: cannot {action}: {exc}") from exc
        raise WriteError(f"cannot {action}: {exc}") from exc
    except (WriteError, ConfigError):
        raise
    except Exception as exc:  # botocore, google-auth, azure errors not mapped to OSError
        raise WriteError(f"cannot {action}: {exc}") from exc


def check_writable(target: Target) -> None:
    """Write, read back and remove a small file: ConfigError (exit 2) when that fails."""
    name = f"{WRITE_TEST_PREFIX}{os.getpid()}"
    try:
        target.put(name, [b"ok"])
        seen = target.read(name)
        target.remove(name)
    except (WriteError, OSError) as exc:
        if isinstance(exc, DiskFullError):
            raise
        raise ConfigError(f"output {target.url} is not writable: {exc}") from exc
    if seen != b"ok":
        raise ConfigError(f"output {target.url} did not give back what was written")
