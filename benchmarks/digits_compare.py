"""PBT against random search, grid search and TPE on the digits, at a larger budget.

The same comparison as ``poptrain demo digits --compare`` (equal compute per method: the
same members, steps per member, Trainable, store and executor) at twice the demo's steps
per member by default, with Optuna's TPE as a fourth method, and PBT's paired difference
with each baseline seed by seed. Prints one JSON object on stdout; progress goes to
stderr. Usage:

    python benchmarks/digits_compare.py [--seeds 3] [--steps 40] [--members 8]
        [--methods pbt,random_search,grid_search,tpe] [--workers 2] [--run-dir DIR]

With ``--steps 20`` (the demo's default) it reproduces the demo's own comparison, and
extends it to more seeds with ``--seeds``. Runs are deterministic (synchronous
generations, one torch thread per worker, per-member random streams): the same command on
the same machine and library versions prints the same accuracies.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from typing import Any

from poptrain.demos.digits_compare import DigitsSettings, run_digits_comparison


def _paired(figures: dict[str, Any], methods: list[str]) -> dict[str, Any]:
    """PBT minus each baseline, seed by seed (the methods share seeds and data split)."""
    pbt = {r["seed"]: r["test_accuracy"] for r in figures["pbt"]["runs"]}
    out: dict[str, Any] = {}
    for method in methods:
        if method == "pbt":
            continue
        other = {r["seed"]: r["test_accuracy"] for r in figures[method]["runs"]}
        diffs = [pbt[s] - other[s] for s in sorted(pbt) if s in other]
        out[method] = {
            "mean_difference": statistics.fmean(diffs),
            "std_difference": statistics.stdev(diffs) if len(diffs) > 1 else 0.0,
            "pbt_wins": sum(d > 0 for d in diffs),
            "ties": sum(d == 0 for d in diffs),
            "pbt_losses": sum(d < 0 for d in diffs),
        }
    return out


def _final_population(run_dirs: list[str]) -> dict[str, float]:
    """Validation and test accuracy of every member's last state, averaged (a diagnostic:
    how good the population as a whole ended up, not only the state each method picks)."""
    from poptrain.api import RunDir
    from poptrain.demos.digits import DigitsTrainable

    vals: list[float] = []
    tests: list[float] = []
    for run_dir in run_dirs:
        info = RunDir.read(run_dir)
        result = info.result()
        store, checkpoints = info.open()
        store.close()
        options = dict(result.config.trainable_options)
        for member in result.members:
            if member.checkpoint is None:
                continue
            trainable = DigitsTrainable(member.hparams, member.seed, **options)
            trainable.load(checkpoints.path(member.checkpoint))
            vals.append(trainable.evaluate()["accuracy"])
            tests.append(trainable.test_accuracy())
    return {
        "final_members_val_mean": statistics.fmean(vals),
        "final_members_test_mean": statistics.fmean(tests),
        "final_members_test_max": max(tests),
    }


def main() -> int:
    defaults = DigitsSettings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=2 * defaults.steps)
    parser.add_argument("--members", type=int, default=defaults.members)
    parser.add_argument("--methods", default="pbt,random_search,grid_search,tpe")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--executor", default="local")
    parser.add_argument("--run-dir", default=None)
    args = parser.parse_args()

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    settings = replace(defaults, steps=args.steps, members=args.members)
    started = time.perf_counter()
    figures = run_digits_comparison(
        seeds=args.seeds,
        first_seed=args.first_seed,
        methods=methods,
        settings=settings,
        run_dir=args.run_dir,
        executor=args.executor,
        workers=args.workers,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    for method in methods:
        for run in figures[method]["runs"]:
            run.update(_final_population(run["run_dirs"]))
            run["val_minus_test"] = run["val_accuracy"] - run["test_accuracy"]
        runs = figures[method]["runs"]
        figures[method]["final_members_test_mean"] = statistics.fmean(
            r["final_members_test_mean"] for r in runs
        )
        figures[method]["val_minus_test_mean"] = statistics.fmean(r["val_minus_test"] for r in runs)
    if "pbt" in methods:
        figures["pbt_minus_baseline"] = _paired(figures, methods)
    figures["wall_seconds"] = round(time.perf_counter() - started, 1)
    json.dump(figures, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
