"""Read a PyTorch state_dict from disk into numpy arrays, safely.

`.onnx` graphs are read by `converters.onnx` (their weights named by following the graph).
`.safetensors` files are read with safetensors' numpy backend, so they load on
machines without torch.  Pickle-based files (`.pth`, `.pt`, `.bin`, `.ckpt`)
need torch and are read with `torch.load(..., weights_only=True)`: a pickle
that would run code or build arbitrary objects is refused, never executed.
"""

from __future__ import annotations

import pickle
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from converters.errors import UnsafeWeightFileError, WeightFileError

StateDict = dict[str, np.ndarray]

# Checkpoint wrappers people save instead of a bare state_dict.
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema", "model_ema",
                 "netG_state_dict")  # the PyTorch DCGAN tutorial's checkpoint (its generator)


def read_state_dict(path: str | Path) -> StateDict:
    """Load the tensors of a weight file as `{name: np.ndarray}`, in file order."""
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(f"weight file {path} does not exist (or is not a file).")
    if path.suffix.lower() == ".onnx":
        from converters.onnx import onnx_state_dict

        return onnx_state_dict(path)
    kind = _sniff(path)
    if kind == "safetensors":
        return _read_safetensors(path)
    if kind == "pickle":
        return as_numpy_state_dict(_torch_load(path), source=str(path))
    raise WeightFileError(
        f"weight file {path} is neither a PyTorch checkpoint (zip or pickle) nor .safetensors "
        f"(it starts with {path.read_bytes()[:8]!r}); is it corrupt, or an HTML error page "
        "saved by a failed download?"
    )


def as_numpy_state_dict(obj: Any, source: str = "state_dict") -> StateDict:
    """A state_dict (torch tensors, numpy or jax arrays) as `{name: np.ndarray}`.

    Unwraps the usual checkpoint dicts (`{"state_dict": ...}`, `{"model": ...}`)
    and a DataParallel `module.` prefix carried by every key.
    """
    if not isinstance(obj, Mapping):
        raise WeightFileError(
            f"{source} holds a {type(obj).__name__}, not a state_dict (a mapping of names to tensors); "
            "save `model.state_dict()` rather than the model object."
        )
    for key in _WRAPPER_KEYS:
        if key in obj and isinstance(obj[key], Mapping) and not _is_array(obj[key]):
            return as_numpy_state_dict(obj[key], source)
    out: StateDict = {}
    for name, value in obj.items():
        if not isinstance(name, str) or not _is_array(value):
            raise WeightFileError(
                f"{source}: entry {name!r} is a {type(value).__name__}, not a tensor; "
                "pass the model's state_dict (name -> tensor)."
            )
        out[name] = _to_numpy(value)
    if out and all(k.startswith("module.") for k in out):
        out = {k[len("module."):]: v for k, v in out.items()}
    return out


def _is_array(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor; torch has no numpy bfloat16.
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def _sniff(path: Path) -> str:
    head = path.open("rb").read(16)
    if head[:2] == b"PK" or head[:1] == b"\x80":
        return "pickle"  # torch's zip format, or the legacy raw pickle
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 0 < header_len < 100_000_000:
            return "safetensors"
    if path.suffix == ".safetensors":
        return "safetensors"  # let the reader say what is wrong with it
    return "unknown"


def _read_safetensors(path: Path) -> StateDict:
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except Exception as err:  # SafetensorError, OSError, json errors
        raise WeightFileError(
            f"weight file {path} is not a readable .safetensors file (corrupt or truncated?): {err}"
        ) from err


def _torch_load(path: Path) -> Any:
    try:
        import torch
    except ImportError as err:
        raise WeightFileError(
            f"reading {path} needs torch (it is a pickle-based PyTorch checkpoint). Install it with "
            "`pip install 'jaxvis[torch]'`, or convert the file to .safetensors on a machine that has torch."
        ) from err
    if zipfile.is_zipfile(path):
        _check_zip_complete(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeWeightFileError(
            f"refused to load {path}: it is a pickle that would run code or build objects other than "
            "tensors, and jaxvis only loads weights with torch.load(weights_only=True). If you trust "
            "the file, load it yourself and pass `model.state_dict()` (or re-save it as .safetensors). "
            f"torch said: {str(err).splitlines()[0]}"
        ) from err
    except (RuntimeError, EOFError, ValueError, OSError) as err:
        raise WeightFileError(f"weight file {path} is corrupt or truncated: {err}") from err


def _check_zip_complete(path: Path) -> None:
    """torch's zip reader fails late and cryptically on damaged archives; say so up front."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise WeightFileError(f"weight file {path} is corrupt or truncated: {err}") from err
    if bad is not None:
        raise WeightFileError(f"weight file {path} is corrupt: member {bad} fails its CRC check.")

