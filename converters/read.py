"""Read a PyTorch state_dict from disk into numpy arrays, safely.

`.onnx` graphs are read by `converters.onnx` (their weights named by following the graph).
`.safetensors` files are read with safetensors' numpy backend; PyTorch's own
checkpoints (`.pth`, `.pt`, `.bin`, `.ckpt`, `.tar`: zip or legacy layout) by
`converters.torch_file`, without torch, through an allow-list unpickler: a pickle
that would run code or build objects other than tensors is refused, never executed.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from converters.errors import UnsafeWeightFileError, WeightFileError
from converters.torch_file import read_torch_legacy, read_torch_zip

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
    return as_numpy_state_dict(_read_torch(path, zipped=kind == "zip"), source=str(path))


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
    if head[:2] == b"PK":
        return "zip"  # torch's zip layout
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 0 < header_len < 100_000_000:
            return "safetensors"
    if path.suffix == ".safetensors":
        return "safetensors"  # let the reader say what is wrong with it
    return "legacy"  # torch's legacy layout: a run of pickles (anything else fails its first one)


def _read_safetensors(path: Path) -> StateDict:
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except Exception as err:  # SafetensorError, OSError, json errors
        raise WeightFileError(
            f"weight file {path} is not a readable .safetensors file (corrupt or truncated?): {err}"
        ) from err


def _read_torch(path: Path, zipped: bool) -> Any:
    try:
        return read_torch_zip(path) if zipped else read_torch_legacy(path)
    except UnsafeWeightFileError as err:
        raise UnsafeWeightFileError(
            f"refused to load {path}: {err}. jaxvis unpickles only tensors, storages and containers and runs "
            "nothing in a weight file. If you trust the file, load it yourself and pass `model.state_dict()` "
            "(or re-save it as .safetensors)."
        ) from None
    except WeightFileError as err:
        hint = "" if zipped or not _looks_like_text(path) else (
            " It looks like text: an HTML error page saved by a failed download?")
        raise WeightFileError(f"weight file {path} is corrupt or truncated, or not a PyTorch checkpoint: {err}.{hint}") from None
    except OSError as err:
        raise WeightFileError(f"cannot read weight file {path}: {err}") from err
    except Exception as err:  # a damaged archive or pickle: zipfile, the unpickler, struct and NumPy raise many kinds
        raise WeightFileError(f"weight file {path} is corrupt or truncated ({type(err).__name__}: {err}).") from None


def _looks_like_text(path: Path) -> bool:
    head = path.open("rb").read(64)
    return bool(head) and all(32 <= b < 127 or b in b"\t\r\n" for b in head)
