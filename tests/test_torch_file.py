"""PyTorch checkpoints read without torch (`converters.torch_file`): bit-identical to `torch.load(weights_only=True)`
on every real weight file and every architecture in both layouts, and nothing in a pickle ever runs."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

import converters
import jaxvis
from converters.read import read_state_dict
from helpers import build_torch_model, torch_generator

LAYOUTS = {"zip": True, "legacy": False}  # torch.save's _use_new_zipfile_serialization


def torch_bytes(value: torch.Tensor) -> tuple[tuple[int, ...], str, bytes]:
    """Shape, dtype name and raw bytes of a tensor, for a bit-for-bit comparison (bfloat16 read as int16)."""
    value = value.detach()
    raw = value.contiguous().view(torch.int16) if value.dtype == torch.bfloat16 else value.contiguous()
    name = "bfloat16" if value.dtype == torch.bfloat16 else str(raw.numpy().dtype)
    return tuple(value.shape), name, raw.numpy().tobytes()


def numpy_bytes(value: np.ndarray) -> tuple[tuple[int, ...], str, bytes]:
    return value.shape, str(value.dtype), np.ascontiguousarray(value).tobytes()


def assert_reads_as_torch(path: Path, unwrap: str | None = None, strip: str = "") -> None:
    """Our reading of `path` equals torch.load(weights_only=True)'s, name for name and bit for bit."""
    reference = torch.load(path, map_location="cpu", weights_only=True)
    if unwrap:
        reference = reference[unwrap]
    ours = read_state_dict(path)
    assert list(ours) == [k.removeprefix(strip) for k in reference]
    for name, tensor in reference.items():
        assert numpy_bytes(ours[name.removeprefix(strip)]) == torch_bytes(tensor), name


def save(obj, path: Path, layout: str) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=LAYOUTS[layout])
    return path


def rezip(source: Path, target: Path, rename=lambda name: name, drop=(), compression=zipfile.ZIP_STORED,
          edit=lambda name, data: data) -> Path:
    """A copy of a zip checkpoint with records renamed, dropped, edited or recompressed."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", compression=compression) as new:
        for info in old.infolist():
            if not any(info.filename.endswith(d) for d in drop):
                new.writestr(rename(info.filename), edit(info.filename, old.read(info)))
    return target


# --- real weights, every architecture ------------------------------------------------------------------


def real_weight_files() -> list[tuple[Path, str | None]]:
    """Every real weight file the project reads, with the checkpoint key that wraps its state_dict."""
    wrapped = {"dcgan_faces": "netG_state_dict"}
    names = ("mobilenet_v2", "efficientnet_lite0", "dcgan_faces")
    return [(converters.find_local(jaxvis.architecture(n).pretrained).path, wrapped.get(n)) for n in names]


def test_every_real_weight_file_reads_as_torch_reads_it():
    files = real_weight_files()
    assert {p.suffix for p, _ in files} == {".pth", ".tar"}  # a legacy-layout .pth and a zip under "weights/"
    for path, unwrap in files:
        assert_reads_as_torch(path, unwrap)


TORCH_ARCHITECTURES = [a for a in jaxvis.ARCHITECTURES if jaxvis.architecture(a).source in ("torchvision", "timm")]


def quick_random_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The state_dict of architecture `name`, filled with random values without the library's slow init."""
    with torch.device("meta"):
        model = torch_generator() if name == "dcgan_faces" else build_torch_model(name)
    state = model.to_empty(device="cpu").state_dict()
    generator = torch.Generator().manual_seed(0)
    for tensor in state.values():
        if tensor.is_floating_point():
            tensor.uniform_(-1, 1, generator=generator)
        else:
            tensor.random_(0, 1000, generator=generator)
    return state


@pytest.mark.slow
def test_a_state_dict_of_every_architecture_reads_as_torch_reads_it(tmp_path):
    assert len(TORCH_ARCHITECTURES) >= 12
    for name in TORCH_ARCHITECTURES + ["dcgan_faces"]:
        state = quick_random_state_dict(name)
        for layout in LAYOUTS:
            path = save(state, tmp_path / f"{name}.pth", layout)
            assert_reads_as_torch(path)
            path.unlink()


# --- what a state_dict can hold -------------------------------------------------------------------------


def awkward_state_dict() -> OrderedDict:
    generator = torch.Generator().manual_seed(0)
    shared = torch.randn(24, generator=generator)
    matrix = torch.randn(3, 5, generator=generator)
    return OrderedDict(
        [
            ("f32", torch.randn(2, 3, generator=generator)),
            ("f16", torch.randn(4, generator=generator).half()),
            ("bf16", torch.randn(3, 2, generator=generator).bfloat16()),
            ("f64", torch.randn(2, generator=generator).double()),
            ("bn.num_batches_tracked", torch.tensor(7)),  # an int64 0-dim buffer
            ("scalar", torch.tensor(2.5)),
            ("int8", torch.tensor([-3, 4], dtype=torch.int8)),
            ("mask", torch.tensor([True, False, True])),
            ("shared.a", shared[2:8].view(2, 3)),  # three tensors on one storage at different offsets
            ("shared.b", shared[10:14]),
            ("shared.c", shared[20:]),
            ("transposed", matrix.t()),  # a non-contiguous view, saved with its strides
            ("every_other", shared[1::5]),
            ("empty", torch.zeros(0, 3)),
            ("param", torch.nn.Parameter(torch.randn(2, 2, generator=generator))),  # _rebuild_parameter
        ]
    )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_dtypes_shared_storages_strides_and_parameters(tmp_path, layout):
    path = save(awkward_state_dict(), tmp_path / "awkward.pth", layout)
    assert_reads_as_torch(path)
    ours = read_state_dict(path)
    assert ours["bf16"].dtype.name == "bfloat16" and ours["bn.num_batches_tracked"].shape == ()
    assert ours["transposed"].flags.c_contiguous


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("wrapper", ["state_dict", "model", "netG_state_dict"])
def test_checkpoint_wrappers_and_module_prefix(tmp_path, layout, wrapper):
    state = OrderedDict((f"module.{k}", v) for k, v in awkward_state_dict().items())
    path = save({wrapper: state, "epoch": 3, "best": 0.5}, tmp_path / "checkpoint.pth", layout)
    assert_reads_as_torch(path, unwrap=wrapper, strip="module.")


def test_compressed_records_and_other_top_folders(tmp_path):
    original = save(awkward_state_dict(), tmp_path / "original.pth", "zip")
    assert zipfile.ZipFile(original).namelist()[0] == "original/data.pkl"  # torch names the folder after the file
    deflated = rezip(original, tmp_path / "deflated.pth", compression=zipfile.ZIP_DEFLATED)
    assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zipfile.ZipFile(deflated).infolist())
    archive = rezip(original, tmp_path / "archive.pth", rename=lambda n: "archive/" + n.split("/", 1)[1])
    for path in (deflated, archive):
        assert_reads_as_torch(path)


def test_a_zip_without_byteorder_is_little_endian_and_big_endian_records_are_swapped(tmp_path):
    original = save(awkward_state_dict(), tmp_path / "original.pth", "zip")
    no_order = rezip(original, tmp_path / "no_order.pth", drop=("/byteorder",))
    assert not any(n.endswith("byteorder") for n in zipfile.ZipFile(no_order).namelist())
    assert_reads_as_torch(no_order)

    sizes = _record_item_sizes(original)

    def to_big_endian(name: str, data: bytes) -> bytes:
        if name.endswith("/byteorder"):
            return b"big"
        key = name.rsplit("/", 1)[1]
        if "/data/" in name and sizes.get(key, 1) > 1:
            return np.frombuffer(data, f"<u{sizes[key]}").astype(f">u{sizes[key]}").tobytes()
        return data

    big = rezip(original, tmp_path / "big.pth", edit=to_big_endian)
    assert_reads_as_torch(big)  # torch itself swaps big-endian records on load: both must agree
    np.testing.assert_array_equal(read_state_dict(big)["f32"], awkward_state_dict()["f32"].numpy())


def _record_item_sizes(path: Path) -> dict[str, int]:
    """Element size of each storage record, by key, from the persistent ids in the file's pickle."""

    class StorageTypes(pickle.Unpickler):
        types: dict[str, str] = {}

        def find_class(self, module, name):
            return name if name.endswith("Storage") else OrderedDict if name == "OrderedDict" else lambda *a: None

        def persistent_load(self, pid):
            self.types[pid[2]] = pid[1]

    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    unpickler = StorageTypes(io.BytesIO(data))
    unpickler.load()
    with warnings.catch_warnings():  # torch's typed storage classes are deprecated, still what files name
        warnings.simplefilter("ignore", UserWarning)
        return {key: getattr(torch, name).dtype.itemsize for key, name in unpickler.types.items()}


# --- damaged and hostile files -------------------------------------------------------------------------


def test_a_storage_claimed_larger_than_its_record_is_refused_before_allocation(tmp_path):
    original = save({"w": torch.ones(4)}, tmp_path / "original.pth", "zip")
    claim = pickle.dumps(10**15, protocol=2)[2:-1]  # a 10**15-element claim: 4 PB, never allocated

    def inflate(name: str, data: bytes) -> bytes:
        return data.replace(b"K\x04t", claim + b"t") if name.endswith("data.pkl") else data

    inflated = rezip(original, tmp_path / "inflated.pth", edit=inflate)
    with pytest.raises(converters.WeightFileError, match="claims 4000000000000000 bytes but its record"):
        read_state_dict(inflated)
    legacy = save({"w": torch.ones(1000)}, tmp_path / "legacy.pth", "legacy")
    legacy.write_bytes(legacy.read_bytes()[:-100])
    with pytest.raises(converters.WeightFileError, match="claims 4000 bytes but only 3900 remain"):
        read_state_dict(legacy)


def test_a_tensor_reaching_past_its_storage_is_refused(tmp_path):
    original = save({"w": torch.ones(4)}, tmp_path / "original.pth", "zip")

    def widen(name: str, data: bytes) -> bytes:  # size (4,) -> (40,) over a 4-element storage
        return data.replace(b"K\x04\x85", b"K(\x85") if name.endswith("data.pkl") else data

    with pytest.raises(converters.WeightFileError, match="past the storage's end"):
        read_state_dict(rezip(original, tmp_path / "wide.pth", edit=widen))


def hostile_pickles(marker: Path) -> dict[str, tuple[bytes, str]]:
    """Hand-made pickles whose loading would create `marker`, with the global each must be refused for."""
    command = f"touch {marker}".encode()
    return {
        "os.system + REDUCE": (b"\x80\x02cos\nsystem\nX" + len(command).to_bytes(4, "little") + command
                               + b"\x85R.", "os.system"),
        "builtins.eval": (b"cbuiltins\neval\n(S'open(" + repr(str(marker)).encode() + b", \"w\")'\ntR.",
                          "builtins.eval"),
        "subprocess.Popen": (b"csubprocess\nPopen\n((S'touch'\nS'" + str(marker).encode() + b"'\nltR.",
                             "subprocess.Popen"),
        "BUILD on an arbitrary class": (b"\x80\x02cpathlib\nPath\n)\x81}S'x'\nS'y'\nsb.", "pathlib.Path"),
        "protocol 0": (b"cposix\nsystem\n(S'" + command + b"'\ntR.", "posix.system"),
        "pickled by Python": (pickle.dumps(OrderedDict(w=RunsCode(marker)), protocol=2), "posix.system"),
    }


class RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def as_zip_checkpoint(payload: bytes, path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/byteorder", "little")
    return path


@pytest.mark.parametrize("layout", ["raw", "zip"])
def test_hostile_pickles_are_refused_without_running(tmp_path, layout):
    marker = tmp_path / "code-ran"
    for case, (payload, global_name) in hostile_pickles(marker).items():
        path = tmp_path / "evil.pth"
        if layout == "zip":
            as_zip_checkpoint(payload, path)
        else:
            path.write_bytes(payload)
        with pytest.raises(converters.UnsafeWeightFileError, match=f"global {global_name}") as error:
            read_state_dict(path)
        assert "refused to load" in str(error.value), case
        assert not marker.exists(), case
    # the same payloads do run when unpickled plainly: the marker proves the test would see a side effect
    pickle.loads(hostile_pickles(marker)["protocol 0"][0])
    assert marker.exists()


def test_a_build_on_an_allowed_global_is_refused(tmp_path):
    """BUILD cannot rewrite the stand-ins (e.g. set `__defaults__` of the tensor-rebuild function)."""
    payload = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n}X\x0c\x00\x00\x00__defaults__)sb.")
    with pytest.raises(converters.UnsafeWeightFileError, match="a BUILD"):
        read_state_dict(as_zip_checkpoint(payload, tmp_path / "build.pth"))
    assert_reads_as_torch(save(awkward_state_dict(), tmp_path / "after.pth", "zip"))  # still intact


def test_reading_does_not_import_torch(tmp_path):
    path = save(awkward_state_dict(), tmp_path / "awkward.pth", "zip")
    code = ("import sys, converters.read as r; d = r.read_state_dict(sys.argv[1]); "
            "assert 'torch' not in sys.modules; print(len(d))")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(len(awkward_state_dict()))
