"""``poptrain export RUN_DIR --format csv|jsonl|tensorboard``: every evaluation and event."""

from __future__ import annotations

import argparse
import sys

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "export",
        help="export every evaluation and event as CSV or JSON lines (or TensorBoard scalars)",
        description="Rows in time order. An evaluation row has member, step, age, score, "
        "error, owner and the hyperparameters it was trained with; an event row has kind "
        "(exploit, explore, failure, rollback), source, source_step, new_step, "
        "old_hparams, new_hparams, operations. See docs/run-directory.md.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (holds run.json)")
    parser.add_argument("--format", choices=("csv", "jsonl", "tensorboard"), default="csv")
    parser.add_argument(
        "--only",
        choices=("all", "evaluations", "events"),
        default="all",
        help="which rows (default: all)",
    )
    parser.add_argument(
        "-o",
        "--output",
        default=None,
        help="file to write (default: standard output); for tensorboard a folder "
        "(default: RUN_DIR/tensorboard)",
    )
    parser.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..export import write, write_tensorboard
    from ..report import read_run_dir

    _, result = read_run_dir(args.run_dir)
    if args.format == "tensorboard":
        folder = write_tensorboard(result, args.output or Path(args.run_dir) / "tensorboard")
        print(folder)
        return 0
    if args.output is None:
        write(result, args.format, sys.stdout, kind=args.only)
        return 0
    with open(args.output, "w", newline="", encoding="utf-8") as stream:
        count = write(result, args.format, stream, kind=args.only)
    print(f"{count} rows written to {args.output}", file=sys.stderr)
    return 0
