"""The optimization engine: determinism, chunking, resume after a kill, sharding, divergence, bad input.

Mechanics only: on the tiny CNN (`helpers.tiny_cnn`), except where jaxvis's own executable store needs a model
made of jaxvis's code (the new-process test).
"""

from __future__ import annotations

import json
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
from jaxvis.core.checkpoints import ResumeMismatchError
from jaxvis.engine.optimize import OptimizationDiverged, optimize
from jaxvis.pieces import objectives as O
from jaxvis.pieces import optimizers
from jaxvis.pieces import param as P
from jaxvis.pieces import transforms as T
from helpers import TINY_DEAD

LAYER = "features.8"  # (1, 16, 16, 32) for the 32 px images of small_run
TESTS = os.path.dirname(os.path.abspath(__file__))
TINY_IN_SUBPROCESS = f"import sys; sys.path.insert(0, {TESTS!r}); from helpers import tiny_cnn; model = tiny_cnn()"


def small_run(model, **options):
    defaults = dict(objective=lambda u: O.channel(LAYER, u), units=jnp.arange(3), param=P.fourier(32),
                    transform=T.compose(T.jitter(4), T.flip()), steps=8, chunk=4, progress=False, seed=0)
    options = {**defaults, **options}
    return optimize(model, options.pop("objective"), **options)


def test_same_seed_same_images_and_chunking_does_not_matter(tiny_cnn):
    first, again = small_run(tiny_cnn), small_run(tiny_cnn, chunk=8)
    np.testing.assert_allclose(first.images, again.images, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(first.history, again.history, rtol=1e-5, atol=1e-5)
    assert first.images.shape == (3, 1, 32, 32, 3) and first.history.shape == (8, 3)
    assert not np.allclose(small_run(tiny_cnn, seed=1).images, first.images)


def test_a_units_images_depend_on_the_unit_not_on_its_place_in_the_call(tiny_cnn):
    """Random draws are keyed on the unit's index: splitting the units into other groups (or asking for one
    alone) gives bit-identical images.  Keying on the position in the call (0, 1, ... per call) fails it."""
    whole = small_run(tiny_cnn, units=np.arange(6), transform=T.jitter(4))
    first, second = (small_run(tiny_cnn, units=group, transform=T.jitter(4)) for group in ([0, 1, 2, 3], [4, 5]))
    np.testing.assert_array_equal(np.concatenate([first.images, second.images]), whole.images)
    np.testing.assert_array_equal(np.concatenate([first.history, second.history], axis=1), whole.history)
    alone = small_run(tiny_cnn, units=[5, 2], transform=T.jitter(4))
    np.testing.assert_array_equal(alone.images, whole.images[[5, 2]])


def compilations(caplog) -> list[str]:
    """jax's own log of the optimization programs it compiled (jax.log_compiles)."""
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("Compiling jit(run_chunk)")]


def test_runtime_values_do_not_compile_again(tiny_cnn, caplog):
    """Seed, units, steps, learning rate, ReLU-redirection steps, objective weights, transform strengths (the
    jitter distance) and chunking are arguments."""
    import jax

    def weighted(w):
        return lambda u: O.channel(LAYER, u) + w * O.diversity(LAYER)

    base = dict(objective=weighted(0.5), relu_override_steps=2, optimizer=optimizers.adam(0.05), batch=2)
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        first = small_run(tiny_cnn, **base)
        assert len(compilations(caplog)) == 1
        others = [
            small_run(tiny_cnn, **{**base, "seed": 7}),
            small_run(tiny_cnn, **{**base, "units": jnp.asarray([9, 4, 1])}),
            small_run(tiny_cnn, **{**base, "steps": 13}),  # chunks of 4, 4, 4 and 1 steps
            small_run(tiny_cnn, **{**base, "optimizer": optimizers.adam(0.2, b1=0.5)}),
            small_run(tiny_cnn, **{**base, "relu_override_steps": 5}),
            small_run(tiny_cnn, **{**base, "objective": weighted(3.0)}),
            small_run(tiny_cnn, **{**base, "transform": T.compose(T.jitter(9), T.flip())}),
        ]
        assert len(compilations(caplog)) == 1, compilations(caplog)
        small_run(tiny_cnn, **{**base, "transform": T.compose(T.jitter(4), T.jitter(4))})  # another structure
        assert len(compilations(caplog)) == 2
    longer = others.pop(2)
    assert longer.steps == 13 and np.allclose(longer.history[:8], first.history, rtol=1e-5, atol=1e-5)
    others.pop(3)  # ReLU redirection does not engage on these live units: tested on a dead one below
    for name, other in zip(["seed", "units", "lr", "weight", "jitter"], others):  # each ran with its own values
        assert not np.allclose(other.history, first.history), name


def test_a_new_process_loads_the_compiled_program_instead_of_compiling(tmp_path):
    """jaxvis's own pieces: the exported program is reused (no tracing); a lambda among the
    pieces: not stored (its code is not in the key), XLA's persistent cache still applies."""
    code = f"""
        import json, sys, jax.numpy as jnp, jaxvis
        from jaxvis.engine.optimize import optimize
        from jaxvis.pieces import objectives as O, param as P, transforms as T
        model = jaxvis.load("mobilenet_v2")
        own = T.jitter(4)
        result = optimize(model, lambda u: O.channel({LAYER!r}, u), units=jnp.arange(2), param=P.fourier(32),
                          transform=own if sys.argv[1] == "own" else (lambda key, x: own(key, x)), steps=2,
                          progress=False)
        print(json.dumps({{"timings": result.timings, "last": result.history[-1].tolist()}}))
    """
    env = {**os.environ, "JAXVIS_COMPILATION_CACHE": str(tmp_path / "xla"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}  # XLA's cache keeps even these small programs

    def run(kind):
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), kind], capture_output=True, text=True,
                              env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    first, again = run("own"), run("own")
    assert "compile_s" in first["timings"] and "load_s" in again["timings"] and "trace_s" not in again["timings"]
    assert again["last"] == first["last"]
    (host,) = (tmp_path / "xla").iterdir()  # one folder for this machine's processor
    stored = sorted(p.name.split("-")[0] for p in (host / "programs").iterdir())
    assert stored == ["optimization_step"]  # the start is drawn inside the chunk program
    foreign, foreign_again = run("lambda"), run("lambda")
    assert "trace_s" in foreign_again["timings"] and foreign_again["last"] == foreign["last"]
    assert len(list((host / "programs").iterdir())) == 1  # nothing stored for the lambda's program

    # The store emptied, XLA's cache still holds the exported program's executable: exported again, stored again.
    for stored_file in (host / "programs").iterdir():
        stored_file.unlink()
    from_xla_cache = run("own")
    assert "trace_s" in from_xla_cache["timings"] and from_xla_cache["last"] == first["last"]
    assert "load_s" in run("own")["timings"]


def test_the_objective_increases(tiny_cnn):
    result = small_run(tiny_cnn, steps=24, chunk=8, units=jnp.asarray([0, 3, 5]))  # units on at the start
    assert np.all(result.history[-1] > result.history[0] + 0.1)


def test_batch_and_ensemble_axes(tiny_cnn):
    result = small_run(tiny_cnn, batch=2, ensemble=3, steps=4)
    assert result.images.shape == (3, 2, 32, 32, 3)
    assert not np.allclose(result.images[:, 0], result.images[:, 1])  # each image of a unit has its own init


def test_resume_after_a_kill_ends_with_the_same_images(tiny_cnn, tmp_path):
    uninterrupted = small_run(tiny_cnn, steps=12)
    code = f"""
        import os, signal, jax.numpy as jnp, jaxvis
        from jaxvis.engine.optimize import optimize
        from jaxvis.pieces import objectives as O, param as P, transforms as T
        {TINY_IN_SUBPROCESS}
        optimize(model, lambda u: O.channel({LAYER!r}, u), units=jnp.arange(3), param=P.fourier(32),
                 transform=T.compose(T.jitter(4), T.flip()), steps=12, chunk=4, progress=False, seed=0,
                 checkpoint_dir={str(tmp_path)!r}, checkpoint_every=4, stop_after=8)
        os.kill(os.getpid(), signal.SIGKILL)  # die without any cleanup, as a killed job would
    """
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_4", "step_4.sha256", "step_8", "step_8.sha256"]
    resumed = small_run(tiny_cnn, steps=12, checkpoint_dir=tmp_path, checkpoint_every=4, resume=True)
    np.testing.assert_allclose(resumed.images, uninterrupted.images, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(resumed.history, uninterrupted.history, rtol=1e-5, atol=1e-5)


def test_sigterm_keeps_the_last_finished_chunk_and_the_rerun_continues_from_it(tiny_cnn, tmp_path, capsys):
    """SIGTERM (what SLURM and Kubernetes send before preemption), turned into an interrupt as the command line
    does: the engine saves the last finished chunk (no periodic checkpoint was due) and the process exits 143;
    resuming from that step ends as an uninterrupted run.  Mutation that fails it: `drive` not handing its progress
    to the engine on an interrupt (nothing saved)."""
    import re
    import signal
    import time

    code = f"""
        import sys
        {TINY_IN_SUBPROCESS}
        from test_engine import small_run
        from jaxvis.cli import Terminated, sigterm_interrupts
        small_run(model, steps=4)  # compiled before the signal can come
        print("compiled", flush=True)
        with sigterm_interrupts():
            try:
                small_run(model, steps=100_000, checkpoint_dir={str(tmp_path)!r}, checkpoint_every=100_000)
            except Terminated:
                sys.exit(143)
    """
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "compiled", child.stderr.read()[-2000:]
        time.sleep(1.0)
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 143, err[-2000:]
    saved = int(re.search(r"saved step (\d+) of 100000", err).group(1))
    assert saved > 0 and sorted(p.name for p in tmp_path.glob("step_*")) == [f"step_{saved}", f"step_{saved}.sha256"]
    resumed = small_run(tiny_cnn, steps=100_000, checkpoint_dir=tmp_path, checkpoint_every=100_000, resume=True,
                        stop_after=saved + 8)
    assert f"resuming from {tmp_path / f'step_{saved}'}" in capsys.readouterr().err
    uninterrupted = small_run(tiny_cnn, steps=100_000, stop_after=saved + 8)
    np.testing.assert_allclose(resumed.images, uninterrupted.images, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"optimizer": optimizers.adam(0.2)}, r"optimizer\.learning_rate: 0\.05 -> 0\.2"),
        ({"transform": T.compose(T.jitter(6), T.flip())}, r"transform\.transforms\.0\.distance: 4 -> 6"),
        ({"units": jnp.asarray([0, 1, 5])}, r"units: \[0, 1, 2\] -> \[0, 1, 5\]"),
        ({"objective": lambda u: O.feature_match(LAYER, jnp.ones((1, 16, 16, 32)) * u)}, r"objective_structure"),
        ({"seed": 3}, r"seed: 0 -> 3"),
    ],
)
def test_resume_refuses_a_changed_run_naming_what_changed(tiny_cnn, tmp_path, change, named):
    small_run(tiny_cnn, steps=4, checkpoint_dir=tmp_path, checkpoint_every=4, optimizer=optimizers.adam(0.05))
    with pytest.raises(ResumeMismatchError, match=named):
        small_run(tiny_cnn, steps=4, checkpoint_dir=tmp_path, checkpoint_every=4, resume=True,
                  **{"optimizer": optimizers.adam(0.05), **change})


def test_resume_refuses_another_objective_target(tiny_cnn, tmp_path):
    target = np.zeros((1, 16, 16, 32), np.float32)
    run = dict(steps=4, checkpoint_dir=tmp_path, checkpoint_every=4, units=jnp.arange(1))
    small_run(tiny_cnn, objective=O.feature_match(LAYER, target), **run)
    with pytest.raises(ResumeMismatchError, match=r"objective_numbers: \w+ -> \w+"):
        small_run(tiny_cnn, objective=O.feature_match(LAYER, target + 1), resume=True, **run)


def test_sharded_over_eight_devices_gives_the_same_images(tiny_cnn, tmp_path):
    """A run of 5 units, and a sweep of 2 learning rates x 5 units (its per-unit rates sharded with the units)."""
    single = small_run(tiny_cnn, units=jnp.arange(5), steps=4)
    np.save(tmp_path / "single.npy", single.images)
    swept = small_run(tiny_cnn, units=jnp.arange(5), steps=4, optimizer=[optimizers.adam(0.05), optimizers.adam(0.3)])
    np.save(tmp_path / "swept.npy", swept.images)
    code = f"""
        import jax, numpy as np, jax.numpy as jnp, jaxvis
        from jaxvis.engine.optimize import optimize
        from jaxvis.pieces import objectives as O, param as P, transforms as T
        assert jax.local_device_count() == 8
        {TINY_IN_SUBPROCESS}
        result = optimize(model, lambda u: O.channel({LAYER!r}, u), units=jnp.arange(5), param=P.fourier(32),
                          transform=T.compose(T.jitter(4), T.flip()), steps=4, chunk=4, progress=False, seed=0)
        np.testing.assert_allclose(result.images, np.load({str(tmp_path / 'single.npy')!r}), rtol=1e-4, atol=1e-5)
        from jaxvis.pieces.optimizers import adam
        swept = optimize(model, lambda u: O.channel({LAYER!r}, u), units=jnp.arange(5), param=P.fourier(32),
                         transform=T.compose(T.jitter(4), T.flip()), steps=4, chunk=4, progress=False, seed=0,
                         optimizer=[adam(0.05), adam(0.3)])
        np.testing.assert_allclose(swept.images, np.load({str(tmp_path / 'swept.npy')!r}), rtol=1e-4, atol=1e-5)
        print("sharded ok", result.images.shape, swept.images.shape)
    """
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0 and "sharded ok (5, 1, 32, 32, 3) (10, 1, 32, 32, 3)" in run.stdout, run.stderr[-3000:]


def test_nan_stops_with_the_step_and_keeps_finished_images(tiny_cnn):
    def explode(index, acts):  # one function for every unit: only its number differs
        value = acts[LAYER][..., index].mean()
        return jnp.where(value > 0.6, jnp.nan, value)

    def exploding(unit):
        return O.custom(explode, [LAYER], "exploding", params=unit)

    with pytest.raises(OptimizationDiverged, match=r"NaN/Inf at step (\d+)") as error:
        optimize(tiny_cnn, exploding, units=jnp.asarray([2, 6]), param=P.fourier(32), steps=64, chunk=1,  # from ~0
                 progress=False, optimizer=optax.adam(0.1))
    result = error.value.result
    assert error.value.step == result.steps >= 1
    assert np.isfinite(result.images).all() and np.isfinite(result.history).all()


def test_relu_redirection_moves_a_dead_unit_during_the_first_steps_only(tiny_cnn):
    """TINY_DEAD (a ReLU output) is off everywhere on the starting image, so its true gradient is zero: only
    Lucid's redirected gradient moves the image, and only while t < relu_steps."""

    from jaxvis.engine.optimize import stack_objectives
    from jaxvis.engine.plan import FROM_SEED, RUN_CHUNK, Inputs, Plan, placeholder_state

    layer, unit = TINY_DEAD
    plan = Plan(P.fourier(32), optimizers.adam(0.05), T.identity(), T.identity(), (layer,), redirect_relu=True)
    objectives = stack_objectives(lambda u: O.channel(layer, u), np.asarray([unit]))
    identities = jnp.asarray([unit], jnp.int32)
    fresh = Inputs(objectives, identities, jnp.asarray(0), jnp.asarray(0))
    state, *_ = RUN_CHUNK(plan, tiny_cnn, fresh, placeholder_state(plan, fresh), jnp.asarray(0), jnp.asarray(0),
                          jnp.asarray(FROM_SEED))  # no step: the drawn start

    def moved(t: int, relu_steps: int) -> float:
        inputs = Inputs(objectives, identities, jnp.asarray(0), jnp.asarray(relu_steps))
        after, *_ = RUN_CHUNK(plan, tiny_cnn, inputs, state, jnp.asarray(t), jnp.asarray(1))
        return float(jnp.abs(after.theta - state.theta).max())

    assert moved(t=1, relu_steps=0) == 0.0  # dead: no true gradient
    assert moved(t=1, relu_steps=3) > 1e-4  # redirected during the first 3 steps
    assert moved(t=5, relu_steps=3) == 0.0  # and the true gradient again after them


def test_objective_on_unknown_or_no_layer_is_refused(tiny_cnn):
    with pytest.raises(jaxvis.UnknownLayerError, match="features.60"):
        optimize(tiny_cnn, O.channel("features.60", 0), param=P.pixel(32), steps=1, progress=False)
    with pytest.raises(ValueError, match="reads no layer"):
        optimize(tiny_cnn, -O.total_variation(), param=P.pixel(32), steps=1, progress=False)


def test_a_run_started_from_given_parameters_begins_exactly_there(tiny_cnn):
    """`init` is the first state's θ (its optimizer state made afresh inside the chunk program), also in
    another shape than the parameterization draws (DeepDream starts from a photo that is not square)."""
    start = np.random.default_rng(0).uniform(0.2, 0.8, (3, 1, 32, 32, 3)).astype(np.float32)
    zero_steps = optimize(tiny_cnn, lambda u: O.channel(LAYER, u), units=jnp.asarray([0, 3, 5]), param=P.pixel(32),
                          init=start, steps=1, stop_after=1, progress=False,
                          optimizer=optimizers.adam(0.0))  # a step of rate 0: θ stays the start
    np.testing.assert_array_equal(zero_steps.theta, start)
    wide = optimize(tiny_cnn, lambda u: O.channel(LAYER, u), units=jnp.asarray([0, 3, 5]), param=P.pixel(32),
                    init=start[:, :, :24], steps=1, stop_after=1, progress=False, optimizer=optimizers.adam(0.0))
    np.testing.assert_array_equal(wide.theta, start[:, :, :24])
