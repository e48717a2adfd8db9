"""Ready strategies: when a member may exploit and explore."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers.callables import ready_at_even_steps
from poptrain.errors import ConfigError
from poptrain.strategies import EverySeconds, EverySteps, MemberView, ReadyStrategy, ReadyWhen


def view(last_ready_step: int = 0, last_ready_time: float = 0.0) -> MemberView:
    return MemberView(
        member=0,
        step=last_ready_step,
        score=1.0,
        hparams={},
        last_ready_step=last_ready_step,
        last_ready_time=last_ready_time,
    )


def test_every_steps_counts_from_the_last_ready_point():
    ready = EverySteps(4)
    assert [ready.is_ready(view(0), s, 0.0) for s in range(1, 9)] == [
        False,
        False,
        False,
        True,
        True,
        True,
        True,
        True,
    ]
    assert not ready.is_ready(view(4), 7, 0.0)
    assert ready.is_ready(view(4), 8, 0.0)


@given(last=st.integers(0, 10_000), steps=st.integers(1, 100), delta=st.integers(0, 200))
def test_every_steps_property(last, steps, delta):
    assert EverySteps(steps).is_ready(view(last), last + delta, 0.0) == (delta >= steps)


def test_every_seconds_uses_the_given_clock():
    ready = EverySeconds(30.0)
    assert not ready.is_ready(view(last_ready_time=100.0), 50, 129.9)
    assert ready.is_ready(view(last_ready_time=100.0), 1, 130.0)
    assert ready.is_ready(view(last_ready_time=100.0), 1, 1000.0)


def test_ready_when_calls_the_predicate():
    ready = ReadyWhen(ready_at_even_steps)
    assert ready.is_ready(view(), 2, 0.0) is True
    assert ready.is_ready(view(), 3, 0.0) is False


def test_builtins_satisfy_the_protocol():
    for strategy in (EverySteps(2), EverySeconds(1.0), ReadyWhen(ready_at_even_steps)):
        assert isinstance(strategy, ReadyStrategy)


@pytest.mark.parametrize(
    ("build", "field", "value"),
    [
        (lambda: EverySteps(0), "EverySteps.steps", 0),
        (lambda: EverySteps(2.5), "EverySteps.steps", 2.5),
        (lambda: EverySteps(True), "EverySteps.steps", True),
        (lambda: EverySeconds(0), "EverySeconds.seconds", 0),
        (lambda: EverySeconds(-1.0), "EverySeconds.seconds", -1.0),
        (lambda: EverySeconds("5"), "EverySeconds.seconds", "5"),
        (lambda: ReadyWhen("not callable"), "ReadyWhen.predicate", "not callable"),
    ],
)
def test_bad_parameters_are_refused(build, field, value):
    with pytest.raises(ConfigError) as info:
        build()
    assert info.value.field == field
    assert info.value.value == value


def test_every_seconds_refuses_nan():
    with pytest.raises(ConfigError) as info:
        EverySeconds(math.nan)
    assert info.value.field == "EverySeconds.seconds"
