"""End to end on real worker processes (LocalExecutor), a real store and real checkpoints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import poptrain
from helpers import env_with_tests_path
from helpers.trainables import Quadratic
from poptrain.api import RunDir
from poptrain.demos.toy import TOY_SPACE, ToyTrainable
from poptrain.population import member_seed
from poptrain.store import MemberStatus

SPACE = {"x": poptrain.Uniform(0.05, 1.0)}


def assert_all_finished(result: poptrain.Result, max_steps: int, *, allow_failed: bool = False):
    for member in result.members:
        if allow_failed and member.status == MemberStatus.FAILED:
            continue
        assert member.status == MemberStatus.FINISHED, member
        assert member.step == max_steps, member


def test_rotation_on_fewer_workers_than_members(tmp_path):
    result = poptrain.run(
        ToyTrainable,
        space=TOY_SPACE,
        metric="q",
        mode="max",
        population_size=4,
        max_steps=20,
        ready=poptrain.EverySteps(2),
        exploit=poptrain.Truncation(0.5),
        run_dir=tmp_path / "run",
        executor="local",
        workers=2,
        seed=3,
    )
    assert result.status == "finished"
    assert len(result.members) == 4
    assert_all_finished(result, 20)
    assert result.exploits >= 1
    assert result.failures == 0
    # Every member trained exactly its budget: PBT costs what a grid of 4 costs.
    assert [m.steps_trained for m in result.members] == [20] * 4
    assert result.best is not None and result.best.checkpoint.is_dir()
    assert (tmp_path / "run" / "run.json").is_file()
    # Both workers served members, and every member was released and claimed again.
    assert len({e.owner for e in result.evaluations}) == 2


@pytest.mark.parametrize("bad", ["raise", "nan"])
def test_failing_member_does_not_take_the_population_down(tmp_path, bad):
    seed = 5
    result = poptrain.run(
        Quadratic,
        space=SPACE,
        metric="score",
        mode="max",
        population_size=3,
        max_steps=12,
        ready=poptrain.EverySteps(3),
        run_dir=tmp_path / "run",
        workers=2,
        seed=seed,
        max_failures=10,
        trainable_options={"bad": bad, "bad_seed": member_seed(seed, 1), "every": 2},
    )
    assert result.status == "finished"
    failures = [e for e in result.events if e.kind == "failure"]
    assert failures, "the injected failures were not recorded"
    assert {e.member for e in failures} == {1}
    expected = "RuntimeError: injected failure" if bad == "raise" else "score=nan"
    assert all(expected in e.message for e in failures)
    failed_evals = [e for e in result.evaluations if e.error is not None]
    assert {e.member for e in failed_evals} == {1}
    assert all(e.score is None for e in failed_evals)
    assert_all_finished(result, 12)
    # The healthy members never failed.
    assert all(m.failures == 0 for m in result.members if m.member != 1)
    assert result.members[1].failures == len(failures)


def test_member_failing_for_good_leaves_the_others_running(tmp_path):
    seed = 2
    result = poptrain.run(
        Quadratic,
        space=SPACE,
        metric="score",
        mode="max",
        population_size=3,
        max_steps=9,
        ready=poptrain.EverySteps(3),
        run_dir=tmp_path / "run",
        workers=2,
        seed=seed,
        max_failures=1,
        trainable_options={"bad": "raise", "bad_seed": member_seed(seed, 0), "every": 1},
    )
    assert result.status == "finished"
    assert result.members[0].status == MemberStatus.FAILED
    assert result.members[0].failures == 2
    assert_all_finished(result, 9, allow_failed=True)


def test_dead_worker_process_is_replaced(tmp_path):
    seed = 1
    marker = tmp_path / "crashed-once"
    result = poptrain.run(
        Quadratic,
        space=SPACE,
        metric="score",
        mode="max",
        population_size=3,
        max_steps=10,
        ready=poptrain.EverySteps(2),
        run_dir=tmp_path / "run",
        workers=1,  # only the replacement can finish the run
        seed=seed,
        trainable_options={
            "bad": "exit",
            "bad_seed": member_seed(seed, 2),
            "every": 2,  # rotation rebuilds the instance every 2 steps
            "marker": str(marker),
        },
    )
    assert marker.exists()  # the worker did die
    assert result.status == "finished"
    assert_all_finished(result, 10)
    assert result.failures == 0  # a dead process is not the member's failure
    # The replacement worker has a new owner name: two owners wrote evaluations.
    assert len({e.owner for e in result.evaluations}) == 2
    # The member it held went back to the pool and was served again.
    assert [m.member for m in result.members if m.steps_trained > 0] == [0, 1, 2]


def test_ctrl_c_saves_everything_and_resume_finishes(tmp_path):
    run_dir = tmp_path / "run"
    config = {
        "trainable": "helpers.trainables:Quadratic",
        "space": {"x": {"type": "Uniform", "low": 0.05, "high": 1.0}},
        "metric": "score",
        "mode": "max",
        "population_size": 2,
        "max_steps": 40,
        "ready": {"type": "EverySteps", "steps": 2},
        "trainable_options": {"sleep": 0.05},
    }
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "poptrain.cli",
            "run",
            str(config_file),
            "--run-dir",
            str(run_dir),
            "--workers",
            "2",
        ],
        env=env_with_tests_path(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        deadline = time.monotonic() + 60
        trained: set[int] = set()
        while time.monotonic() < deadline and process.poll() is None:
            if (run_dir / "run.json").exists():
                store, _ = RunDir.read(run_dir).open()
                try:
                    trained = {e.member for e in store.evaluations(RunDir.read(run_dir).name)}
                finally:
                    store.close()
                if trained == {0, 1}:  # both workers are training
                    break
            time.sleep(0.05)
        assert process.poll() is None, process.communicate()
        assert trained == {0, 1}
        # Ctrl-C in a terminal reaches the whole foreground process group.
        os.killpg(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, (stdout, stderr)
    assert "poptrain: interrupted" in stderr
    assert f"poptrain resume {run_dir}" in stderr
    assert "Traceback" not in stderr, stderr

    info = RunDir.read(run_dir)
    store, checkpoints = info.open()
    try:
        assert store.get_run(info.name).status == "interrupted"
        evaluations = store.evaluations(info.name)
        assert evaluations
        members = store.members(info.name)
        for member in members:
            assert member.status == MemberStatus.IDLE  # nobody holds it any more
            assert member.step < 40
            # Every member was checkpointed when it stopped: no step is lost.
            assert member.checkpoint is not None and checkpoints.exists(member.checkpoint)
            assert member.checkpoint_step == member.step
    finally:
        store.close()

    result = poptrain.resume(run_dir, workers=2)
    assert result.status == "finished"
    assert_all_finished(result, 40)
    # Resuming redid no step: each member trained its budget exactly once.
    assert [m.steps_trained for m in result.members] == [40, 40]


def test_unimportable_trainable_is_refused_before_anything_starts(tmp_path):
    config = poptrain.run_config(
        "helpers.no_such_module:Nope",
        space=SPACE,
        metric="score",
        mode="max",
        population_size=2,
        max_steps=4,
    )
    with pytest.raises(poptrain.ConfigError) as info:
        poptrain.run(config, run_dir=tmp_path / "run", workers=1)
    assert info.value.field == "trainable"
    assert "cannot be imported" in str(info.value)
    assert not (tmp_path / "run" / "run.json").exists()


def test_unimportable_trainable_stops_the_run_without_restarts(tmp_path, caplog):
    # REGRESSION: a ConfigError raised while a worker starts (the trainable cannot be
    # imported there) used to kill the worker, which the executor restarted 8 times.
    # workers=0 only creates the run (as for `poptrain worker` on other hosts).
    config = poptrain.run_config(
        "helpers.no_such_module:Nope",
        space=SPACE,
        metric="score",
        mode="max",
        population_size=2,
        max_steps=4,
    )
    poptrain.run(config, run_dir=tmp_path / "run", workers=0)
    with pytest.raises(poptrain.ConfigError) as info:
        poptrain.resume(tmp_path / "run", workers=1)
    assert "helpers.no_such_module:Nope" in str(info.value)
    assert "cannot be imported" in str(info.value)
    assert not [r for r in caplog.records if "starting another" in r.getMessage()]
    store, _ = RunDir.read(tmp_path / "run").open()
    try:
        (run,) = store.list_runs()
        assert run.status.startswith("error: trainable=")
        assert store.evaluations(run.name) == []
    finally:
        store.close()
