"""A run's development rebuilt from its records alone: stretches, copies and lineage.

The store keeps every evaluation and every event. From them this module rebuilds, for each
member, its *stretches*: spans of training on one line of weights, each begun by fresh
weights, an exploit that copied another member's checkpoint, a restart from the member's
own checkpoint after a failure, or a rollback after a crash. A :class:`Copy` links the
state that was copied to the stretch it began, so following copies backwards from the best
evaluation gives the winner's :class:`Lineage`: who trained its weights, over which of their
own steps. Every evaluation also gets the hyperparameters it was trained with and the age
of the weights it scored.

Records of one member are ordered by time (ties: the evaluation, then the failure, then
the decision, as the population core writes them). A copy took the source's state as it
was strictly before the copy's time; in synchronous mode every decision of a generation
carries the same time and sees the generation's states, which is what the core does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .population import initial_hparams
from .results import Result
from .store import EvaluationRecord, EventRecord

__all__ = ["Copy", "History", "Lineage", "Piece", "Point", "Start", "Stretch", "history"]


@dataclass(frozen=True)
class Point:
    """One evaluation, with the hyperparameters of the step that led to it.

    ``age`` is the number of steps the evaluated weights went through along their lineage;
    ``score`` is None for a failed step (``error`` says why).
    """

    member: int
    step: int
    time: float
    score: float | None
    age: int
    hparams: dict[str, Any]
    error: str | None = None
    owner: str | None = None
    id: int | None = None


@dataclass(frozen=True)
class Start:
    """Where a stretch begins: the member's own step and time, the age and score of the weights."""

    step: int
    time: float
    age: int
    score: float | None


@dataclass
class Copy:
    """Weights handed from one state to the start of a stretch.

    ``kind`` is ``"exploit"`` (copied from another member), ``"restart"`` (a failed member
    went back to its own checkpoint) or ``"rollback"`` (a member resumed from its own
    checkpoint after its worker was lost). ``source_stretch`` is None when the copied state
    cannot be found in the records (it is then not drawn).
    """

    kind: str
    member: int
    step: int
    time: float
    source: int
    source_step: int
    age: int
    event: EventRecord | None = None
    source_stretch: Stretch | None = None
    source_time: float | None = None
    score: float | None = None


@dataclass
class Stretch:
    """A member's training on one line of weights, between two copies (or fresh starts)."""

    member: int
    index: int
    start: Start
    origin: Copy | None = None
    points: list[Point] = field(default_factory=list)

    def states(
        self, *, until_step: int | None = None, until_time: float | None = None
    ) -> list[Start]:
        """The start (when it has a score) and every evaluation, as ``Start`` values."""
        out = [self.start] if self.start.score is not None else []
        for p in self.points:
            if until_time is not None and p.time > until_time:
                break
            if until_step is not None and p.step > until_step:
                break
            out.append(Start(p.step, p.time, p.age, p.score))
        return out


@dataclass(frozen=True)
class Piece:
    """The part of a stretch that the lineage went through: from its start to ``end``."""

    stretch: Stretch
    end: Start


@dataclass(frozen=True)
class Lineage:
    """The path of some weights back to their first member: pieces and the copies between."""

    pieces: list[Piece]
    copies: list[Copy]

    @property
    def members(self) -> list[int]:
        """Who trained the weights, in order, without repeats in a row."""
        out: list[int] = []
        for piece in self.pieces:
            if not out or out[-1] != piece.stretch.member:
                out.append(piece.stretch.member)
        return out


@dataclass
class History:
    """Every member's stretches; the run's evaluations as :class:`Point` values."""

    result: Result
    stretches: dict[int, list[Stretch]]
    #: Decisions that changed hyperparameters without copying weights (explore-only runs,
    #: exploits with ``copy_weights=False``), as (member, step, time, event).
    explores: list[EventRecord]

    def points(self) -> Iterator[Point]:
        for member in sorted(self.stretches):
            for stretch in self.stretches[member]:
                yield from stretch.points

    def copies(self) -> list[Copy]:
        """Every copy of weights between members (exploits), in time order."""
        out = [
            s.origin
            for stretches in self.stretches.values()
            for s in stretches
            if s.origin is not None and s.origin.kind == "exploit"
        ]
        return sorted(out, key=lambda c: c.time)

    def best_lineage(self) -> Lineage | None:
        """The lineage of the run's best checkpointed state (None when there is none)."""
        best = self.result.best
        if best is None:
            return None
        end = self._find(best.member, best.step, best.score)
        if end is None:
            return None
        return self._trace(*end)

    def member_lineage(self, member: int) -> Lineage | None:
        """The lineage of a member's latest evaluated state."""
        stretches = self.stretches.get(member, [])
        for stretch in reversed(stretches):
            if stretch.points:
                p = stretch.points[-1]
                return self._trace(stretch, Start(p.step, p.time, p.age, p.score))
            if stretch.start.score is not None:
                return self._trace(stretch, stretch.start)
        return None

    def _find(self, member: int, step: int, score: float) -> tuple[Stretch, Start] | None:
        fallback: tuple[Stretch, Start] | None = None
        for stretch in reversed(self.stretches.get(member, [])):
            for p in reversed(stretch.points):
                if p.step != step:
                    continue
                state = Start(p.step, p.time, p.age, p.score)
                if p.score == score:
                    return stretch, state
                fallback = fallback or (stretch, state)
        return fallback

    def _trace(self, stretch: Stretch, end: Start) -> Lineage:
        pieces: list[Piece] = []
        copies: list[Copy] = []
        seen: set[int] = set()
        current: Stretch | None = stretch
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            pieces.append(Piece(current, end))
            origin = current.origin
            if origin is None or origin.source_stretch is None or origin.source_time is None:
                break
            copies.append(origin)
            current = origin.source_stretch
            end = Start(origin.source_step, origin.source_time, origin.age, origin.score)
        pieces.reverse()
        copies.reverse()
        return Lineage(pieces, copies)


_ORDER = {"evaluation": 0, "failure": 1}


def _ordered(
    evaluations: Sequence[EvaluationRecord], events: Sequence[EventRecord]
) -> list[EvaluationRecord | EventRecord]:
    keyed: list[tuple[float, int, int, EvaluationRecord | EventRecord]] = []
    for e in evaluations:
        keyed.append((e.time, 0, e.id or 0, e))
    for ev in events:
        keyed.append((ev.time, _ORDER.get(ev.kind, 2), ev.id or 0, ev))
    keyed.sort(key=lambda item: item[:3])
    return [item[3] for item in keyed]


def history(result: Result) -> History:
    """Rebuild the run's development from ``result``'s evaluations and events."""
    config = result.config
    first = initial_hparams(config)
    current = {m.member: m.hparams for m in result.members}
    by_member_evals: dict[int, list[EvaluationRecord]] = {}
    by_member_events: dict[int, list[EventRecord]] = {}
    for e in result.evaluations:
        by_member_evals.setdefault(e.member, []).append(e)
    for ev in result.events:
        by_member_events.setdefault(ev.member, []).append(ev)
    members = sorted(set(current) | set(by_member_evals) | set(by_member_events))
    created = min((e.time for e in result.evaluations), default=0.0)
    stretches: dict[int, list[Stretch]] = {}
    explores: list[EventRecord] = []
    pending: list[Copy] = []
    for member in members:
        start_hparams = first[member] if member < len(first) else current.get(member, {})
        stretches[member] = _walk(
            member,
            dict(start_hparams),
            _ordered(by_member_evals.get(member, []), by_member_events.get(member, [])),
            created,
            pending,
            explores,
        )
    out = History(result, stretches, explores)
    for copy in pending:
        _resolve(out, copy)
    return out


def _walk(
    member: int,
    hparams: dict[str, Any],
    records: list[EvaluationRecord | EventRecord],
    created: float,
    pending: list[Copy],
    explores: list[EventRecord],
) -> list[Stretch]:
    stretches = [Stretch(member, 0, Start(0, created, 0, None))]
    age = 0
    last_step = 0

    def begin(start: Start, origin: Copy | None) -> None:
        stretch = Stretch(member, len(stretches), start, origin)
        stretches.append(stretch)

    for record in records:
        if isinstance(record, EvaluationRecord):
            if record.score is not None:
                age += max(record.step - last_step, 1)
                last_step = record.step
            else:  # a failed step used budget but produced no weights to keep
                last_step = max(last_step, record.step)
            stretches[-1].points.append(
                Point(
                    member,
                    record.step,
                    record.time,
                    record.score,
                    age,
                    dict(hparams),
                    record.error,
                    record.owner,
                    record.id,
                )
            )
            continue
        event = record
        if event.kind in ("exploit", "explore"):
            if event.new_hparams is not None:
                hparams = dict(event.new_hparams)
            new_age = age if event.new_step is None else event.new_step
            if event.copied_weights:
                source = member if event.source is None else event.source
                kind = "exploit" if source != member else "restart"
                copy = Copy(
                    kind,
                    member,
                    event.step,
                    event.time,
                    source,
                    event.source_step or 0,
                    new_age,
                    event,
                )
                pending.append(copy)
                begin(Start(event.step, event.time, new_age, None), copy)
            elif new_age != age:  # a failed member with nothing to copy: fresh weights
                begin(Start(event.step, event.time, new_age, None), None)
            else:
                explores.append(event)
            age = new_age
        elif event.kind == "rollback":
            resume = event.new_step or 0
            last_step = resume
            if resume == 0:
                age = 0
                begin(Start(0, event.time, 0, None), None)
                continue
            # The member went back to its own checkpoint, taken at its step ``resume``.
            found = _state_at(stretches, resume, event.time)
            if found is None:
                begin(Start(resume, event.time, age, None), None)
                continue
            stretch, state = found
            age = state.age
            copy = Copy(
                "rollback",
                member,
                resume,
                event.time,
                member,
                resume,
                age,
                event,
                stretch,
                state.time,
                state.score,
            )
            begin(Start(resume, event.time, age, state.score), copy)
    return stretches


def _resolve(out: History, copy: Copy) -> None:
    """Find the state ``copy`` took (and fix the age and score of the stretch it began)."""
    found = _state_at(out.stretches.get(copy.source, []), copy.source_step, copy.time)
    target = next((s for s in out.stretches.get(copy.member, []) if s.origin is copy), None)
    if found is None or target is None:
        return
    stretch, state = found
    copy.source_stretch = stretch
    copy.source_time = state.time
    copy.score = state.score
    target.start = Start(target.start.step, target.start.time, copy.age, state.score)


def _state_at(stretches: list[Stretch], step: int, before: float) -> tuple[Stretch, Start] | None:
    for stretch in reversed(stretches):
        if stretch.start.time >= before and stretch.index > 0:
            continue
        for p in reversed(stretch.points):
            if p.step == step and p.time <= before and p.score is not None:
                return stretch, Start(p.step, p.time, p.age, p.score)
        if stretch.start.step == step and stretch.index > 0:
            return stretch, stretch.start
    return None
