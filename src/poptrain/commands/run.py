"""``poptrain run CONFIG``: a run described by a JSON (or TOML) file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .common import add_execution_options, add_progress_options, execution_kwargs, live, print_json

__all__ = ["print_result", "register"]

if TYPE_CHECKING:
    from ..results import Result


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "run",
        help="run PBT from a config file",
        description="CONFIG is a JSON or TOML file with the fields of poptrain.RunConfig: "
        'trainable ("module:Class"), space ({"lr": {"type": "LogUniform", "low": 1e-4, '
        '"high": 0.1}}), metric, mode, population_size, max_steps, and optionally ready, '
        'exploit, explore ({"type": "Perturb", ...}), synchronous, seed.',
    )
    parser.add_argument("config", help="path to the config file")
    add_progress_options(parser)
    add_execution_options(parser)
    parser.set_defaults(func=_run)


def _read_config(path: str) -> dict[str, Any]:
    from ..errors import ConfigError

    file = Path(path)
    if not file.is_file():
        raise ConfigError("config", path, "no such file")
    text = file.read_text()
    try:
        if file.suffix == ".toml":
            import tomllib

            return tomllib.loads(text)
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError("config", path, f"cannot be parsed: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError("config", path, "must hold an object of RunConfig fields")
    return data


def _run(args: argparse.Namespace) -> int:
    import time

    from ..api import run
    from ..config import RunConfig

    config = RunConfig.from_spec(_read_config(args.config))
    if args.run_dir is None:  # chosen here so that a Ctrl-C can say where to resume
        args.run_dir = str(Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
    result = run(config, run_dir=args.run_dir, progress=live(args), **execution_kwargs(args))
    if args.workers == 0:  # created only: `poptrain worker` processes serve it
        from .worker import print_created

        return print_created(result.run, args.run_dir, args.json)
    return print_result(result, args)


def print_result(result: Result, args: argparse.Namespace) -> int:
    """The end of ``run`` and ``resume``: the best state and its schedule (or JSON)."""
    best = result.best
    summary = {
        "run": result.run,
        "run_dir": args.run_dir,
        "status": result.status,
        "best": None if best is None else best.summary(),
        "schedule": [{"step": e.step, "hparams": e.hparams} for e in result.schedule],
    }
    if args.json:
        print_json(summary)
        return 0
    if best is None:
        print(f"run {result.run}: {result.status}, no member produced a usable score")
        return 1
    print(
        f"run {result.run}: {result.status}; best {result.config.metric} = {best.score:.6g} "
        f"(member {best.member}, step {best.step})"
    )
    for entry in result.schedule:
        print(f"  from step {entry.step:>6}: {entry.hparams}")
    print(f"best checkpoint: {best.checkpoint}")
    print(f"run directory: {args.run_dir} (poptrain report/plot/replay/export {args.run_dir})")
    return 0
