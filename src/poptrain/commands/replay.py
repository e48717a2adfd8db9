"""``poptrain replay RUN_DIR``: retrain the winner from scratch following its schedule."""

from __future__ import annotations

import argparse
import sys

from .common import print_json

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "replay",
        help="retrain the best weights from scratch following the recorded schedule",
        description="Build the Trainable with the seed of the member the winning weights "
        "began with, train them for as many steps as they went through, switching "
        "hyperparameters where the schedule says, evaluate, and compare with the score the "
        "run recorded. No population, store writes or workers.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (holds run.json)")
    parser.add_argument(
        "--member",
        type=int,
        default=None,
        help="replay this member's current weights (up to its last checkpoint) instead",
    )
    parser.add_argument(
        "--save",
        metavar="DIR",
        default=None,
        help="save the replayed Trainable's state into DIR (Trainable.save)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=_replay)


def _replay(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..replay import replay
    from ..report import read_run_dir
    from ..results import ScheduleEntry

    _, result = read_run_dir(args.run_dir)

    def show(age: int, entry: ScheduleEntry) -> None:
        if not args.json:
            values = ", ".join(
                f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in entry.hparams.items()
            )
            print(f"  from step {age:>6} (member {entry.member}): {values}", file=sys.stderr)

    outcome = replay(result, member=args.member, on_change=show, keep=args.save is not None)
    if args.save is not None:
        assert outcome.trainable is not None
        folder = Path(args.save)
        folder.mkdir(parents=True, exist_ok=True)
        outcome.trainable.save(folder)
    if args.json:
        print_json(outcome.to_dict())
        return 0
    metric = result.config.metric
    what = "the best weights" if args.member is None else f"member {args.member}"
    print(f"replayed {what}: {outcome.steps} steps from seed {outcome.seed}")
    print(f"replayed {metric} = {outcome.replayed_score:.10g}")
    if outcome.original_score is not None:
        print(
            f"original {metric} = {outcome.original_score:.10g} "
            f"(difference {outcome.difference:.3g})"
        )
    if args.save is not None:
        print(f"state saved in {args.save}")
    return 0
