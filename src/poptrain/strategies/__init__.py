"""Ready, exploit and explore strategies: small, pure, seeded by an explicit RNG."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .base import MemberView, PopulationView, load_callable, spec_of
from .exploit import BinaryTournament, Elitist, ExploitStrategy, Truncation, TTest
from .explore import AGGRESSIVE, MILD, CustomExplore, ExploreStrategy, GaussianNoise, Perturb
from .ready import EverySeconds, EverySteps, ReadyStrategy, ReadyWhen

__all__ = [
    "AGGRESSIVE",
    "MILD",
    "BinaryTournament",
    "CustomExplore",
    "Elitist",
    "EverySeconds",
    "EverySteps",
    "ExploitStrategy",
    "ExploreStrategy",
    "GaussianNoise",
    "MemberView",
    "Perturb",
    "PopulationView",
    "ReadyStrategy",
    "ReadyWhen",
    "TTest",
    "Truncation",
    "strategy_from_spec",
    "strategy_to_spec",
]

_REGISTRY: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        EverySteps,
        EverySeconds,
        ReadyWhen,
        Truncation,
        BinaryTournament,
        TTest,
        Elitist,
        Perturb,
        GaussianNoise,
        CustomExplore,
    )
}
_CALLABLE_FIELDS = {"ReadyWhen": "predicate", "CustomExplore": "fn"}


def strategy_to_spec(strategy: Any) -> dict[str, Any] | None:
    """JSON description of a built-in strategy (None stays None)."""
    return None if strategy is None else spec_of(strategy)


def strategy_from_spec(spec: dict[str, Any] | None) -> Any:
    """Rebuild a strategy from :func:`strategy_to_spec`'s output."""
    if spec is None:
        return None
    if not isinstance(spec, dict) or "type" not in spec:
        raise ConfigError("strategy", spec, 'must be an object with a "type"')
    fields = dict(spec)
    kind = fields.pop("type")
    if kind not in _REGISTRY:
        raise ConfigError("strategy.type", kind, f"is not one of {sorted(_REGISTRY)}")
    callable_field = _CALLABLE_FIELDS.get(kind)
    if callable_field is not None:
        fields[callable_field] = load_callable(fields[callable_field])
    for key, value in fields.items():
        if isinstance(value, list):
            fields[key] = tuple(value)
    try:
        return _REGISTRY[kind](**fields)
    except TypeError as exc:
        raise ConfigError(f"strategy.{kind}", spec, str(exc)) from None
