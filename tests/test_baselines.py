"""Baselines as plain data: grids over a space, methods that switch exploit off."""

from __future__ import annotations

import math

import pytest

from poptrain.baselines import METHODS, Method, grid_hparams, grid_levels
from poptrain.errors import ConfigError
from poptrain.space import Choice, Constant, IntUniform, LogUniform, Uniform, validate_hparams

SPACE = {
    "lr": LogUniform(1e-3, 1e-1),
    "momentum": Uniform(0.0, 0.8),
    "layers": IntUniform(1, 4),
    "act": Choice(["relu", "tanh", "gelu"]),
    "batch": Constant(32),
}


def test_grid_levels_multiply_to_the_population_and_skip_constants():
    for n in (1, 2, 6, 8, 12, 16):
        levels = grid_levels(SPACE, n)
        assert math.prod(levels.values()) == n
        assert levels["batch"] == 1
    assert grid_levels(SPACE, 8) == {"lr": 2, "momentum": 2, "layers": 2, "act": 1, "batch": 1}


def test_a_grid_takes_cell_centres_of_each_prior():
    points = grid_hparams(SPACE, 8, {"lr": 4, "momentum": 2})
    assert len(points) == 8
    assert len({tuple(sorted(p.items())) for p in points}) == 8
    for point in points:
        validate_hparams(SPACE, point)
    lrs = sorted({p["lr"] for p in points})
    # Four log-spaced values at quantiles 1/8, 3/8, 5/8, 7/8 of log-uniform(1e-3, 1e-1).
    assert lrs == pytest.approx([1e-3 * 100 ** (q / 8) for q in (1, 3, 5, 7)])
    assert sorted({p["momentum"] for p in points}) == pytest.approx([0.2, 0.6])
    # One level: the middle of the range (the median value of an integer range, a categorical's
    # middle entry), constants stay.
    assert {p["layers"] for p in points} == {3}
    assert {p["act"] for p in points} == {"tanh"}
    assert {p["batch"] for p in points} == {32}


def test_grids_that_cannot_be_built_are_refused():
    with pytest.raises(ConfigError, match="makes 6 points, not 8"):
        grid_hparams(SPACE, 8, {"lr": 3, "momentum": 2})
    with pytest.raises(ConfigError, match="not in the space"):
        grid_hparams(SPACE, 2, {"depth": 2})
    with pytest.raises(ConfigError, match="exceeds"):
        grid_hparams(SPACE, 4, {"act": 4})


def test_methods_are_plain_data_with_exploit_only_for_pbt():
    assert METHODS["pbt"].exploit is not None and METHODS["pbt"].explore is not None
    for name in ("random_search", "grid_search", "tpe"):
        assert METHODS[name].exploit is None and METHODS[name].explore is None
    assert METHODS["grid_search"].initial == "grid"
    with pytest.raises(ConfigError):
        Method("x", initial="bayes")
    with pytest.raises(ConfigError):
        Method("x", initial="tpe", exploit=METHODS["pbt"].exploit)
