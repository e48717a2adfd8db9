"""``poptrain demo``: the digits demo (the default) and the paper's toy example."""

from __future__ import annotations

import argparse
from dataclasses import asdict, replace
from typing import Any

from rich.console import Console
from rich.table import Table

from .common import (
    add_execution_options,
    add_progress_options,
    executor_of,
    live,
    print_json,
)

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
    digits = kinds.add_parser(
        "digits",
        help="the main demo (the default): a small CNN on scikit-learn's digits; "
        "--compare: PBT vs random and grid search on the same budget",
    )
    _add_digits_options(digits)
    digits.set_defaults(func=_digits)
    # Plain ``poptrain demo [options]`` is ``poptrain demo digits [options]``.
    _add_digits_options(demo)
    demo.set_defaults(func=_digits, demo=None)


def _add_digits_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--compare",
        action="store_true",
        help="run PBT, random search and grid search on the same budget and compare test accuracy",
    )
    parser.add_argument(
        "--seeds", type=int, default=3, help="with --compare: how many seeds (default 3)"
    )
    parser.add_argument("--seed", type=int, default=0, help="the (first) seed (default 0)")
    parser.add_argument("--steps", type=int, default=None, help="steps per member")
    parser.add_argument("--members", type=int, default=None, help="population size (default 8)")
    parser.add_argument(
        "--methods",
        default=None,
        help="with --compare: comma-separated methods among pbt, random_search, grid_search, "
        "tpe (default: pbt,random_search,grid_search)",
    )
    add_progress_options(parser)
    add_execution_options(parser)
    parser.set_defaults(workers=2)


def _digits_settings(args: argparse.Namespace) -> Any:
    from ..demos.digits_compare import DigitsSettings

    settings = DigitsSettings()
    changes = {}
    if args.steps is not None:
        changes["steps"] = args.steps
    if args.members is not None:
        changes["members"] = args.members
    return replace(settings, **changes)


def _digits(args: argparse.Namespace) -> int:
    if args.compare:
        return _digits_compare(args)
    import time

    from ..demos.digits_compare import run_digits, schedule_lines

    settings = _digits_settings(args)
    started = time.perf_counter()
    outcome, test = run_digits(
        "pbt",
        settings=settings,
        seed=args.seed,
        run_dir=args.run_dir,
        storage=args.storage,
        checkpoints=args.checkpoints,
        executor=executor_of(args),
        workers=args.workers,
        progress=live(args),
    )
    seconds = time.perf_counter() - started
    result, best = outcome.results[0], outcome.best
    if args.json:
        print_json(
            {
                "test_accuracy": test,
                "val_accuracy": best.score,
                "best": {
                    "member": best.member,
                    "step": best.step,
                    "age": best.age,
                    "hparams": best.hparams,
                },
                "schedule": [
                    {"step": e.step, "member": e.member, "hparams": e.hparams}
                    for e in result.schedule
                ],
                "steps_trained": outcome.steps_trained,
                "exploits": outcome.exploits,
                "wall_seconds": round(seconds, 2),
                "run_dir": str(outcome.run_dirs[0]),
                "settings": asdict(settings),
            }
        )
        return 0
    out = Console()
    out.print(
        f"[bold]best test accuracy: {test:.4f}[/bold]  (validation {best.score:.4f}; "
        f"member {best.member} at step {best.step}, weights trained {best.age} steps)"
    )
    out.print("winner's hyperparameter schedule:")
    for line in schedule_lines(result):
        out.print(f"  {line}", highlight=False)
    out.print(
        f"{outcome.steps_trained} steps trained by {settings.members} members, "
        f"{outcome.exploits} exploits, {seconds:.0f}s"
    )
    out.print(f"run directory: {outcome.run_dirs[0]}", highlight=False)
    return 0


def _digits_compare(args: argparse.Namespace) -> int:
    from ..demos.digits_compare import COMPARE_METHODS, run_digits_comparison

    methods = (
        COMPARE_METHODS
        if args.methods is None
        else tuple(m.strip() for m in args.methods.split(",") if m.strip())
    )
    settings = _digits_settings(args)
    console = Console(stderr=True)
    figures = run_digits_comparison(
        seeds=args.seeds,
        first_seed=args.seed,
        methods=methods,
        settings=settings,
        run_dir=args.run_dir,
        storage=args.storage,
        checkpoints=args.checkpoints,
        executor=executor_of(args),
        workers=args.workers,
        progress=(lambda line: None) if args.json or args.quiet else console.print,
    )
    if args.json:
        print_json(figures)
        return 0
    table = Table(
        title=f"Digits: test accuracy of each method's best state, {args.seeds} seed(s); "
        f"every run trains {settings.members} members x {settings.steps} steps = "
        f"{figures['budget_steps']} steps"
    )
    table.add_column("method", no_wrap=True)
    for column in ("test (mean)", "± std", "val. (mean)", "test per seed", "steps"):
        table.add_column(column)
    for method in methods:
        row = figures[method]
        table.add_row(
            method,
            f"{row['test_accuracy_mean']:.4f}",
            f"{row['test_accuracy_std']:.4f}",
            f"{row['val_accuracy_mean']:.4f}",
            " ".join(f"{r['test_accuracy']:.4f}" for r in row["runs"]),
            ", ".join(str(s) for s in row["steps_trained"]),
        )
    Console().print(table)
    print(f"runs kept in {figures['settings']['run_dir']}")
    return 0


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
        executor=executor_of(args),
        workers=args.workers,
        storage_for=(lambda method, seed: args.storage),
        checkpoints_for=(
            lambda method, seed: (
                f"{args.checkpoints.rstrip('/')}/{method}-{seed}" if args.checkpoints else None
            )
        ),
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
