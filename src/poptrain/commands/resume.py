"""``poptrain resume RUN_DIR``: continue a stopped run (Ctrl-C, crash) where it left off."""

from __future__ import annotations

import argparse

from .common import add_progress_options, add_worker_options, executor_of, live
from .run import print_result

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "resume",
        help="continue a stopped run (Ctrl-C, crash) from its store and checkpoints",
        description="Continue the run in RUN_DIR. Members held by workers that are gone go "
        "back to their last checkpoint: at most the steps since then are trained again "
        "(each is recorded as a rollback event). A finished run returns at once.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (holds run.json)")
    add_progress_options(parser)
    add_worker_options(parser)
    parser.set_defaults(func=_resume)


def _resume(args: argparse.Namespace) -> int:
    from ..api import resume

    result = resume(
        args.run_dir, executor=executor_of(args), workers=args.workers, progress=live(args)
    )
    return print_result(result, args)
