"""``poptrain worker``: join a run from any host and serve its members until it ends.

A plain process, so Slurm, Kubernetes or a shell loop can supply workers::

    poptrain run config.json --storage postgresql+psycopg://pt@db:5432/pbt \\
        --checkpoints /nfs/pbt/ckpt --run-dir runs/r1 --workers 0      # create only
    poptrain worker --storage postgresql+psycopg://pt@db:5432/pbt --run r1   # on each host

Members are claimed under leases that a heartbeat renews; a member held by a worker that
died goes to another worker once its lease runs out, from its last checkpoint.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from types import FrameType
from typing import Any

__all__ = ["join_command", "print_created", "register"]

#: Default lease: a dead worker's member waits this long before another takes it over.
LEASE_SECONDS = 60.0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "worker",
        help="join a run from any host and serve its members until the run ends",
        description="Serve members of an existing run: claim a free member, train it, give "
        "it back at its ready points, until every member is done. Start as many as you "
        "like, on any hosts that reach the store and the checkpoint location. The run is "
        "named by RUN_DIR (its run.json), or by --storage and --run.",
    )
    parser.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="a run directory")
    parser.add_argument("--storage", help="the run's store URL (e.g. postgresql+psycopg://…)")
    parser.add_argument("--run", dest="run_name", metavar="NAME", help="the run's name")
    parser.add_argument(
        "--checkpoints",
        metavar="LOCATION",
        help="the checkpoint location as this host sees it (default: the one the run records)",
    )
    parser.add_argument(
        "--lease-seconds",
        type=float,
        default=LEASE_SECONDS,
        help="how long a member stays reserved for this worker without a heartbeat "
        f"(renewed every third of it; default {LEASE_SECONDS:g})",
    )
    parser.add_argument("--owner", help="the name this worker records (default: host and pid)")
    parser.set_defaults(func=_worker)


def _target(args: argparse.Namespace) -> tuple[str, str, str | None]:
    """The store URL, run name and checkpoint location from RUN_DIR and the options."""
    from ..api import RunDir
    from ..errors import ConfigError

    storage, name, checkpoints = args.storage, args.run_name, args.checkpoints
    if args.run_dir is not None:
        info = RunDir.read(args.run_dir)
        storage = storage or info.storage
        name = name or info.name
        checkpoints = checkpoints or info.checkpoints
    if not storage or not name:
        raise ConfigError(
            "run", name or args.run_dir, "give a run directory, or both --storage and --run"
        )
    return storage, name, checkpoints


def _worker(args: argparse.Namespace) -> int:
    from ..checkpoints import open_checkpoints
    from ..errors import ConfigError
    from ..population import check_store_is_usable
    from ..store import open_store
    from ..worker import WorkerSpec, default_owner, serve

    if not args.lease_seconds > 0:
        raise ConfigError("--lease-seconds", args.lease_seconds, "must be > 0")
    storage, name, checkpoints = _target(args)
    store = open_store(storage)  # fails here, before any training, if it is unusable
    try:
        check_store_is_usable(store)
        record = store.get_run(name)
        if record is None:
            raise ConfigError("--run", name, "no such run in that store")
        if record.status.startswith("error"):
            raise ConfigError("--run", name, f"stopped with an error: {record.status}")
        location = checkpoints or record.checkpoints
        if location is None:
            raise ConfigError("--checkpoints", None, "the run records none: give the location")
        open_checkpoints(location)  # fails here if this host cannot write it
        if record.status in ("created", "interrupted", "incomplete"):
            store.set_run_status(name, "running")
        spec = WorkerSpec(
            storage=storage,
            run=name,
            checkpoint_root=location,
            owner=args.owner or default_owner("worker"),
            # The pool's size is unknown: give members back at ready points so that
            # every member advances even when workers are fewer than members.
            rotate=True,
            lease_seconds=args.lease_seconds,
        )
        stop = threading.Event()
        restore = _stop_on_signals(stop)
        try:
            steps = serve(spec, should_stop=stop.is_set)
        finally:
            restore()
        done = all(m.status.is_terminal() for m in store.members(name))
        if stop.is_set() and not done:
            print(
                f"poptrain worker {spec.owner}: stopped after {steps} steps; its members are "
                "checkpointed and free for other workers",
                file=sys.stderr,
            )
            return 130
        current = store.get_run(name)
        if done and current is not None and not current.status.startswith("error"):
            store.set_run_status(name, "finished")
        print(
            f"poptrain worker {spec.owner}: run {name} is done; this worker trained {steps} steps"
        )
        return 0
    finally:
        store.close()


def _stop_on_signals(stop: threading.Event) -> Any:
    """SIGINT and SIGTERM (Slurm, Kubernetes) stop after the current step; a second one at once."""
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def join_command(run: str, storage: str) -> str:
    """The command that starts a worker for ``run`` (printed by ``run --workers 0``)."""
    return shlex.join(["poptrain", "worker", "--storage", storage, "--run", run])


def print_created(run: str, run_dir: str, as_json: bool) -> int:
    """What ``poptrain run --workers 0`` prints: how to start workers for the new run."""
    from ..api import RunDir
    from .common import print_json

    command = join_command(run, RunDir.read(run_dir).storage)
    if as_json:
        print_json({"run": run, "run_dir": run_dir, "status": "created", "worker": command})
    else:
        print(f"run {run} created in {run_dir}; start workers on any host with:\n  {command}")
    return 0
