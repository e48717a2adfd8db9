"""``run`` and ``resume``: wiring config, store, checkpoints and an executor together."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoints import CheckpointStorage, open_checkpoints
from .config import RunConfig
from .errors import ConfigError
from .executors import Executor, Interrupted, make_executor
from .population import Population, check_store_is_usable
from .progress import LiveProgress
from .results import Result
from .space import Distribution
from .store import MemberStatus, PopulationStore, open_store, sqlite_url
from .strategies import (
    EverySteps,
    ExploitStrategy,
    ExploreStrategy,
    Perturb,
    ReadyStrategy,
    Truncation,
)
from .trainable import Trainable
from .worker import WorkerSpec, default_owner

__all__ = ["RunDir", "resume", "run", "run_config"]

RUN_FILE = "run.json"
_DEFAULT = object()


@dataclass(frozen=True)
class RunDir:
    """A run directory: ``run.json`` says where the store and the checkpoints are.

    Layout::

        RUN_DIR/run.json        name, storage URL, checkpoint location, configuration
        RUN_DIR/poptrain.db     the SQLite store (unless another storage URL was given)
        RUN_DIR/checkpoints/    one folder per member, plus _best/
    """

    path: Path
    name: str
    storage: str
    checkpoints: str

    @classmethod
    def read(cls, path: str | Path) -> RunDir:
        root = Path(path)
        file = root / RUN_FILE
        if not file.is_file():
            raise ConfigError(
                "run_dir", str(path), f"is not a poptrain run directory (no {RUN_FILE})"
            )
        data = json.loads(file.read_text())
        checkpoints = data["checkpoints"]
        if not Path(checkpoints).is_absolute() and "://" not in checkpoints:
            checkpoints = str(root / checkpoints)
        storage = data["storage"]
        if storage.startswith("sqlite:///") and data.get("storage_relative"):
            storage = sqlite_url(root / data["storage_relative"])
        return cls(root, data["name"], storage, checkpoints)

    def open(self) -> tuple[PopulationStore, CheckpointStorage]:
        store = open_store(self.storage)
        check_store_is_usable(store)
        return store, open_checkpoints(self.checkpoints)

    def result(self) -> Result:
        store, checkpoints = self.open()
        try:
            return Result.load(store, self.name, checkpoints)
        finally:
            store.close()


def run_config(
    trainable: type[Trainable] | str,
    *,
    space: Mapping[str, Distribution],
    metric: str,
    mode: str,
    population_size: int = 8,
    max_steps: int = 100,
    ready: ReadyStrategy | None = None,
    exploit: ExploitStrategy | object | None = _DEFAULT,
    explore: ExploreStrategy | object | None = _DEFAULT,
    synchronous: bool = False,
    seed: int = 0,
    initial_hparams: Sequence[Mapping[str, Any]] | None = None,
    max_failures: int = 3,
    trainable_options: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Build and validate a :class:`RunConfig` (defaults: the paper's PBT)."""
    return RunConfig(
        trainable=trainable,
        space=space,
        metric=metric,
        mode=mode,
        population_size=population_size,
        max_steps=max_steps,
        ready=EverySteps(4) if ready is None else ready,
        exploit=Truncation() if exploit is _DEFAULT else exploit,  # type: ignore[arg-type]
        explore=Perturb() if explore is _DEFAULT else explore,  # type: ignore[arg-type]
        synchronous=synchronous,
        seed=seed,
        initial_hparams=initial_hparams,
        max_failures=max_failures,
        trainable_options=dict(trainable_options or {}),
    )


def run(
    trainable: type[Trainable] | str | RunConfig,
    *,
    run_dir: str | Path | None = None,
    storage: str | None = None,
    checkpoints: str | Path | None = None,
    name: str | None = None,
    executor: str | Executor = "local",
    workers: int | None = None,
    progress: bool = False,
    **config: Any,
) -> Result:
    """Run Population Based Training and return its :class:`Result`.

    Example::

        result = poptrain.run(
            MyNet,
            space={"lr": poptrain.LogUniform(1e-4, 1e-1), "momentum": poptrain.Uniform(0.0, 0.99)},
            metric="accuracy", mode="max",
            population_size=8, max_steps=200, workers=2,
        )
        print(result.best.score, result.schedule)

    ``trainable`` is a :class:`Trainable` subclass (or ``"module:Class"``) with the
    :func:`run_config` keywords, or a ready :class:`RunConfig`. The run directory (default
    ``runs/<time>``) holds the SQLite store (unless ``storage`` names another database),
    the checkpoints (unless ``checkpoints`` names another location) and ``run.json``.
    Ctrl-C stops the workers after their current step; every member is checkpointed and
    the run can be continued with :func:`resume`. ``progress=True`` draws a live table of
    the population in the terminal.

    On a cluster, ``storage`` is a server database (``postgresql+psycopg://…``),
    ``checkpoints`` a folder every host mounts or an fsspec URL (``s3://…``), and
    ``executor`` is ``"ray"`` (or a :class:`~poptrain.executors.ray.RayExecutor`).
    ``workers=0`` only creates the run and returns (status ``created``): processes
    started with ``poptrain worker`` on any host then serve it.
    """
    cfg = trainable if isinstance(trainable, RunConfig) else run_config(trainable, **config)
    if isinstance(trainable, RunConfig) and config:
        raise ConfigError("run", sorted(config), "takes no config keywords with a ready RunConfig")
    # workers=0: create the run for `poptrain worker` processes to serve (on other hosts,
    # which may be the only ones able to import the trainable).
    chosen = None if workers == 0 else make_executor(executor, workers=workers)
    if chosen is not None:
        cfg.trainable_class()  # a "module:Class" that does not import is refused up front
    root = Path(run_dir) if run_dir is not None else Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    if (root / RUN_FILE).exists():
        raise ConfigError(
            "run_dir", str(root), "already holds a run: use resume, or another folder"
        )
    root.mkdir(parents=True, exist_ok=True)
    run_name = name or root.resolve().name
    url = storage or sqlite_url(root / "poptrain.db")
    checkpoint_location = str(checkpoints) if checkpoints is not None else "checkpoints"
    store = open_store(url)
    try:
        check_store_is_usable(store)
        ckpts = open_checkpoints(
            checkpoint_location
            if Path(checkpoint_location).is_absolute() or "://" in checkpoint_location
            else root / checkpoint_location
        )
        Population.create(store, run_name, cfg, ckpts)
        info = {
            "name": run_name,
            "storage": url,
            "storage_relative": "poptrain.db" if storage is None else None,
            "checkpoints": checkpoint_location,
            "created": time.time(),
            "config": cfg.to_spec(),
        }
        (root / RUN_FILE).write_text(json.dumps(info, indent=2) + "\n")
        if chosen is None:
            return Result.load(store, run_name, ckpts)
        return _execute(store, RunDir.read(root), ckpts, chosen, cfg, progress)
    finally:
        store.close()


def resume(
    run_dir: str | Path,
    *,
    executor: str | Executor = "local",
    workers: int | None = None,
    progress: bool = False,
) -> Result:
    """Continue a stopped run (Ctrl-C, crash) from its store and checkpoints.

    Members go back to their last checkpoint; at most the steps since then are redone.
    """
    info = RunDir.read(run_dir)
    chosen = make_executor(executor, workers=workers)
    store, ckpts = info.open()
    try:
        record = store.get_run(info.name)
        if record is None:
            raise ConfigError(
                "run_dir", str(run_dir), f"names run {info.name!r}, not in {info.storage}"
            )
        # Nobody serves this run now: members still marked as held were held by dead workers.
        for member in store.members(info.name):
            if member.status == MemberStatus.RUNNING and member.owner is not None:
                store.release_owner(info.name, member.owner)
        cfg = RunConfig.from_spec(record.config)
        return _execute(store, info, ckpts, chosen, cfg, progress)
    finally:
        store.close()


def _execute(
    store: PopulationStore,
    info: RunDir,
    ckpts: CheckpointStorage,
    executor: Executor,
    cfg: RunConfig,
    progress: bool,
) -> Result:
    members = cfg.population_size
    rotate = executor.workers < members

    def spec_for(index: int) -> WorkerSpec:
        return WorkerSpec(
            storage=info.storage,
            run=info.name,
            checkpoint_root=ckpts.location,
            owner=default_owner(f"w{index}"),
            rotate=rotate,
        )

    def on_lost(spec: WorkerSpec) -> None:
        store.release_owner(info.name, spec.owner)

    def abort_reason() -> str | None:
        record = store.get_run(info.name)
        if record is not None and record.status.startswith("error"):
            return record.status
        return None

    store.set_run_status(info.name, "running")
    display = LiveProgress(store, info.name, cfg) if progress else nullcontext()
    try:
        with display:
            executor.execute(spec_for, on_lost=on_lost, abort_reason=abort_reason)
    except Interrupted:
        store.set_run_status(info.name, "interrupted")
        raise
    reason = abort_reason()
    if reason is not None:
        raise ConfigError("run", info.name, reason.removeprefix("error: "))
    done = all(m.status.is_terminal() for m in store.members(info.name))
    store.set_run_status(info.name, "finished" if done else "incomplete")
    return Result.load(store, info.name, ckpts)
