"""The ``poptrain`` command. It only wires: each sub-command lives in ``poptrain.commands``."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from .errors import PopTrainError
from .executors import Interrupted

__all__ = ["main"]

#: Modules of ``poptrain.commands``; each has ``register(subparsers)`` which sets ``func``.
COMMANDS = ("demo", "run", "resume", "report", "plot", "replay", "export", "worker")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="poptrain", description="Population Based Training: run, report, plot, replay."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the engine does")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"poptrain.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except PopTrainError as exc:
        # A user's mistake or an unusable resource: the message, no traceback.
        print(f"poptrain: error: {exc}", file=sys.stderr)
        return 2
    except (Interrupted, KeyboardInterrupt):
        where = getattr(args, "run_dir", None)
        hint = f"; continue with: poptrain resume {where}" if where else ""
        print(f"poptrain: interrupted, everything so far is saved{hint}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`poptrain ... | head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
