"""The paper's toy example (Jaderberg et al. 2017, Figure 2).

Maximise Q(θ) = 1.2 − (θ0² + θ1²) when training can only follow the surrogate
Q̂(θ|h) = 1.2 − (h0·θ0² + h1·θ1²). Two members start from θ = (0.9, 0.9) with
h = (1, 0) and h = (0, 1): each alone can only shrink one coordinate, so fixed h tops out at
Q = 0.39. PBT copies the better θ and perturbs h, and climbs to Q ≈ 1.2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..space import Uniform
from ..trainable import Trainable

__all__ = ["TOY_SPACE", "ToyTrainable", "toy_initial_hparams"]

#: h is kept at or above 0 (the paper clips the noise at 0); the upper bound keeps the
#: gradient step stable: θ ← θ·(1 − 2·lr·h) must not overshoot.
TOY_SPACE = {"h0": Uniform(0.0, 10.0), "h1": Uniform(0.0, 10.0)}


def toy_initial_hparams() -> list[dict[str, float]]:
    return [{"h0": 1.0, "h1": 0.0}, {"h0": 0.0, "h1": 1.0}]


class ToyTrainable(Trainable):
    """Gradient ascent on Q̂(θ|h); evaluation is the true Q(θ). Deterministic."""

    def setup(self, hparams: dict[str, Any], seed: int) -> None:
        self.theta = [0.9, 0.9]
        self.lr = float(self.options.get("lr", 0.01))

    def step(self) -> None:
        h = (self.hparams["h0"], self.hparams["h1"])
        # dQ̂/dθi = −2·hi·θi
        self.theta = [t + self.lr * (-2.0 * hi * t) for t, hi in zip(self.theta, h, strict=True)]

    def evaluate(self) -> dict[str, float]:
        return {"q": 1.2 - (self.theta[0] ** 2 + self.theta[1] ** 2)}

    def save(self, path: Path) -> None:
        (path / "theta.json").write_text(json.dumps(self.theta))

    def load(self, path: Path) -> None:
        self.theta = [float(v) for v in json.loads((path / "theta.json").read_text())]
