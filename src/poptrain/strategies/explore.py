"""Explore: propose new hyperparameters from copied ones, and say what was changed.

Every strategy returns ``(new_hparams, operations)``; the operations make the log line
(``lr: 0.01 --x0.8--> 0.008``) and the recorded schedule. Every value stays inside its
distribution's bounds; integers stay integers; constants never change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..decision import Operation
from ..errors import ConfigError
from ..space import Choice, Constant, Distribution, IntUniform, Space

__all__ = [
    "AGGRESSIVE",
    "MILD",
    "CustomExplore",
    "ExploreStrategy",
    "GaussianNoise",
    "Perturb",
]

#: The paper's perturbation factors.
MILD = (0.8, 1.2)
AGGRESSIVE = (0.5, 2.0)

HParams = dict[str, Any]


@runtime_checkable
class ExploreStrategy(Protocol):
    def explore(
        self, hparams: Mapping[str, Any], space: Space, rng: np.random.Generator
    ) -> tuple[HParams, tuple[Operation, ...]]:
        """New hyperparameters and the operations that produced them."""
        ...


def _check_probability(field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(field, value, "must be a probability in [0, 1]")


def _names(names: tuple[str, ...] | None, space: Space) -> list[str]:
    chosen = list(space) if names is None else [n for n in names if n in space]
    return [n for n in chosen if not isinstance(space[n], Constant)]


def _neighbour(dist: Choice, value: Any, rng: np.random.Generator) -> tuple[Any, str]:
    index = dist.index(value) if value in dist.values else 0
    moves = [m for m in (-1, 1) if 0 <= index + m < len(dist.values)]
    move = moves[int(rng.integers(len(moves)))]
    return dist.values[index + move], f"shift{move:+d}"


def _resample(dist: Distribution, rng: np.random.Generator) -> Any:
    return dist.sample(rng)


@dataclass(frozen=True)
class Perturb:
    """Multiply each value by one of ``factors``, or resample it from the prior.

    With probability ``resample_probability`` a value is drawn afresh from its prior;
    otherwise a number is multiplied by a factor drawn uniformly from ``factors`` (then
    rounded for integers and clipped to the bounds) and a categorical value moves to a
    neighbouring entry of its list. ``names`` limits which hyperparameters are explored.
    """

    factors: tuple[float, ...] = MILD
    resample_probability: float = 0.25
    names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "factors", tuple(self.factors))
        if not self.factors or not all(
            isinstance(f, (int, float)) and not isinstance(f, bool) and f > 0 for f in self.factors
        ):
            raise ConfigError("Perturb.factors", self.factors, "must be positive numbers")
        _check_probability("Perturb.resample_probability", self.resample_probability)
        if self.names is not None:
            object.__setattr__(self, "names", tuple(self.names))

    @classmethod
    def mild(cls, resample_probability: float = 0.25) -> Perturb:
        """x0.8 / x1.2, the paper's default."""
        return cls(MILD, resample_probability)

    @classmethod
    def aggressive(cls, resample_probability: float = 0.25) -> Perturb:
        """x0.5 / x2.0."""
        return cls(AGGRESSIVE, resample_probability)

    def explore(
        self, hparams: Mapping[str, Any], space: Space, rng: np.random.Generator
    ) -> tuple[HParams, tuple[Operation, ...]]:
        new = dict(hparams)
        ops: list[Operation] = []
        for name in _names(self.names, space):
            dist, old = space[name], hparams[name]
            if rng.random() < self.resample_probability:
                value, op = _resample(dist, rng), "resample"
            elif isinstance(dist, Choice):
                value, op = _neighbour(dist, old, rng)
            else:
                factor = self.factors[int(rng.integers(len(self.factors)))]
                value, op = dist.clip(old * factor), f"x{factor:g}"
            new[name] = value
            ops.append(Operation(name, old, value, op))
        return new, tuple(ops)


@dataclass(frozen=True)
class GaussianNoise:
    """Add ``N(0, scale)`` noise (``relative=True``: ``N(0, scale * |value|)``), then clip.

    This is the paper's toy explore. Categorical values move to a neighbour; with
    probability ``resample_probability`` a value is drawn from its prior instead.
    """

    scale: float = 0.1
    relative: bool = False
    resample_probability: float = 0.0
    names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        s = self.scale
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not s > 0:
            raise ConfigError("GaussianNoise.scale", s, "must be a number > 0")
        _check_probability("GaussianNoise.resample_probability", self.resample_probability)
        if self.names is not None:
            object.__setattr__(self, "names", tuple(self.names))

    def explore(
        self, hparams: Mapping[str, Any], space: Space, rng: np.random.Generator
    ) -> tuple[HParams, tuple[Operation, ...]]:
        new = dict(hparams)
        ops: list[Operation] = []
        for name in _names(self.names, space):
            dist, old = space[name], hparams[name]
            if rng.random() < self.resample_probability:
                value, op = _resample(dist, rng), "resample"
            elif isinstance(dist, Choice):
                value, op = _neighbour(dist, old, rng)
            else:
                sigma = self.scale * abs(old) if self.relative else self.scale
                noise = float(rng.normal(0.0, sigma)) if sigma > 0 else 0.0
                value = dist.clip(old + noise)
                op = f"{value - old:+d}" if isinstance(dist, IntUniform) else f"{noise:+.3g}"
            new[name] = value
            ops.append(Operation(name, old, value, op))
        return new, tuple(ops)


@dataclass(frozen=True)
class CustomExplore:
    """A user's ``fn(hparams, space, rng) -> new_hparams``; results are clipped to the space."""

    fn: Callable[[Mapping[str, Any], Space, np.random.Generator], Mapping[str, Any]]

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise ConfigError("CustomExplore.fn", self.fn, "must be callable")

    def explore(
        self, hparams: Mapping[str, Any], space: Space, rng: np.random.Generator
    ) -> tuple[HParams, tuple[Operation, ...]]:
        proposed = self.fn(dict(hparams), space, rng)
        new = dict(hparams)
        ops: list[Operation] = []
        for name, dist in space.items():
            if name in proposed and not isinstance(dist, Constant):
                value = dist.clip(proposed[name])
                if value != hparams[name]:
                    ops.append(Operation(name, hparams[name], value, "custom"))
                new[name] = value
        return new, tuple(ops)
