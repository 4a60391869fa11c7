"""The program store: exported programs whose reading runs no code from the file, bounded in size."""

from __future__ import annotations

import functools
import json
import os
import pickle
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvis.core.programs import _evict
from jaxvis.core.tree_codec import NotEncodable, decode_structure, encode_structure
from jaxvis.engine.plan import Plan, State
from jaxvis.pieces import objectives as O, optimizers, param as P, transforms as T

LAYER = "features.14"


def test_structures_round_trip_by_name():
    state = State({"w": jnp.zeros(3)}, optax.chain(optax.adam(0.1), optax.scale(2.0)).init({"w": jnp.zeros(3)}),
                  jnp.zeros(1))
    plan = Plan(P.fourier(32), optimizers.adam(0.05), T.lucid_standard(224), T.identity(), (LAYER,))
    for tree in (state, plan, (O.channel(LAYER, 3), None, [1, {"b": 2, "a": 3}])):
        treedef = jax.tree_util.tree_structure(tree)
        text = encode_structure(treedef)
        json.loads(text)  # plain JSON
        assert decode_structure(text) == treedef
        assert jax.tree_util.tree_unflatten(decode_structure(text), jax.tree_util.tree_leaves(tree)) is not None


def test_what_cannot_be_named_is_not_written():
    with pytest.raises(NotEncodable, match="lambda"):
        encode_structure(jax.tree_util.tree_structure(O.custom(lambda p, a: 0.0, [LAYER], "c", params=1)))


def test_reading_never_calls_what_a_file_names(tmp_path):
    """A structure naming os.system (or any name outside the allowed packages) is refused before anything is
    looked up; a dataclass is rebuilt field by field, its __init__ not run."""
    marker = tmp_path / "ran"
    hostile = {"type": "builtins:tuple", "aux": {"partial": "os:system", "args": {"tuple": [f"touch {marker}"]},
                                                  "keywords": {"dict": []}}, "children": []}
    with pytest.raises(NotEncodable, match="allowed"):
        decode_structure(json.dumps(hostile))
    for name in ("subprocess:Popen", "builtins:eval", "builtins:__import__"):
        with pytest.raises(NotEncodable, match="allowed"):
            decode_structure(json.dumps({"type": "builtins:tuple", "aux": {"ref": name}, "children": []}))
    assert not marker.exists()


def test_eviction_keeps_the_most_recently_used_within_the_limit(tmp_path):
    for age, name in enumerate(["newest", "middle", "oldest"]):
        path = tmp_path / f"{name}.jaxexport"
        path.write_bytes(b"x" * 100)
        os.utime(path, (1e9 - age * 100, 1e9 - age * 100))
    _evict(tmp_path, limit=250)
    assert sorted(p.stem for p in tmp_path.iterdir()) == ["middle", "newest"]
    _evict(tmp_path, limit=100)
    assert [p.stem for p in tmp_path.iterdir()] == ["newest"]


def test_a_stored_program_is_read_without_unpickling_and_damage_is_set_aside(tmp_path):
    """A new process loads the exported program (no tracing); a file replaced by a hostile pickle is never
    unpickled, and it and a damaged file are set aside with a note and the program compiled afresh."""
    code = f"""
        import json, jax.numpy as jnp, jaxvis
        from jaxvis.engine.optimize import optimize
        from jaxvis.pieces import objectives as O, param as P, transforms as T
        result = optimize(jaxvis.load("mobilenet_v2"), lambda u: O.channel({LAYER!r}, u), units=jnp.arange(2),
                          param=P.fourier(32), transform=T.jitter(4), steps=2, progress=False)
        print(json.dumps({{"timings": result.timings, "last": result.history[-1].tolist()}}))
    """
    env = {**os.environ, "JAXVIS_COMPILATION_CACHE": str(tmp_path / "xla")}

    def run():
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr

    (first, _), (again, _) = run(), run()
    assert "trace_s" in first["timings"] and "load_s" in again["timings"] and "trace_s" not in again["timings"]
    assert again["last"] == first["last"]
    (stored,) = (tmp_path / "xla").glob("*/programs/*.jaxexport")
    assert stored.read_bytes().startswith(b"jaxvis-program 1\n")

    marker = tmp_path / "ran"
    stored.write_bytes(pickle.dumps(functools.partial(os.system, f"touch {marker}")))
    former = stored.parent.parent / "executables" / "old.pickle"  # the pickled store of earlier versions
    former.parent.mkdir()
    former.write_bytes(stored.read_bytes())
    (hostile, note), = [run()]
    assert not marker.exists() and "set aside the stored program" in note
    assert not former.exists()  # deleted when a program is next stored, never read
    assert "trace_s" in hostile["timings"] and hostile["last"] == first["last"]

    blob = bytearray(stored.read_bytes())  # rewritten whole by that run
    blob[-100] ^= 0xFF
    stored.write_bytes(bytes(blob))
    (damaged, note), = [run()]
    assert "checksum" in note and "trace_s" in damaged["timings"] and damaged["last"] == first["last"]
