"""The function-style API behaves exactly like the class API."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import poptrain
from poptrain.demos.toy import TOY_SPACE, ToyTrainable, toy_initial_hparams
from poptrain.demos.toy_function import toy_train
from poptrain.function_api import Session


def _toy_run(trainable: object, run_dir: Path, **extra: object) -> poptrain.Result:
    options: dict[str, object] = {
        "space": TOY_SPACE,
        "metric": "q",
        "mode": "max",
        "population_size": 2,
        "max_steps": 40,
        "initial_hparams": toy_initial_hparams(),
        "explore": poptrain.GaussianNoise(0.1),
        "trainable_options": {"lr": 0.02},
        "synchronous": True,
        "executor": "inline",
        "run_dir": run_dir,
    }
    options.update(extra)
    return poptrain.run(trainable, **options)  # type: ignore[arg-type]


def test_function_api_reproduces_the_class_api_exactly(tmp_path: Path) -> None:
    by_class = _toy_run(ToyTrainable, tmp_path / "class")
    by_function = _toy_run(toy_train, tmp_path / "function")
    assert by_function.best is not None and by_class.best is not None
    assert by_function.best.score == by_class.best.score
    assert by_function.exploits == by_class.exploits > 0
    assert [e.score for e in by_function.evaluations] == [e.score for e in by_class.evaluations]
    assert by_function.config.to_spec()["trainable"] == "poptrain.demos.toy_function:toy_train"


def test_dropped_loops_end_their_threads(tmp_path: Path) -> None:
    before = threading.active_count()
    # One worker, two members: the worker rotates, dropping and rebuilding loops.
    result = _toy_run(toy_train, tmp_path / "rotate", synchronous=False)
    assert all(m.step == 40 for m in result.members)
    assert threading.active_count() <= before + 1


def failing_train(session: Session) -> None:
    steps = 0
    while True:
        steps += 1
        if session.hparams["h0"] > 0.5 and steps == 3:
            raise ValueError("diverged")
        session.report(1.0 / steps, save=lambda folder: (folder / "x").write_text("1"))


def early_return_train(session: Session) -> None:
    session.report(0.5, save=lambda folder: (folder / "x").write_text("1"))


def test_an_exception_in_the_loop_is_a_recorded_failure(tmp_path: Path) -> None:
    result = _toy_run(failing_train, tmp_path / "fail", synchronous=False, max_steps=12)
    failures = [e for e in result.events if e.kind == "failure"]
    assert failures and all("diverged" in (e.message or "") for e in failures)
    assert {m.status.value for m in result.members} <= {"finished", "failed"}


def test_a_loop_that_returns_too_early_fails_the_member(tmp_path: Path) -> None:
    result = _toy_run(early_return_train, tmp_path / "early", synchronous=False, max_steps=5)
    messages = [e.message or "" for e in result.events if e.kind == "failure"]
    assert any("returned before" in m for m in messages)


def test_a_nested_function_is_refused_by_name() -> None:
    def local_train(session: Session) -> None:  # not importable by a worker
        return None

    with pytest.raises(poptrain.ConfigError) as refused:
        poptrain.run_config(local_train, space=TOY_SPACE, metric="q", mode="max").to_spec()
    assert refused.value.field == "trainable"
