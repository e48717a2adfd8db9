"""Replay: retrain one line of weights from scratch, following its recorded schedule.

PBT's output is a schedule: ``{"step": age, "hparams": ...}`` entries, each in force from
that age of the weights on. :func:`replay` builds the Trainable with the seed of the member
the weights began with, trains ``age`` steps, switching hyperparameters (``set_hparams``)
where the schedule says, and evaluates. No population, store or worker is involved.

The replayed score equals the original exactly when the Trainable is deterministic given
its seed and its checkpoints hold its whole state (the toy example does); when a checkpoint
leaves out a random number generator's state, or training is not deterministic (GPU
kernels, data loader workers), the replay follows the same schedule but its score differs
by the run-to-run noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .population import member_seed
from .results import Result, ScheduleEntry
from .trainable import Trainable, score_of

__all__ = ["ReplayResult", "replay", "replay_schedule"]


@dataclass
class ReplayResult:
    """What a replay trained and scored, beside what the run recorded."""

    member: int | None  # None: the run's best state
    seed: int
    steps: int
    schedule: list[ScheduleEntry]
    replayed_score: float
    original_score: float | None
    trainable: Trainable | None = field(default=None, repr=False)

    @property
    def difference(self) -> float | None:
        if self.original_score is None:
            return None
        return abs(self.replayed_score - self.original_score)

    def to_dict(self) -> dict[str, Any]:
        return {
            "member": self.member,
            "seed": self.seed,
            "steps": self.steps,
            "replayed_score": self.replayed_score,
            "original_score": self.original_score,
            "difference": self.difference,
            "schedule": [
                {"step": e.step, "hparams": e.hparams, "member": e.member} for e in self.schedule
            ],
        }


def replay_schedule(
    cls: type[Trainable],
    schedule: Sequence[ScheduleEntry],
    steps: int,
    seed: int,
    *,
    metric: str,
    options: Mapping[str, Any] | None = None,
    on_change: Callable[[int, ScheduleEntry], None] = lambda age, entry: None,
) -> tuple[Trainable, float]:
    """Build ``cls`` with ``seed``, train ``steps`` steps following ``schedule``, evaluate.

    The hyperparameters of the entry with the largest ``step <= age`` train the step that
    takes the weights from ``age`` to ``age + 1``, as they did in the run.
    """
    if not schedule or schedule[0].step != 0:
        raise ConfigError("schedule", [e.step for e in schedule], "must start at step 0")
    ordered = sorted(schedule, key=lambda e: e.step)
    trainable = cls(dict(ordered[0].hparams), seed, **dict(options or {}))
    on_change(0, ordered[0])
    following = 1
    for age in range(steps):
        while following < len(ordered) and ordered[following].step <= age:
            trainable.set_hparams(ordered[following].hparams)
            on_change(age, ordered[following])
            following += 1
        trainable.step()
    score = score_of(trainable.evaluate(), metric)
    return trainable, score


def replay(
    result: Result,
    *,
    member: int | None = None,
    on_change: Callable[[int, ScheduleEntry], None] = lambda age, entry: None,
    keep: bool = False,
) -> ReplayResult:
    """Retrain the run's best weights (or ``member``'s current ones) from scratch.

    For the best state the schedule is the result's and the steps are ``best.age``; for a
    member, its schedule up to the age of its last checkpoint, compared with that
    checkpoint's score. ``keep=True`` keeps the trained Trainable in the result.
    """
    config = result.config
    seeds = {m.member: m.seed for m in result.members}
    if member is None:
        best = result.best
        if best is None:
            raise ConfigError("replay", result.run, "has no best state yet: nothing to replay")
        schedule, steps, seed = list(result.schedule), best.age, best.seed
        original: float | None = best.score
    else:
        record = next((m for m in result.members if m.member == member), None)
        if record is None:
            raise ConfigError("--member", member, f"is not a member of run {result.run}")
        steps = record.checkpoint_age if record.checkpoint is not None else record.age
        original = record.checkpoint_score if record.checkpoint is not None else record.score
        schedule = [
            ScheduleEntry(e["step"], dict(e["hparams"]), e["member"])
            for e in record.schedule
            if e["step"] <= steps
        ]
        origin = schedule[0].member if schedule else member
        seed = seeds.get(origin, member_seed(config.seed, origin))
    if steps < 1:
        raise ConfigError("replay", steps, "the weights were never trained: nothing to replay")
    trainable, score = replay_schedule(
        config.trainable_class(),
        schedule,
        steps,
        seed,
        metric=config.metric,
        options=config.trainable_options,
        on_change=on_change,
    )
    if not keep:
        close = getattr(trainable, "close", None)
        if callable(close):
            close()
    return ReplayResult(
        member=member,
        seed=seed,
        steps=steps,
        schedule=schedule,
        replayed_score=score,
        original_score=None if original is None or not math.isfinite(original) else original,
        trainable=trainable if keep else None,
    )
