"""Files written whole (readers see the old content or the new, never a part of it), their checksums, and folders
kept within a size."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path


def write_whole(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary name in the same folder (made if missing), then rename it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f"{path.suffix}.{os.getpid()}.tmp")
    try:
        partial.write_bytes(data)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


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
