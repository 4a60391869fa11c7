"""Every method takes one `RunConfig`; multi-stage methods checkpoint and continue: an interrupted DeepInversion run (or Plug-In Inversion's stages),
called again with the same `RunConfig(checkpoint_dir=...)`, restores its finished stages instead of rerunning them and
ends with the images of an uninterrupted run; a changed call is refused, naming what changed.

On the tiny CNN (`helpers.tiny_cnn`) with tiny budgets.  Mutations that fail it: `run_stages` not passing the
stage's checkpoint folder (nothing is restored: no "resuming from" lines), or passing one folder to every stage
(stage 2 refuses stage 1's checkpoint as another run).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from jaxvis.core.checkpoints import ResumeMismatchError
from jaxvis.engine.run_config import RunConfig, run_config
from jaxvis.engine.stages import run_stages
from jaxvis.methods import deepinversion, pii

PII = replace(pii.DEFAULTS, steps=3, ensemble=2, chunk=3)
DI = replace(deepinversion.DEFAULTS, resolutions=((2, 3), (1, 3)), warmup=1, chunk=3)


def pii_first_stages(model, recipe, **options):
    """Plug-In Inversion's first three zoom stages (of seven: the others compile for 12 s more and add nothing)."""
    return run_stages(model, pii.stages(model, np.asarray([1, 3]), 32, zoom=True, center=True, recipe=recipe)[:3],
                      config=run_config(options.pop("config", None), progress=options.pop("progress", None)),
                      **options)


METHODS = {
    "pii": (pii_first_stages, PII, 2, ("learning_rate", 0.05, "optimizer.learning_rate")),
    "deepinversion": (lambda model, **options: deepinversion.deep_inversion(model, [1, 3], size=32, **options), DI,
                      1, ("r_feature", 0.5, "objective_numbers")),
}


def interrupted_after(count: int):
    finished = []

    def on_stage(label, images):
        finished.append(label)
        if len(finished) == count:
            raise KeyboardInterrupt

    return on_stage


@pytest.mark.parametrize("method", METHODS)
def test_an_interrupted_run_continues_from_its_finished_stages(tiny_cnn, tmp_path, capsys, method):
    run, recipe, finished, (field, value, named) = METHODS[method]
    whole = run(tiny_cnn, recipe=recipe, progress=False)
    config = RunConfig(checkpoint_dir=tmp_path / "run", progress=False)  # each stage saved at its end
    with pytest.raises(KeyboardInterrupt):
        run(tiny_cnn, recipe=recipe, config=config, on_stage=interrupted_after(finished))
    capsys.readouterr()
    continued = run(tiny_cnn, recipe=recipe, config=config)
    assert capsys.readouterr().err.count("resuming from") == finished  # restored, not rerun
    # equal up to float32 rounding, as the engine's own resume
    np.testing.assert_allclose(continued.images, whole.images, rtol=0, atol=1e-5)
    np.testing.assert_allclose(continued.history, whole.history, rtol=1e-4, atol=1e-5)
    with pytest.raises(ResumeMismatchError, match=named):
        run(tiny_cnn, recipe=replace(recipe, **{field: value}), config=config)
    with pytest.raises(ResumeMismatchError, match="seed"):
        run(tiny_cnn, recipe=recipe, config=replace(config, seed=5))


def test_single_stage_methods_take_the_same_run_config(tiny_cnn, tmp_path, capsys):
    """`jaxvis.visualize` and `reconstruct` with a RunConfig: its seed is used (another seed gives other
    images), and a run stopped at step 2 continues from its checkpoint to the images of an uninterrupted run."""
    import jaxvis
    from jaxvis.methods import reconstruct

    options = dict(size=32, steps=4, relu_override_steps=0)
    whole = jaxvis.visualize(tiny_cnn, "features.8:2,5", config=RunConfig(seed=3, progress=False), **options)
    assert not np.allclose(whole, jaxvis.visualize(tiny_cnn, "features.8:2,5", seed=4, progress=False, **options))
    config = RunConfig(seed=3, progress=False, checkpoint_dir=tmp_path / "vis", checkpoint_every=2)
    jaxvis.visualize(tiny_cnn, "features.8:2,5", config=config, stop_after=2, **options)
    capsys.readouterr()
    continued = jaxvis.visualize(tiny_cnn, "features.8:2,5", config=config, **options)
    assert "resuming from" in capsys.readouterr().err
    np.testing.assert_allclose(continued, whole, rtol=0, atol=1e-5)
    photos = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    first = reconstruct(tiny_cnn, photos, "features.5", steps=3, config=RunConfig(seed=1, progress=False))
    np.testing.assert_array_equal(first.images, reconstruct(tiny_cnn, photos, "features.5", steps=3, seed=1,
                                                            progress=False).images)
    assert not np.allclose(first.images, reconstruct(tiny_cnn, photos, "features.5", steps=3, progress=False).images)
