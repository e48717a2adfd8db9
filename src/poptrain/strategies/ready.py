"""When is a member ready to exploit and explore? Pure functions of its view and the clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..errors import ConfigError
from .base import MemberView

__all__ = ["EverySeconds", "EverySteps", "ReadyStrategy", "ReadyWhen"]


@runtime_checkable
class ReadyStrategy(Protocol):
    def is_ready(self, member: MemberView, step: int, now: float) -> bool:
        """Whether ``member``, having just reached ``step`` at time ``now``, is ready."""
        ...


@dataclass(frozen=True)
class EverySteps:
    """Ready every ``steps`` steps since the last ready point or exploit (the paper's rule)."""

    steps: int = 4

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError("EverySteps.steps", self.steps, "must be an integer >= 1")

    def is_ready(self, member: MemberView, step: int, now: float) -> bool:
        return step - member.last_ready_step >= self.steps


@dataclass(frozen=True)
class EverySeconds:
    """Ready once ``seconds`` of wall time passed since the last ready point or exploit."""

    seconds: float = 60.0

    def __post_init__(self) -> None:
        if (
            isinstance(self.seconds, bool)
            or not isinstance(self.seconds, (int, float))
            or not (self.seconds > 0)
        ):
            raise ConfigError("EverySeconds.seconds", self.seconds, "must be a number > 0")

    def is_ready(self, member: MemberView, step: int, now: float) -> bool:
        return now - member.last_ready_time >= self.seconds


@dataclass(frozen=True)
class ReadyWhen:
    """A user's rule: ``predicate(member_view, step, now) -> bool``."""

    predicate: Callable[[MemberView, int, float], bool]

    def __post_init__(self) -> None:
        if not callable(self.predicate):
            raise ConfigError("ReadyWhen.predicate", self.predicate, "must be callable")

    def is_ready(self, member: MemberView, step: int, now: float) -> bool:
        return bool(self.predicate(member, step, now))
