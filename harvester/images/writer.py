"""The write stage: OUT/<keyword>/<NNNNN>/<id>_<secret>_<server>_<owner>.jpg, atomically.

Paths are pure functions of (keyword, per-keyword sequence number, record), so a photo maps to
the same file after any crash. Every component that comes from the API is validated against
Flickr's shapes before it touches the filesystem, and the resolved shard directory must stay
inside OUT (checked once per directory: see photo_path).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import logging
import os
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from harvester.config import WritePolicy
from harvester.exceptions import DiskFullError, UnsafeRecordError, WriteError
from harvester.records import PhotoRecord

log = logging.getLogger(__name__)

FILES_PER_DIR = 1000
MAX_DIRNAME_BYTES = 120  # well under every filesystem's 255, leaving room for a hash suffix
_ID = re.compile(r"[0-9]{1,20}")
_HEX = re.compile(r"[0-9a-f]{1,40}")
_SERVER = re.compile(r"[0-9]{1,10}")
_NSID = re.compile(r"[0-9]{1,20}@N[0-9]{1,4}")
_FORMATS = frozenset({"jpg", "jpeg", "png", "gif"})
_UNSAFE_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
_WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"} | {f"{p}{n}" for p in ("com", "lpt") for n in "123456789"}
)
_TEMP = re.compile(r"\..+\.tmp-([0-9]+)")


def shard_dir(seq: int) -> str:
    """The numbered directory of the photo with this 0-based per-keyword sequence number."""
    if seq < 0:
        raise ValueError(f"sequence number must be >= 0, got {seq}")
    return f"{seq // FILES_PER_DIR + 1:05d}"


def validate_record(record: PhotoRecord) -> None:
    """Raise UnsafeRecordError unless every path-relevant field has Flickr's shape."""
    checks = (
        ("id", record.id, _ID),
        ("secret", record.secret, _HEX),
        ("server", record.server, _SERVER),
        ("owner", record.owner, _NSID),
    )
    for name, value, pattern in checks:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise UnsafeRecordError(f"photo {record.id!r}: {name} {value!r} is not a Flickr {name}")
    if record.original_secret is not None and not _HEX.fullmatch(record.original_secret):
        raise UnsafeRecordError(f"photo {record.id}: bad originalsecret {record.original_secret!r}")
    if record.original_format is not None and record.original_format not in _FORMATS:
        raise UnsafeRecordError(f"photo {record.id}: bad originalformat {record.original_format!r}")


def file_name(record: PhotoRecord) -> str:
    """`<id>_<secret>_<server>_<owner>.jpg` after validation."""
    validate_record(record)
    return f"{record.id}_{record.secret}_{record.server}_{record.owner}.jpg"


def safe_dirname(keyword: str) -> str:
    """A directory name for a keyword that is valid on any filesystem.

    NFC, no separators or control characters, no Windows reserved names or trailing dots and
    spaces, at most MAX_DIRNAME_BYTES. When sanitising changed anything, a short hash of the
    original keyword is appended so that distinct keywords never share a directory.
    """
    nfc = unicodedata.normalize("NFC", keyword)
    name = _UNSAFE_CHARS.sub("_", nfc).strip(" ")
    name = name.rstrip(". ")
    if name.startswith("."):
        name = "_" + name.lstrip(".")
    if name.split(".")[0].lower() in _WINDOWS_RESERVED:
        name = "_" + name
    name = _truncate_utf8(name or "_", MAX_DIRNAME_BYTES)
    if name == keyword:
        return name
    digest = hashlib.sha256(keyword.encode()).hexdigest()[:8]
    return f"{name}-{digest}"


def _truncate_utf8(text: str, limit: int) -> str:
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode(errors="ignore").rstrip(". ")


def photo_path(out: Path, keyword: str, seq: int, record: PhotoRecord) -> Path:
    """Where this photo lives; UnsafeRecordError if it would resolve outside `out`.

    Two guards keep a record inside `out`. The name: every field of `file_name` is validated
    against Flickr's shapes (digits, lower-case hex, an NSID), so a name holds no separator,
    no `..`, nothing but `[0-9a-f_@N]` and `.jpg`, and cannot climb; `safe_dirname` and
    `shard_dir` likewise give one plain component each. The filesystem: the shard directory
    (`out/<keyword dir>/<NNNNN>`) is resolved, symlinks followed, and must stay under
    `out.resolve()`; a shard that escapes raises, every time (failures are not cached).

    The shard's resolution is cached (`_shard_dir`, per (out, dirname, shard)): one resolve
    per 1,000 photos instead of two per photo (an lstat per path component, 0.12 ms of the
    event loop's CPU a photo). The trade-off: a shard directory (or a directory above it)
    replaced by a symlink out of `out` *after* its first resolution is not seen until its
    entry leaves the cache (or `clear_path_cache()`). Before the cache the same swap between
    the check and the write went unseen too (the check never held against someone who can
    write into `out`, who can as well replace a finished file); it guards against hostile
    API records, which the cache does not weaken. Nor does it follow the file itself: the
    write renames over the name (os.replace replaces a symlink there, never its target), and
    `remove_file` unlinks the name.
    """
    name = file_name(record)  # first: a hostile record fails before any lookup on disk
    try:
        return _shard_dir(out, safe_dirname(keyword), shard_dir(seq)) / name
    except UnsafeRecordError as exc:
        raise UnsafeRecordError(f"photo {record.id}: {exc}") from None


@functools.lru_cache(maxsize=4096)
def _shard_dir(out: Path, dirname: str, shard: str) -> Path:
    """`out/dirname/shard`, once checked to resolve inside `out` (see photo_path)."""
    directory = out / dirname / shard
    root = out.resolve()
    if not directory.resolve().is_relative_to(root):
        raise UnsafeRecordError(f"directory {directory} escapes {root}")
    return directory


def clear_path_cache() -> None:
    """Forget every checked shard directory: the next photo_path of each resolves it again."""
    _shard_dir.cache_clear()


def write_atomic(path: Path, parts: Sequence[bytes | memoryview], policy: WritePolicy) -> int:
    """Write parts to `path` via a same-directory temp file and os.replace; returns bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        written = _write_file(temp, parts, policy.fsync)
        os.replace(temp, path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(f"output disk full while writing {path}: {exc}") from exc
        raise WriteError(f"cannot write {path}: {exc}") from exc
    if policy.fsync_dir:
        _fsync_dir(path.parent)
    return written


def _write_file(temp: Path, parts: Sequence[bytes | memoryview], fsync: bool) -> int:
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        total = sum(len(p) for p in parts)
        written = os.writev(fd, parts)
        if written < total:  # short writev: finish the rest with plain writes
            _write_rest(fd, b"".join(parts)[written:])
        if fsync:
            os.fsync(fd)
        return total
    finally:
        os.close(fd)


def _write_rest(fd: int, rest: bytes) -> None:
    view = memoryview(rest)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def cleanup_temp_files(out: Path) -> int:
    """Remove temp files left by killed runs (those whose writer pid is gone); returns count."""
    removed = 0
    for directory, _dirs, files in os.walk(out):
        for name in files:
            match = _TEMP.fullmatch(name)
            if match and not pid_alive(int(match.group(1))):
                Path(directory, name).unlink(missing_ok=True)
                removed += 1
    if removed:
        log.info("removed %d temporary files left by an earlier run", removed)
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (another worker may be mid-write).

    This process's own pid counts as gone: the sweeps that ask run at start-up, or between
    commits, before this process writes a file or object under that name.
    """
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
