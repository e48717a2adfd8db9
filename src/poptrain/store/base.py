"""The population store: records and the narrow protocol every backend implements.

Thread/process safety: every method is atomic and safe to call from many processes (and
hosts, for a server database) at once. ``claim`` hands a member to exactly one owner;
``locked`` serialises read-modify-write sections across processes.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..errors import StorageError

__all__ = [
    "BestRecord",
    "EvaluationRecord",
    "EventRecord",
    "LeaseLost",
    "MemberRecord",
    "MemberStatus",
    "PopulationStore",
    "RunRecord",
    "StoreUnavailable",
]


class LeaseLost(Exception):
    """The member's lease went to another owner (this one was presumed dead)."""


class StoreUnavailable(StorageError):
    """The store's server went away inside a transaction that cannot be replayed (a
    ``locked`` section), or stayed away longer than the store keeps retrying.

    Nothing of the failed transaction was written: the caller drops what it held and goes
    on from what the store has (a member resumes from its last checkpoint).
    """


class MemberStatus(str, enum.Enum):
    IDLE = "idle"  # claimable
    RUNNING = "running"  # held by an owner under a lease
    WAITING = "waiting"  # synchronous mode: at the generation barrier
    FINISHED = "finished"  # step budget spent
    FAILED = "failed"  # gave up after too many failures

    def is_terminal(self) -> bool:
        return self in (MemberStatus.FINISHED, MemberStatus.FAILED)


@dataclass
class MemberRecord:
    """A member's current state. ``score`` is the raw metric (None when it failed).

    ``step`` counts the steps this member trained (its budget and its ready clock);
    ``age`` counts the steps its current weights went through, along their lineage:
    an exploit copies the source's ``age`` but never changes ``step``.
    """

    member: int
    hparams: dict[str, Any]
    seed: int
    step: int = 0
    age: int = 0
    score: float | None = None
    recent_scores: list[float | None] = field(default_factory=list)
    last_ready_step: int = 0
    last_ready_time: float = 0.0
    checkpoint: str | None = None
    checkpoint_step: int = 0
    checkpoint_age: int = 0
    checkpoint_score: float | None = None
    #: The hyperparameters the current weights were trained with: ``{"step": age,
    #: "hparams": {...}, "member": m}`` entries, each in force from its age on.
    schedule: list[dict[str, Any]] = field(default_factory=list)
    status: MemberStatus = MemberStatus.IDLE
    owner: str | None = None
    lease_expires: float | None = None
    version: int = 0
    failures: int = 0
    steps_trained: int = 0


@dataclass(frozen=True)
class EvaluationRecord:
    member: int
    step: int
    score: float | None
    time: float
    error: str | None = None
    owner: str | None = None
    id: int | None = None


@dataclass(frozen=True)
class EventRecord:
    """An exploit/explore (``kind="exploit"``), a failure, a claim, a rollback…"""

    member: int
    step: int
    kind: str
    time: float
    new_step: int | None = None
    source: int | None = None
    source_step: int | None = None
    old_hparams: dict[str, Any] | None = None
    new_hparams: dict[str, Any] | None = None
    operations: list[dict[str, Any]] = field(default_factory=list)
    copied_weights: bool = False
    message: str | None = None
    id: int | None = None


@dataclass(frozen=True)
class BestRecord:
    """The best checkpointed state seen in the run, kept even after its member moved on.

    ``step`` is the member's own step when it was saved; ``age`` the steps its weights went
    through (the end of ``schedule``), which is what a replay retrains.
    """

    member: int
    step: int
    age: int
    score: float
    hparams: dict[str, Any]
    checkpoint: str
    schedule: list[dict[str, Any]]
    time: float


@dataclass(frozen=True)
class RunRecord:
    name: str
    config: dict[str, Any]
    status: str
    created: float
    updated: float
    best: BestRecord | None = None
    #: Where the run's checkpoints live (a path or an fsspec URL), so that workers joining
    #: from other hosts find them; None for runs created without it.
    checkpoints: str | None = None


@runtime_checkable
class PopulationStore(Protocol):
    """Everything PBT keeps: runs, members, evaluations, events and the best state."""

    url: str

    def create_run(
        self,
        name: str,
        config: dict[str, Any],
        members: Sequence[MemberRecord],
        *,
        checkpoints: str | None = None,
    ) -> None:
        """Create a run and its members atomically; raise ``StorageError`` if it exists."""
        ...

    def get_run(self, name: str) -> RunRecord | None: ...

    def set_run_status(self, name: str, status: str) -> None: ...

    def list_runs(self) -> list[RunRecord]: ...

    def members(self, run: str) -> list[MemberRecord]: ...

    def claim(self, run: str, owner: str, now: float, lease_seconds: float) -> MemberRecord | None:
        """Hand one idle (or expired-lease) member to ``owner``: the least advanced first."""
        ...

    def renew_leases(
        self, run: str, owner: str, members: Sequence[int], lease_expires: float
    ) -> list[int]:
        """Extend ``owner``'s leases on ``members`` it still holds; return those members."""
        ...

    def update_member(self, run: str, member: MemberRecord, *, owner: str | None = None) -> bool:
        """Write ``member`` back; with ``owner``, only while that owner still holds it."""
        ...

    def record(
        self,
        run: str,
        *,
        evaluation: EvaluationRecord | None = None,
        member: MemberRecord | None = None,
        events: Sequence[EventRecord] = (),
        owner: str | None = None,
    ) -> None:
        """Write an evaluation, the member's new state and events in one transaction.

        With ``owner``, raise :class:`LeaseLost` (writing nothing) unless ``owner`` still
        holds the member.
        """
        ...

    def evaluations(self, run: str, member: int | None = None) -> list[EvaluationRecord]: ...

    def events(self, run: str, member: int | None = None) -> list[EventRecord]: ...

    def offer_best(self, run: str, best: BestRecord, rank: float) -> BestRecord | bool | None:
        """Make ``best`` the run's best if ``rank`` (higher is better) beats the current one.

        Returns False if it was not better; otherwise the replaced record (or None).
        """
        ...

    def release_owner(self, run: str, owner: str) -> int:
        """Return every member held by ``owner`` (a dead worker) to the idle pool."""
        ...

    def locked(self, run: str) -> AbstractContextManager[None]:
        """Serialise a read-modify-write section on ``run`` across processes."""
        ...

    def close(self) -> None: ...
