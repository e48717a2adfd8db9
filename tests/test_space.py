"""Search-space distributions: validation, sampling, spec round trip, hparams checks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poptrain.errors import ConfigError
from poptrain.space import (
    Choice,
    Constant,
    IntUniform,
    LogUniform,
    Uniform,
    sample_hparams,
    space_from_spec,
    space_to_spec,
    validate_hparams,
    validate_space,
)

# -- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("space", "field", "value"),
    [
        ({"lr": LogUniform(0.0, 1.0)}, "space.lr.low", 0.0),
        ({"lr": LogUniform(-1.0, 1.0)}, "space.lr.low", -1.0),
        ({"lr": LogUniform(0.1, 0.01)}, "space.lr.high", 0.01),
        ({"x": Uniform(1.0, 1.0)}, "space.x.high", 1.0),
        ({"x": Uniform(0.0, math.inf)}, "space.x.high", math.inf),
        ({"x": Uniform("a", 1.0)}, "space.x.low", "a"),
        ({"x": Uniform(True, 2.0)}, "space.x.low", True),
        ({"n": IntUniform(1.5, 4)}, "space.n.low", 1.5),
        ({"n": IntUniform(4, 4)}, "space.n.high", 4),
        ({"n": IntUniform(0, 8, log=True)}, "space.n.low", 0),
        ({"c": Choice([])}, "space.c.values", ()),
        ({"c": Choice(["a", "a"])}, "space.c.values", ["a", "a"]),
    ],
)
def test_invalid_distribution_names_field_and_value(space, field, value):
    with pytest.raises(ConfigError) as info:
        validate_space(space)
    assert info.value.field == field
    if isinstance(value, float) and math.isnan(value):
        assert math.isnan(info.value.value)
    else:
        assert info.value.value == value
    # The message carries both, so a CLI user sees them without a traceback.
    assert str(info.value).startswith(f"{field}=")


def test_space_must_be_a_nonempty_mapping_of_distributions():
    with pytest.raises(ConfigError) as info:
        validate_space({})
    assert info.value.field == "space"
    with pytest.raises(ConfigError) as info:
        validate_space({"lr": 0.1})
    assert info.value.field == "space.lr"
    assert info.value.value == 0.1
    with pytest.raises(ConfigError) as info:
        validate_space({"not an identifier": Uniform(0, 1)})
    assert info.value.field == "space"
    assert info.value.value == "not an identifier"


def test_valid_space_is_returned_as_plain_dict():
    space = {"lr": LogUniform(1e-4, 1e-1), "n": IntUniform(1, 8), "opt": Choice(["a", "b"])}
    checked = validate_space(space)
    assert checked == space
    assert type(checked) is dict


# -- sampling -------------------------------------------------------------------------


def test_samples_stay_in_bounds_and_are_seeded():
    space = {
        "u": Uniform(-2.0, 3.0),
        "lr": LogUniform(1e-5, 1e-1),
        "n": IntUniform(2, 9),
        "nl": IntUniform(1, 1000, log=True),
        "opt": Choice(["sgd", "adam", "rms"]),
        "k": Constant(7),
    }
    rng = np.random.default_rng(123)
    draws = [sample_hparams(space, rng) for _ in range(500)]
    for h in draws:
        assert list(h) == list(space)
        assert -2.0 <= h["u"] <= 3.0
        assert 1e-5 <= h["lr"] <= 1e-1
        assert type(h["n"]) is int and 2 <= h["n"] <= 9
        assert type(h["nl"]) is int and 1 <= h["nl"] <= 1000
        assert h["opt"] in ("sgd", "adam", "rms")
        assert h["k"] == 7
        assert validate_hparams(space, h) == h
    # Every integer and every choice is reachable.
    assert {h["n"] for h in draws} == set(range(2, 10))
    assert {h["opt"] for h in draws} == {"sgd", "adam", "rms"}
    # Same seed, same draws; another seed, other draws.
    again = [sample_hparams(space, np.random.default_rng(123)) for _ in range(1)]
    assert again[0] == draws[0]
    assert sample_hparams(space, np.random.default_rng(124)) != draws[0]


def test_log_uniform_is_uniform_in_log_space():
    dist = LogUniform(1e-4, 1.0)
    rng = np.random.default_rng(0)
    logs = np.log10([dist.sample(rng) for _ in range(4000)])
    # Each decade gets about a quarter of the draws (a linear sampler would put ~90% in the top).
    counts = np.histogram(logs, bins=[-4, -3, -2, -1, 0])[0]
    assert all(800 < c < 1200 for c in counts), counts


def test_int_uniform_log_sampling_favours_small_values():
    dist = IntUniform(1, 1024, log=True)
    rng = np.random.default_rng(1)
    draws = [dist.sample(rng) for _ in range(3000)]
    assert all(type(d) is int and 1 <= d <= 1024 for d in draws)
    # log-uniform: P(d < 32) ~= 0.5; uniform would give ~3%.
    small = sum(d < 32 for d in draws) / len(draws)
    assert 0.4 < small < 0.6
    # and both ends are reachable
    assert min(draws) == 1
    assert max(draws) > 512


def test_int_uniform_linear_sampling_is_flat():
    dist = IntUniform(0, 3)
    rng = np.random.default_rng(2)
    draws = [dist.sample(rng) for _ in range(4000)]
    counts = [draws.count(i) for i in range(4)]
    assert all(850 < c < 1150 for c in counts), counts


def test_choice_sampling_and_clip():
    dist = Choice(["a", "b", "c"])
    assert dist.values == ("a", "b", "c")
    rng = np.random.default_rng(3)
    assert {dist.sample(rng) for _ in range(200)} == {"a", "b", "c"}
    assert dist.clip("b") == "b"
    assert dist.clip("zzz") == "a"
    assert dist.contains("c") and not dist.contains("d")
    assert dist.index("c") == 2


def test_constant_never_changes():
    dist = Constant(0.5)
    rng = np.random.default_rng(4)
    assert {dist.sample(rng) for _ in range(10)} == {0.5}
    assert dist.clip(123.0) == 0.5
    assert dist.contains(0.5) and not dist.contains(0.6)
    validate_space({"c": dist})  # a constant is always valid


@given(value=st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9))
@settings(max_examples=200, deadline=None)
def test_clip_brings_any_value_inside(value):
    assert 0.5 <= Uniform(0.5, 2.0).clip(value) <= 2.0
    assert 1e-3 <= LogUniform(1e-3, 1.0).clip(value) <= 1.0
    clipped = IntUniform(-3, 5).clip(value)
    assert type(clipped) is int and -3 <= clipped <= 5


# -- spec round trip --------------------------------------------------------------------


def test_spec_round_trip_through_json():
    space = {
        "u": Uniform(-1.0, 1.0),
        "lr": LogUniform(1e-4, 0.1),
        "n": IntUniform(1, 64, log=True),
        "m": IntUniform(0, 3),
        "opt": Choice(["sgd", "adam"]),
        "bs": Choice([16, 32, 64]),
        "k": Constant("fixed"),
    }
    spec = space_to_spec(space)
    assert spec["lr"] == {"type": "LogUniform", "low": 1e-4, "high": 0.1}
    assert spec["n"] == {"type": "IntUniform", "low": 1, "high": 64, "log": True}
    assert spec["opt"] == {"type": "Choice", "values": ["sgd", "adam"]}
    assert spec["k"] == {"type": "Constant", "value": "fixed"}
    rebuilt = space_from_spec(json.loads(json.dumps(spec)))
    assert rebuilt == space
    assert list(rebuilt) == list(space)
    # Rebuilt distributions sample exactly like the originals.
    assert sample_hparams(rebuilt, np.random.default_rng(9)) == sample_hparams(
        space, np.random.default_rng(9)
    )


@pytest.mark.parametrize(
    "entry",
    [
        {"type": "Gaussian", "mu": 0},
        {"low": 0, "high": 1},
        "Uniform",
        {"type": "Uniform", "low": 0, "high": 1, "extra": 2},
    ],
)
def test_bad_spec_is_refused_with_the_name(entry):
    with pytest.raises(ConfigError) as info:
        space_from_spec({"lr": entry})
    assert info.value.field == "space.lr"
    assert info.value.value == entry


# -- validate_hparams --------------------------------------------------------------------


def test_validate_hparams_accepts_legal_values():
    space = {"lr": LogUniform(1e-3, 1.0), "n": IntUniform(1, 4), "c": Choice(["x", "y"])}
    assert validate_hparams(space, {"lr": 0.01, "n": 2, "c": "y"}) == {"lr": 0.01, "n": 2, "c": "y"}


@pytest.mark.parametrize(
    ("hparams", "field", "value"),
    [
        ({"lr": 2.0, "n": 2, "c": "x"}, "hparams.lr", 2.0),
        ({"lr": 0.1, "n": 2.0, "c": "x"}, "hparams.n", 2.0),
        ({"lr": 0.1, "n": True, "c": "x"}, "hparams.n", True),
        ({"lr": 0.1, "n": 9, "c": "x"}, "hparams.n", 9),
        ({"lr": 0.1, "n": 2, "c": "z"}, "hparams.c", "z"),
    ],
)
def test_validate_hparams_names_the_bad_value(hparams, field, value):
    space = {"lr": LogUniform(1e-3, 1.0), "n": IntUniform(1, 4), "c": Choice(["x", "y"])}
    with pytest.raises(ConfigError) as info:
        validate_hparams(space, hparams)
    assert info.value.field == field
    assert info.value.value == value


def test_validate_hparams_missing_and_extra_names():
    space = {"lr": LogUniform(1e-3, 1.0), "n": IntUniform(1, 4)}
    with pytest.raises(ConfigError) as info:
        validate_hparams(space, {"lr": 0.1}, field="initial_hparams[3]")
    assert info.value.field == "initial_hparams[3]"
    assert "n" in info.value.reason
    with pytest.raises(ConfigError) as info:
        validate_hparams(space, {"lr": 0.1, "n": 1, "wd": 0.0})
    assert info.value.field == "hparams"
    assert "wd" in info.value.reason
