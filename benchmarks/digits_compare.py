"""PBT against random search, grid search and TPE on the digits, at a larger budget.

The same comparison as ``poptrain demo digits --compare`` (equal compute per method: the
same members, steps per member, Trainable, store and executor), over more seeds and, by
default, twice the demo's steps per member. Prints one JSON object on stdout; progress
goes to stderr. Usage:

    python benchmarks/digits_compare.py [--seeds 6] [--steps 40] [--members 8]
        [--methods pbt,random_search,grid_search,tpe] [--workers 2] [--run-dir DIR]

With ``--steps`` at the demo's default it reproduces (and extends to more seeds) the
demo's own comparison.
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


def main() -> int:
    defaults = DigitsSettings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=2 * defaults.steps)
    parser.add_argument("--members", type=int, default=defaults.members)
    parser.add_argument("--methods", default="pbt,random_search,grid_search,tpe")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--executor", default="local")
    parser.add_argument("--run-dir", default=None)
    args = parser.parse_args()

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if "pbt" not in methods:
        parser.error("--methods must include pbt")
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
    figures["pbt_minus_baseline"] = _paired(figures, methods)
    figures["wall_seconds"] = round(time.perf_counter() - started, 1)
    json.dump(figures, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
