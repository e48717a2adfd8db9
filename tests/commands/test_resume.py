"""``poptrain resume`` after a Ctrl-C and after a crash (real processes, real signals)."""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from toys import Cli

from poptrain import RunDir
from poptrain.commands.common import live
from poptrain.replay import replay
from poptrain.store import SQLStore, sqlite_url

HERE = Path(__file__).resolve().parent
MEMBERS, STEPS, READY = 4, 40, 4
#: Wait for this many evaluations before stopping the run: well inside it.
STOP_AFTER = 30
DEADLINE = 120.0  # seconds: only a guard against a hung test, never a measurement


def _config(path: Path) -> Path:
    uniform = {"type": "Uniform", "low": 0.0, "high": 10.0}
    spec = {
        "trainable": "toys:SlowToy",
        "space": {"h0": uniform, "h1": uniform},
        "metric": "q",
        "mode": "max",
        "population_size": MEMBERS,
        "max_steps": STEPS,
        "ready": {"type": "EverySteps", "steps": READY},
        "seed": 5,
        "trainable_options": {"lr": 0.005, "sleep": 0.02},
    }
    path.write_text(json.dumps(spec))
    return path


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _poptrain(*args: str, start_new_session: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "poptrain.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        start_new_session=start_new_session,
    )


def _wait_for_evaluations(run_dir: Path, count: int, process: subprocess.Popen[str]) -> None:
    give_up = time.monotonic() + DEADLINE
    while not (run_dir / "run.json").is_file():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < give_up, "the run never started"
        time.sleep(0.05)
    info = RunDir.read(run_dir)
    store = SQLStore(sqlite_url(run_dir / "poptrain.db"), create=False)
    try:
        while len(store.evaluations(info.name)) < count:
            assert process.poll() is None, "the run ended before it could be stopped"
            assert time.monotonic() < give_up, "the run did not progress"
            time.sleep(0.05)
    finally:
        store.close()


def _resume(run_dir: Path) -> dict[str, object]:
    process = _poptrain("resume", str(run_dir), "--workers", "2", "--json")
    out, err = process.communicate(timeout=DEADLINE)
    assert process.returncode == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


def _check_finished(run_dir: Path) -> None:
    result = RunDir.read(run_dir).result()
    assert result.status == "finished"
    assert [m.step for m in result.members] == [STEPS] * MEMBERS
    assert all(m.status.value == "finished" for m in result.members)
    assert result.best is not None
    # The resumed run is still one schedule: replay gives the recorded score.
    outcome = replay(result)
    assert outcome.original_score is not None
    assert abs(outcome.replayed_score - outcome.original_score) <= 1e-6


@pytest.mark.timeout(300)
def test_resume_after_ctrl_c_loses_no_step(tmp_path: Path, cli: Cli) -> None:
    run_dir = tmp_path / "run"
    process = _poptrain(
        "run",
        str(_config(tmp_path / "toy.json")),
        "--run-dir",
        str(run_dir),
        "--workers",
        "2",
        "--json",
    )
    _wait_for_evaluations(run_dir, STOP_AFTER, process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=DEADLINE)
    assert process.returncode == 130
    assert f"poptrain resume {run_dir}" in err

    # The stopped run reports from its directory alone.
    code, out, _ = cli("report", str(run_dir), "--json")
    assert code == 0
    stopped = json.loads(out)
    assert stopped["status"] == "interrupted"
    assert STOP_AFTER <= stopped["steps"] < MEMBERS * STEPS
    assert all(row["status"] == "idle" for row in stopped["population"])

    assert _resume(run_dir)["status"] == "finished"
    _check_finished(run_dir)
    result = RunDir.read(run_dir).result()
    # Ctrl-C checkpointed every member where it stood: nothing was trained twice.
    assert not [e for e in result.events if e.kind == "rollback"]
    assert result.steps_trained == MEMBERS * STEPS


@pytest.mark.timeout(300)
def test_resume_after_a_crash_redoes_only_steps_since_each_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    process = _poptrain(
        "run",
        str(_config(tmp_path / "toy.json")),
        "--run-dir",
        str(run_dir),
        "--workers",
        "2",
        "--json",
        start_new_session=True,
    )
    _wait_for_evaluations(run_dir, STOP_AFTER, process)
    os.killpg(process.pid, signal.SIGKILL)  # the run's own process group: parent and workers
    process.communicate(timeout=DEADLINE)

    crashed = RunDir.read(run_dir).result()
    assert crashed.status == "running"  # nobody could record the end
    held = [m for m in crashed.members if m.status.value == "running"]

    assert _resume(run_dir)["status"] == "finished"
    _check_finished(run_dir)
    result = RunDir.read(run_dir).result()
    rollbacks = [e for e in result.events if e.kind == "rollback"]
    # Exactly the members the dead workers held beyond their last checkpoint went back to it.
    expected = {m.member: m.step - m.checkpoint_step for m in held if m.step != m.checkpoint_step}
    assert {e.member: e.step - (e.new_step or 0) for e in rollbacks} == expected
    lost = list(expected.values())
    # Checkpoints are taken at every ready point: at most READY - 1 steps are lost each.
    assert all(0 < n < READY for n in lost)
    assert result.steps_trained == MEMBERS * STEPS + sum(lost)


def test_resume_a_finished_run_returns_at_once(toy_dir: Path, cli: Cli) -> None:
    before = RunDir.read(toy_dir / "grid").result()
    code, out, _ = cli("resume", str(toy_dir / "grid"), "--executor", "inline", "--json")
    assert code == 0
    assert json.loads(out)["status"] == "finished"
    after = RunDir.read(toy_dir / "grid").result()
    assert len(after.evaluations) == len(before.evaluations)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("flags", "terminal", "expected"),
    [
        ({}, True, True),
        ({"quiet": True}, True, False),
        ({"json": True}, True, False),
        ({}, False, False),
    ],
)
def test_live_progress_only_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, flags: dict[str, bool], terminal: bool, expected: bool
) -> None:
    monkeypatch.setattr(sys, "stderr", _Terminal() if terminal else io.StringIO())
    args = argparse.Namespace(quiet=flags.get("quiet", False), json=flags.get("json", False))
    assert live(args) is expected
