"""The user's contract: a member of the population.

Subclass :class:`Trainable` around your own training code::

    class Net(poptrain.Trainable):
        def setup(self, hparams, seed):
            self.model = ...; self.opt = ...
        def step(self):
            ...            # one unit of training with the current hyperparameters
        def evaluate(self):
            return {"accuracy": ...}   # or a bare float for the run's metric
        def save(self, path):
            ...            # write the state (weights, optimiser) into the folder ``path``
        def load(self, path):
            ...            # read it back
        def apply_hparams(self, hparams):
            ...            # push new values into the live optimiser / model

The worker calls ``setup`` once, then ``step``/``evaluate`` in a loop; after an exploit it
calls ``load`` with the copied checkpoint and ``apply_hparams`` with the new values.
"""

from __future__ import annotations

import importlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["Trainable", "resolve_trainable", "score_of", "trainable_path"]


class Trainable(ABC):
    """One member: weights θ, hyperparameters h, a training step and an evaluation."""

    def __init__(self, hparams: Mapping[str, Any], seed: int, **options: Any) -> None:
        self.hparams: dict[str, Any] = dict(hparams)
        self.seed = seed
        #: The run's ``trainable_options`` (data size, device…), the same for every member.
        self.options: dict[str, Any] = options
        self.setup(self.hparams, seed)

    @abstractmethod
    def setup(self, hparams: dict[str, Any], seed: int) -> None:
        """Build the model and optimiser from ``hparams``; seed every RNG with ``seed``."""

    @abstractmethod
    def step(self) -> None:
        """Train one unit (a batch, some batches, an epoch) with the current hyperparameters."""

    @abstractmethod
    def evaluate(self) -> float | Mapping[str, float]:
        """The score: a number, or a mapping that holds the run's metric."""

    @abstractmethod
    def save(self, path: Path) -> None:
        """Write the member's state into the (existing, empty) folder ``path``."""

    @abstractmethod
    def load(self, path: Path) -> None:
        """Restore the state written by :meth:`save` from the folder ``path``."""

    def apply_hparams(self, hparams: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Use new hyperparameters from now on. Override to update a live optimiser.

        The default does nothing more than :meth:`set_hparams` did (store them in
        ``self.hparams``), which suits code that reads ``self.hparams`` at every step.
        """

    def set_hparams(self, hparams: Mapping[str, Any]) -> None:
        self.hparams = dict(hparams)
        self.apply_hparams(self.hparams)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources when the worker drops this member (it may be rebuilt later)."""


def score_of(result: float | Mapping[str, float], metric: str) -> float:
    """The run's metric from ``evaluate()``'s result (NaN if it is not a number)."""
    if isinstance(result, Mapping):
        if metric not in result:
            raise ConfigError(
                "metric", metric, f"is not among the keys evaluate() returned: {sorted(result)}"
            )
        value = result[metric]
    else:
        value = result
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def trainable_path(target: type[Trainable] | Callable[..., Any]) -> str:
    """``module:qualname``, so a worker on another host can import the class or function."""
    qualname = getattr(target, "__qualname__", "")
    if "<" in qualname:
        raise ConfigError("trainable", target, "must be defined at module level to be imported")
    return f"{target.__module__}:{qualname}"


def resolve_trainable(target: type[Trainable] | Callable[..., Any] | str) -> type[Trainable]:
    """Accept a Trainable subclass, a training function (see :mod:`poptrain.function_api`)
    or either's ``module:qualname``, and return a Trainable class."""
    if isinstance(target, str):
        module_name, _, qualname = target.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise ConfigError("trainable", target, f"cannot be imported ({exc})") from None
        target = obj
    if isinstance(target, type) and issubclass(target, Trainable):
        return target
    if callable(target) and not isinstance(target, type):
        from .function_api import function_trainable

        return function_trainable(target)
    raise ConfigError(
        "trainable", target, "must be a poptrain.Trainable subclass or a training function"
    )
