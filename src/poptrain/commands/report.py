"""``poptrain report RUN_DIR``: the run's summary, its members and the winner's schedule."""

from __future__ import annotations

import argparse

from .common import print_json

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "report",
        help="summarise a run: members, best score, exploits, utilisation, the winner's schedule",
        description="Summarise a run from its run directory alone (during the run or after "
        "it). --json prints {best, schedule, members, exploits, ...}; see "
        "docs/run-directory.md for every key.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (holds run.json)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from ..report import build_report, read_run_dir, render_report

    _, result = read_run_dir(args.run_dir)
    report = build_report(result, args.run_dir)
    if args.json:
        print_json(report)
    else:
        render_report(report)
    return 0
