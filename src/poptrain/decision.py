"""Decisions: the plain values the population core returns to a member's loop.

The core decides; the worker applies. A decision never performs I/O itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Continue", "Decision", "Exploit", "Operation", "Stop", "Wait"]


@dataclass(frozen=True)
class Operation:
    """One change explore made to one hyperparameter, e.g. ``lr: 0.01 --x0.8--> 0.008``."""

    name: str
    old: Any
    new: Any
    op: str

    def __str__(self) -> str:
        return f"{self.name}: {_fmt(self.old)} --{self.op}--> {_fmt(self.new)}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "old": self.old, "new": self.new, "op": self.op}


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else repr(value)


@dataclass(frozen=True)
class Continue:
    """Keep training with the current weights and hyperparameters.

    ``ready`` is True when the member was at a ready point (and kept its state).
    """

    ready: bool = False


@dataclass(frozen=True)
class Exploit:
    """Load ``checkpoint`` (a copy of ``source``'s state at ``source_step``) and use ``hparams``.

    ``checkpoint`` is None when only hyperparameters are copied (the member keeps its
    weights); ``source == member`` with no checkpoint means "explore only". ``age`` is the
    number of steps the weights the member now holds went through. The member's own step
    count (its budget) is never changed by an exploit.
    """

    source: int
    source_step: int
    hparams: dict[str, Any]
    checkpoint: str | None
    age: int
    operations: tuple[Operation, ...] = field(default=())

    def describe(self) -> str:
        ops = "; ".join(str(op) for op in self.operations) or "no change"
        return f"copy member {self.source} @ step {self.source_step}; {ops}"


@dataclass(frozen=True)
class Wait:
    """Synchronous mode: the member reached the generation barrier; release it."""


@dataclass(frozen=True)
class Stop:
    """The member is done (its step budget is spent, it failed for good, or the run stops)."""

    reason: str = "finished"


Decision = Continue | Exploit | Wait | Stop
