"""Local processes: W worker processes serving N members on this machine."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from ..errors import ConfigError, PopTrainError
from ..worker import WorkerSpec, default_owner, serve
from .base import Interrupted

__all__ = ["LocalExecutor", "gpu_assignment", "visible_gpus"]

log = logging.getLogger(__name__)


def gpu_assignment(worker_index: int, visible: str | None) -> str | None:
    """The CUDA device a local worker sees: one per worker, round robin over the visible ones."""
    if not visible:
        return None
    devices = [d.strip() for d in visible.split(",") if d.strip()]
    return devices[worker_index % len(devices)] if devices else None


def visible_gpus(
    environ: Mapping[str, str] = os.environ, driver: Path = Path("/proc/driver/nvidia/gpus")
) -> str | None:
    """The GPUs local workers share out, one each: ``CUDA_VISIBLE_DEVICES`` when it is set,
    else every GPU the NVIDIA driver lists (a folder each in ``/proc/driver/nvidia/gpus``)."""
    if "CUDA_VISIBLE_DEVICES" in environ:
        return environ["CUDA_VISIBLE_DEVICES"]
    try:
        count = sum(1 for _ in driver.iterdir())
    except OSError:
        return None  # no NVIDIA driver: nothing to assign
    return ",".join(str(index) for index in range(count)) or None


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Start children with SIGINT ignored, so a Ctrl-C during their start-up (imports) cannot
    kill them: Python keeps an inherited SIG_IGN. The parent turns Ctrl-C into a stop flag."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _child(spec: WorkerSpec, stop: Any, device: str | None) -> None:
    # Ctrl-C reaches the whole process group: the parent turns it into a graceful stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = device
    try:
        serve(spec, should_stop=stop.is_set)
    except PopTrainError as exc:
        # Already recorded in the run's status, which the parent reports: no traceback.
        print(f"poptrain worker {spec.owner}: {exc}", file=sys.stderr)
        sys.exit(2)


class LocalExecutor:
    """Start ``workers`` processes (default: the number of CPU cores) and supervise them.

    A worker process that dies (a crash, an out-of-memory kill) is replaced, and the
    members it held go back to the pool, up to ``max_restarts`` times in all.
    """

    def __init__(
        self, workers: int | None = None, *, start_method: str = "spawn", max_restarts: int = 8
    ) -> None:
        count = (os.cpu_count() or 1) if workers is None else workers
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError("workers", workers, "must be an integer >= 1")
        if start_method not in mp.get_all_start_methods():
            raise ConfigError(
                "start_method", start_method, f"must be one of {mp.get_all_start_methods()}"
            )
        self.workers = count
        self.start_method = start_method
        self.max_restarts = max_restarts

    def execute(
        self,
        spec_for: Callable[[int], WorkerSpec],
        *,
        on_lost: Callable[[WorkerSpec], None],
        abort_reason: Callable[[], str | None],
    ) -> None:
        ctx = mp.get_context(self.start_method)
        stop = ctx.Event()
        visible = visible_gpus()
        running: dict[Any, tuple[Any, WorkerSpec, int]] = {}
        restarts = 0

        def start(index: int, spec: WorkerSpec) -> None:
            device = gpu_assignment(index, visible)
            process = ctx.Process(  # type: ignore[attr-defined]
                target=_child, args=(spec, stop, device), name=f"poptrain-{spec.owner}", daemon=True
            )
            with _sigint_ignored():
                process.start()
            running[process.sentinel] = (process, spec, index)

        for index in range(self.workers):
            start(index, spec_for(index))
        try:
            while running:
                for sentinel in wait(list(running), timeout=1.0):
                    process, spec, index = running.pop(sentinel)
                    process.join()
                    if process.exitcode == 0 or stop.is_set():
                        continue
                    on_lost(spec)
                    reason = abort_reason()
                    if reason is not None:
                        stop.set()
                        continue
                    if restarts >= self.max_restarts:
                        log.error(
                            "worker %s died (exit %s); no restarts left",
                            spec.owner,
                            process.exitcode,
                        )
                        continue
                    restarts += 1
                    log.warning(
                        "worker %s died (exit %s); starting another", spec.owner, process.exitcode
                    )
                    start(index, replace(spec, owner=default_owner()))
        except KeyboardInterrupt:
            stop.set()
            self._drain(running, on_lost)
            raise Interrupted() from None

    @staticmethod
    def _drain(
        running: dict[int, tuple[Any, WorkerSpec, int]], on_lost: Callable[[WorkerSpec], None]
    ) -> None:
        """Let workers checkpoint and leave; force out any that does not within a minute."""
        for process, spec, _index in running.values():
            with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: stop waiting
                process.join(timeout=60)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
            if process.exitcode != 0:
                on_lost(spec)
        running.clear()
