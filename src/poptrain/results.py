"""What a run produced: the best state, its hyperparameter schedule, and every record."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .checkpoints import CheckpointStorage
from .config import RunConfig
from .errors import ConfigError
from .store import EvaluationRecord, EventRecord, MemberRecord, PopulationStore
from .trainable import Trainable

__all__ = ["BestMember", "Result", "ScheduleEntry"]


@dataclass(frozen=True)
class ScheduleEntry:
    """From ``step`` on, the winner's weights were trained with ``hparams``.

    ``step`` counts the training steps of the winning weights along their lineage (an
    exploit hands the copied weights over with their age); ``member`` is the member that
    trained them over that stretch.
    """

    step: int
    hparams: dict[str, Any]
    member: int


@dataclass(frozen=True)
class BestMember:
    """The best checkpointed state of the run and how to get it back."""

    member: int
    score: float
    step: int
    age: int
    hparams: dict[str, Any]
    checkpoint: Path
    seed: int
    config: RunConfig

    def summary(self) -> dict[str, Any]:
        """The JSON form that ``run``, ``resume`` and ``report`` print."""
        return {
            "member": self.member,
            "score": self.score,
            "step": self.step,
            "age": self.age,
            "hparams": self.hparams,
            "seed": self.seed,
            "checkpoint": str(self.checkpoint),
        }

    def load(self) -> Trainable:
        """A Trainable with the best state loaded, ready to evaluate or train on."""
        cls = self.config.trainable_class()
        trainable = cls(self.hparams, self.seed, **dict(self.config.trainable_options))
        trainable.load(self.checkpoint)
        return trainable


@dataclass(frozen=True)
class Result:
    """A run read back from its store: usable during the run or long after it."""

    run: str
    status: str
    config: RunConfig
    best: BestMember | None
    schedule: list[ScheduleEntry]
    members: list[MemberRecord]
    evaluations: list[EvaluationRecord]
    events: list[EventRecord]

    @classmethod
    def load(cls, store: PopulationStore, run: str, checkpoints: CheckpointStorage) -> Result:
        record = store.get_run(run)
        if record is None:
            raise ConfigError("run", run, f"no such run in {store.url}")
        config = RunConfig.from_spec(record.config)
        members = store.members(run)
        seeds = {m.member: m.seed for m in members}
        best = None
        schedule: list[ScheduleEntry] = []
        if record.best is not None:
            origin = (
                record.best.schedule[0]["member"] if record.best.schedule else record.best.member
            )
            best = BestMember(
                member=record.best.member,
                score=record.best.score,
                step=record.best.step,
                age=record.best.age,
                hparams=dict(record.best.hparams),
                checkpoint=checkpoints.path(record.best.checkpoint),
                # The weights began as the lineage's first member: replay uses its seed.
                seed=seeds.get(origin, 0),
                config=config,
            )
            schedule = [
                ScheduleEntry(e["step"], dict(e["hparams"]), e["member"])
                for e in record.best.schedule
            ]
        return cls(
            run=run,
            status=record.status,
            config=config,
            best=best,
            schedule=schedule,
            members=members,
            evaluations=store.evaluations(run),
            events=store.events(run),
        )

    @property
    def exploits(self) -> int:
        return sum(1 for e in self.events if e.kind == "exploit")

    @property
    def failures(self) -> int:
        return sum(1 for e in self.events if e.kind == "failure")

    @property
    def steps_trained(self) -> int:
        return sum(m.steps_trained for m in self.members)

    def best_score_by_member(self) -> dict[int, float]:
        sign = self.config.sign
        best: dict[int, float] = {}
        for e in self.evaluations:
            if e.score is None or not math.isfinite(e.score):
                continue
            if e.member not in best or sign * e.score > sign * best[e.member]:
                best[e.member] = e.score
        return best

    def rows(self) -> list[dict[str, Any]]:
        """Every evaluation and event as plain dicts (``record`` says which)."""
        out: list[dict[str, Any]] = [
            {"record": "evaluation", **asdict(e)} for e in self.evaluations
        ]
        out += [{"record": "event", **asdict(e)} for e in self.events]
        return out

    def to_dataframe(self, kind: str = "evaluations") -> Any:
        """The run's rows as a pandas DataFrame (needs the ``pandas`` extra).

        ``kind``: ``"evaluations"`` (member, step, age, score, error, owner, time and the
        hyperparameters each step was trained with, as ``hparam.<name>`` columns),
        ``"events"`` (exploits, explores, failures, rollbacks) or ``"all"``; in time order.
        """
        from .export import dataframe  # an upper layer, only for this convenience

        return dataframe(self, kind)
