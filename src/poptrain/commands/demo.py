"""``poptrain demo toy``: the paper's toy example."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.table import Table

from .common import add_execution_options, print_json

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    demo = subparsers.add_parser("demo", help="run a demo")
    kinds = demo.add_subparsers(dest="demo", metavar="DEMO")
    toy = kinds.add_parser(
        "toy", help="the paper's toy example (Figure 2): PBT vs grid, explore-only, exploit-only"
    )
    toy.add_argument("--seeds", type=int, default=10, help="how many seeds (default 10)")
    toy.add_argument("--seed", type=int, default=0, help="the first seed (default 0)")
    toy.add_argument("--steps", type=int, default=None, help="steps per member (default 200)")
    toy.add_argument("--json", action="store_true", help="print one JSON object")
    add_execution_options(toy)
    toy.set_defaults(func=_toy, workers=2)
    demo.set_defaults(func=_toy_default, demo=None)


def _toy_default(args: argparse.Namespace) -> int:
    print("usage: poptrain demo {toy}", file=sys.stderr)
    return 2


def _toy(args: argparse.Namespace) -> int:
    from ..demos.toy_compare import TOY_STEPS, run_toy_comparison
    from ..errors import ConfigError

    if args.seeds < 1:
        raise ConfigError("--seeds", args.seeds, "must be >= 1")
    console = Console(stderr=True)
    figures = run_toy_comparison(
        seeds=args.seeds,
        first_seed=args.seed,
        run_dir=args.run_dir,
        steps=args.steps or TOY_STEPS,
        executor=args.executor,
        workers=args.workers,
        storage_for=(lambda method, seed: args.storage),
        progress=(lambda line: None) if args.json else console.print,
    )
    if args.json:
        print_json(figures)
        return 0
    table = Table(title=f"Toy example: Q(θ) = 1.2 − (θ0² + θ1²), {args.seeds} seeds")
    for column in (
        "method",
        "best Q (mean)",
        "± std",
        "mean step to Q ≥ 1.19",
        "seeds reaching 1.19",
    ):
        table.add_column(column)
    for method in ("pbt", "grid", "explore_only", "exploit_only"):
        row = figures[method]
        hit = row["steps_to_1.19"]
        table.add_row(
            method,
            f"{row['best_q']:.4f}",
            f"{row['best_q_std']:.4f}",
            "—" if hit is None else f"{hit:.1f}",
            f"{row['seeds_reaching_1.19']}/{args.seeds}",
        )
    Console().print(table)
    print(f"runs kept in {figures['settings']['run_dir']}")
    return 0
