"""One worker in the calling process: for debugging, tests and tiny runs."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType

from ..worker import WorkerSpec, serve
from .base import Interrupted

__all__ = ["InlineExecutor"]


class InlineExecutor:
    """Serve every member from this process, one step at a time (``workers == 1``)."""

    workers = 1

    def execute(
        self,
        spec_for: Callable[[int], WorkerSpec],
        *,
        on_lost: Callable[[WorkerSpec], None],
        abort_reason: Callable[[], str | None],
    ) -> None:
        stop = threading.Event()
        spec = spec_for(0)
        previous = None
        if threading.current_thread() is threading.main_thread():

            def _graceful(signum: int, frame: FrameType | None) -> None:
                if stop.is_set():  # a second Ctrl-C: stop at once
                    raise KeyboardInterrupt
                stop.set()

            previous = signal.signal(signal.SIGINT, _graceful)
        try:
            serve(spec, should_stop=stop.is_set)
        except KeyboardInterrupt:
            on_lost(spec)
            raise Interrupted() from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        if stop.is_set():
            raise Interrupted()
