"""Ray: one Ray actor per worker, placed by Ray on the nodes of a cluster.

Each actor runs :func:`poptrain.worker.serve` exactly as a local worker process does; the
store and the checkpoint location are the only things workers share, so this module
holds no PBT logic. Resources are per worker (``num_cpus_per_worker``,
``num_gpus_per_worker``, custom ``resources_per_worker``); Ray sets
``CUDA_VISIBLE_DEVICES`` in each actor to the GPUs it was given. A worker's owner name
(``evaluations.owner`` and ``members.owner`` in the store) holds its host, its pid and
its Ray node id, so the store shows where each step ran.

Start a cluster with ``ray start --head`` on one host and ``ray start --address=HEAD:PORT``
on the others, then pass ``address="HEAD:PORT"`` (or set ``RAY_ADDRESS``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import replace
from typing import Any

from ..errors import ConfigError
from ..worker import WorkerSpec, serve
from .base import Interrupted

try:
    import ray
except ImportError:  # pragma: no cover - the error names the extra to install
    raise ConfigError("executor", "ray", "needs Ray: pip install 'poptrain[ray]'") from None

__all__ = ["RayExecutor", "node_of_owner"]

log = logging.getLogger(__name__)

#: How often a Ray worker looks at the run's stop flag (a Ctrl-C on the driver).
_STOP_POLL_SECONDS = 0.5
#: How long a Ctrl-C waits for workers to checkpoint and leave.
_DRAIN_SECONDS = 60.0


def node_of_owner(owner: str | None) -> str | None:
    """The Ray node id recorded in a Ray worker's owner name (None for other workers)."""
    if not owner or "-node" not in owner:
        return None
    return owner.rsplit("-node", 1)[1].split("-", 1)[0] or None


def _check_reachable(address: str, timeout: float) -> None:
    """Fail in seconds, not minutes, when nothing listens at ``host:port``."""
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", "local": Ray resolves these itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(
            "ray_address", address, f"cannot be reached ({exc}): is `ray start --head` running?"
        ) from None


@ray.remote(num_cpus=0)
class _StopFlag:
    """Set by the driver on Ctrl-C; every worker polls it and stops after its step."""

    def __init__(self) -> None:
        self.value = False

    def set(self) -> None:
        self.value = True

    def is_set(self) -> bool:
        return self.value


@ray.remote
class _WorkerActor:
    """One worker: serves members of the run until it is done or the flag is set."""

    def where(self) -> tuple[str, str, int]:
        return socket.gethostname(), ray.get_runtime_context().get_node_id(), os.getpid()

    def serve(self, spec: WorkerSpec, flag: Any) -> int:
        stop = threading.Event()
        done = threading.Event()

        def poll() -> None:
            while not done.wait(_STOP_POLL_SECONDS):
                try:
                    if ray.get(flag.is_set.remote()):
                        stop.set()
                        return
                except Exception:  # the driver went away: stop after this step
                    stop.set()
                    return

        watcher = threading.Thread(target=poll, name="poptrain-stop-flag", daemon=True)
        watcher.start()
        try:
            return serve(spec, should_stop=stop.is_set)
        finally:
            done.set()


class RayExecutor:
    """Run ``workers`` workers as Ray actors (default: as many as the cluster's CPUs allow).

    Connects at construction, so a wrong address fails before the run is created.
    A worker whose actor dies (its node was lost, the process was killed) gives its
    members back and is replaced, up to ``max_restarts`` times in all.
    ``scheduling_strategy`` is Ray's (``"SPREAD"`` puts workers on as many nodes as it
    can; ``"DEFAULT"`` packs them). ``runtime_env`` is passed to ``ray.init`` (e.g.
    ``{"working_dir": "."}`` to ship the code of your Trainable to the other nodes).
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        address: str | None = None,
        num_cpus_per_worker: float = 1.0,
        num_gpus_per_worker: float = 0.0,
        resources_per_worker: Mapping[str, float] | None = None,
        scheduling_strategy: str = "SPREAD",
        max_restarts: int = 8,
        runtime_env: Mapping[str, Any] | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        for name, value in (
            ("num_cpus_per_worker", num_cpus_per_worker),
            ("num_gpus_per_worker", num_gpus_per_worker),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(name, value, "must be a number >= 0")
        if workers is not None and (
            isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
        ):
            raise ConfigError("workers", workers, "must be an integer >= 1")
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.num_cpus = float(num_cpus_per_worker)
        self.num_gpus = float(num_gpus_per_worker)
        self.resources = {str(k): float(v) for k, v in (resources_per_worker or {}).items()}
        self.scheduling_strategy = scheduling_strategy
        self.max_restarts = max_restarts
        self._connect(runtime_env, connect_timeout)
        self._check_feasible()
        self.workers = self._default_workers() if workers is None else workers

    # -- set-up --------------------------------------------------------------------------
    def _connect(self, runtime_env: Mapping[str, Any] | None, timeout: float) -> None:
        if self.address:
            _check_reachable(self.address, timeout)
        if ray.is_initialized():
            return  # this process is connected already (e.g. the user called ray.init)
        try:
            ray.init(
                address=self.address,
                runtime_env=dict(runtime_env) if runtime_env else None,
                logging_level=logging.WARNING,
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError("ray_address", self.address, f"cannot connect: {exc}") from None

    def _need(self) -> dict[str, float]:
        need = {"CPU": self.num_cpus, "GPU": self.num_gpus, **self.resources}
        return {name: amount for name, amount in need.items() if amount > 0}

    def _check_feasible(self) -> None:
        """Refuse, before training, resources that no node of the cluster has."""
        alive = [n for n in ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call]
        nodes = [n["Resources"] for n in alive]
        need = self._need()
        if not any(all(node.get(k, 0.0) >= v for k, v in need.items()) for node in nodes):
            largest = [{k: node.get(k, 0.0) for k in need} for node in nodes] or "no live nodes"
            raise ConfigError(
                "resources per worker", need, f"no node of the Ray cluster has them: {largest}"
            )

    def _default_workers(self) -> int:
        total = ray.cluster_resources()  # type: ignore[no-untyped-call]
        slots = [int(total.get(k, 0.0) // v) for k, v in self._need().items()]
        return max(1, min(slots)) if slots else 1

    def _actor(self) -> Any:
        return _WorkerActor.options(  # type: ignore[attr-defined]
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus,
            resources=self.resources or None,
            scheduling_strategy=self.scheduling_strategy,
            max_restarts=0,
            max_task_retries=0,
        ).remote()

    # -- Executor ------------------------------------------------------------------------
    def execute(
        self,
        spec_for: Callable[[int], WorkerSpec],
        *,
        on_lost: Callable[[WorkerSpec], None],
        abort_reason: Callable[[], str | None],
    ) -> None:
        flag = _StopFlag.remote()  # type: ignore[attr-defined]
        # An actor is placed first ("where": its host, node and pid name its owner), then
        # serves; ObjectRef -> (phase, worker index, actor, spec).
        pending: dict[Any, tuple[str, int, Any, WorkerSpec]] = {}
        restarts = 0
        stopping = False

        def start(index: int, spec: WorkerSpec) -> None:
            actor = self._actor()
            pending[actor.where.remote()] = ("where", index, actor, spec)

        for index in range(self.workers):
            start(index, spec_for(index))
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in ready:
                    phase, index, actor, spec = pending.pop(ref)
                    try:
                        answer = ray.get(ref)
                    except (ray.exceptions.RayError, ConfigError) as exc:
                        error: BaseException | None = exc
                    else:
                        error = None
                    if error is None and phase == "where" and not stopping:
                        host, node, pid = answer
                        owner = f"w{index}-{host}-{pid}-node{node}-{uuid.uuid4().hex[:6]}"
                        spec = replace(spec, owner=owner)
                        pending[actor.serve.remote(spec, flag)] = ("serve", index, actor, spec)
                        continue
                    _kill(actor)
                    if error is None or stopping:
                        if error is not None and phase == "serve":
                            on_lost(spec)
                        continue
                    if phase == "serve":
                        on_lost(spec)
                    if abort_reason() is not None:
                        stopping = True
                        flag.set.remote()
                        continue
                    if restarts >= self.max_restarts:
                        log.error("worker %s failed (%s); no restarts left", spec.owner, error)
                        continue
                    restarts += 1
                    log.warning("worker %s failed (%s); starting another", spec.owner, error)
                    start(index, spec_for(index))
        except KeyboardInterrupt:
            flag.set.remote()
            self._drain(pending, on_lost)
            raise Interrupted() from None
        finally:
            _kill(flag)

    @staticmethod
    def _drain(
        pending: dict[Any, tuple[str, int, Any, WorkerSpec]],
        on_lost: Callable[[WorkerSpec], None],
    ) -> None:
        """Let workers checkpoint and leave; force out any that does not in time."""
        with suppress(KeyboardInterrupt):  # a second Ctrl-C: stop at once
            ray.wait(list(pending), num_returns=len(pending), timeout=_DRAIN_SECONDS)
        for ref, (phase, _index, actor, spec) in pending.items():
            finished = False
            try:
                ready, _ = ray.wait([ref], timeout=0)
                if ready:
                    ray.get(ref)
                    finished = True
            except ray.exceptions.RayError:
                pass
            _kill(actor)
            if phase == "serve" and not finished:
                on_lost(spec)
        pending.clear()


def _kill(actor: Any) -> None:
    try:
        ray.kill(actor, no_restart=True)
    except Exception as exc:  # already gone
        log.debug("could not kill actor: %s", exc)
