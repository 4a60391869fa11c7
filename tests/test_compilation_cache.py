"""The persistent compilation cache: where it goes, how to switch it off, and that it is used."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from jaxvis.core.compilation_cache import ENV, enable_compilation_cache, host_processor


@pytest.fixture
def unconfigured():
    """No cache directory configured; the process's setting is restored afterwards."""
    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", None)
    yield
    jax.config.update("jax_compilation_cache_dir", before)
    from jax.experimental.compilation_cache import compilation_cache

    compilation_cache.reset_cache()


def test_off_leaves_jax_without_a_cache(unconfigured, monkeypatch):
    monkeypatch.setenv(ENV, "off")
    assert enable_compilation_cache() is None
    assert jax.config.jax_compilation_cache_dir is None


def test_default_is_under_the_jaxvis_cache(unconfigured, monkeypatch, tmp_path):
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setenv("JAXVIS_CACHE", str(tmp_path))
    assert enable_compilation_cache() == tmp_path / "xla" / host_processor()
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "xla" / host_processor())


def test_each_processor_has_its_own_folder(unconfigured, monkeypatch, tmp_path):
    """XLA's host code is for the processor that compiled it: another processor must not load it."""
    here = enable_compilation_cache(tmp_path)
    jax.config.update("jax_compilation_cache_dir", None)
    monkeypatch.setattr("platform.machine", lambda: "another-architecture")
    host_processor.cache_clear()
    try:
        elsewhere = enable_compilation_cache(tmp_path)
    finally:
        host_processor.cache_clear()
    assert here.parent == elsewhere.parent == tmp_path
    assert here != elsewhere and here.name.startswith("cpu-") and elsewhere.name.startswith("cpu-")


def test_a_directory_the_user_configured_is_kept(unconfigured, tmp_path):
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "mine"))
    assert enable_compilation_cache(tmp_path / "other") == tmp_path / "mine"


def test_compiled_programs_are_written_even_after_earlier_compilations(unconfigured, tmp_path):
    jax.jit(lambda x: x + 1)(jnp.ones(3)).block_until_ready()  # jax has already decided "no cache" here
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    try:  # tiny programs compile faster than the 1 s jax requires before caching
        location = enable_compilation_cache(tmp_path / "xla")
        jax.jit(lambda x: jnp.sin(x) * 3.25)(jnp.ones(5)).block_until_ready()
    finally:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    assert location is not None and any(location.iterdir())


@pytest.fixture
def jax_defaults(monkeypatch):
    """jax's own settings for what its cache keeps (as in a process that set nothing), restored afterwards."""
    defaults = {"jax_persistent_cache_min_compile_time_secs": 1.0, "jax_compilation_cache_max_size": -1,
                "jax_persistent_cache_enable_xla_caches": "xla_gpu_per_fusion_autotune_cache_dir"}
    before = {name: getattr(jax.config, name) for name in defaults}
    for name, value in defaults.items():
        monkeypatch.delenv(name.upper(), raising=False)
        jax.config.update(name, value)
    yield
    for name, value in before.items():
        jax.config.update(name, value)


def test_every_program_is_kept_in_a_bounded_folder(unconfigured, jax_defaults, monkeypatch, tmp_path):
    """Every program, and the least recently used entries deleted past the limit, by jaxvis (jax's own bound
    rescans the folder on every write).  Fails if the bound is not applied or deletes the newest."""
    import os
    import time

    from jaxvis.core import compilation_cache

    location = tmp_path / "xla" / host_processor()
    location.mkdir(parents=True)
    now = time.time()
    for age, name in enumerate(["newest", "middle", "oldest"]):
        entry = location / f"jit_f-{name}-cache"
        entry.write_bytes(b"x" * 100)
        os.utime(entry, (now - 100 * age, now - 100 * age))
    (location / ".lockfile").write_bytes(b"")
    started = []
    monkeypatch.setattr(compilation_cache, "XLA_CACHE_LIMIT_BYTES", 250)
    original = compilation_cache.evict_in_background
    monkeypatch.setattr(compilation_cache, "evict_in_background",
                        lambda *args: started.append(original(*args)) or started[-1])
    enable_compilation_cache(tmp_path / "xla")
    started[0].join(timeout=60)
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
    assert jax.config.jax_compilation_cache_max_size == -1  # jax's per-write rescan stays off
    assert jax.config.jax_persistent_cache_enable_xla_caches == "none"  # on this CPU
    assert sorted(p.name for p in location.iterdir()) == [".lockfile", "jit_f-middle-cache", "jit_f-newest-cache"]


def test_a_cache_folder_under_another_path_is_still_hit(tmp_path):
    """The same program compiled in two processes whose caches sit in different folders is kept under one key
    (jax's default names the folder in every key, through its GPU autotuning cache's path): a cache moved,
    copied or shared keeps working."""
    import os
    import subprocess
    import sys

    code = ("import jax, jax.numpy as jnp; from jaxvis.core.compilation_cache import ensure_compilation_cache; "
            "ensure_compilation_cache(); print(jax.jit(lambda x: jnp.cos(x) * 2.5)(jnp.arange(4.0)))")
    names = []
    for folder in ("one", "another"):
        env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
        done = subprocess.run([sys.executable, "-c", code], env={**env, "JAXVIS_CACHE": str(tmp_path / folder)},
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        names.append(sorted(p.name for p in (tmp_path / folder).glob("xla/*/*-cache")))
    assert names[0] and names[0] == names[1]


def test_what_the_user_set_in_jax_is_kept(unconfigured, jax_defaults, monkeypatch, tmp_path):
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 2.5)
    monkeypatch.setenv("JAX_COMPILATION_CACHE_MAX_SIZE", "-1")  # set, to its default, in the environment
    enable_compilation_cache(tmp_path / "xla")
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 2.5
    assert jax.config.jax_compilation_cache_max_size == -1


def test_a_folder_that_cannot_be_written_is_a_note_not_an_error(unconfigured, capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")  # (running as root, permissions would not stop the write)
    assert enable_compilation_cache(blocker / "xla") is None
    assert jax.config.jax_compilation_cache_dir is None
    note = capsys.readouterr().err.strip()
    assert note.startswith("jaxvis: not keeping compiled programs") and "\n" not in note
    assert jax.jit(lambda x: x * 2)(jnp.ones(2)).tolist() == [2.0, 2.0]  # and programs still run


def test_entries_an_unbounded_cache_wrote_do_not_stop_the_bounded_one(unconfigured, jax_defaults, tmp_path):
    """A folder filled without jax's size bound (no access-time files) or by a process killed between jax's two
    writes, then bounded by the user in jax: jax's LRU would fail every later write; each entry gets its
    modification time as its access time.  Fails if `give_entries_access_times` is not called, or writes
    another format."""
    import warnings

    from jax._src import lru_cache

    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    location = enable_compilation_cache(tmp_path / "xla")  # jax's cache unbounded (jaxvis bounds it itself)
    jax.jit(lambda x: jnp.cos(x) * 1.75)(jnp.ones(7)).block_until_ready()
    old = {p.name.removesuffix("-cache"): p.stat().st_mtime_ns for p in location.iterdir()
           if p.name.endswith("-cache")}
    assert old and not any(p.name.endswith("-atime") for p in location.iterdir())

    jax.config.update("jax_compilation_cache_dir", None)
    jax.config.update("jax_compilation_cache_max_size", 1 << 30)  # the user bounds jax's cache
    enable_compilation_cache(tmp_path / "xla")  # a new process of this jaxvis
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # jax's "Error writing persistent compilation cache entry"
        jax.jit(lambda x: jnp.tan(x) * 0.5)(jnp.full(9, 0.25)).block_until_ready()
    entries = {p.name.removesuffix("-cache") for p in location.iterdir() if p.name.endswith("-cache")}
    assert len(entries) > len(old)  # the new program was kept
    times = {p.name.removesuffix(lru_cache._ATIME_SUFFIX): int.from_bytes(p.read_bytes(), "little")
             for p in location.iterdir() if p.name.endswith(lru_cache._ATIME_SUFFIX)}
    assert set(times) == entries and all(times[key] == modified for key, modified in old.items())
