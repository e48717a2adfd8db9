"""Module-level callables for strategies that must be importable by name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def ready_at_even_steps(member: Any, step: int, now: float) -> bool:
    return step % 2 == 0


def blow_up(hparams: Mapping[str, Any], space: Any, rng: np.random.Generator) -> dict[str, Any]:
    """Propose values far outside every bound (explore must clip them)."""
    out: dict[str, Any] = {}
    for name, value in hparams.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = value * float(rng.choice([-1e6, 1e6]))
        else:
            out[name] = "not-a-choice"
    return out
