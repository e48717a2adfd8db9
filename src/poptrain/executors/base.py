"""What an executor is: it launches and supervises workers, and knows nothing of PBT."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ..worker import WorkerSpec

__all__ = ["Executor", "Interrupted"]


class Interrupted(KeyboardInterrupt):
    """The run was stopped by the user (Ctrl-C); every worker checkpointed and left."""


@runtime_checkable
class Executor(Protocol):
    #: How many workers serve the population at once.
    workers: int

    def execute(
        self,
        spec_for: Callable[[int], WorkerSpec],
        *,
        on_lost: Callable[[WorkerSpec], None],
        abort_reason: Callable[[], str | None],
    ) -> None:
        """Run ``workers`` workers (``spec_for(i)``) until they all return.

        ``on_lost(spec)`` is called when a worker died without finishing (its members must
        go back to the pool); ``abort_reason()`` says when the run hit an error that no
        restart can mend. Raises :class:`Interrupted` on Ctrl-C once workers stopped.
        """
        ...
