"""The `jaxvis` command line: models, layers, classify, convert, and its error messages."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jaxvis.cli import main
from jaxvis.data.io import read_image, save_image

from helpers import forward


def run(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exit_:  # argparse's own errors (an invalid choice) and --version
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_models_lists_every_architecture_with_weight_availability(capsys):
    import jaxvis

    code, out, _ = run(capsys, "models")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(lines) == set(jaxvis.ARCHITECTURES)
    layer_count = len(jaxvis.load("mobilenet_v2").layers)
    assert "yes: pypi wheel" in lines["mobilenet_v2"] and f"  {layer_count}  " in lines["mobilenet_v2"]
    assert "torchvision" in lines["resnet50"] and lines["vit_b_16"].split()[1] == "vit"


def test_layers_prints_names_and_shapes_as_torch_computes_them(capsys):
    import torch
    import torchvision

    with torch.no_grad():  # torchvision's own shape of features.14 at 160 px, NCHW
        _, channels, height, width = torchvision.models.mobilenet_v2().features[:15](torch.zeros(1, 3, 160, 160)).shape
    code, out, _ = run(capsys, "layers", "mobilenet_v2", "--size", "160")
    assert code == 0
    rows = dict(line.split(None, 1) for line in out.splitlines()[1:-1])
    assert rows["features.14"].strip() == str((height, width, channels))
    assert out.splitlines()[-1] == f"{len(rows)} layers of mobilenet_v2 at 160x160"


def test_classify_a_photo_file_and_a_sample(capsys, tmp_path):
    photo = save_image(read_image("sample:coffee"), tmp_path / "coffee.png")
    code, out, _ = run(capsys, "classify", "mobilenet_v2", "sample:chelsea", str(photo))
    assert code == 0
    chelsea, coffee = out.split(str(photo))
    assert "Egyptian cat" in chelsea.splitlines()[1]
    assert "espresso" in coffee.splitlines()[1] and len(coffee.strip().splitlines()) == 6


def test_convert_writes_an_orbax_checkpoint(capsys, tmp_path):
    import orbax.checkpoint as ocp
    import torchvision

    state = torchvision.models.mobilenet_v2().state_dict()  # weights and BatchNorm statistics (not the step counters)
    numbers = sum(t.numel() for t in state.values() if t.is_floating_point())
    code, out, _ = run(capsys, "convert", "mobilenet_v2", "--out", str(tmp_path))
    assert code == 0 and f"{numbers:,} numbers" in out
    restored = ocp.StandardCheckpointer().restore((tmp_path / "mobilenet_v2").resolve())
    assert restored["params"]["classifier"]["1"]["kernel"].shape == (1280, 1000)


@pytest.mark.parametrize(
    "args,message",
    [
        (("classify", "mobilenet_v2", "/no/such/photo.jpg"), "image /no/such/photo.jpg does not exist"),
        (("classify", "mobilenet_v2", "sample:unicorn"), "unknown sample image"),
        (("layers", "mobilenet_v3"), "Did you mean mobilenet_v2"),
        (("layers", "alexnet", "--size", "40"), "at least 63x63"),
        (("convert", "resnet50", "--weights", "/no/such.pth"), "does not exist"),
    ],
)
def test_errors_are_one_clear_line_without_traceback(capsys, args, message):
    code, _, err = run(capsys, *args)
    assert code == 2 and message in err and "Traceback" not in err


def test_unreadable_image_file(capsys, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    code, _, err = run(capsys, "classify", "mobilenet_v2", str(bad))
    assert code == 2 and "not an image file" in err


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "jaxvis"
    result = subprocess.run([str(script if script.exists() else shutil.which("jaxvis")), "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "classify" in result.stdout


def test_visualize_writes_pngs_sheet_gallery_and_record(capsys, tmp_path, tiny_cnn_by_name):
    import json

    out = tmp_path / "vis"
    code, stdout, err = run(capsys, "visualize", tiny_cnn_by_name, "features.8", "--channels", "2,5", "--size", "32",
                            "--steps", "4", "--out", str(out))
    assert code == 0, err
    assert sorted(p.name for p in out.glob("*.png")) == ["contact_sheet.png", "unit_0002.png", "unit_0005.png"]
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["units"] == [2, 5] and set(record["units"]) == {"2", "5"}
    assert all(isinstance(u["objective"], float) for u in record["units"].values())
    assert "jax" in record["environment"] and record["timings"][0]["first_chunk_s"] > 0
    assert "unit_0005.png" in (out / "index.html").read_text()
    assert "2 images in" in stdout


def test_the_group_size_does_not_change_the_pictures(capsys, tmp_path, tiny_cnn_by_name):
    pictures = {}
    for size in ("3", "2"):
        out = tmp_path / size
        code, _, err = run(capsys, "visualize", tiny_cnn_by_name, "features.8", "--channels", "2,5,7", "--size", "32",
                           "--steps", "3", "--group-size", size, "--out", str(out))
        assert code == 0, err
        pictures[size] = {p.name: p.read_bytes() for p in out.glob("unit_*.png")}
    assert sorted(pictures["3"]) == ["unit_0002.png", "unit_0005.png", "unit_0007.png"]
    assert pictures["2"] == pictures["3"]


def test_a_sweep_writes_each_cell_as_its_own_run_would_and_a_grid_page(capsys, tmp_path, tiny_cnn_by_name):
    import json

    base = ("visualize", tiny_cnn_by_name, "features.8", "--channels", "2,5", "--size", "32", "--steps", "3",
            "--images", "2")
    code, stdout, err = run(capsys, *base, "--lr", "0.02,0.2", "--diversity", "0,1,3", "--out", str(tmp_path / "grid"))
    assert code == 0, err
    cells = [f"-lr{lr}-diversity{d}" for lr in ("0.02", "0.2") for d in ("0", "1", "3")]
    names = {f"unit_{u:04d}{cell}-{j}.png" for u in (2, 5) for cell in cells for j in (0, 1)}
    assert {p.name for p in (tmp_path / "grid").glob("unit_*.png")} == names
    record = json.loads((tmp_path / "grid" / "run.json").read_text())
    assert record["config"]["lr"] == [0.02, 0.2] and len(record["units"]) == 12
    page = (tmp_path / "grid" / "grid.html").read_text()
    assert all(f"unit_{u:04d}{cell}-0.png" in page for u in (2, 5) for cell in cells)
    assert "the sweep's grid" in stdout and "grid.html" in (tmp_path / "grid" / "index.html").read_text()
    code, _, err = run(capsys, *base, "--lr", "0.2", "--diversity", "1", "--out", str(tmp_path / "one"))
    assert code == 0, err
    for j in (0, 1):  # a cell is the run with its values alone
        assert (tmp_path / "grid" / f"unit_0005-lr0.2-diversity1-{j}.png").read_bytes() == \
            (tmp_path / "one" / f"unit_0005-{j}.png").read_bytes()
    code, _, err = run(capsys, *base, "--lr", "0.1,x", "--out", str(tmp_path / "bad"))
    assert code == 2 and "comma list of numbers" in err


def test_lucids_penalties_and_transform_strengths_are_sweep_flags(capsys, tmp_path, tiny_cnn_by_name):
    """--tv/--l2/--jitter/--scale take comma lists like --lr; a cell's PNG is the run with its values alone.
    Mutation that fails it: the CLI not passing a flag on (the cell would equal the default run's)."""
    base = ("visualize", tiny_cnn_by_name, "features.8", "--channels", "5", "--size", "32", "--steps", "3")
    code, _, err = run(capsys, *base, "--tv", "0,0.2", "--jitter", "2,9", "--scale", "0.3", "--out",
                       str(tmp_path / "grid"))
    assert code == 0, err
    cells = [f"-tv{tv}-jitter{j}" for tv in ("0", "0.2") for j in ("2", "9")]
    assert {p.name for p in (tmp_path / "grid").glob("unit_*.png")} == {f"unit_0005{cell}.png" for cell in cells}
    code, _, err = run(capsys, *base, "--tv", "0.2", "--jitter", "9", "--scale", "0.3", "--out", str(tmp_path / "one"))
    assert code == 0, err
    assert (tmp_path / "grid" / "unit_0005-tv0.2-jitter9.png").read_bytes() == \
        (tmp_path / "one" / "unit_0005.png").read_bytes()
    assert (tmp_path / "grid" / "unit_0005-tv0-jitter9.png").read_bytes() != \
        (tmp_path / "one" / "unit_0005.png").read_bytes()
    code, _, err = run(capsys, *base, "--jitter", "2.5", "--out", str(tmp_path / "bad"))
    assert code == 2 and "whole number" in err


def test_visualize_refuses_an_unwritable_output_directory(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = run(capsys, "visualize", "mobilenet_v2", "--out", str(blocker / "sub"), "--steps", "1")
    assert code == 2 and "cannot write to output directory" in err


@pytest.fixture()
def no_model_loading(monkeypatch):
    """Loading the weights fails the test: these requests must be refused before that."""
    import jaxvis.cli.visualize as command

    def refuse(*_):
        raise AssertionError("the model was loaded before the request was checked")

    monkeypatch.setattr(command, "load_model", refuse)


@pytest.mark.parametrize(
    "args,message",
    [
        (("features.14", "--channels", "0-5000"), "it has 160 channels, so valid units are 0-159"),
        (("features.14", "--channels", "158-161"), "valid units are 0-159"),
        (("feature.14",), "nearest: features.14"),
        (("features.14", "--size", "4"), "too small"),
        (("features.14", "--steps", "0"), "--steps must be at least 1"),
    ],
)
def test_visualize_checks_the_whole_request_before_loading_or_creating_anything(capsys, tmp_path,
                                                                                  no_model_loading, args, message):
    out = tmp_path / "not-yet"
    code, _, err = run(capsys, "visualize", "mobilenet_v2", *args, "--out", str(out))
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not out.exists()


def test_an_interrupted_run_keeps_its_state_under_the_cache_and_resumes(capsys, tmp_path, monkeypatch,
                                                                        tiny_cnn_by_name):
    import importlib

    command = importlib.import_module("jaxvis.methods.feature_visualization")  # the CLI imports run_visualization from here as it runs
    from jaxvis.cli.common import run_directory

    out = tmp_path / "vis"
    args = ("visualize", tiny_cnn_by_name, "features.8", "--channels", "2,5", "--group-size", "1", "--size", "32",
            "--steps", "4", "--checkpoint-every", "2", "--out", str(out))
    real = command.run_visualization
    calls = []

    def interrupted_in_the_second_group(*a, **k):
        calls.append(a[1])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(command, "run_visualization", interrupted_in_the_second_group)
    code, _, err = run(capsys, *args)
    assert code == 130 and "the same command again continues" in err
    state = run_directory(out)
    assert (state / "group_1").is_dir() and not (out / "checkpoints").exists()  # state in the cache, not in --out
    assert sorted(p.name for p in out.glob("unit_*.png")) == ["unit_0002.png"]  # the finished group is kept
    monkeypatch.setattr(command, "run_visualization", real)
    code, _, err = run(capsys, *args, "--resume")  # still accepted; the same command alone does the same
    assert code == 0, err
    assert "resuming at step 0 of 4 in group 2 of 2" in err and "resuming from" in err  # group 1 from its checkpoint
    assert sorted(p.name for p in out.glob("unit_*.png")) == ["unit_0002.png", "unit_0005.png"]
    assert not state.exists()  # complete: nothing left to resume


def test_version_and_help_with_examples(capsys):
    from jaxvis import __version__

    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"jaxvis {__version__}"
    for command in ("visualize", "invert", "dream", "reconstruct", "style", "layers", "classify", "attack", "concepts",
                    "dissect", "ablate", "examples", "atlas"):
        code, out, _ = run(capsys, command, "--help")
        assert code == 0 and "examples:" in out and f"jaxvis {command} " in out, command
    code, out, _ = run(capsys, "visualize", "--help")
    assert "--seed" in out and "{fourier,pixel,maco}" in out and "(default: 512)" in out


def test_invert_writes_class_images_gallery_and_record_with_names(capsys, tmp_path):
    import json

    out = tmp_path / "inv"
    code, stdout, err = run(capsys, "invert", "mobilenet_v2", "--classes", "goldfish,980", "--method", "logit",
                            "--size", "64", "--steps", "3", "--out", str(out))
    assert code == 0, err
    assert sorted(p.name for p in out.glob("class_*.png")) == ["class_00-0001-goldfish.png", "class_01-0980-volcano.png"]
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["classes"] == [1, 980] and record["config"]["method"] == "logit"
    assert set(record["classes"]) == {"00-0001-goldfish", "01-0980-volcano"}
    assert "p(target)" in (out / "index.html").read_text() and "2 images in" in stdout


def test_invert_sweeps_its_rate_and_jitter_from_comma_lists(capsys, tmp_path, tiny_cnn_by_name):
    """--lr and --jitter lists (DeepInversion: two phases, the cheapest of the multi-stage inversions): a PNG per
    class and cell named by its values, grid.html, and a cell the run with its values alone (within one 8-bit
    level); --jitter is refused for logit.  Mutation that fails it: `inversion_sweep` dropping the rate (the lr
    cells would be equal)."""
    import numpy as np

    from jaxvis.data.io import read_image

    base = ("invert", tiny_cnn_by_name, "--classes", "1,3", "--method", "deepinversion", "--size", "32", "--steps",
            "2")
    code, _, err = run(capsys, *base, "--lr", "0.01,0.2", "--jitter", "2", "--out", str(tmp_path / "grid"))
    assert code == 0, err
    names = {f"class_0{k}-000{c}-{n}-learning_rate{lr}.png" for k, (c, n) in enumerate([(1, "goldfish"), (3,
             "tiger_shark")]) for lr in ("0.01", "0.2")}
    assert {p.name for p in (tmp_path / "grid").glob("class_*.png")} == names
    assert "class_01-0003-tiger_shark-learning_rate0.2.png" in (tmp_path / "grid" / "grid.html").read_text()
    code, _, err = run(capsys, *base, "--lr", "0.2", "--jitter", "2", "--out", str(tmp_path / "one"))
    assert code == 0, err
    cell = read_image(str(tmp_path / "grid" / "class_01-0003-tiger_shark-learning_rate0.2.png"))
    assert np.abs(cell - read_image(str(tmp_path / "one" / "class_01-0003-tiger_shark.png"))).max() <= 1 / 255 + 1e-6
    other = read_image(str(tmp_path / "grid" / "class_01-0003-tiger_shark-learning_rate0.01.png"))
    assert np.abs(cell - other).max() > 2 / 255
    code, _, err = run(capsys, *base[:4], "--method", "logit", "--jitter", "4", "--out", str(tmp_path / "bad"))
    assert code != 0 and "--method logit uses Lucid's transforms" in err


def test_dream_reconstruct_and_style_write_their_galleries(capsys, tmp_path, tiny_cnn_by_name):
    """The commands' files, on the tiny CNN (`helpers.tiny_cnn`): what they compute is tested in test_methods."""
    jobs = {
        "dream": ("dream", tiny_cnn_by_name, "sample:chelsea", "--layer", "features.5,features.8", "--size", "96",
                  "--octaves", "2", "--steps", "2"),
        "rec": ("reconstruct", tiny_cnn_by_name, "sample:coffee", "sample:chelsea", "--layer", "features.5", "--size",
                "64", "--steps", "3"),
        "style": ("style", tiny_cnn_by_name, "sample:chelsea", "sample:brick", "--size", "64", "--steps", "2",
                  "--param", "pixel", "--style-layers", "features.2,features.5,features.8", "--content-layer",
                  "features.8"),
    }
    expected = {"dream": {"image_input.png", "image_dream.png"},
                "rec": {"image_0-original.png", "image_0-features.5.png", "image_1-features.5.png"},
                "style": {"image_content.png", "image_style.png", "image_result.png"}}
    for name, args in jobs.items():
        out = tmp_path / name
        code, _, err = run(capsys, *args, "--out", str(out))
        assert code == 0, err
        written = {p.name for p in out.glob("*.png")}
        assert expected[name] <= written and "contact_sheet.png" in written, (name, written)
        assert (out / "index.html").exists() and (out / "run.json").exists()


def test_dream_reconstruct_and_style_sweep_from_comma_lists_with_a_grid_page(capsys, tmp_path, tiny_cnn_by_name):
    """--step-size/--jitter, --lambda-tv/--lr and --style-weight as comma lists: a PNG per cell named by its values,
    grid.html linking them, and a cell's PNG the run with its values alone (within one 8-bit level).  Mutation
    that fails it: a flag not passed on to the method (the cells would be equal, or equal the default run)."""
    import numpy as np

    from jaxvis.data.io import read_image

    base = {
        "dream": ("dream", tiny_cnn_by_name, "sample:chelsea", "--layer", "features.8", "--size", "64", "--octaves",
                  "1", "--steps", "2"),
        "rec": ("reconstruct", tiny_cnn_by_name, "sample:coffee", "--layer", "features.5", "--size", "48", "--steps",
                "3"),
        "style": ("style", tiny_cnn_by_name, "sample:chelsea", "sample:brick", "--size", "48", "--steps", "2",
                  "--param", "pixel", "--optimizer", "adam", "--style-layers", "features.2,features.5",
                  "--content-layer", "features.8"),
    }
    sweeps = {"dream": (("--step-size", "1,6", "--jitter", "4"), "image_dream-step_size6.png",
                        ("--step-size", "6", "--jitter", "4"), "image_dream.png"),
              "rec": (("--lambda-tv", "0,20", "--lr", "0.1"), "image_0-features.5-lambda_tv20.png",
                      ("--lambda-tv", "20", "--lr", "0.1"), "image_0-features.5.png"),
              "style": (("--style-weight", "10,1e5"), "image_result-style_weight100000.png",
                        ("--style-weight", "1e5"), "image_result.png")}
    for name, (swept_flags, cell_file, alone_flags, alone_file) in sweeps.items():
        code, _, err = run(capsys, *base[name], *swept_flags, "--out", str(tmp_path / name))
        assert code == 0, (name, err)
        page = (tmp_path / name / "grid.html").read_text()
        assert cell_file in page, (name, page)
        code, _, err = run(capsys, *base[name], *alone_flags, "--out", str(tmp_path / f"{name}-alone"))
        assert code == 0, (name, err)
        cell = read_image(str(tmp_path / name / cell_file))
        alone = read_image(str(tmp_path / f"{name}-alone" / alone_file))
        assert np.abs(cell - alone).max() <= 1 / 255 + 1e-6, name
        other = sorted(p for p in (tmp_path / name).glob("image_*.png") if p.name != cell_file
                       and "original" not in p.name and p.name not in ("image_input.png", "image_content.png",
                                                                       "image_style.png"))
        assert len(other) == 1 and np.abs(read_image(str(other[0])) - cell).max() > 2 / 255, (name, other)


@pytest.mark.parametrize(
    "args,message",
    [
        (("invert", "mobilenet_v2", "--classes", "goldfsh"), "Did you mean goldfish"),
        (("invert", "mobilenet_v2", "--classes", "1000"), "valid indices are 0..999"),
        (("invert", "mobilenet_v2", "--classes", "1", "--method", "deepinv"), "invalid choice: 'deepinv' (choose from 'pii', 'deepinversion', 'logit')"),
        (("invert", "mobilenet_v2", "--classes", "1", "--method", "logit", "--ensemble", "4"), "no ensemble"),
        (("dream", "mobilenet_v2", "/no/such.png", "--layer", "features.6"), "does not exist"),
        (("dream", "mobilenet_v2", "sample:chelsea", "--layer", "features.6", "--size", "40"), "below the 32 px"),
        (("dream", "mobilenet_v2", "sample:chelsea", "--layer", "features.66", "--size", "200", "--octaves", "2"),
         "nearest"),
        (("reconstruct", "mobilenet_v2", "sample:unicorn", "--layer", "features.6"), "unknown sample image"),
        (("style", "mobilenet_v2", "sample:chelsea", "sample:brick", "--param", "fourier", "--pyramid", "2"),
         "pyramid needs"),
    ],
)
def test_method_command_errors_are_one_clear_line(capsys, tmp_path, args, message):
    code, _, err = run(capsys, *args, "--out", str(tmp_path / "out"))
    assert code == 2 and message in err and "Traceback" not in err, err


def test_attack_writes_adversarial_images_maps_sheet_gallery_and_record(capsys, tmp_path, mobilenet):
    """FGSM at 1/255 from the command line: the exact float images in adversarial.npy are the library's,
    within the eps ball, and run.json's verdicts are the model's own on them."""
    import json

    import numpy as np

    from jaxvis.data.io import read_photo
    from jaxvis.methods.attacks import fgsm
    from jaxvis.models.model import logits

    photos = np.stack([read_photo(f"sample:{name}", 224, 32) for name in ("chelsea", "coffee")])
    out = tmp_path / "attack"
    code, stdout, err = run(capsys, "attack", "mobilenet_v2", "sample:chelsea", "sample:coffee", "--method", "fgsm",
                            "--eps", "1/255", "--out", str(out))
    assert code == 0, err
    adversarial = np.load(out / "adversarial.npy")
    labels = logits(mobilenet, photos).argmax(-1)
    expected = fgsm(mobilenet, photos, labels, eps=1 / 255)
    np.testing.assert_array_equal(adversarial, expected.images)
    assert np.abs(adversarial - photos).max() <= 1 / 255 + 1e-6
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["eps"] == 1 / 255 and record["config"]["method"] == "fgsm"
    fooled = logits(mobilenet, adversarial).argmax(-1) != labels
    assert [item["success"] for item in record["images"]] == fooled.tolist()
    assert record["images"][0]["clean"] == "Egyptian cat" and "->" in stdout
    names = sorted(path.name for path in out.glob("image_*.png"))
    assert len(names) == 6 and sum("perturbation" in n for n in names) == 2
    assert (out / "contact_sheet.png").exists() and (out / "index.html").exists()
    assert names[0].startswith("image_00-chelsea-adversarial-")
    shown = read_image(out / [n for n in names if n.startswith("image_00") and "perturbation" in n][0])
    assert abs(float(shown.mean()) - 0.5) < 0.1 and shown.min() < 0.05 and shown.max() > 0.95  # ±eps to 0/1


def test_attack_explain_shows_the_units_the_attack_raised_most(capsys, tmp_path, tiny_cnn, tiny_cnn_by_name):
    """--explain --explain-by rose: run.json lists the units of the layer whose mean activation rose most
    (recomputed here from the captured activations), and the gallery holds per unit shown its feature
    visualization and its maps over the clean and the adversarial photo (brighter where the unit rose).
    On the tiny CNN: the ranking, the maps and the record are mechanics; the real network adds nothing."""
    import json

    import numpy as np

    from jaxvis.data.io import read_photo

    out = tmp_path / "explained"
    code, _, err = run(capsys, "attack", tiny_cnn_by_name, "sample:chelsea", "--method", "fgsm", "--eps", "8/255",
                       "--explain", "features.8", "--explain-by", "rose", "--explain-units", "2", "--explain-steps", "4",
                       "--out", str(out))
    assert code == 0, err
    clean = read_photo("sample:chelsea", tiny_cnn.arch.input_size, 8)[None]
    adversarial = np.load(out / "adversarial.npy")
    change = (np.asarray(forward(tiny_cnn, adversarial, capture="features.8")["features.8"]).mean(axis=(1, 2))
              - np.asarray(forward(tiny_cnn, clean, capture="features.8")["features.8"]).mean(axis=(1, 2)))[0]
    units = json.loads((out / "run.json").read_text())["images"][0]["units"]
    assert units["layer"] == "features.8"
    assert [entry["unit"] for entry in units["rose"]] == np.argsort(-change)[:2].tolist()
    assert len(list(out.glob("image_00-chelsea-unit*-visualization-rose-*.png"))) == 2
    top = units["rose"][0]["unit"]
    before, after = (read_image(next(out.glob(f"image_00-chelsea-unit{top}-{part}-map-rose-*.png")))
                     for part in ("clean", "adversarial"))
    assert after.mean() > before.mean()  # one brightness scale: the map that rose is the brighter one
    assert set(units) >= {"carried", "rose", "fell", "pushed_adversarial_class", "adversarial_margin"}


def test_attack_explain_refuses_an_unknown_layer_before_loading(capsys, tmp_path):
    code, _, err = run(capsys, "attack", "mobilenet_v2", "sample:chelsea", "--explain", "feature.14",
                       "--out", str(tmp_path / "x"))
    assert code == 2 and "nearest: features.14" in err


@pytest.mark.parametrize(
    "args,message",
    [
        (("--eps", "2/0"), "not a number or a fraction"),
        (("--eps", "0/255"), "--eps must be positive"),
        (("--method", "cw", "--eps", "0.5"), "smallest L2 perturbation itself"),
        (("--method", "fgsm", "--steps", "5"), "one L-inf step"),
        (("--target", "golden retreiver"), "golden retriever"),
        (("--method", "lbfgs", "--norm", "l2"), "--norm does not apply"),
    ],
)
def test_attack_checks_the_request_before_loading(capsys, tmp_path, monkeypatch, args, message):
    import jaxvis.cli.attack as command

    monkeypatch.setattr(command, "load_model", lambda *_: pytest.fail("the model was loaded before the check"))
    out = tmp_path / "not-yet"
    code, _, err = run(capsys, "attack", "mobilenet_v2", "sample:chelsea", *args, "--out", str(out))
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not out.exists()


def test_an_eps_list_is_a_robustness_curve_with_each_eps_in_its_folder(capsys, tmp_path, mobilenet):
    """`--eps 1/255,4/255`: one folder per eps holding exactly what the library's FGSM gives at that eps (run
    separately here), and on top the curve: run.json's rows count, per eps, the images whose saved PNG resisted
    (as that folder's run.json judged them), and index.html links to each folder. Mutation that fails it: every
    folder written from the first eps's result."""
    import json

    import numpy as np

    from jaxvis.data.io import read_photo
    from jaxvis.methods.attacks import fgsm
    from jaxvis.models.model import logits

    photos = np.stack([read_photo(f"sample:{name}", 224, 32) for name in ("chelsea", "coffee")])
    out = tmp_path / "curve"
    code, stdout, err = run(capsys, "attack", "mobilenet_v2", "sample:chelsea", "sample:coffee", "--method", "fgsm",
                            "--eps", "1/255,4/255", "--out", str(out))
    assert code == 0, err
    labels = logits(mobilenet, photos).argmax(-1)
    record = json.loads((out / "run.json").read_text())
    assert [row["folder"] for row in record["curve"]] == ["eps-1_255", "eps-4_255"]
    page = (out / "index.html").read_text()
    for eps, row in zip((1 / 255, 4 / 255), record["curve"]):
        folder = out / row["folder"]
        expected = fgsm(mobilenet, photos, labels, eps=eps)
        np.testing.assert_array_equal(np.load(folder / "adversarial.npy"), expected.images)
        images = json.loads((folder / "run.json").read_text())["images"]
        assert row["held"] == sum(not item["png_still_fools"] for item in images)
        assert row["fooled"] == int(expected.success.sum()) and row["eps"] == eps
        assert f'href="{row["folder"]}/index.html"' in page
        assert 'href="../index.html"' in (folder / "index.html").read_text()
    assert "images resisted the attack" in stdout
