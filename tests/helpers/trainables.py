"""Trainables for end-to-end tests. They live outside test modules so that worker
processes (spawned, or started by the ``poptrain`` command) can import them by name."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from poptrain import Trainable


class Quadratic(Trainable):
    """Climbs towards 1.0 at a speed set by ``x``; deterministic and instant.

    Options: ``bad_seed`` (the seed of the member that misbehaves), ``bad`` ("raise",
    "nan" or "exit"), ``every`` (misbehave on every n-th call of ``step``/``evaluate`` of
    one instance), ``marker`` (for "exit": a file that makes the crash happen only once),
    ``sleep`` (seconds per step).
    """

    def setup(self, hparams: dict[str, Any], seed: int) -> None:
        self.value = 0.0
        self.calls = 0

    def _misbehaves(self) -> bool:
        return (
            self.seed == self.options.get("bad_seed")
            and self.calls % int(self.options.get("every", 3)) == 0
        )

    def step(self) -> None:
        self.calls += 1
        if self.options.get("sleep"):
            time.sleep(float(self.options["sleep"]))
        bad = self.options.get("bad")
        if bad == "raise" and self._misbehaves():
            raise RuntimeError(f"injected failure at call {self.calls}")
        if bad == "exit" and self._misbehaves():
            marker = Path(self.options["marker"])
            if not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(1)  # the process dies without any clean-up
        self.value += (1.0 - self.value) * float(self.hparams["x"]) * 0.5

    def evaluate(self) -> dict[str, float]:
        if self.options.get("bad") == "nan" and self._misbehaves():
            return {"score": math.nan}
        return {"score": self.value}

    def save(self, path: Path) -> None:
        (path / "state.json").write_text(json.dumps({"value": self.value}))

    def load(self, path: Path) -> None:
        self.value = float(json.loads((path / "state.json").read_text())["value"])
