"""Files written whole (readers see the old content or the new, never a part of it), their checksums, and folders
kept within a size.

Every file jaxvis writes itself -- for a user (images, pages, records) and for its own use (run requests,
checksum lists, converted models, stored programs) -- goes through `write_whole`, so that a full disk, a
used-up quota or a read-only filesystem is met in one place: `WriteRefusedError` names the path and what the
filesystem said, the temporary file is removed, and the file keeps its old content (or stays absent).
Orbax's checkpoints and jax's compilation cache are written by those libraries; `refusal` recognises their
errors too (`jaxvis.core.checkpoints` turns them into the same error).  `write_files` writes a
command's outputs, skipping files already holding the same bytes (a rerun after freeing space writes only
what is missing) and saying how much is left to write when a write is refused.  Tests inject faults at
the N-th write by replacing `_put`, the one place bytes reach a file.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from jaxvis.core.errors import JaxvisError

REFUSALS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is used up",
            errno.EROFS: "the filesystem is read-only"}
_OS_ERROR_CODE = re.compile(r"os_error_code='?(\d+)")  # how tensorstore (orbax's writer) reports an OSError


class WriteRefusedError(JaxvisError, OSError):
    """The filesystem refused a write: full, over quota, or read-only (`errno` says which)."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.errno = code


def refusal(error: BaseException) -> str | None:
    """What the filesystem said, if `error` is a full disk, a used-up quota or a read-only filesystem: an
    OSError, or an error whose message carries tensorstore's `os_error_code`; else None."""
    code = error.errno if isinstance(error, OSError) else None
    if code is None:
        found = _OS_ERROR_CODE.search(str(error))
        code = int(found.group(1)) if found else None
    return REFUSALS.get(code)


def human(count: float) -> str:
    """A byte count for people: 512 B, 1.5 KB, 3.2 MB, 4.0 GB."""
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return ""


def _put(path: Path, data: bytes) -> None:
    """The one place bytes reach a file (fault-injection tests replace it)."""
    path.write_bytes(data)


def write_whole(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary name in the same folder (made if missing), then rename it.

    A full disk, a used-up quota or a read-only filesystem raises `WriteRefusedError` naming `path`."""
    partial = path.with_suffix(f"{path.suffix}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _put(partial, data)
        partial.replace(path)
    except OSError as error:
        reason = refusal(error)
        if reason is None or isinstance(error, WriteRefusedError):
            raise
        raise WriteRefusedError(f"cannot write {path}: {reason}", error.errno) from None
    finally:
        try:
            partial.unlink(missing_ok=True)
        except OSError:  # a read-only filesystem cannot even remove what it does not hold
            pass


def write_files(files: Mapping[Path, bytes]) -> int:
    """Write each of `files` ({path: bytes}) whole, in order, skipping any that already holds those bytes;
    the number written.  A refused write raises `WriteRefusedError` saying how many files (and bytes) are
    still to be written."""
    written = 0
    pending = list(files.items())
    for index, (path, data) in enumerate(pending):
        if _holds(path, data):
            continue
        try:
            write_whole(path, data)
        except WriteRefusedError as error:
            left = [(p, d) for p, d in pending[index:] if not _holds(p, d)]
            raise WriteRefusedError(
                f"{error}; {len(left)} of the {len(pending)} output files are not written yet "
                f"({human(sum(len(d) for _, d in left))} in all)", error.errno) from None
        written += 1
    return written


def _holds(path: Path, data: bytes) -> bool:
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


def sha256(path: Path) -> str:
    """The file's SHA-256, hex."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def file_checksums(folder: Path) -> dict[str, str]:
    """{path relative to `folder`: SHA-256} of every file under it."""
    return {path.relative_to(folder).as_posix(): sha256(path) for path in sorted(folder.rglob("*")) if path.is_file()}


def evict_least_recently_used(files: Iterable[Path], limit: int) -> int:
    """Delete the least recently used of `files` until those left take at most `limit` bytes; the bytes freed.

    A file's last use is the later of its modification and access times (where the filesystem keeps access
    times, a read counts; a reader may also touch the file).  Files that vanish meanwhile are skipped."""
    entries = []
    for path in files:
        try:
            status = path.stat()
        except OSError:
            continue
        entries.append((max(status.st_mtime, status.st_atime), status.st_size, path))
    total = sum(size for _, size, _ in entries)
    freed = 0
    for _, size, path in sorted(entries, key=lambda entry: entry[0]):
        if total - freed <= limit:
            break
        try:
            path.unlink()
        except OSError:
            continue
        freed += size
    return freed
