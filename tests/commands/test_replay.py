"""``poptrain replay``: retraining from scratch along the schedule gives the recorded score."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from toys import Cli

from poptrain import ConfigError, RunDir
from poptrain.demos.toy import ToyTrainable
from poptrain.replay import replay, replay_schedule
from poptrain.results import ScheduleEntry

TOLERANCE = 1e-6


def test_replay_json_agrees_with_the_run(toy_dir: Path, cli: Cli) -> None:
    code, out, _ = cli("replay", str(toy_dir / "pbt"), "--json")
    assert code == 0
    data = json.loads(out)
    result = RunDir.read(toy_dir / "pbt").result()
    assert result.best is not None
    assert len(result.schedule) > 1  # a real schedule, not fixed hyperparameters
    assert data["original_score"] == result.best.score
    assert abs(data["replayed_score"] - data["original_score"]) <= TOLERANCE
    assert data["steps"] == result.best.age
    assert data["seed"] == result.best.seed


def test_replay_text_names_each_schedule_change(toy_dir: Path, cli: Cli) -> None:
    code, out, err = cli("replay", str(toy_dir / "pbt"))
    assert code == 0
    result = RunDir.read(toy_dir / "pbt").result()
    assert "replayed q" in out and "original q" in out
    assert err.count("from step") == len(result.schedule)


@pytest.mark.parametrize("method", ["grid", "explore_only", "exploit_only"])
def test_replay_baselines(toy_dir: Path, method: str) -> None:
    outcome = replay(RunDir.read(toy_dir / method).result())
    assert outcome.original_score is not None
    assert abs(outcome.replayed_score - outcome.original_score) <= TOLERANCE


def test_replay_an_asynchronous_run_served_by_worker_processes(async_dir: Path) -> None:
    result = RunDir.read(async_dir).result()
    assert result.exploits > 0
    outcome = replay(result)
    assert outcome.original_score is not None
    assert abs(outcome.replayed_score - outcome.original_score) <= TOLERANCE


def test_replay_every_member(async_dir: Path, cli: Cli) -> None:
    result = RunDir.read(async_dir).result()
    for member in result.members:
        code, out, _ = cli("replay", str(async_dir), "--member", str(member.member), "--json")
        assert code == 0
        data = json.loads(out)
        assert data["member"] == member.member
        assert data["steps"] == member.checkpoint_age
        assert data["original_score"] == member.checkpoint_score
        assert abs(data["replayed_score"] - data["original_score"]) <= TOLERANCE


def test_replay_after_failures_and_restarts(mixed_dir: Path) -> None:
    result = RunDir.read(mixed_dir).result()
    assert result.failures > 0
    for member in [None, *(m.member for m in result.members)]:
        outcome = replay(result, member=member)
        assert outcome.original_score is not None
        assert abs(outcome.replayed_score - outcome.original_score) <= TOLERANCE


def test_replay_save_writes_the_same_state_as_the_best_checkpoint(
    toy_dir: Path, tmp_path: Path, cli: Cli
) -> None:
    code, _, _ = cli("replay", str(toy_dir / "pbt"), "--save", str(tmp_path / "state"))
    assert code == 0
    best = RunDir.read(toy_dir / "pbt").result().best
    assert best is not None
    replayed = json.loads((tmp_path / "state" / "theta.json").read_text())
    original = json.loads((best.checkpoint / "theta.json").read_text())
    assert replayed == pytest.approx(original, abs=1e-12)


def test_replay_unknown_member_is_a_clear_error(toy_dir: Path, cli: Cli) -> None:
    code, _, err = cli("replay", str(toy_dir / "pbt"), "--member", "7")
    assert code == 2
    assert "--member" in err


def test_replay_schedule_switches_at_the_recorded_ages() -> None:
    schedule = [
        ScheduleEntry(0, {"h0": 1.0, "h1": 0.0}, 0),
        ScheduleEntry(3, {"h0": 0.0, "h1": 1.0}, 1),
    ]
    trainable, score = replay_schedule(
        ToyTrainable, schedule, 5, seed=0, metric="q", options={"lr": 0.1}
    )
    # 3 steps shrink θ0 by (1 − 0.2) each, then 2 steps shrink θ1.
    assert trainable.theta == pytest.approx([0.9 * 0.8**3, 0.9 * 0.8**2])  # type: ignore[attr-defined]
    assert score == pytest.approx(1.2 - (0.9 * 0.8**3) ** 2 - (0.9 * 0.8**2) ** 2)


def test_replay_schedule_must_start_at_zero() -> None:
    with pytest.raises(ConfigError):
        replay_schedule(
            ToyTrainable, [ScheduleEntry(2, {"h0": 1.0, "h1": 1.0}, 0)], 4, 0, metric="q"
        )
