"""The optimization engine: determinism, chunking, resume after a kill, sharding, divergence, bad input."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxvis
from jaxvis import objectives as O
from jaxvis import param as P
from jaxvis import transforms as T
from jaxvis.optimize import OptimizationDiverged, optimize

LAYER = "features.6"


def small_run(model, **options):
    defaults = dict(units=jnp.arange(3), param=P.fourier(32), transform=T.compose(T.jitter(4), T.flip()),
                    steps=8, chunk=4, progress=False, seed=0)
    return optimize(model, lambda u: O.channel(LAYER, u), **{**defaults, **options})


def test_same_seed_same_images_and_chunking_does_not_matter(mobilenet):
    first, again = small_run(mobilenet), small_run(mobilenet, chunk=8)
    np.testing.assert_allclose(first.images, again.images, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(first.history, again.history, rtol=1e-5, atol=1e-5)
    assert first.images.shape == (3, 1, 32, 32, 3) and first.history.shape == (8, 3)
    assert not np.allclose(small_run(mobilenet, seed=1).images, first.images)


def test_a_shorter_last_chunk_does_not_compile_again(mobilenet, caplog):
    import jax

    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        result = small_run(mobilenet, steps=7, chunk=3)  # chunks of 3, 3 and 1 steps
    compiled = [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage() and "run_steps" in r.getMessage()]
    assert len(compiled) == 1, compiled
    np.testing.assert_allclose(result.history, small_run(mobilenet, steps=7, chunk=7).history, rtol=1e-5, atol=1e-5)


def test_the_objective_increases(mobilenet):
    result = small_run(mobilenet, steps=24, chunk=8)
    assert np.all(result.history[-1] > result.history[0] + 0.1)


def test_batch_and_ensemble_axes(mobilenet):
    result = small_run(mobilenet, batch=2, ensemble=3, steps=4)
    assert result.images.shape == (3, 2, 32, 32, 3)
    assert not np.allclose(result.images[:, 0], result.images[:, 1])  # each image of a unit has its own init


def test_resume_after_a_kill_ends_with_the_same_images(mobilenet, tmp_path):
    uninterrupted = small_run(mobilenet, steps=12)
    code = f"""
        import os, signal, jax.numpy as jnp, jaxvis
        from jaxvis import objectives as O, param as P, transforms as T
        from jaxvis.optimize import optimize
        model = jaxvis.load("mobilenet_v2")
        optimize(model, lambda u: O.channel({LAYER!r}, u), units=jnp.arange(3), param=P.fourier(32),
                 transform=T.compose(T.jitter(4), T.flip()), steps=12, chunk=4, progress=False, seed=0,
                 checkpoint_dir={str(tmp_path)!r}, checkpoint_every=4, stop_after=8)
        os.kill(os.getpid(), signal.SIGKILL)  # die without any cleanup, as a killed job would
    """
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_4", "step_8"]
    resumed = small_run(mobilenet, steps=12, checkpoint_dir=tmp_path, checkpoint_every=4, resume=True)
    np.testing.assert_allclose(resumed.images, uninterrupted.images, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(resumed.history, uninterrupted.history, rtol=1e-5, atol=1e-5)


def test_resume_refuses_a_checkpoint_of_another_run(mobilenet, tmp_path):
    small_run(mobilenet, steps=4, checkpoint_dir=tmp_path, checkpoint_every=4)
    with pytest.raises(jaxvis.JaxvisError, match="different run.*seed"):
        small_run(mobilenet, steps=4, seed=3, checkpoint_dir=tmp_path, checkpoint_every=4, resume=True)


def test_sharded_over_eight_devices_gives_the_same_images(mobilenet, tmp_path):
    single = small_run(mobilenet, units=jnp.arange(5), steps=4)
    np.save(tmp_path / "single.npy", single.images)
    code = f"""
        import jax, numpy as np, jax.numpy as jnp, jaxvis
        from jaxvis import objectives as O, param as P, transforms as T
        from jaxvis.optimize import optimize
        assert jax.local_device_count() == 8
        model = jaxvis.load("mobilenet_v2")
        result = optimize(model, lambda u: O.channel({LAYER!r}, u), units=jnp.arange(5), param=P.fourier(32),
                          transform=T.compose(T.jitter(4), T.flip()), steps=4, chunk=4, progress=False, seed=0)
        np.testing.assert_allclose(result.images, np.load({str(tmp_path / 'single.npy')!r}), rtol=1e-4, atol=1e-5)
        print("sharded ok", result.images.shape)
    """
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0 and "sharded ok (5, 1, 32, 32, 3)" in run.stdout, run.stderr[-3000:]


def test_nan_stops_with_the_step_and_keeps_finished_images(mobilenet):
    def exploding(unit):
        value = O.channel(LAYER, unit)
        return O.Objective(lambda a: jnp.where(value(a) > 0.6, jnp.nan, value(a)), value.layers, "exploding")

    with pytest.raises(OptimizationDiverged, match=r"NaN/Inf at step (\d+)") as error:
        optimize(mobilenet, exploding, units=jnp.arange(2), param=P.fourier(32), steps=64, chunk=1,
                 progress=False, optimizer=optax.adam(0.1))
    result = error.value.result
    assert error.value.step == result.steps >= 1
    assert np.isfinite(result.images).all() and np.isfinite(result.history).all()


def test_relu_redirection_option_runs_in_the_scanned_step(mobilenet):
    """The switch is a traced `t < relu_override_steps` inside lax.scan (its gradient is tested in test_model_api)."""
    plain, redirected = small_run(mobilenet, steps=8), small_run(mobilenet, steps=8, relu_override_steps=4)
    assert redirected.images.shape == plain.images.shape and np.isfinite(redirected.images).all()
    assert redirected.history[-1].mean() > redirected.history[0].mean()


def test_objective_on_unknown_or_no_layer_is_refused(mobilenet):
    with pytest.raises(jaxvis.UnknownLayerError, match="features.60"):
        optimize(mobilenet, O.channel("features.60", 0), param=P.pixel(32), steps=1, progress=False)
    with pytest.raises(ValueError, match="reads no layer"):
        optimize(mobilenet, -O.total_variation(), param=P.pixel(32), steps=1, progress=False)
