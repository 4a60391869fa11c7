"""Fetch a weight file the way torch.hub or huggingface_hub would, with the standard library only.

Same URL, same place on disk, same hash check, so torch, timm and jaxvis share one cache:

* torchvision-style files go to `$TORCH_HOME/hub/checkpoints/NAME`; a name `stem-<hex>.pth` carries the
  first hex digits of the file's sha256, checked before the file takes its name (torch.hub's `check_hash`).
* Hugging Face files go to huggingface_hub's cache layout: `models--ORG--NAME/blobs/<etag>`, linked from
  `snapshots/<commit>/FILE`, with `refs/<revision>` naming the commit.  The endpoint honours
  `HF_ENDPOINT`; a large (LFS) file's etag is its sha256, checked before it lands.

A download is written to a temporary name beside its destination and renamed only once complete and
verified: an interrupted or damaged download never looks like a cached file.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from email.message import Message
from pathlib import Path

from tqdm import tqdm

from converters.errors import ChecksumError, WeightFileError

CHUNK = 1 << 20
TIMEOUT_S = 60


def download_to_torch_hub(url: str, destination: Path, sha256: str | None = None) -> Path:
    """Fetch `url` to `destination` (in the torch hub cache), checking `sha256` or the name's hash prefix."""
    temporary, digest = _fetch(url, destination.parent, headers_seen=lambda headers: None)
    _keep(temporary, destination, sha256 or name_hash_prefix(destination.name), digest, url)
    return destination


def download_from_hugging_face(repo: str, filename: str, cache: Path, revision: str = "main") -> Path:
    """Fetch `filename` of model repo `repo` into huggingface_hub's cache layout; the snapshot path."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    url = f"{endpoint}/{repo}/resolve/{revision}/{filename}"
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    seen: dict[str, str] = {}

    def remember(headers: Message) -> None:
        for name in ("X-Repo-Commit", "X-Linked-Etag", "ETag"):
            if headers.get(name) and name not in seen:
                seen[name] = headers[name]

    temporary, digest = _fetch(url, repo_dir / "blobs", headers_seen=remember)
    etag = (seen.get("X-Linked-Etag") or seen.get("ETag") or digest).removeprefix("W/").strip('"')
    commit = seen.get("X-Repo-Commit", "")
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        temporary.unlink()
        raise WeightFileError(f"{url} did not say which commit it served (no X-Repo-Commit header)")
    blob = repo_dir / "blobs" / etag
    _keep(temporary, blob, etag if re.fullmatch(r"[0-9a-f]{64}", etag) else None, digest, url)
    snapshot = repo_dir / "snapshots" / commit / filename
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    snapshot.unlink(missing_ok=True)
    snapshot.symlink_to(os.path.relpath(blob, snapshot.parent))
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / revision).write_text(commit)
    return snapshot


def name_hash_prefix(filename: str) -> str | None:
    """The sha256 prefix in a torch-hub style name (`resnet18-f37072fd.pth`), as torch.hub reads it."""
    match = re.search(r"-([0-9a-f]{8,64})\.(pth|pt|bin)$", filename)
    return match.group(1) if match else None


def _fetch(url: str, directory: Path, headers_seen: Callable[[Message], None]) -> tuple[Path, str]:
    """Stream `url` to a temporary file in `directory`: (its path, its sha256).  The caller keeps or
    deletes it; on any failure here it is deleted."""
    directory.mkdir(parents=True, exist_ok=True)
    opener = urllib.request.build_opener(_HeaderRecorder(headers_seen))
    request = urllib.request.Request(url, headers={"User-Agent": "jaxvis", "Accept-Encoding": "identity"})
    digest = hashlib.sha256()
    handle, name = tempfile.mkstemp(suffix=".partial", dir=directory)
    temporary = Path(name)
    try:
        with os.fdopen(handle, "wb") as out, opener.open(request, timeout=TIMEOUT_S) as response:
            headers_seen(response.headers)
            total = int(response.headers.get("Content-Length") or 0)
            with tqdm(total=total or None, unit="B", unit_scale=True, file=sys.stderr,
                      desc=f"downloading {url.rsplit('/', 1)[-1]}") as progress:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    progress.update(len(chunk))
                received = progress.n
        if total and received != total:
            raise WeightFileError(f"download of {url} stopped after {received} of {total} bytes")
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary, digest.hexdigest()


def _keep(temporary: Path, destination: Path, expected: str | None, digest: str, url: str) -> None:
    """Rename a finished download into place if its sha256 matches `expected` (a digest or a prefix)."""
    if expected and not digest.startswith(expected):
        temporary.unlink(missing_ok=True)
        raise ChecksumError(_mismatch(url, expected, digest))
    os.replace(temporary, destination)


class _HeaderRecorder(urllib.request.HTTPRedirectHandler):
    """Shows every response's headers, redirects included (the Hugging Face hub puts the commit and
    the file's sha256 on the redirect to its file store)."""

    def __init__(self, seen: Callable[[Message], None]):
        self.seen = seen

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 (urllib's signature)
        self.seen(headers)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _mismatch(what: str, expected: str, actual: str) -> str:
    return (f"checksum mismatch for {what}: expected sha256 {expected}, got {actual}. The download is damaged "
            "or not the published file; it was not kept.")
