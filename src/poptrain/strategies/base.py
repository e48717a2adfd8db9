"""Plain data the strategies read, and helpers shared by them."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["MemberView", "PopulationView", "callable_path", "load_callable", "spec_of"]


@dataclass(frozen=True)
class MemberView:
    """What a strategy may know of one member.

    ``score`` and ``recent_scores`` are normalised so that higher is better (the core
    negates them in ``mode="min"``); a failed or non-finite score is ``-inf``.
    """

    member: int
    step: int
    score: float
    hparams: dict[str, Any]
    recent_scores: tuple[float, ...] = ()
    last_ready_step: int = 0
    last_ready_time: float = 0.0
    checkpoint: str | None = None
    checkpoint_step: int = 0
    checkpoint_score: float = -math.inf
    finished: bool = False


@dataclass(frozen=True)
class PopulationView:
    """The population as one member sees it when it is ready.

    ``best_ever`` is the best checkpointed state seen during the whole run (kept even after
    its member moved on), for exploit strategies that backtrack.
    """

    members: tuple[MemberView, ...]
    best_ever: MemberView | None = None
    #: Seeds the order of exactly tied scores. Every member deciding in one synchronous
    #: generation gets the same value, so all of them see one and the same ranking.
    tiebreak_seed: int = 0

    def others(self, member: int) -> tuple[MemberView, ...]:
        return tuple(view for view in self.members if view.member != member)


def rank_ascending(views: Sequence[MemberView], tiebreak_seed: int) -> list[MemberView]:
    """Order worst first; exact ties are broken by a seeded shuffle, so no index is favoured."""
    by_member = sorted(range(len(views)), key=lambda i: views[i].member)
    shuffle = np.random.default_rng(tiebreak_seed).permutation(len(views))
    tiebreak = {index: shuffle[position] for position, index in enumerate(by_member)}
    order = sorted(range(len(views)), key=lambda i: (_rank_score(views[i].score), tiebreak[i]))
    return [views[i] for i in order]


def _rank_score(score: float) -> float:
    # NaN must never reach a comparison: it is the worst possible score.
    return -math.inf if math.isnan(score) else score


def spec_of(obj: Any) -> dict[str, Any]:
    """JSON description of a strategy dataclass: its type name and its fields."""
    spec: dict[str, Any] = {"type": type(obj).__name__}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if callable(value):
            value = callable_path(value, f"{type(obj).__name__}.{f.name}")
        elif isinstance(value, tuple):
            value = list(value)
        spec[f.name] = value
    return spec


def callable_path(fn: Callable[..., Any], field: str) -> str:
    """``module:qualname`` of an importable function, so another process can load it."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", "")
    if not module or "<" in qualname:
        raise ConfigError(field, fn, "must be an importable module-level function")
    return f"{module}:{qualname}"


def load_callable(path: str) -> Callable[..., Any]:
    module_name, _, qualname = path.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise ConfigError("callable", path, "does not name a callable")
    return target  # type: ignore[no-any-return]
