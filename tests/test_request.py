"""The request check without jax: the catalog agrees with the models, and the command line answers a bad
request before jax is imported."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxvis.core.errors import InvalidImageError, UnitRangeError, UnknownArchitectureError, UnknownLayerError
from jaxvis.models.catalog import card, card_of
from jaxvis.models.request import OBJECTIVE_NAMES, PARAM_NAMES, check_request, parse_spec

RANGES = st.builds("{}-{}".format, st.integers(0, 10**15), st.integers(0, 10**15))
UNIT_TEXT = st.text(alphabet="0123456789-, \t@", max_size=24) | st.text(max_size=12) | RANGES | \
    st.lists(RANGES | st.integers(0, 200).map(str), min_size=1, max_size=4).map(",".join)
NUMBER_TEXT = st.text(max_size=16) | st.lists(st.floats() | st.integers(-10**20, 10**20), min_size=1, max_size=4).map(
    lambda values: ",".join(map(str, values)))


def test_the_catalog_matches_every_model():
    """Fails when an architecture changes (a layer renamed, a width changed) and the catalog is not rewritten."""
    from jaxvis.models import ARCHITECTURES

    for name, arch in ARCHITECTURES.items():
        assert card(name) == card_of(arch), f"{name}: run `python -m jaxvis.models.catalog` to write the catalog again"


def test_the_request_names_are_what_the_library_implements():
    from jaxvis.methods.feature_visualization import OBJECTIVES
    from jaxvis.pieces.param import PARAMS

    assert OBJECTIVE_NAMES == tuple(OBJECTIVES) and PARAM_NAMES == tuple(PARAMS)


def test_the_catalog_check_gives_the_library_check_answers():
    mobilenet, vit = card("mobilenet_v2"), card("vit_b_16")
    units, seen = check_request(mobilenet, "features.14:3,7", size=128)
    assert units.layer == "features.14" and units.units.tolist() == [3, 7] and seen == 224
    with pytest.raises(UnitRangeError, match="valid units are 0-159"):
        check_request(mobilenet, "features.14:0-5000")
    with pytest.raises(UnknownLayerError, match="features.14"):
        check_request(mobilenet, "features.140:0")
    with pytest.raises(InvalidImageError, match="at least 32x32"):
        check_request(mobilenet, "features.14:0", size=24, model_size=24)
    assert check_request(vit, f"{vit.default_layer}:0", size=256)[1] == 224  # resized to its token grid
    with pytest.raises(InvalidImageError, match="exactly 224x224"):
        check_request(vit, f"{vit.default_layer}:0", size=256, model_size=256)
    with pytest.raises(UnknownArchitectureError, match="mobilenet_v2"):
        card("mobilenet_v3")


@pytest.mark.parametrize("args, message", [
    (["mobilenet_v2", "--channels", "0-5000"], "valid units are 0-159"),
    (["mobilenet_v2", "features.99"], "nearest: features.9"),
    (["mobilenet_v3"], "mobilenet_v2"),
    (["mobilenet_v2", "--size", "4"], "at least 8 pixels"),
    (["mobilenet_v2", "--weights", "no-such-file.pth"], "does not exist"),
])
def test_a_bad_visualize_request_is_answered_before_jax_is_imported(tmp_path, args, message):
    code = f"""
import json, sys
from jaxvis.cli import main
status = main(["visualize", *{args!r}, "--out", {str(tmp_path / "out")!r}])
print(json.dumps({{"status": status, "jax": "jax" in sys.modules}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer == {"status": 2, "jax": False} and message in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


@settings(max_examples=500, deadline=None, database=None)
@given(text=UNIT_TEXT)
def test_any_unit_text_gives_the_units_it_lists_or_a_unit_range_error(text):
    """Property: `LAYER:TEXT` is either every unit the text lists (checked with a plain reader here), all within the
    layer, or a `UnitRangeError` -- never another exception, and never a range built before it is checked (a range
    to 10^15 would not finish: the mutation that expands first)."""
    try:
        spec = parse_spec(card("mobilenet_v2"), f"features.14:{text}")
    except UnitRangeError as err:
        assert str(err)
        return
    listed, units_text = [], text.partition("@")[0]
    for part in units_text.split(",") if units_text else []:  # no text: no units
        first, _, last = part.strip().partition("-")
        listed += list(range(int(first), int(last or first) + 1))
    assert spec.units.dtype == np.int32 and spec.units.tolist() == listed and all(0 <= u < 160 for u in listed)


@settings(max_examples=500, deadline=None, database=None)
@given(text=NUMBER_TEXT)
def test_any_hyperparameter_list_is_finite_numbers_or_a_clear_error(text):
    """Property: a swept option's value (`--lr 0.02,0.05`, `--jitter 4,8`) reads as the finite numbers it lists or
    is refused with argparse's error -- `nan` and `inf` included (mutation: accepting them)."""
    from jaxvis.cli.common import number_list

    for kind in (float, int):
        try:
            value = number_list(text, kind)
        except argparse.ArgumentTypeError as err:
            assert "expected" in str(err)
            continue
        values = value if isinstance(value, list) else [value]
        assert values == [kind(part) for part in text.split(",")]
        assert all(type(v) is kind and math.isfinite(v) for v in values)
