"""Search-space distributions: sample, perturb-friendly bounds, validation.

A space is a plain mapping ``{name: Distribution}``. Every distribution knows how to
sample from its prior with an explicit :class:`numpy.random.Generator`, how to bring a
value back inside its bounds (``clip``), and how to describe itself as JSON (``to_spec``)
so that a worker on another host can rebuild it from the store.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError

__all__ = [
    "Choice",
    "Constant",
    "Distribution",
    "IntUniform",
    "LogUniform",
    "Space",
    "Uniform",
    "sample_hparams",
    "space_from_spec",
    "space_to_spec",
    "validate_hparams",
    "validate_space",
]

HParams = dict[str, Any]


class Distribution(ABC):
    """One hyperparameter's prior and bounds."""

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Any:
        """Draw a value from the prior."""

    @abstractmethod
    def clip(self, value: Any) -> Any:
        """Return the nearest value inside the bounds (and of the right type)."""

    @abstractmethod
    def validate(self, name: str) -> None:
        """Raise :class:`ConfigError` naming ``name`` if the definition is unusable."""

    @abstractmethod
    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a legal value of this distribution."""

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"type": type(self).__name__}
        spec.update(self.__dict__)
        return spec


def _finite_number(name: str, field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"space.{name}.{field}", value, "must be a number")
    if not math.isfinite(float(value)):
        raise ConfigError(f"space.{name}.{field}", value, "must be finite")
    return float(value)


@dataclass(frozen=True)
class Uniform(Distribution):
    """Real value drawn uniformly from ``[low, high]``."""

    low: float
    high: float

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))

    def clip(self, value: Any) -> float:
        return float(min(max(float(value), self.low), self.high))

    def contains(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and self.low <= float(value) <= self.high

    def validate(self, name: str) -> None:
        low = _finite_number(name, "low", self.low)
        high = _finite_number(name, "high", self.high)
        if not low < high:
            raise ConfigError(f"space.{name}.high", self.high, f"must be greater than low={low}")


@dataclass(frozen=True)
class LogUniform(Distribution):
    """Positive real value whose logarithm is uniform on ``[log low, log high]``."""

    low: float
    high: float

    def sample(self, rng: np.random.Generator) -> float:
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))

    def clip(self, value: Any) -> float:
        return float(min(max(float(value), self.low), self.high))

    def contains(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and self.low <= float(value) <= self.high

    def validate(self, name: str) -> None:
        low = _finite_number(name, "low", self.low)
        high = _finite_number(name, "high", self.high)
        if low <= 0:
            raise ConfigError(f"space.{name}.low", self.low, "must be > 0 for a log-uniform")
        if not low < high:
            raise ConfigError(f"space.{name}.high", self.high, f"must be greater than low={low}")


@dataclass(frozen=True)
class IntUniform(Distribution):
    """Integer drawn from ``low..high`` inclusive (uniform, or uniform in log space)."""

    low: int
    high: int
    log: bool = False

    def sample(self, rng: np.random.Generator) -> int:
        if self.log:
            raw = math.exp(rng.uniform(math.log(self.low), math.log(self.high + 1)))
            return self.clip(math.floor(raw))
        return int(rng.integers(self.low, self.high + 1))

    def clip(self, value: Any) -> int:
        return int(min(max(round(float(value)), self.low), self.high))

    def contains(self, value: Any) -> bool:
        return (
            isinstance(value, (int, np.integer))
            and not isinstance(value, bool)
            and self.low <= int(value) <= self.high
        )

    def validate(self, name: str) -> None:
        for field in ("low", "high"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ConfigError(f"space.{name}.{field}", value, "must be an integer")
        if not self.low < self.high:
            raise ConfigError(
                f"space.{name}.high", self.high, f"must be greater than low={self.low}"
            )
        if self.log and self.low <= 0:
            raise ConfigError(f"space.{name}.low", self.low, "must be > 0 when log=True")


@dataclass(frozen=True)
class Choice(Distribution):
    """One of a list of values. Explore moves to a neighbour in the list's order."""

    values: tuple[Any, ...]

    def __init__(self, values: Sequence[Any]) -> None:
        object.__setattr__(
            self, "values", tuple(values) if isinstance(values, (list, tuple)) else values
        )

    def sample(self, rng: np.random.Generator) -> Any:
        return self.values[int(rng.integers(len(self.values)))]

    def clip(self, value: Any) -> Any:
        return value if value in self.values else self.values[0]

    def contains(self, value: Any) -> bool:
        return value in self.values

    def index(self, value: Any) -> int:
        return self.values.index(value)

    def validate(self, name: str) -> None:
        if not isinstance(self.values, tuple) or len(self.values) == 0:
            raise ConfigError(f"space.{name}.values", self.values, "must be a non-empty list")
        if len(set(map(repr, self.values))) != len(self.values):
            raise ConfigError(f"space.{name}.values", list(self.values), "has duplicates")

    def to_spec(self) -> dict[str, Any]:
        return {"type": "Choice", "values": list(self.values)}


@dataclass(frozen=True)
class Constant(Distribution):
    """A fixed value: recorded with the others, never explored."""

    value: Any

    def sample(self, rng: np.random.Generator) -> Any:
        return self.value

    def clip(self, value: Any) -> Any:
        return self.value

    def contains(self, value: Any) -> bool:
        return bool(value == self.value)

    def validate(self, name: str) -> None:
        return None


Space = Mapping[str, Distribution]

_TYPES: dict[str, type[Distribution]] = {
    cls.__name__: cls for cls in (Uniform, LogUniform, IntUniform, Choice, Constant)
}


def validate_space(space: Any) -> dict[str, Distribution]:
    """Check a user's space and return it as a plain dict; refuse it with a named field."""
    if not isinstance(space, Mapping) or not space:
        raise ConfigError("space", space, "must be a non-empty mapping of name -> distribution")
    checked: dict[str, Distribution] = {}
    for name, dist in space.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError("space", name, "hyperparameter names must be identifiers")
        if not isinstance(dist, Distribution):
            raise ConfigError(
                f"space.{name}",
                dist,
                "must be a distribution: Uniform, LogUniform, IntUniform, Choice or Constant",
            )
        dist.validate(name)
        checked[name] = dist
    return checked


def validate_hparams(space: Space, hparams: Mapping[str, Any], field: str = "hparams") -> HParams:
    """Check that ``hparams`` assigns a legal value to every name of ``space``."""
    missing = [name for name in space if name not in hparams]
    if missing:
        raise ConfigError(field, dict(hparams), f"is missing {', '.join(missing)}")
    extra = [name for name in hparams if name not in space]
    if extra:
        raise ConfigError(field, dict(hparams), f"has names not in the space: {', '.join(extra)}")
    for name, dist in space.items():
        if not dist.contains(hparams[name]):
            raise ConfigError(f"{field}.{name}", hparams[name], f"is outside {dist}")
    return dict(hparams)


def sample_hparams(space: Space, rng: np.random.Generator) -> HParams:
    """Draw one configuration from the prior, names in the space's order."""
    return {name: dist.sample(rng) for name, dist in space.items()}


def space_to_spec(space: Space) -> dict[str, dict[str, Any]]:
    return {name: dist.to_spec() for name, dist in space.items()}


def space_from_spec(spec: Mapping[str, Mapping[str, Any]]) -> dict[str, Distribution]:
    space: dict[str, Distribution] = {}
    for name, entry in spec.items():
        if not isinstance(entry, Mapping) or entry.get("type") not in _TYPES:
            raise ConfigError(
                f"space.{name}", entry, f"must be an object whose type is one of {sorted(_TYPES)}"
            )
        fields = dict(entry)
        cls = _TYPES[fields.pop("type")]
        try:
            space[name] = cls(**fields)
        except TypeError as exc:
            raise ConfigError(f"space.{name}", entry, str(exc)) from None
    return space
