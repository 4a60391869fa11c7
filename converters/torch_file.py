"""PyTorch checkpoints (`torch.save`) read without torch, and without running anything in their pickles.

The two layouts, as written by torch's `serialization.py` (`_save` and `_legacy_save`):

* **zip** (the default since torch 1.6): `TOP/data.pkl` is the pickled object, `TOP/data/KEY` one record
  of raw bytes per storage, `TOP/byteorder` "little" or "big" (absent in older files: little).  TOP is
  `archive` or the file's stem, depending on the torch version.  A storage appears in the pickle as the
  persistent id `("storage", storage_type, KEY, location, numel)`.
* **legacy** (`_use_new_zipfile_serialization=False`): five pickles back to back — the magic number
  0x1950a86a20f9469cfc6c, the protocol version 1001, the writer's system info (`little_endian`), the
  object, the sorted storage keys — then, for each key in that order, the element count as an int64
  followed by the storage's raw bytes.  Persistent id: `("storage", storage_type, KEY, location, numel,
  view_metadata)`.

Tensors are pickled as `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` (parameters
wrapped in `_rebuild_parameter`), state_dicts as `collections.OrderedDict`.  `_AllowListUnpickler`
resolves exactly those globals — the idea of torch's `weights_only=True` — to inert stand-ins defined
here; any other global raises `UnsafeWeightFileError` naming it, before it is looked up or called.
Tensors come back as NumPy arrays once every storage claim has been checked against its record.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import ml_dtypes
import numpy as np

from converters.errors import UnsafeWeightFileError, WeightFileError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype(np.float32),
    "DoubleStorage": np.dtype(np.float64),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
    "UntypedStorage": np.dtype(np.uint8),
}
_TORCH_DTYPES = ("float32", "float", "float64", "double", "float16", "half", "bfloat16", "int64", "long",
                 "int32", "int", "int16", "short", "int8", "uint8", "bool")


class _Sealed:
    """Base of what the unpickler hands out: a pickle can neither BUILD on it nor set its attributes."""

    __slots__ = ()

    def __init__(self, **fields: Any):
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise UnsafeWeightFileError(f"the pickle sets attribute {name!r} of {self!r}, which no state_dict does")

    def __setstate__(self, state: Any) -> None:
        raise UnsafeWeightFileError(f"the pickle sets the state of {self!r} (a BUILD), which no state_dict does")


class _StorageRef(_Sealed):
    """A storage named by the pickle: its record key, element type and element count (not yet read)."""

    __slots__ = ("key", "dtype", "numel")

    def __init__(self, key: str, dtype: np.dtype, numel: int):
        super().__init__(key=key, dtype=dtype, numel=numel)

    def __repr__(self) -> str:
        return f"storage {self.key!r} ({self.numel} x {self.dtype})"


class _TensorRef(_Sealed):
    """A strided view of a storage, made into an array once the storage is read."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage: _StorageRef, offset: int, size: tuple[int, ...], stride: tuple[int, ...]):
        for name, value in (("storage offset", offset), *(("size", s) for s in size), *(("stride", s) for s in stride)):
            if type(value) is not int or value < 0:
                raise WeightFileError(f"a tensor's {name} is {value!r}, not a non-negative integer")
        if not isinstance(storage, _StorageRef) or len(size) != len(stride):
            raise WeightFileError(f"a tensor is rebuilt from {storage!r} with size {size} and stride {stride}")
        super().__init__(storage=storage, offset=offset, size=size, stride=stride)

    def __repr__(self) -> str:
        return f"tensor {self.size} of {self.storage!r}"


class _Global(_Sealed):
    """An allowed global: a named, inert stand-in for the torch object of that name."""

    __slots__ = ("name", "call")

    def __init__(self, name: str, call: Callable[..., Any], **fields: Any):
        super().__init__(name=name, call=call, **fields)

    def __call__(self, *args: Any) -> Any:
        return self.call(*args)

    def __repr__(self) -> str:
        return self.name


class _StorageType(_Global):
    """`torch.FloatStorage` and kin: only ever the second field of a storage's persistent id."""

    __slots__ = ("dtype",)

    def __init__(self, name: str, dtype: np.dtype):
        super().__init__(f"torch.{name}", _not_callable(f"torch.{name}"), dtype=dtype)


class _OrderedDict(OrderedDict):
    """`collections.OrderedDict`; the BUILD torch gives a state_dict (its `_metadata`) is read and dropped."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise UnsafeWeightFileError(f"the pickle sets an OrderedDict's state to a {type(state).__name__}")


def _not_callable(name: str) -> Callable[..., Any]:
    def refuse(*args: Any) -> Any:
        raise UnsafeWeightFileError(f"the pickle calls {name}, which a state_dict never does")

    return refuse


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_ignored: Any) -> _TensorRef:
    """`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`."""
    return _TensorRef(storage, offset, tuple(size), tuple(stride))


def _rebuild_parameter(data: Any, *_ignored: Any) -> Any:
    """`torch._utils._rebuild_parameter(data, requires_grad, hooks[, state])`: the data is what we keep."""
    if not isinstance(data, _TensorRef):
        raise WeightFileError(f"a parameter is rebuilt from {data!r}, not a tensor")
    return data


def _allowed_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): _OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _Global("torch._utils._rebuild_tensor_v2", _rebuild_tensor),
        ("torch._utils", "_rebuild_tensor"): _Global("torch._utils._rebuild_tensor", _rebuild_tensor),
        ("torch._utils", "_rebuild_parameter"): _Global("torch._utils._rebuild_parameter", _rebuild_parameter),
        ("torch._utils", "_rebuild_parameter_with_state"):
            _Global("torch._utils._rebuild_parameter_with_state", _rebuild_parameter),
        ("torch", "Size"): _Global("torch.Size", lambda dims=(): tuple(int(d) for d in dims)),
    }
    for name, dtype in _STORAGE_DTYPES.items():
        allowed[("torch", name)] = _StorageType(name, dtype)
    allowed[("torch.storage", "UntypedStorage")] = allowed[("torch", "UntypedStorage")]
    for name in _TORCH_DTYPES:
        allowed[("torch", name)] = _Global(f"torch.{name}", _not_callable(f"torch.{name}"))
    return allowed


_ALLOWED = _allowed_globals()


class _AllowListUnpickler(pickle.Unpickler):
    """Resolves only the globals a state_dict needs; storages become `_StorageRef`s, registered by key."""

    def __init__(self, stream: BinaryIO, storages: dict[str, _StorageRef]):
        super().__init__(stream, fix_imports=False, encoding="utf-8")
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except (KeyError, TypeError):
            raise UnsafeWeightFileError(
                f"its pickle asks for the global {module}.{name}, which a state_dict never needs"
            ) from None

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise WeightFileError(f"unknown persistent id {pid!r} (not a torch storage)")
        storage_type, key, _location, numel = pid[1:5]
        if len(pid) == 6 and pid[5] is not None:
            raise WeightFileError("it holds storage views (torch < 0.4); load and re-save it with a newer torch")
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or type(numel) is not int:
            raise WeightFileError(f"malformed storage id {pid!r}")
        if numel < 0:
            raise WeightFileError(f"storage {key!r} claims {numel} elements")
        dtype = storage_type.dtype
        if storage_type.name.endswith("UntypedStorage"):  # counted in bytes; the tensor's dtype is unknown here
            dtype = np.dtype(np.uint8)
        known = self.storages.get(key)
        if known is not None:
            if (known.dtype, known.numel) != (dtype, numel):
                raise WeightFileError(f"storage {key!r} is named twice with different types or sizes")
            return known
        self.storages[key] = _StorageRef(key, dtype, numel)
        return self.storages[key]


def _unpickle(stream: BinaryIO, storages: dict[str, _StorageRef]) -> Any:
    try:
        return _AllowListUnpickler(stream, storages).load()
    except (UnsafeWeightFileError, WeightFileError):
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as err:
        raise WeightFileError(f"its pickle is corrupt or truncated ({type(err).__name__}: {err})") from err


# --- the zip layout ----------------------------------------------------------------------------------


def read_torch_zip(path: Path) -> Any:
    """The object of a zip-layout checkpoint, tensors as NumPy arrays."""
    try:
        with zipfile.ZipFile(path) as archive, open(path, "rb") as raw_file:
            top = _zip_top_folder(archive)
            storages: dict[str, _StorageRef] = {}
            with archive.open(top + "data.pkl") as stream:
                obj = _unpickle(io.BytesIO(stream.read()), storages)
            byteorder = _zip_byteorder(archive, top)
            arrays = {
                key: _zip_storage(archive, raw_file, top + "data/" + key, ref, byteorder)
                for key, ref in storages.items()
            }
    except zipfile.BadZipFile as err:
        raise WeightFileError(f"it is a damaged zip archive ({err})") from err
    return _materialize(obj, arrays)


def _zip_top_folder(archive: zipfile.ZipFile) -> str:
    pickles = [name for name in archive.namelist() if name == "data.pkl" or name.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise WeightFileError(
            f"it is a zip archive with {len(pickles)} data.pkl records, not a PyTorch checkpoint (one data.pkl)"
        )
    return pickles[0][: -len("data.pkl")]


def _zip_byteorder(archive: zipfile.ZipFile, top: str) -> str:
    try:
        order = archive.read(top + "byteorder").decode("ascii", "replace").strip()
    except KeyError:
        return "little"  # written since torch 1.10; earlier files are little-endian
    if order not in ("little", "big"):
        raise WeightFileError(f"its byteorder record says {order!r}, not 'little' or 'big'")
    return order


def _zip_storage(archive: zipfile.ZipFile, raw_file: BinaryIO, name: str, ref: _StorageRef,
                 byteorder: str) -> np.ndarray:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise WeightFileError(f"the pickle names {ref!r} but the archive has no record {name}") from None
    wanted = ref.numel * ref.dtype.itemsize
    if wanted > info.file_size:
        raise WeightFileError(f"{ref!r} claims {wanted} bytes but its record {name} holds {info.file_size}")
    if info.compress_type == zipfile.ZIP_STORED:  # torch's own files: one read from the file, then the CRC
        raw_file.seek(_stored_data_offset(raw_file, info))
        data = raw_file.read(wanted)
        if len(data) == info.file_size and zlib.crc32(data) != info.CRC:
            raise WeightFileError(f"record {name} fails its CRC check")
    else:
        with archive.open(info) as stream:
            data = stream.read(wanted)
    return _as_storage(data, ref, byteorder)


def _stored_data_offset(raw_file: BinaryIO, info: zipfile.ZipInfo) -> int:
    """Where an uncompressed record's bytes start: after its local header (PKZIP APPNOTE 4.3.7)."""
    raw_file.seek(info.header_offset)
    header = raw_file.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise WeightFileError(f"record {info.filename} has no local header")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_length + extra_length


# --- the legacy layout -------------------------------------------------------------------------------


def read_torch_legacy(path: Path) -> Any:
    """The object of a legacy-layout checkpoint (`_use_new_zipfile_serialization=False`)."""
    storages: dict[str, _StorageRef] = {}
    file_size = path.stat().st_size
    with open(path, "rb") as stream:
        if _unpickle(stream, storages) != LEGACY_MAGIC:
            raise WeightFileError("it is a pickle but not a PyTorch checkpoint (no torch magic number)")
        if _unpickle(stream, storages) != LEGACY_PROTOCOL:
            raise WeightFileError(f"it is a PyTorch checkpoint of an unknown protocol (not {LEGACY_PROTOCOL})")
        system = _unpickle(stream, storages)
        byteorder = "little" if not isinstance(system, dict) or system.get("little_endian", True) else "big"
        obj = _unpickle(stream, storages)
        keys = _unpickle(stream, storages)
        if not isinstance(keys, list) or set(keys) != set(storages):
            raise WeightFileError("its list of storage keys does not match the storages its pickle names")
        arrays = {key: _legacy_storage(stream, storages[key], byteorder, file_size) for key in keys}
    return _materialize(obj, arrays)


def _legacy_storage(stream: BinaryIO, ref: _StorageRef, byteorder: str, file_size: int) -> np.ndarray:
    header = stream.read(8)
    if len(header) != 8:
        raise WeightFileError(f"it ends before {ref!r}")
    count = int.from_bytes(header, byteorder)  # type: ignore[arg-type]
    if count != ref.numel:
        raise WeightFileError(f"{ref!r} is recorded with {count} elements")
    wanted = count * ref.dtype.itemsize
    if wanted > file_size - stream.tell():
        raise WeightFileError(f"{ref!r} claims {wanted} bytes but only {file_size - stream.tell()} remain")
    return _as_storage(stream.read(wanted), ref, byteorder)


# --- storages to arrays ------------------------------------------------------------------------------


def _as_storage(data: bytes, ref: _StorageRef, byteorder: str) -> np.ndarray:
    """The storage's elements in native byte order: a read-only view of `data` (a copy if swapped)."""
    if len(data) != ref.numel * ref.dtype.itemsize:
        raise WeightFileError(f"{ref!r} is cut short ({len(data)} bytes read)")
    if byteorder == "big" and ref.dtype.itemsize > 1:
        unsigned = f"u{ref.dtype.itemsize}"
        return np.frombuffer(data, ">" + unsigned).astype("<" + unsigned).view(ref.dtype)
    return np.frombuffer(data, ref.dtype)


def _materialize(obj: Any, storages: dict[str, np.ndarray]) -> Any:
    """Replace every `_TensorRef` in nested dicts, lists and tuples with its array (a copy)."""
    if isinstance(obj, _TensorRef):
        return _tensor(obj, storages[obj.storage.key])
    if isinstance(obj, dict):
        return OrderedDict((key, _materialize(value, storages)) for key, value in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(value, storages) for value in obj)
    if isinstance(obj, _Sealed):
        raise WeightFileError(f"it holds {obj!r} outside a tensor")
    return obj


def _tensor(ref: _TensorRef, storage: np.ndarray) -> np.ndarray:
    """The tensor's elements: a view of its storage where they lie contiguously (shared, as in torch), else a copy."""
    if any(n == 0 for n in ref.size):
        return np.zeros(ref.size, storage.dtype)
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
    if last >= storage.size:
        raise WeightFileError(
            f"a {ref!r} at offset {ref.offset} with stride {ref.stride} reaches element {last}, past the storage's end"
        )
    count = int(np.prod(ref.size, dtype=np.int64))
    if ref.stride == _contiguous_strides(ref.size, ref.stride):
        return storage[ref.offset : ref.offset + count].reshape(ref.size)
    view = np.lib.stride_tricks.as_strided(
        storage[ref.offset :], shape=ref.size, strides=[s * storage.dtype.itemsize for s in ref.stride],
        writeable=False,
    )
    return np.array(view, order="C", copy=True)


def _contiguous_strides(size: tuple[int, ...], stride: tuple[int, ...]) -> tuple[int, ...]:
    """Row-major strides for `size`, keeping the given stride where a dimension has one element (it is free)."""
    expected, step = [], 1
    for n, given in zip(reversed(size), reversed(stride)):
        expected.append(given if n == 1 else step)
        step *= n
    return tuple(reversed(expected))
