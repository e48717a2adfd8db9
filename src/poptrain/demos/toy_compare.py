"""The toy comparison: PBT against grid search, explore-only and exploit-only (Figure 2)."""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..api import run
from ..executors import Executor
from ..results import Result
from ..strategies import EverySteps, GaussianNoise, Truncation
from .toy import TOY_SPACE, ToyTrainable, toy_initial_hparams

__all__ = ["METHODS", "TARGET_Q", "run_toy_comparison"]

TARGET_Q = 1.19
#: Gradient step size and steps per member: large enough that the fixed-h runs settle at
#: their ceiling of Q = 0.39 well before the end, small enough that the steps show.
TOY_LR = 0.02
TOY_STEPS = 200
TOY_READY = 4
TOY_NOISE = 0.1

METHODS: dict[str, dict[str, Any]] = {
    # exploit: the worse member copies the better (ties broken by the seeded RNG);
    # explore: only the member that copied perturbs its h (Algorithm 1).
    "pbt": {"exploit": Truncation(0.5), "explore": GaussianNoise(TOY_NOISE)},
    "grid": {"exploit": None, "explore": None},
    "explore_only": {"exploit": None, "explore": GaussianNoise(TOY_NOISE)},
    "exploit_only": {"exploit": Truncation(0.5), "explore": None},
}


def _first_step_at(result: Result, target: float) -> int | None:
    steps = [e.step for e in result.evaluations if e.score is not None and e.score >= target]
    return min(steps) if steps else None


def run_toy_comparison(
    *,
    seeds: int = 10,
    first_seed: int = 0,
    run_dir: str | Path | None = None,
    steps: int = TOY_STEPS,
    lr: float = TOY_LR,
    executor: str | Executor = "local",
    workers: int | None = 2,
    storage_for: Callable[[str, int], str | None] = lambda method, seed: None,
    checkpoints_for: Callable[[str, int], str | None] = lambda method, seed: None,
    progress: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Run every method on ``seeds`` seeds; return the figures as one JSON-able dict."""
    root = Path(run_dir) if run_dir is not None else Path(tempfile.mkdtemp(prefix="poptrain-toy-"))
    out: dict[str, Any] = {}
    for method, strategies in METHODS.items():
        best_qs: list[float] = []
        hits: list[int | None] = []
        exploits: list[int] = []
        started = time.perf_counter()
        for seed in range(first_seed, first_seed + seeds):
            where = root / method if seeds == 1 else root / f"seed-{seed}" / method
            result = run(
                ToyTrainable,
                space=TOY_SPACE,
                metric="q",
                mode="max",
                population_size=2,
                max_steps=steps,
                ready=EverySteps(TOY_READY),
                seed=seed,
                initial_hparams=toy_initial_hparams(),
                trainable_options={"lr": lr},
                # A toy step takes microseconds: asynchronously, one member would finish
                # before the other's process has started. Generations keep them in step,
                # as in the paper's figure, and make every seed reproducible.
                synchronous=True,
                run_dir=where,
                storage=storage_for(method, seed),
                checkpoints=checkpoints_for(method, seed),
                executor=executor,
                workers=workers,
                name=f"toy-{method}-{seed}-{int(time.time() * 1000)}",
                **strategies,
            )
            assert result.best is not None
            best_qs.append(result.best.score)
            hits.append(_first_step_at(result, TARGET_Q))
            exploits.append(result.exploits)
            progress(f"{method:13s} seed {seed}: best Q {result.best.score:.4f}")
        reached = [h for h in hits if h is not None]
        out[method] = {
            "best_q": statistics.fmean(best_qs),
            "best_q_std": statistics.pstdev(best_qs),
            "steps_to_1.19": statistics.fmean(reached) if len(reached) == len(hits) else None,
            "seeds_reaching_1.19": len(reached),
            "exploits_mean": statistics.fmean(exploits),
            "wall_seconds": time.perf_counter() - started,
            "runs": [
                {"seed": first_seed + i, "best_q": q, "step_to_1.19": h}
                for i, (q, h) in enumerate(zip(best_qs, hits, strict=True))
            ],
        }
    out["settings"] = {
        "seeds": seeds,
        "first_seed": first_seed,
        "steps": steps,
        "lr": lr,
        "ready_every": TOY_READY,
        "noise_sigma": TOY_NOISE,
        "executor": executor if isinstance(executor, str) else type(executor).__name__,
        "run_dir": str(root),
    }
    return out


def is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
