"""The paper's toy written as a plain training loop, for the function-style API."""

from __future__ import annotations

import json
from pathlib import Path

from ..function_api import Session

__all__ = ["toy_train"]


def toy_train(session: Session) -> None:
    """Gradient ascent on Q̂(θ|h), reporting Q(θ) after every step."""
    lr = float(session.options.get("lr", 0.01))
    theta = [0.9, 0.9]
    if session.checkpoint is not None:
        theta = json.loads((session.checkpoint / "theta.json").read_text())

    def save(folder: Path) -> None:
        (folder / "theta.json").write_text(json.dumps(theta))

    while True:
        h = (session.hparams["h0"], session.hparams["h1"])
        theta = [t - lr * 2.0 * hi * t for t, hi in zip(theta, h, strict=True)]
        exploited = session.report({"q": 1.2 - (theta[0] ** 2 + theta[1] ** 2)}, save=save)
        if exploited and session.checkpoint is not None:
            theta = json.loads((session.checkpoint / "theta.json").read_text())
