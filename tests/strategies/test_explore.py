"""Explore strategies: bounds, types, neighbours, constants, operations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.callables import blow_up
from poptrain.decision import Operation
from poptrain.errors import ConfigError
from poptrain.space import Choice, Constant, IntUniform, LogUniform, Uniform, sample_hparams
from poptrain.strategies import (
    AGGRESSIVE,
    MILD,
    CustomExplore,
    GaussianNoise,
    Perturb,
)

SPACE = {
    "lr": LogUniform(1e-4, 1e-1),
    "momentum": Uniform(0.0, 0.99),
    "layers": IntUniform(1, 8),
    "batch": IntUniform(8, 512, log=True),
    "opt": Choice(["sgd", "momentum", "adam", "rmsprop"]),
    "name": Constant("net"),
}

STRATEGIES = [
    Perturb.mild(),
    Perturb.aggressive(),
    Perturb(MILD, resample_probability=0.0),
    Perturb(AGGRESSIVE, resample_probability=1.0),
    GaussianNoise(0.1),
    GaussianNoise(5.0),
    GaussianNoise(0.5, relative=True),
    GaussianNoise(0.2, resample_probability=0.5),
    CustomExplore(blow_up),
]


def _check_legal(new: dict, old: dict) -> None:
    assert set(new) == set(SPACE)
    for name, dist in SPACE.items():
        assert dist.contains(new[name]), (name, new[name])
    assert type(new["layers"]) is int
    assert type(new["batch"]) is int
    assert new["name"] == "net"
    assert old["name"] == "net"


@given(seed=st.integers(0, 2**32 - 1), prior_seed=st.integers(0, 2**16))
@settings(max_examples=60, deadline=None)
@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: repr(s)[:40])
def test_explore_stays_legal(strategy, seed, prior_seed):
    old = sample_hparams(SPACE, np.random.default_rng(prior_seed))
    rng = np.random.default_rng(seed)
    value = old
    # Several rounds in a row: a value pushed to a bound must stay legal from there on.
    for _ in range(5):
        new, ops = strategy.explore(value, SPACE, rng)
        _check_legal(new, value)
        for op in ops:
            assert isinstance(op, Operation)
            assert op.name != "name"  # constants are never explored
            assert op.old == value[op.name]
            assert op.new == new[op.name]
        value = new


@given(
    seed=st.integers(0, 2**32 - 1),
    index=st.integers(0, 3),
)
@settings(max_examples=100, deadline=None)
@pytest.mark.parametrize("strategy", [Perturb(MILD, 0.0), GaussianNoise(0.3)], ids=repr)
def test_choice_moves_to_a_neighbour(strategy, seed, index):
    space = {"opt": SPACE["opt"]}
    values = SPACE["opt"].values
    new, ops = strategy.explore({"opt": values[index]}, space, np.random.default_rng(seed))
    moved = values.index(new["opt"])
    assert abs(moved - index) == 1
    assert ops == (Operation("opt", values[index], new["opt"], f"shift{moved - index:+d}"),)


def test_choice_at_either_end_moves_inwards():
    space = {"opt": Choice(["a", "b", "c"])}
    for seed in range(20):
        rng = np.random.default_rng(seed)
        assert Perturb(MILD, 0.0).explore({"opt": "a"}, space, rng)[0] == {"opt": "b"}
        assert Perturb(MILD, 0.0).explore({"opt": "c"}, space, rng)[0] == {"opt": "b"}


def test_perturb_seeded_exact():
    strategy = Perturb(MILD, resample_probability=0.0)
    space = {"lr": LogUniform(1e-4, 1.0)}
    new, ops = strategy.explore({"lr": 0.01}, space, np.random.default_rng(7))
    # Replay the documented draws: one uniform for the resample test, one factor index.
    replay = np.random.default_rng(7)
    replay.random()
    factor = MILD[int(replay.integers(2))]
    assert new == {"lr": 0.01 * factor}
    assert ops == (Operation("lr", 0.01, 0.01 * factor, f"x{factor:g}"),)
    # Both factors are used across seeds, and nothing else.
    seen = {
        strategy.explore({"lr": 0.01}, space, np.random.default_rng(s))[0]["lr"] for s in range(50)
    }
    assert sorted(seen) == [0.01 * 0.8, 0.01 * 1.2]


def test_perturb_aggressive_factors_and_clip():
    strategy = Perturb.aggressive(resample_probability=0.0)
    assert strategy.factors == AGGRESSIVE
    space = {"lr": LogUniform(1e-4, 0.1), "n": IntUniform(1, 10)}
    results = {
        tuple(strategy.explore({"lr": 0.08, "n": 7}, space, np.random.default_rng(s))[0].values())
        for s in range(60)
    }
    # lr 0.08 * 2 = 0.16 is clipped to 0.1; 0.08 * 0.5 = 0.04. n: 14 -> 10, 3.5 -> 4 (rounded).
    assert {lr for lr, _ in results} == {0.1, 0.04}
    assert {n for _, n in results} == {10, 4}
    assert all(type(n) is int for _, n in results)


def test_perturb_names_limit_what_is_explored():
    strategy = Perturb(MILD, 0.0, names=("lr",))
    new, ops = strategy.explore(
        {"lr": 0.01, "momentum": 0.5, "layers": 3, "batch": 32, "opt": "adam", "name": "net"},
        SPACE,
        np.random.default_rng(0),
    )
    assert [op.name for op in ops] == ["lr"]
    assert new["momentum"] == 0.5 and new["layers"] == 3 and new["opt"] == "adam"


def test_resample_draws_from_the_prior():
    strategy = Perturb(MILD, resample_probability=1.0)
    space = {"x": Uniform(0.0, 1.0)}
    new, ops = strategy.explore({"x": 0.5}, space, np.random.default_rng(3))
    replay = np.random.default_rng(3)
    replay.random()
    assert new["x"] == space["x"].sample(replay)
    assert ops[0].op == "resample"


def test_gaussian_noise_absolute_seeded_exact():
    strategy = GaussianNoise(0.1)
    space = {"h0": Uniform(0.0, 10.0)}
    new, ops = strategy.explore({"h0": 1.0}, space, np.random.default_rng(11))
    replay = np.random.default_rng(11)
    replay.random()  # resample test (probability 0)
    noise = float(replay.normal(0.0, 0.1))
    assert new["h0"] == pytest.approx(1.0 + noise)
    assert ops[0].op == f"{noise:+.3g}"
    # Clipped at the lower bound (the paper clips h at 0).
    values = [
        strategy.explore({"h0": 0.0}, space, np.random.default_rng(s))[0]["h0"] for s in range(40)
    ]
    assert min(values) == 0.0
    assert max(values) > 0.0


def test_gaussian_noise_relative_scales_with_the_value():
    space = {"x": Uniform(-1e6, 1e6)}
    strategy = GaussianNoise(0.01, relative=True)
    small = [
        abs(strategy.explore({"x": 1.0}, space, np.random.default_rng(s))[0]["x"] - 1.0)
        for s in range(200)
    ]
    large = [
        abs(strategy.explore({"x": 1000.0}, space, np.random.default_rng(s))[0]["x"] - 1000.0)
        for s in range(200)
    ]
    # Same seeds, same standard normal draws: the change is exactly 1000 times larger.
    assert large == pytest.approx([1000 * d for d in small])
    # relative noise on 0 never moves it
    assert strategy.explore({"x": 0.0}, space, np.random.default_rng(1))[0] == {"x": 0.0}


def test_gaussian_noise_integer_ops_are_integer_deltas():
    space = {"n": IntUniform(0, 100)}
    strategy = GaussianNoise(3.0)
    for seed in range(30):
        new, ops = strategy.explore({"n": 50}, space, np.random.default_rng(seed))
        assert type(new["n"]) is int
        assert ops[0].op == f"{new['n'] - 50:+d}"


def test_custom_explore_is_clipped_and_reports_changes():
    space = {"lr": LogUniform(1e-4, 0.1), "n": IntUniform(1, 8), "c": Constant(3)}
    new, ops = CustomExplore(blow_up).explore(
        {"lr": 0.01, "n": 4, "c": 3}, space, np.random.default_rng(0)
    )
    assert new["lr"] in (1e-4, 0.1)
    assert new["n"] in (1, 8) and type(new["n"]) is int
    assert new["c"] == 3
    assert {op.name for op in ops} == {"lr", "n"}
    assert all(op.op == "custom" for op in ops)


def test_custom_explore_without_change_has_no_operations():
    def same(hparams, space, rng):
        return dict(hparams)

    new, ops = CustomExplore(same).explore(
        {"x": 0.5}, {"x": Uniform(0, 1)}, np.random.default_rng()
    )
    assert new == {"x": 0.5}
    assert ops == ()


def test_constants_are_never_explored():
    space = {"k": Constant(1.5), "x": Uniform(0.0, 1.0)}
    for strategy in STRATEGIES:
        for seed in range(10):
            new, ops = strategy.explore({"k": 1.5, "x": 0.5}, space, np.random.default_rng(seed))
            assert new["k"] == 1.5
            assert all(op.name != "k" for op in ops)


def test_same_seed_same_result():
    old = sample_hparams(SPACE, np.random.default_rng(0))
    for strategy in STRATEGIES:
        first = strategy.explore(old, SPACE, np.random.default_rng(42))
        second = strategy.explore(old, SPACE, np.random.default_rng(42))
        assert first == second


# -- operations ------------------------------------------------------------------------


def test_operation_string_and_dict():
    op = Operation("lr", 0.01, 0.008, "x0.8")
    assert str(op) == "lr: 0.01 --x0.8--> 0.008"
    assert op.to_dict() == {"name": "lr", "old": 0.01, "new": 0.008, "op": "x0.8"}
    assert Operation(**op.to_dict()) == op
    assert str(Operation("opt", "sgd", "adam", "shift+1")) == "opt: 'sgd' --shift+1--> 'adam'"
    assert str(Operation("n", 4, 5, "+1")) == "n: 4 --+1--> 5"


def test_perturb_operation_reads_like_the_log_line():
    space = {"lr": LogUniform(1e-4, 1.0)}
    lines = {
        str(op)
        for s in range(30)
        for op in Perturb(MILD, 0.0).explore({"lr": 0.01}, space, np.random.default_rng(s))[1]
    }
    assert lines == {"lr: 0.01 --x0.8--> 0.008", "lr: 0.01 --x1.2--> 0.012"}


# -- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Perturb(()), "Perturb.factors"),
        (lambda: Perturb((0.8, -1.0)), "Perturb.factors"),
        (lambda: Perturb((True,)), "Perturb.factors"),
        (lambda: Perturb(MILD, resample_probability=1.5), "Perturb.resample_probability"),
        (lambda: GaussianNoise(0.0), "GaussianNoise.scale"),
        (lambda: GaussianNoise(math.nan), "GaussianNoise.scale"),
        (
            lambda: GaussianNoise(0.1, resample_probability=-0.1),
            "GaussianNoise.resample_probability",
        ),
        (lambda: CustomExplore(3), "CustomExplore.fn"),
    ],
)
def test_bad_parameters_are_refused(build, field):
    with pytest.raises(ConfigError) as info:
        build()
    assert info.value.field == field
