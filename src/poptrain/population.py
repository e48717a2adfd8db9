"""The population core: Algorithm 1 as ask-and-tell over a store.

Every process that serves members holds its own :class:`Population` over the same store;
the store is the only shared state, so there is no controller in the loop and no global
barrier (except in the optional synchronous mode). A member's loop is::

    record = population.claim(owner)          # ask: which member to serve
    ...train one step, evaluate...
    decision = population.tell(record.member, step, score, save=save)
    # Continue, Exploit (load decision.checkpoint, use decision.hparams), Wait or Stop

``tell`` records the evaluation; when the member is ready it decides exploit/explore with
the configured strategies (pure, seeded per member and step), and calls ``save`` only when
the member's own weights must be kept (it continued, or changed only its hyperparameters).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .checkpoints import CheckpointStorage
from .config import RunConfig
from .decision import Continue, Decision, Exploit, Operation, Stop, Wait
from .errors import ConfigError, StorageError
from .space import sample_hparams
from .store.base import (
    BestRecord,
    EvaluationRecord,
    EventRecord,
    MemberRecord,
    MemberStatus,
    PopulationStore,
)
from .strategies.base import MemberView, PopulationView

__all__ = ["Population", "initial_hparams", "member_seed"]

SaveFn = Callable[[], str]

# Distinct streams of the per-member RNG, so no two decisions reuse random numbers.
_DECIDE, _FAIL, _SYNC, _INIT = 1, 2, 3, 4


def member_seed(run_seed: int, member: int) -> int:
    """The seed a member's Trainable gets: independent streams per member."""
    return int(np.random.SeedSequence([run_seed, member]).generate_state(1)[0])


def initial_hparams(config: RunConfig) -> list[dict[str, Any]]:
    """Every member's first hyperparameters: ``config.initial_hparams`` or seeded draws.

    Deterministic in ``config.seed``, so reports can tell what each member started with.
    """
    if config.initial_hparams is not None:
        return [dict(h) for h in config.initial_hparams]
    rng = np.random.default_rng([config.seed, _INIT])
    return [sample_hparams(config.space, rng) for _ in range(config.population_size)]


def _append_schedule(
    schedule: list[dict[str, Any]], step: int, hparams: Mapping[str, Any], member: int
) -> list[dict[str, Any]]:
    kept = [entry for entry in schedule if entry["step"] < step]
    return [*kept, {"step": step, "hparams": dict(hparams), "member": member}]


def _truncate_schedule(schedule: list[dict[str, Any]], step: int) -> list[dict[str, Any]]:
    return [entry for entry in schedule if entry["step"] <= step]


@dataclass(frozen=True)
class _Choice:
    """What ``_choose`` decided, before it is applied to a member record."""

    source: int
    source_step: int
    hparams: dict[str, Any]
    operations: tuple[Operation, ...]
    checkpoint: str | None  # a ref now owned by the exploiting member
    age: int  # the age of the weights the member holds after the choice
    schedule: list[dict[str, Any]]
    copied_weights: bool
    source_score: float | None = None  # raw score of the copied checkpoint


class Population:
    """Ask-and-tell PBT over a :class:`~poptrain.store.PopulationStore`.

    One instance serves the members it claims; any number of instances (processes,
    hosts) can serve one run at once.
    """

    def __init__(
        self,
        store: PopulationStore,
        run: str,
        config: RunConfig,
        checkpoints: CheckpointStorage,
        *,
        owner: str = "main",
        lease_seconds: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.run = run
        self.config = config
        self.checkpoints = checkpoints
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.clock = clock
        self._held: dict[int, MemberRecord] = {}
        self._best_rank = -math.inf

    # -- set-up ----------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        store: PopulationStore,
        run: str,
        config: RunConfig,
        checkpoints: CheckpointStorage,
        **options: Any,
    ) -> Population:
        """Create the run and its members (initial hyperparameters from the prior)."""
        records = []
        for index, hparams in enumerate(initial_hparams(config)):
            records.append(
                MemberRecord(
                    member=index,
                    hparams=hparams,
                    seed=member_seed(config.seed, index),
                    schedule=[{"step": 0, "hparams": dict(hparams), "member": index}],
                )
            )
        store.create_run(run, config.to_spec(), records, checkpoints=checkpoints.location)
        return cls(store, run, config, checkpoints, **options)

    @classmethod
    def open(
        cls, store: PopulationStore, run: str, checkpoints: CheckpointStorage, **options: Any
    ) -> Population:
        """Join an existing run: its configuration comes from the store."""
        record = store.get_run(run)
        if record is None:
            raise ConfigError("run", run, f"no such run in {store.url}")
        return cls(store, run, RunConfig.from_spec(record.config), checkpoints, **options)

    # -- ask ---------------------------------------------------------------------------
    def claim(self) -> MemberRecord | None:
        """Take one member to serve, or None if none is free now.

        A member whose last holder died resumes from its last checkpoint: its step goes
        back to the checkpoint's step, and the lost steps are recorded as a rollback.
        """
        now = self.clock()
        record = self.store.claim(self.run, self.owner, now, self.lease_seconds)
        if record is None:
            return None
        resume_step = record.checkpoint_step if record.checkpoint else 0
        if record.step != resume_step:
            lost = record.step
            record.step = resume_step
            record.age = record.checkpoint_age if record.checkpoint else 0
            record.last_ready_step = min(record.last_ready_step, resume_step)
            record.version += 1
            self.store.record(
                self.run,
                member=record,
                owner=self.owner,
                events=[
                    EventRecord(
                        record.member,
                        lost,
                        "rollback",
                        now,
                        new_step=resume_step,
                        message=f"resumed from the checkpoint at step {resume_step}",
                    )
                ],
            )
        record.last_ready_time = now
        self._held[record.member] = record
        return record

    def held(self, member: int) -> MemberRecord:
        try:
            return self._held[member]
        except KeyError:
            raise ConfigError("member", member, f"is not held by {self.owner}") from None

    def is_done(self) -> bool:
        """Whether every member finished or failed for good."""
        return all(record.status.is_terminal() for record in self.store.members(self.run))

    def renew_leases(self) -> list[int]:
        """Extend the leases of the members held here (a heartbeat, from any thread).

        Returns the members still held; a member whose lease went to another owner is not.
        """
        held = list(self._held)
        if not held:
            return []
        return self.store.renew_leases(
            self.run, self.owner, held, self.clock() + self.lease_seconds
        )

    def abandon(self) -> None:
        """Forget the held members and give them back as the store has them.

        For when a write was lost (the store went away mid-transaction): the in-memory
        state is ahead of the store's, so each member resumes from its last stored
        checkpoint, like a member whose worker died.
        """
        self._held.clear()
        self.store.release_owner(self.run, self.owner)

    # -- tell --------------------------------------------------------------------------
    def tell(self, member: int, step: int, score: float, *, save: SaveFn | None = None) -> Decision:
        """Record ``score`` at ``step``; when the member is ready, decide what it does next."""
        record = self.held(member)
        if not isinstance(score, (int, float)) or not math.isfinite(score):
            return self.fail(member, step, f"score is {score!r}")
        now = self.clock()
        advance = max(step - record.step, 1)
        record.steps_trained += advance
        record.age += advance
        record.step = step
        record.score = float(score)
        record.recent_scores = [*record.recent_scores, float(score)][-self.config.window :]
        evaluation = EvaluationRecord(member, step, float(score), now, owner=self.owner)
        final = step >= self.config.max_steps
        if not final and not self.config.ready.is_ready(self._view(record), step, now):
            self._write(record, evaluation)
            return Continue()

        record.last_ready_step, record.last_ready_time = step, now
        superseded: list[str] = []
        if final or self.config.synchronous:
            superseded = self._checkpoint(record, save, step)
            self._offer_best(record)
            record.status = MemberStatus.FINISHED if final else MemberStatus.WAITING
            record.owner = None
            with self.store.locked(self.run):
                self._write(record, evaluation)
                if self.config.synchronous:
                    superseded += self._close_generation()
            self._cleanup(superseded)
            del self._held[member]
            return Stop("finished") if final else Wait()

        rng = np.random.default_rng([self.config.seed, member, step, _DECIDE])
        choice = self._choose(record, rng, failed=False)
        events = []
        if choice is None or not choice.copied_weights:
            superseded = self._checkpoint(record, save, step)
            self._offer_best(record)  # before explore changes the hyperparameters
        if choice is not None:
            events.append(self._event(record, step, choice, now))
            superseded += self._apply(record, choice)
        self._write(record, evaluation, events)
        self._cleanup(superseded)
        if choice is None:
            return Continue(ready=True)
        return self._decision(choice)

    def fail(self, member: int, step: int, error: str) -> Decision:
        """Record a failed step/evaluation (exception, NaN, inf) and replace the member.

        The failed member counts as the worst: it copies a good member (as exploit would),
        or, with no member to copy, restarts from its own last checkpoint. After
        ``max_failures`` failures it is marked failed and leaves the population.
        """
        record = self.held(member)
        now = self.clock()
        # The failed step still used the member's budget.
        record.steps_trained += max(step - record.step, 0)
        record.step = max(record.step, step)
        record.failures += 1
        record.score = None
        record.recent_scores = [*record.recent_scores, None][-self.config.window :]
        evaluation = EvaluationRecord(member, step, None, now, error=error, owner=self.owner)
        failure = EventRecord(member, step, "failure", now, message=error)
        if record.failures > self.config.max_failures:
            record.status = MemberStatus.FAILED
            record.owner = None
            with self.store.locked(self.run):
                self._write(record, evaluation, [failure])
                superseded = self._close_generation() if self.config.synchronous else []
            self._cleanup(superseded)
            del self._held[member]
            return Stop("failed")
        rng = np.random.default_rng([self.config.seed, member, step, _FAIL, record.failures])
        choice = self._choose(record, rng, failed=True)
        if choice is None:
            choice = self._restart_own(record, rng)
        events = [failure, self._event(record, step, choice, now)]
        superseded = self._apply(record, choice)
        if record.step >= self.config.max_steps:
            # The failed step spent the last of the budget: the member ends on the copied
            # state instead of training past max_steps.
            record.status = MemberStatus.FINISHED
            record.owner = None
            with self.store.locked(self.run):
                self._write(record, evaluation, events)
                if self.config.synchronous:
                    superseded += self._close_generation()
            self._cleanup(superseded)
            del self._held[member]
            return Stop("finished")
        self._write(record, evaluation, events)
        self._cleanup(superseded)
        return self._decision(choice)

    def suspend(self, member: int, save: SaveFn | None = None) -> None:
        """Give the member back (Ctrl-C, rotation), checkpointed first when ``save`` is given."""
        record = self.held(member)
        superseded: list[str] = []
        if save is not None and (record.checkpoint is None or record.step > record.checkpoint_step):
            superseded = self._checkpoint(record, save, record.step)
        self.release(member, superseded)

    def release(self, member: int, superseded: list[str] | None = None) -> None:
        """Return a member to the pool as it stands in the store (no new checkpoint)."""
        record = self.held(member)
        record.status = MemberStatus.IDLE
        record.owner = None
        record.lease_expires = None
        self.store.update_member(self.run, record, owner=self.owner)
        self._cleanup(superseded or [])
        del self._held[member]

    # -- internals ----------------------------------------------------------------------
    def _write(
        self,
        record: MemberRecord,
        evaluation: EvaluationRecord | None,
        events: list[EventRecord] | None = None,
    ) -> None:
        if record.owner is not None:
            record.lease_expires = self.clock() + self.lease_seconds
        self.store.record(
            self.run, evaluation=evaluation, member=record, events=events or [], owner=self.owner
        )

    def _checkpoint(self, record: MemberRecord, save: SaveFn | None, step: int) -> list[str]:
        """Save the member's own weights as its checkpoint; return the ref it supersedes."""
        if save is None:
            return []
        old = record.checkpoint
        record.checkpoint = save()
        record.checkpoint_step = step
        record.checkpoint_age = record.age
        record.checkpoint_score = record.score
        return [old] if old and old != record.checkpoint else []

    def _cleanup(self, refs: list[str]) -> None:
        for ref in refs:
            self.checkpoints.delete(ref)

    def _rank(self, score: float | None) -> float:
        if score is None or not math.isfinite(score):
            return -math.inf
        return self.config.sign * score

    def _view(self, record: MemberRecord) -> MemberView:
        return MemberView(
            member=record.member,
            step=record.step,
            score=self._rank(record.score),
            hparams=record.hparams,
            recent_scores=tuple(self._rank(s) for s in record.recent_scores),
            last_ready_step=record.last_ready_step,
            last_ready_time=record.last_ready_time,
            checkpoint=record.checkpoint,
            checkpoint_step=record.checkpoint_step,
            checkpoint_score=self._rank(record.checkpoint_score),
            finished=record.status.is_terminal(),
        )

    def _tiebreak_seed(self, record: MemberRecord) -> int:
        # Synchronous: one ranking per generation (all members are at the same step).
        # Asynchronous: there is no generation, so each decision draws its own order.
        key = (
            [self.config.seed, record.step]
            if self.config.synchronous
            else [self.config.seed, record.step, record.member]
        )
        return int(np.random.SeedSequence(key).generate_state(1)[0])

    def _population(
        self, me: MemberRecord, snapshot: list[MemberRecord] | None = None
    ) -> tuple[PopulationView, dict[int, MemberRecord], BestRecord | None]:
        records = snapshot if snapshot is not None else self.store.members(self.run)
        by_member = {r.member: r for r in records}
        by_member[me.member] = me
        # A member that failed for good is not a candidate to copy.
        views = tuple(self._view(r) for r in by_member.values() if r.status != MemberStatus.FAILED)
        run = self.store.get_run(self.run)
        best = run.best if run is not None else None
        best_view = None
        if best is not None:
            best_view = MemberView(
                member=best.member,
                step=best.step,
                score=self._rank(best.score),
                hparams=best.hparams,
                checkpoint=best.checkpoint,
                checkpoint_step=best.step,
                checkpoint_score=self._rank(best.score),
            )
        return PopulationView(views, best_view, self._tiebreak_seed(me)), by_member, best

    def _choose(
        self,
        record: MemberRecord,
        rng: np.random.Generator,
        *,
        failed: bool,
        snapshot: list[MemberRecord] | None = None,
    ) -> _Choice | None:
        """Exploit then explore, as pure decisions; share the source's checkpoint."""
        config = self.config
        for _attempt in range(3):
            population, by_member, best = self._population(record, snapshot)
            me = self._view(record)
            if config.exploit is None and not failed:
                if config.explore is None:
                    return None
                hparams, ops = config.explore.explore(record.hparams, config.space, rng)
                return _Choice(
                    record.member,
                    record.step,
                    hparams,
                    ops,
                    None,
                    record.age,
                    _append_schedule(record.schedule, record.age, hparams, record.member),
                    False,
                )
            source = config.exploit.select(me, population, rng) if config.exploit else None
            if source is None and failed:
                source = self._fallback_source(me, population, rng)
            if source is None:
                return None
            is_best = population.best_ever is not None and source is population.best_ever
            if is_best and best is not None:
                source_schedule, source_hparams = best.schedule, best.hparams
                source_score: float | None = best.score
                source_age = best.age
            else:
                source_record = by_member[source.member]
                source_schedule, source_hparams = source_record.schedule, source_record.hparams
                source_score = source_record.checkpoint_score
                source_age = source_record.checkpoint_age
            if config.explore is not None:
                hparams, ops = config.explore.explore(source_hparams, config.space, rng)
            else:
                hparams, ops = dict(source_hparams), ()
            if config.copy_weights:
                assert source.checkpoint is not None
                try:
                    link = self.checkpoints.share(
                        source.checkpoint, record.member, source.checkpoint_step
                    )
                except FileNotFoundError:
                    snapshot = None  # the source moved on meanwhile: look again
                    continue
                schedule = _append_schedule(
                    _truncate_schedule(source_schedule, source_age),
                    source_age,
                    hparams,
                    record.member,
                )
                return _Choice(
                    source.member,
                    source.checkpoint_step,
                    hparams,
                    ops,
                    link,
                    source_age,
                    schedule,
                    True,
                    source_score,
                )
            schedule = _append_schedule(record.schedule, record.age, hparams, record.member)
            return _Choice(
                source.member, source.step, hparams, ops, None, record.age, schedule, False
            )
        return None

    def _fallback_source(
        self, me: MemberView, population: PopulationView, rng: np.random.Generator
    ) -> MemberView | None:
        """A failed member copies one of the better half of the members that can be copied."""
        usable = [
            v
            for v in population.others(me.member)
            if math.isfinite(v.score) and (v.checkpoint is not None or not self.config.copy_weights)
        ]
        if not usable:
            return None
        usable.sort(key=lambda v: v.score, reverse=True)
        top = usable[: max(1, len(usable) // 2)]
        return top[int(rng.integers(len(top)))]

    def _restart_own(self, record: MemberRecord, rng: np.random.Generator) -> _Choice:
        """No member to copy: go back to the member's own last checkpoint (or to fresh weights).

        The member's step (its budget) is not given back: failures cost steps.
        """
        config = self.config
        if config.explore is not None:
            hparams, ops = config.explore.explore(record.hparams, config.space, rng)
        else:
            hparams, ops = dict(record.hparams), ()
        if record.checkpoint is not None:
            age = record.checkpoint_age
            schedule = _append_schedule(
                _truncate_schedule(record.schedule, age), age, hparams, record.member
            )
            link = self.checkpoints.share(record.checkpoint, record.member, record.step)
            return _Choice(
                record.member,
                record.checkpoint_step,
                hparams,
                ops,
                link,
                age,
                schedule,
                True,
                record.checkpoint_score,
            )
        schedule = [{"step": 0, "hparams": dict(hparams), "member": record.member}]
        return _Choice(record.member, 0, hparams, ops, None, 0, schedule, True)

    def _apply(self, record: MemberRecord, choice: _Choice) -> list[str]:
        """Make ``choice`` the member's state; return the checkpoint refs it supersedes."""
        superseded: list[str] = []
        record.hparams = dict(choice.hparams)
        record.schedule = choice.schedule
        record.version += 1
        if choice.copied_weights:
            if record.checkpoint and record.checkpoint != choice.checkpoint:
                superseded.append(record.checkpoint)
            # The copy is now this member's checkpoint, taken at its own current step.
            record.checkpoint = choice.checkpoint
            record.checkpoint_step = record.step
            record.age = record.checkpoint_age = choice.age
            record.checkpoint_score = choice.source_score
        return superseded

    def _event(self, record: MemberRecord, step: int, choice: _Choice, now: float) -> EventRecord:
        """The event for ``choice``; call it before ``_apply`` changes the member's record."""
        return EventRecord(
            member=record.member,
            step=step,
            kind="exploit" if choice.source != record.member else "explore",
            time=now,
            new_step=choice.age,
            source=choice.source,
            source_step=choice.source_step,
            old_hparams=dict(record.hparams),
            new_hparams=dict(choice.hparams),
            operations=[op.to_dict() for op in choice.operations],
            copied_weights=choice.copied_weights and choice.checkpoint is not None,
        )

    def _decision(self, choice: _Choice) -> Exploit:
        return Exploit(
            source=choice.source,
            source_step=choice.source_step,
            hparams=dict(choice.hparams),
            checkpoint=choice.checkpoint,
            age=choice.age,
            operations=choice.operations,
        )

    def _close_generation(self) -> list[str]:
        """Synchronous mode: once every live member waits at the barrier, decide for all.

        Runs inside ``store.locked``. A member that finished or failed is not waited for,
        so one stopping just before the barrier cannot hang the others.
        """
        records = self.store.members(self.run)
        active = [r for r in records if not r.status.is_terminal()]
        if not active or any(r.status != MemberStatus.WAITING for r in active):
            return []
        snapshot = [MemberRecord(**vars(r)) for r in records]
        superseded: list[str] = []
        now = self.clock()
        for record in sorted(active, key=lambda r: r.member):
            rng = np.random.default_rng([self.config.seed, record.member, record.step, _SYNC])
            choice = self._choose(record, rng, failed=False, snapshot=snapshot)
            events = []
            if choice is not None:
                events.append(self._event(record, record.step, choice, now))
                superseded += self._apply(record, choice)
            record.status = MemberStatus.IDLE
            record.last_ready_time = now
            self.store.record(self.run, member=record, events=events)
        return superseded

    def _offer_best(self, record: MemberRecord) -> None:
        """Keep a hard-linked copy of the best checkpointed state of the whole run."""
        if record.checkpoint is None or record.checkpoint_score is None:
            return
        rank = self._rank(record.checkpoint_score)
        if not rank > self._best_rank:
            return
        run = self.store.get_run(self.run)
        if run is not None and run.best is not None:
            self._best_rank = max(self._best_rank, self._rank(run.best.score))
            if not rank > self._best_rank:
                return
        try:
            link = self.checkpoints.share_as_best(record.checkpoint, record.checkpoint_age)
        except FileNotFoundError:
            return
        best = BestRecord(
            member=record.member,
            step=record.checkpoint_step,
            age=record.checkpoint_age,
            score=float(record.checkpoint_score),
            hparams=dict(record.hparams),
            checkpoint=link,
            schedule=_truncate_schedule(record.schedule, record.checkpoint_age),
            time=self.clock(),
        )
        replaced = self.store.offer_best(self.run, best, rank)
        if replaced is False:
            self.checkpoints.delete(link)
            return
        self._best_rank = rank
        if isinstance(replaced, BestRecord):
            self.checkpoints.delete(replaced.checkpoint)


def check_store_is_usable(store: PopulationStore) -> None:
    """Fail early, with the URL, if the store cannot be read."""
    try:
        store.list_runs()
    except Exception as exc:
        raise StorageError(f"cannot use the store at {store.url}: {exc}") from None
