"""The digits demo, and PBT against grid and random search (and TPE) on the same budget.

Every method runs ``members`` members of ``steps`` steps each on the same Trainable, split,
store and executor; the only difference is how hyperparameters are chosen and changed.
Each method's best state (by validation accuracy, over every checkpoint of the run) is
then scored once on the test split.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..baselines import METHODS, Method, MethodOutcome, grid_levels, run_method
from ..errors import ConfigError
from ..executors import Executor
from ..results import Result
from ..strategies import EverySteps

__all__ = [
    "COMPARE_METHODS",
    "DIGITS_GRID_LEVELS",
    "DigitsSettings",
    "digits_methods",
    "run_digits",
    "run_digits_comparison",
]

#: The grid: four learning rates (log spaced over the space) by two momenta; weight decay
#: and dropout at the middle of their ranges. Learning rate gets the most levels because
#: it matters most.
DIGITS_GRID_LEVELS = {"lr": 4, "momentum": 2, "weight_decay": 1, "dropout": 1}

#: What ``--compare`` runs by default (``tpe`` needs Optuna and is opt-in).
COMPARE_METHODS = ("pbt", "random_search", "grid_search")


@dataclass(frozen=True)
class DigitsSettings:
    """The demo's settings, shared by every method (so the budgets are equal)."""

    members: int = 8
    #: Steps per member; one step is ``batches_per_step`` minibatches (None: one epoch).
    steps: int = 20
    #: A member is ready to exploit every ``ready`` steps. Every epoch: with 20 epochs per
    #: member, PBT needs many generations to move hyperparameters by x0.8 / x1.2 steps.
    #: Each decision rests on one noisy validation score (360 images: about one point of
    #: accuracy of noise), but with weight copying a wrong pick between near-equal members
    #: costs little, while clearly worse members are replaced at once.
    ready: int = 1
    batch_size: int = 32
    batches_per_step: int | None = None
    #: Training images are translated by up to this many pixels (0: no augmentation).
    shift: int = 1
    split_seed: int = 0
    #: torch threads per worker process (two workers on two cores: one each).
    threads: int = 1
    #: Generations: every member waits at each ready point until all got there, then all
    #: decide on the same ranking (see ``poptrain.run``'s ``synchronous``).
    synchronous: bool = True

    def __post_init__(self) -> None:
        for name in ("members", "steps", "ready", "batch_size", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(name, value, "must be an integer >= 1")

    @property
    def budget_steps(self) -> int:
        """Training steps of one run: the same for every method."""
        return self.members * self.steps

    def trainable_options(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "batches_per_step": self.batches_per_step,
            "shift": self.shift,
            "split_seed": self.split_seed,
            "threads": self.threads,
        }


def digits_methods(members: int = 8) -> dict[str, Method]:
    """The methods as the digits demo runs them.

    With 8 members the grid is :data:`DIGITS_GRID_LEVELS`; with another population size it
    is spread evenly over the space (:func:`poptrain.baselines.grid_levels`).
    """
    methods = dict(METHODS)
    if math.prod(DIGITS_GRID_LEVELS.values()) == members:
        methods["grid_search"] = replace(METHODS["grid_search"], grid_levels=DIGITS_GRID_LEVELS)
    return methods


def run_digits(
    method: str | Method = "pbt",
    *,
    settings: DigitsSettings = DigitsSettings(),
    seed: int = 0,
    run_dir: str | Path | None = None,
    storage: str | None = None,
    checkpoints: str | None = None,
    executor: str | Executor = "local",
    workers: int | None = 2,
    progress: bool = False,
    name: str | None = None,
) -> tuple[MethodOutcome, float]:
    """One run of one method; returns its outcome and the test accuracy of its best state."""
    from .digits import DIGITS_SPACE, DigitsTrainable  # imports torch

    chosen = digits_methods(settings.members)[method] if isinstance(method, str) else method
    where = (
        Path(run_dir)
        if run_dir is not None
        else Path("runs") / f"digits-{chosen.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    outcome = run_method(
        chosen,
        DigitsTrainable,
        space=DIGITS_SPACE,
        metric="accuracy",
        mode="max",
        population_size=settings.members,
        max_steps=settings.steps,
        seed=seed,
        run_dir=where,
        workers=workers,
        ready=EverySteps(settings.ready),
        synchronous=settings.synchronous,
        trainable_options=settings.trainable_options(),
        storage=storage,
        checkpoints=checkpoints,
        executor=executor,
        progress=progress,
        name=name,
    )
    best = outcome.best.load()
    assert isinstance(best, DigitsTrainable)
    return outcome, best.test_accuracy()


def _run_record(seed: int, outcome: MethodOutcome, test: float, seconds: float) -> dict[str, Any]:
    best = outcome.best
    return {
        "seed": seed,
        "test_accuracy": test,
        "val_accuracy": best.score,
        "steps_trained": outcome.steps_trained,
        "exploits": outcome.exploits,
        "best_member": best.member,
        "best_age": best.age,
        "best_hparams": best.hparams,
        "wall_seconds": round(seconds, 2),
        "run_dirs": [str(path) for path in outcome.run_dirs],
    }


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    tests = [r["test_accuracy"] for r in runs]
    vals = [r["val_accuracy"] for r in runs]
    return {
        "test_accuracy_mean": statistics.fmean(tests),
        "test_accuracy_std": statistics.stdev(tests) if len(tests) > 1 else 0.0,
        "val_accuracy_mean": statistics.fmean(vals),
        "steps_trained": sorted({r["steps_trained"] for r in runs}),
        "wall_seconds": round(sum(r["wall_seconds"] for r in runs), 2),
        "runs": runs,
    }


def run_digits_comparison(
    *,
    seeds: int = 3,
    first_seed: int = 0,
    methods: Sequence[str] = COMPARE_METHODS,
    settings: DigitsSettings = DigitsSettings(),
    run_dir: str | Path | None = None,
    storage: str | None = None,
    checkpoints: str | None = None,
    executor: str | Executor = "local",
    workers: int | None = 2,
    progress: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Run every method on ``seeds`` seeds; return the figures as one JSON-able dict.

    The methods take turns seed by seed, so a slow spell of the machine hits all of them.
    Raises if any run trained a different number of steps from the budget.
    """
    known = digits_methods(settings.members)
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ConfigError("methods", unknown, f"must be among {sorted(known)}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError("seeds", seeds, "must be an integer >= 1")
    root = (
        Path(run_dir)
        if run_dir is not None
        else Path(tempfile.mkdtemp(prefix="poptrain-digits-compare-"))
    )
    stamp = int(time.time() * 1000)
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    for seed in range(first_seed, first_seed + seeds):
        for method in methods:
            started = time.perf_counter()
            outcome, test = run_digits(
                method,
                settings=settings,
                seed=seed,
                run_dir=root / f"seed-{seed}" / method,
                storage=storage,
                checkpoints=None
                if checkpoints is None
                else f"{checkpoints.rstrip('/')}/{method}-{seed}",
                executor=executor,
                workers=workers,
                name=f"digits-{method}-{seed}-{stamp}",
            )
            if outcome.steps_trained != settings.budget_steps:
                raise ConfigError(
                    method,
                    outcome.steps_trained,
                    f"steps trained differ from the budget of {settings.budget_steps}",
                )
            record = _run_record(seed, outcome, test, time.perf_counter() - started)
            runs[method].append(record)
            progress(
                f"{method:14s} seed {seed}: test accuracy {test:.4f} "
                f"(validation {record['val_accuracy']:.4f}, {record['exploits']} exploits, "
                f"{record['wall_seconds']:.0f}s)"
            )
    out: dict[str, Any] = {"budget_steps": settings.budget_steps}
    for method in methods:
        out[method] = _summary(runs[method])
    out["settings"] = {
        **asdict(settings),
        "seeds": list(range(first_seed, first_seed + seeds)),
        "methods": list(methods),
        "grid_levels": dict(known["grid_search"].grid_levels or _default_grid(settings.members)),
        "executor": executor if isinstance(executor, str) else type(executor).__name__,
        "workers": workers,
        "run_dir": str(root),
    }
    return out


def _default_grid(members: int) -> dict[str, int]:
    from .digits import DIGITS_SPACE  # imports torch

    return grid_levels(DIGITS_SPACE, members)


def schedule_lines(result: Result) -> list[str]:
    """The winner's hyperparameter schedule, one line per change."""
    lines = []
    for entry in result.schedule:
        values = ", ".join(f"{k}={_fmt(v)}" for k, v in entry.hparams.items())
        lines.append(f"from step {entry.step:>4} (member {entry.member}): {values}")
    return lines


def _fmt(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.3g}"
    return str(value)
