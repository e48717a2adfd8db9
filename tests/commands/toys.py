"""Trainables for the command tests, importable by name (``toys:SlowToy``) in worker processes.

The tests put this folder on ``PYTHONPATH`` for the ``poptrain`` processes they start.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from poptrain.demos.toy import ToyTrainable

#: The ``cli`` fixture: ``cli("report", RUN_DIR, "--json") -> (exit code, stdout, stderr)``.
Cli = Callable[..., tuple[int, str, str]]

#: Steps per member of the shared ``poptrain demo toy`` run.
TOY_STEPS = 60


class SlowToy(ToyTrainable):
    """The deterministic toy, with ``sleep`` seconds per step so that a run can be stopped."""

    def step(self) -> None:
        time.sleep(float(self.options.get("sleep", 0.02)))
        super().step()


class FlakyToy(ToyTrainable):
    """The toy, but a step with ``h0`` above ``limit`` raises: members fail and recover."""

    def step(self) -> None:
        if self.hparams["h0"] > float(self.options.get("limit", 7.0)):
            raise FloatingPointError("h0 too large: the step diverged")
        super().step()
