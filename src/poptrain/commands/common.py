"""Options shared by the commands that start training."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..executors import EXECUTORS

__all__ = ["add_execution_options", "execution_kwargs", "print_json"]


def add_execution_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", help="where the run keeps its store, checkpoints and run.json")
    parser.add_argument(
        "--storage",
        help="population store URL (default: SQLite in the run directory), "
        "e.g. postgresql+psycopg://user@host:5432/db",
    )
    parser.add_argument("--executor", choices=EXECUTORS, default="local", help="where workers run")
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: CPU cores)"
    )


def execution_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "storage": args.storage,
        "executor": args.executor,
        "workers": args.workers,
    }


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
