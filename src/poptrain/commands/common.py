"""Options shared by the commands that start training."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError
from ..executors import EXECUTORS, Executor, make_executor

__all__ = [
    "add_execution_options",
    "add_progress_options",
    "add_worker_options",
    "execution_kwargs",
    "executor_of",
    "live",
    "print_json",
]


def add_execution_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", help="where the run keeps its store, checkpoints and run.json")
    parser.add_argument(
        "--storage",
        help="population store URL (default: SQLite in the run directory), "
        "e.g. postgresql+psycopg://user@host:5432/db",
    )
    parser.add_argument(
        "--checkpoints",
        metavar="LOCATION",
        help="checkpoint location (default: RUN_DIR/checkpoints): a folder every worker's "
        "host sees (NFS) or an fsspec URL, e.g. s3://bucket/prefix",
    )
    add_worker_options(parser)


def add_worker_options(parser: argparse.ArgumentParser) -> None:
    """``--executor`` and ``--workers``: how a run (or a resumed one) is served."""
    parser.add_argument("--executor", choices=EXECUTORS, default="local", help="where workers run")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (default: CPU cores; with Ray, what the cluster's CPUs allow); "
        "0 with `run`: only create the run, for `poptrain worker` processes to serve",
    )
    parser.add_argument(
        "--ray-address",
        metavar="HOST:PORT",
        action=_RayAddress,
        help="with --executor ray: the cluster's head (`ray start --head` prints it); "
        "default: $RAY_ADDRESS, else a Ray started on this machine",
    )
    parser.add_argument(
        "--cpus-per-worker",
        type=float,
        default=None,
        help="with --executor ray: CPUs Ray reserves for each worker (default 1)",
    )
    parser.add_argument(
        "--gpus-per-worker",
        type=float,
        default=None,
        help="with --executor ray: GPUs for each worker (default 0; Ray sets "
        "CUDA_VISIBLE_DEVICES). Local workers get one GPU each by themselves",
    )


def executor_of(args: argparse.Namespace) -> str | Executor:
    """``--executor`` as ``run``/``resume`` take it; a Ray executor with per-worker resources
    is built (and connects) here, so a bad address fails before the run is created."""
    cpus = getattr(args, "cpus_per_worker", None)
    gpus = getattr(args, "gpus_per_worker", None)
    if cpus is None and gpus is None:
        return str(args.executor)
    if args.executor != "ray":
        option = "--gpus-per-worker" if gpus is not None else "--cpus-per-worker"
        raise ConfigError(option, gpus if gpus is not None else cpus, "needs --executor ray")
    return make_executor(
        "ray",
        workers=args.workers,
        address=getattr(args, "ray_address", None),
        num_cpus_per_worker=1.0 if cpus is None else cpus,
        num_gpus_per_worker=0.0 if gpus is None else gpus,
    )


class _RayAddress(argparse.Action):
    """Exported as ``RAY_ADDRESS``, Ray's own setting, so that every Ray executor the command
    creates (one per run, also inside the demos) connects to that cluster."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        os.environ["RAY_ADDRESS"] = str(values)
        setattr(namespace, self.dest, values)


def add_progress_options(parser: argparse.ArgumentParser) -> None:
    """``--json`` and ``--quiet``; live progress is drawn only on a terminal (see :func:`live`)."""
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--quiet", action="store_true", help="no live progress table while it trains"
    )


def live(args: argparse.Namespace) -> bool:
    """Draw live progress on stderr when it is a terminal, unless ``--quiet`` or ``--json``.

    Redirected output (a log file, CI) gets no redraws; scripts read ``--json`` on stdout.
    """
    quiet = getattr(args, "quiet", False) or getattr(args, "json", False)
    return not quiet and sys.stderr.isatty()


def execution_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "storage": args.storage,
        "checkpoints": getattr(args, "checkpoints", None),
        "executor": executor_of(args),
        "workers": args.workers,
    }


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
