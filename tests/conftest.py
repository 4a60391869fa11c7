"""Shared fixtures: an isolated jaxvis cache, no downloads, the real MobileNetV2, a tiny CNN, real photos.

Helper functions live in `helpers.py` (`from helpers import ...` works from any directory:
pytest puts this folder on the import path).
"""

from __future__ import annotations

import os
import tempfile

# Before jaxvis or jax are imported: keep the user's cache untouched and never try the network.  A cache made
# here (not one the caller set) is measured in the run's summary and removed at its end.
MADE_CACHE = None if "JAXVIS_CACHE" in os.environ else tempfile.mkdtemp(prefix="jaxvis-test-cache-")
if MADE_CACHE:
    os.environ["JAXVIS_CACHE"] = MADE_CACHE
os.environ.setdefault("JAXVIS_OFFLINE", "1")
# XLA's persistent cache (under JAXVIS_CACHE) keeps every program, even those that compile fast: a test's
# subprocess reuses what this worker compiled before (the variable passes to subprocesses).
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
if os.environ.get("PYTEST_XDIST_WORKER"):  # one cache per pytest-xdist worker: no two write one file at once
    os.environ["JAXVIS_CACHE"] = os.path.join(os.environ["JAXVIS_CACHE"], os.environ["PYTEST_XDIST_WORKER"])
    # Two workers share the cores: the torch references and NumPy's BLAS get one thread each, or their
    # threads fight XLA's and the other worker's (a float64 torch check: 13 s alone, 390 s oversubscribed).
    for _threads in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_threads, "1")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import jaxvis  # noqa: E402

# The files that take longest, handed to the workers first (with --no-loadscope-reorder; pytest-xdist would
# otherwise order files by their number of tests), so that no worker starts a long file when the other
# is nearly done.  Measured with `pytest --durations`; the rest keep their collection order.
LONGEST_FILES_FIRST = ("test_methods.py", "test_attacks.py", "test_cli.py", "test_docs.py", "test_evaluate.py",
                       "test_vit_methods.py", "test_fast_paths.py", "test_converters.py", "test_cli_ux.py",
                       "test_torch_file.py", "test_param_transforms.py", "test_pii.py", "test_engine.py")


# Where the suite's time goes: each test's seconds of tracing, lowering and XLA compiling (jax's own compile
# events, in this process: not in the subprocesses a test starts), summed in the run's summary.
COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")
_compiling = [0.0]
_call_totals = {"test_s": 0.0, "tests": 0}
_compiled: list[tuple[float, str]] = []  # (compile seconds, test) of every test


def _count_compile(event: str, duration: float, **_: object) -> None:
    if event in COMPILE_EVENTS:
        _compiling[0] += duration


jax.monitoring.register_event_duration_secs_listener(_count_compile)


_COMPILE_START = pytest.StashKey[float]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_COMPILE_START] = _compiling[0]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    if call.when == "teardown" and _COMPILE_START in item.stash:  # setup's, the call's and teardown's compiling
        outcome.get_result().user_properties.append(("compile_s", _compiling[0] - item.stash[_COMPILE_START]))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Summed where the reports arrive (with pytest-xdist, the controller)."""
    if report.when == "call":
        _call_totals["test_s"] += report.duration
        _call_totals["tests"] += 1
    if report.when == "teardown":
        _compiled.append((dict(report.user_properties).get("compile_s", 0.0), report.nodeid))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Where the time went (compiling) and what the run kept in its jaxvis cache (all workers): compiled
    programs, of them the exported ones, and converted models -- the figures the docs' speed page quotes."""
    if _call_totals["tests"]:
        terminalreporter.write_line(
            f"compiling (tracing, lowering, XLA) in the tests' own processes: "
            f"{sum(seconds for seconds, _ in _compiled):.1f} s of {_call_totals['test_s']:.0f} s spent in "
            f"{_call_totals['tests']} tests' calls; most:")
        for seconds, test in sorted(_compiled, reverse=True)[:10]:
            terminalreporter.write_line(f"  {seconds:6.1f} s compiling  {test}")
    if MADE_CACHE is None or not os.path.isdir(MADE_CACHE):
        return
    from pathlib import Path

    from jaxvis.cli.cache import walk
    from jaxvis.core.files import human

    sizes = {f: f.lstat().st_size for f in walk(Path(MADE_CACHE))}
    compiled = [f for f in sizes if "xla" in f.relative_to(MADE_CACHE).parts]
    exported = [f for f in compiled if f.suffix == ".jaxexport"]
    total, programs = sum(sizes.values()), sum(sizes[f] for f in compiled)
    terminalreporter.write_line(
        f"jaxvis cache this run filled: {human(total)} -- compiled programs {human(programs)} "
        f"({len(exported)} exported programs, {human(sum(sizes[f] for f in exported))}), "
        f"the rest {human(total - programs)} (converted models, layer tables, run states)")


def pytest_unconfigure(config: pytest.Config) -> None:
    if MADE_CACHE is not None:
        import shutil

        shutil.rmtree(MADE_CACHE, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: tests keep their order in a file


@pytest.fixture(scope="session")
def mobilenet():
    return jaxvis.load("mobilenet_v2")


@pytest.fixture(scope="session")
def tiny_cnn():
    """`helpers.tiny_cnn()`: a few-layer CNN with fixed random weights, for the mechanics that need no real network."""
    from helpers import tiny_cnn

    return tiny_cnn()


@pytest.fixture()
def tiny_cnn_by_name(monkeypatch, tiny_cnn):
    """The CLI knows `tiny_cnn` by name in this test (registered, with its catalog card; every command's
    `load_model` gives it)."""
    from helpers import use_tiny_cnn_by_name

    return use_tiny_cnn_by_name(tiny_cnn, monkeypatch.setattr, monkeypatch.setitem)


@pytest.fixture(scope="session")
def photos():
    """scikit-image's chelsea (a cat) and coffee (an espresso), preprocessed to 224x224."""
    from jaxvis.data.io import center_crop_resize, read_image

    return np.stack([center_crop_resize(read_image(f"sample:{n}"), 224) for n in ("chelsea", "coffee")])
