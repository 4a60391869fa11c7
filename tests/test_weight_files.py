"""Any weight file a user points at (issue 35, point 6): cut short anywhere or with a byte changed anywhere, it reads
as a state_dict of NumPy arrays or it is refused with the project's `WeightFileError` (or its `UnsafeWeightFileError`)
-- never another exception, never a hang, never an allocation beyond the file.

The files are a small state_dict saved by torch in both of its formats (zip and legacy) and by safetensors.  A
changed byte inside a tensor's own bytes cannot be detected (none of these formats carries a checksum of its
data), so a damaged file may read: what is checked then is that it reads as arrays, each as large as the file
allows.  What it found: a changed byte in a zip entry's name raised zipfile's `UnicodeDecodeError` (now a
`WeightFileError`).  Mutation that fails it: `read_state_dict`'s last `except` taken out (zipfile's and the
pickle's own errors through unwrapped).
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from converters.errors import WeightFileError
from converters.read import read_state_dict

FORMATS = ("zip", "legacy", "safetensors")


@functools.cache
def weight_files() -> dict[str, bytes]:
    """The same state_dict (a conv, a BatchNorm with its int64 counter, a 0-dim tensor, a transposed view) in
    each format, as bytes."""
    import torch
    from safetensors.numpy import save_file

    generator = torch.Generator().manual_seed(0)
    state = {"conv.weight": torch.randn(4, 3, 3, 3, generator=generator), "conv.bias": torch.randn(4, generator=generator),
             "bn.running_mean": torch.zeros(4), "bn.num_batches_tracked": torch.tensor(7),
             "fc.weight": torch.randn(5, 4, generator=generator).t(), "scale": torch.tensor(0.5)}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        torch.save(state, folder / "zip.pth")
        torch.save(state, folder / "legacy.pth", _use_new_zipfile_serialization=False)
        save_file({k: np.ascontiguousarray(v.numpy()) for k, v in state.items()},
                  str(folder / "safetensors.safetensors"))
        return {kind: next(folder.glob(f"{kind}.*")).read_bytes() for kind in FORMATS}


damage = st.one_of(st.tuples(st.just("cut"), st.floats(0, 1, exclude_max=True)),
                   st.tuples(st.just("byte"), st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                   st.tuples(st.just("bytes"), st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=16)))


def damaged(data: bytes, how: tuple) -> bytes:
    at = int(how[1] * len(data))
    if how[0] == "cut":
        return data[:at]
    new = bytes([how[2]]) if how[0] == "byte" else how[2]
    return data[:at] + new + data[at + len(new):]


@settings(max_examples=400, deadline=None, database=None)
@given(kind=st.sampled_from(FORMATS), how=damage)
def test_a_damaged_weight_file_reads_as_arrays_or_is_refused_with_the_projects_error(kind, how):
    data = damaged(weight_files()[kind], how)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("weights.safetensors" if kind == "safetensors" else "weights.pth")
        path.write_bytes(data)
        try:
            state = read_state_dict(path)
        except WeightFileError as error:
            assert str(path) in str(error)
            return
    assert isinstance(state, dict)
    for name, array in state.items():
        assert isinstance(name, str) and isinstance(array, np.ndarray)
        assert array.nbytes <= max(len(data), 8) * 8  # nothing larger than the file could hold (bool/int8 at most x8)


@pytest.mark.parametrize("kind", FORMATS)
def test_an_intact_file_reads_as_torch_saved_it(kind, tmp_path):
    """The property's baseline: the undamaged files read exactly (the values checked against torch's own)."""
    import torch

    path = tmp_path / ("weights.safetensors" if kind == "safetensors" else "weights.pth")
    path.write_bytes(weight_files()[kind])
    state = read_state_dict(path)
    if kind != "safetensors":
        reference = torch.load(path, weights_only=True)
        assert list(state) == list(reference)
        for name, tensor in reference.items():
            np.testing.assert_array_equal(state[name], tensor.numpy())
    assert state["fc.weight"].shape == (4, 5) and state["bn.num_batches_tracked"].reshape(-1).tolist() == [7]
