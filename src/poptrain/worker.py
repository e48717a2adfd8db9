"""Algorithm 1's loop for the members one worker serves.

A worker claims a member from the store, trains it step by step, tells the population
core each score and applies the decision it gets back (load another member's checkpoint,
use new hyperparameters, wait at the barrier, stop). User code runs here, never in the
controller. The worker knows the store URL, the run's name and the checkpoint location,
nothing else, so it can run in a local process, a Ray actor or on another host.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .checkpoints import open_checkpoints
from .decision import Continue, Exploit, Stop, Wait
from .errors import ConfigError
from .population import Population
from .store import LeaseLost, MemberRecord, StoreUnavailable, open_store
from .trainable import Trainable, score_of

__all__ = ["WorkerSpec", "default_owner", "serve"]

log = logging.getLogger(__name__)

StopFlag = Callable[[], bool]


def default_owner(prefix: str = "worker") -> str:
    """A name unique across hosts and processes: host, pid and a random suffix."""
    return f"{prefix}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs to join a run (plain, picklable values)."""

    storage: str
    run: str
    checkpoint_root: str
    owner: str = field(default_factory=default_owner)
    #: Give the member back at every ready point so that N members rotate on W < N workers.
    rotate: bool = False
    lease_seconds: float = 600.0
    poll_seconds: float = 0.05


@dataclass
class _Live:
    """The trainable this worker holds in memory, and which state of which member it is."""

    member: int
    version: int
    step: int
    trainable: Trainable


class _Fatal(Exception):
    """A user error that no retry can mend (e.g. evaluate() lacks the metric)."""


def serve(spec: WorkerSpec, should_stop: StopFlag = lambda: False) -> int:
    """Serve members of ``spec.run`` until the run is done or ``should_stop()``.

    Returns the number of steps this worker trained.
    """
    store = open_store(spec.storage)
    try:
        checkpoints = open_checkpoints(spec.checkpoint_root)
        population = Population.open(
            store, spec.run, checkpoints, owner=spec.owner, lease_seconds=spec.lease_seconds
        )
        try:
            worker = _Worker(spec, population, should_stop)
        except ConfigError as exc:
            # e.g. the trainable cannot be imported: no restart can mend it, stop the run.
            store.set_run_status(spec.run, f"error: {exc}")
            raise
        with _Heartbeat(population, spec.lease_seconds / 3):
            return worker.loop()
    finally:
        store.close()


class _Heartbeat:
    """Extends the leases of the members this worker holds, every ``lease_seconds / 3``.

    A step longer than the lease keeps its member; a worker that died (host lost, process
    killed) stops renewing, and after its lease another worker reclaims the member from
    its last checkpoint.
    """

    def __init__(self, population: Population, interval: float) -> None:
        self.population = population
        self.interval = max(interval, 0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="poptrain-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.population.renew_leases()
            except Exception as exc:  # the next beat tries again; the lease has slack
                log.warning("could not renew leases: %s", exc)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


class _Worker:
    def __init__(self, spec: WorkerSpec, population: Population, should_stop: StopFlag) -> None:
        self.spec = spec
        self.population = population
        self.config = population.config
        self.cls = self.config.trainable_class()
        self.options: dict[str, Any] = dict(self.config.trainable_options)
        self.should_stop = should_stop
        self.live: _Live | None = None
        self.steps = 0

    def loop(self) -> int:
        idle = self.spec.poll_seconds
        while not self.should_stop():
            record = self.population.claim()
            if record is None:
                if self.population.is_done():
                    break
                time.sleep(idle)
                idle = min(idle * 1.5, 0.25)  # short: a barrier may open at any moment
                continue
            idle = self.spec.poll_seconds
            try:
                self._serve_member(record)
            except LeaseLost:
                log.warning("lost the lease on member %s; dropping it", record.member)
                self._drop()
            except StoreUnavailable as exc:
                # A write was lost with the connection: go on from what the store has.
                log.warning("member %s goes back to its last checkpoint: %s", record.member, exc)
                self._drop()
                self.population.abandon()
            except ConfigError as exc:
                self.population.store.set_run_status(self.spec.run, f"error: {exc}")
                raise
        return self.steps

    # -- one member ---------------------------------------------------------------
    def _build(
        self, record: MemberRecord, hparams: dict[str, Any], checkpoint: str | None
    ) -> Trainable:
        trainable = self.cls(hparams, record.seed, **self.options)
        if checkpoint is not None:
            trainable.load(self.population.checkpoints.path(checkpoint))
            # The checkpoint may carry its writer's settings (an optimiser's lr): the
            # member's own hyperparameters win.
            trainable.set_hparams(hparams)
        return trainable

    def _prepare(self, record: MemberRecord) -> Trainable:
        live = self.live
        if (
            live is not None
            and live.member == record.member
            and live.version == record.version
            and live.step == record.step
        ):
            return live.trainable
        self._drop()
        return self._build(record, record.hparams, record.checkpoint)

    def _drop(self) -> None:
        """Forget the trainable held in memory, letting it release its resources."""
        if self.live is not None:
            live, self.live = self.live, None
            live.trainable.close()

    def _serve_member(self, record: MemberRecord) -> None:
        member, step = record.member, record.step
        population = self.population
        state = population.held(member)  # the core updates this object in place
        try:
            trainable: Trainable | None = self._prepare(record)
        except ConfigError:
            raise
        except Exception:
            trainable = None
            decision = population.fail(member, step, _error_text("setup/load"))
            if isinstance(decision, Stop):
                return
            trainable, step = self._rebuild_after_failure(state, decision)

        while True:
            assert trainable is not None
            if self.should_stop():
                population.suspend(member, save=self._saver(trainable, member, step))
                self._remember(state, trainable)
                return
            try:
                step += 1
                self.steps += 1
                trainable.step()
                score = score_of(trainable.evaluate(), self.config.metric)
                if not math.isfinite(score):
                    raise FloatingPointError(f"evaluate() gave {self.config.metric}={score}")
                decision = population.tell(
                    member, step, score, save=self._saver(trainable, member, step)
                )
            except (ConfigError, LeaseLost, StoreUnavailable, KeyboardInterrupt):
                raise
            except Exception:
                decision = population.fail(member, step, _error_text(f"step {step}"))
                trainable.close()
                if isinstance(decision, Stop):
                    self.live = None
                    return
                trainable, step = self._rebuild_after_failure(state, decision)
                continue

            if isinstance(decision, Continue):
                if decision.ready and self.spec.rotate:
                    population.release(member)
                    self._remember(state, trainable)
                    return
                continue
            if isinstance(decision, Exploit):
                if decision.checkpoint is not None:
                    trainable.load(population.checkpoints.path(decision.checkpoint))
                trainable.set_hparams(decision.hparams)
                if self.spec.rotate:
                    population.release(member)
                    self._remember(state, trainable)
                    return
                continue
            if isinstance(decision, Wait):
                self._remember(state, trainable)
                return
            if isinstance(decision, Stop):
                trainable.close()
                self.live = None
                return

    def _rebuild_after_failure(self, state: MemberRecord, decision: Any) -> tuple[Trainable, int]:
        """After a failure the live state is suspect: build afresh from the decision."""
        assert isinstance(decision, Exploit)
        self.live = None
        return self._build(state, decision.hparams, decision.checkpoint), state.step

    def _saver(self, trainable: Trainable, member: int, step: int) -> Callable[[], str]:
        """What the core calls when it wants this member's state kept."""
        checkpoints = self.population.checkpoints
        return lambda: checkpoints.save(member, step, trainable.save)

    def _remember(self, state: MemberRecord, trainable: Trainable) -> None:
        """Keep the trainable in memory in case this worker gets the same member back.

        ``state`` is the core's record object for the member; a later change made by
        another process (a synchronous barrier) bumps the stored version, so the cache
        is only reused while it matches.
        """
        if self.live is not None and self.live.trainable is not trainable:
            self.live.trainable.close()
        self.live = _Live(state.member, state.version, state.step, trainable)


def _error_text(where: str) -> str:
    return f"{where}: {traceback.format_exc(limit=8).strip()}"
