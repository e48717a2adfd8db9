"""A run's configuration: validated at construction, stored as JSON in the store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .space import Distribution, space_from_spec, space_to_spec, validate_hparams, validate_space
from .strategies import (
    EverySteps,
    ExploitStrategy,
    ExploreStrategy,
    Perturb,
    ReadyStrategy,
    Truncation,
    strategy_from_spec,
    strategy_to_spec,
)
from .trainable import Trainable, resolve_trainable, trainable_path

__all__ = ["RunConfig"]

MODES = ("max", "min")


def _positive_int(field_name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(field_name, value, "must be an integer >= 1")
    return value


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a PBT run (not where or how it executes).

    ``exploit=None`` switches exploitation off; ``explore=None`` switches exploration off.
    With an exploit strategy, only a member that copied explores (Algorithm 1). Without
    one, every ready member explores its own hyperparameters ("explore only"). With
    neither, hyperparameters stay fixed: that is how grid and random search run on the
    same engine and budget.
    """

    trainable: type[Trainable] | str
    space: Mapping[str, Distribution]
    metric: str
    mode: str
    population_size: int
    max_steps: int
    ready: ReadyStrategy = field(default_factory=EverySteps)
    exploit: ExploitStrategy | None = field(default_factory=lambda: Truncation())
    explore: ExploreStrategy | None = field(default_factory=lambda: Perturb())
    synchronous: bool = False
    seed: int = 0
    initial_hparams: Sequence[Mapping[str, Any]] | None = None
    max_failures: int = 3
    window: int = 10
    trainable_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.metric, str) or not self.metric:
            raise ConfigError("metric", self.metric, "must be a non-empty string")
        if self.mode not in MODES:
            raise ConfigError("mode", self.mode, "must be 'max' or 'min'")
        object.__setattr__(self, "space", validate_space(self.space))
        _positive_int("population_size", self.population_size)
        _positive_int("max_steps", self.max_steps)
        _positive_int("max_failures", self.max_failures)
        _positive_int("window", self.window)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError("seed", self.seed, "must be an integer >= 0")
        if not isinstance(self.synchronous, bool):
            raise ConfigError("synchronous", self.synchronous, "must be True or False")
        if not callable(getattr(self.ready, "is_ready", None)):
            raise ConfigError("ready", self.ready, "must be a ready strategy (e.g. EverySteps(4))")
        if self.exploit is not None and not callable(getattr(self.exploit, "select", None)):
            raise ConfigError("exploit", self.exploit, "must be an exploit strategy or None")
        if self.explore is not None and not callable(getattr(self.explore, "explore", None)):
            raise ConfigError("explore", self.explore, "must be an explore strategy or None")
        if not isinstance(self.trainable, str):
            resolve_trainable(self.trainable)
        if self.initial_hparams is not None:
            if len(self.initial_hparams) != self.population_size:
                raise ConfigError(
                    "initial_hparams",
                    f"{len(self.initial_hparams)} entries",
                    f"must have one entry per member (population_size={self.population_size})",
                )
            checked = [
                validate_hparams(self.space, h, f"initial_hparams[{i}]")
                for i, h in enumerate(self.initial_hparams)
            ]
            object.__setattr__(self, "initial_hparams", tuple(checked))

    @property
    def sign(self) -> float:
        """Multiply a raw score by this to get 'higher is better'."""
        return 1.0 if self.mode == "max" else -1.0

    @property
    def copy_weights(self) -> bool:
        return bool(getattr(self.exploit, "copy_weights", True))

    def trainable_class(self) -> type[Trainable]:
        return resolve_trainable(self.trainable)

    def to_spec(self) -> dict[str, Any]:
        """JSON form (what the store keeps); custom callables must be importable."""
        trainable = (
            self.trainable if isinstance(self.trainable, str) else trainable_path(self.trainable)
        )
        return {
            "trainable": trainable,
            "space": space_to_spec(self.space),
            "metric": self.metric,
            "mode": self.mode,
            "population_size": self.population_size,
            "max_steps": self.max_steps,
            "ready": strategy_to_spec(self.ready),
            "exploit": strategy_to_spec(self.exploit),
            "explore": strategy_to_spec(self.explore),
            "synchronous": self.synchronous,
            "seed": self.seed,
            "initial_hparams": None
            if self.initial_hparams is None
            else [dict(h) for h in self.initial_hparams],
            "max_failures": self.max_failures,
            "window": self.window,
            "trainable_options": dict(self.trainable_options),
        }

    REQUIRED = ("trainable", "space", "metric", "mode", "population_size", "max_steps")

    @classmethod
    def default_spec(cls) -> dict[str, Any]:
        """The JSON form of every optional field's default (the paper's PBT)."""
        return {
            "ready": strategy_to_spec(EverySteps()),
            "exploit": strategy_to_spec(Truncation()),
            "explore": strategy_to_spec(Perturb()),
            "synchronous": False,
            "seed": 0,
            "initial_hparams": None,
            "max_failures": 3,
            "window": 10,
            "trainable_options": {},
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> RunConfig:
        """Rebuild a config from :meth:`to_spec`; optional fields may be left out."""
        missing = [name for name in cls.REQUIRED if name not in spec]
        if missing:
            raise ConfigError("config", sorted(spec), f"lacks the required field(s) {missing}")
        unknown = sorted(set(spec) - set(cls.REQUIRED) - set(cls.default_spec()))
        if unknown:
            raise ConfigError("config", unknown, "are not RunConfig fields")
        data = {**cls.default_spec(), **spec}
        if not isinstance(data["space"], Mapping):
            raise ConfigError("space", data["space"], "must map names to distributions")
        data["space"] = space_from_spec(data["space"])
        for name in ("ready", "exploit", "explore"):
            data[name] = strategy_from_spec(data[name])
        return cls(**data)
