"""``poptrain plot RUN_DIR``: the population's development, schedule, lineage, exploration."""

from __future__ import annotations

import argparse

from .common import print_json

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "plot",
        help="draw the run as PNG files (development, schedule, lineage, hyperparameters)",
        description="Write population.png (every member's score, exploits as links, the "
        "winner's lineage highlighted), schedule.png (the winner's hyperparameters by the "
        "age of its weights), lineage.png (who copied whom, when) and hparams.png "
        "(hyperparameters explored vs score), and print their paths.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (holds run.json)")
    parser.add_argument(
        "-o", "--output", default=None, help="folder for the files (default: RUN_DIR/plots)"
    )
    parser.add_argument(
        "--x",
        choices=("step", "time"),
        default="step",
        help="x axis of the development and lineage plots: each member's own step, or "
        "seconds since the run began (default: step)",
    )
    parser.add_argument("--dpi", type=int, default=150, help="resolution (default 150)")
    parser.add_argument("--json", action="store_true", help="print {name: path} as JSON")
    parser.set_defaults(func=_plot)


def _plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..plots import plot_run
    from ..report import read_run_dir

    _, result = read_run_dir(args.run_dir)
    out = Path(args.output) if args.output else Path(args.run_dir) / "plots"
    paths = plot_run(result, out, x=args.x, dpi=args.dpi)
    if args.json:
        print_json({name: str(path) for name, path in paths.items()})
    else:
        for path in paths.values():
            print(path)
    return 0
