"""Trainables and process targets for the cluster tests (imported by name in other processes).

``tests/cluster`` is on ``sys.path`` under pytest, spawned processes inherit it, and
subprocesses and Ray nodes get it through ``PYTHONPATH`` (see ``servers.subprocess_env``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from poptrain.config import RunConfig
from poptrain.demos.toy import TOY_SPACE, ToyTrainable, toy_initial_hparams
from poptrain.store import SQLStore
from poptrain.strategies import EverySteps, GaussianNoise, Truncation


def toy_config(trainable: str, *, seed: int, **overrides: Any) -> RunConfig:
    """The paper's toy (two members, synchronous, deterministic) unless overridden."""
    fields: dict[str, Any] = {
        "trainable": trainable,
        "space": TOY_SPACE,
        "metric": "q",
        "mode": "max",
        "population_size": 2,
        "max_steps": 100,
        "ready": EverySteps(4),
        "exploit": Truncation(0.5),
        "explore": GaussianNoise(0.1),
        "synchronous": True,
        "seed": seed,
        "initial_hparams": toy_initial_hparams(),
        "trainable_options": {"lr": 0.02},
    }
    fields.update(overrides)
    return RunConfig(**fields)


class SlowToy(ToyTrainable):
    """The toy, with ``options["sleep"]`` seconds per step (a long step, a run that lasts)."""

    def step(self) -> None:
        time.sleep(float(self.options.get("sleep", 0.0)))
        super().step()


class DieOnceToy(ToyTrainable):
    """The toy, whose process dies once (no exception: ``os._exit``) at its ``die_at``-th step.

    ``options["marker"]`` is a file created just before, so that only one process dies.
    """

    def setup(self, hparams: dict[str, Any], seed: int) -> None:
        super().setup(hparams, seed)
        self.steps_here = 0

    def step(self) -> None:
        self.steps_here += 1
        marker = Path(self.options["marker"])
        if self.steps_here >= int(self.options.get("die_at", 3)) and not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(3)
        time.sleep(float(self.options.get("sleep", 0.0)))
        super().step()


def open_store_together(url: str, out: str, start: Any) -> None:
    """Open (and so create the schema of) the store at ``url`` at the same moment as others."""
    start.wait(60)
    try:
        store = SQLStore(url)
        store.list_runs()
        store.close()
        result: dict[str, Any] = {"ok": True}
    except Exception as exc:
        result = {"ok": False, "error": repr(exc)}
    Path(out).write_text(json.dumps(result))
