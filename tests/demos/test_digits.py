"""The digits demo: data splits, an end-to-end run, and equal budgets across methods."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from poptrain.api import RunDir
from poptrain.baselines import grid_hparams
from poptrain.demos.digits import DIGITS_SPACE, DigitsTrainable, digits_data
from poptrain.demos.digits_compare import (
    DIGITS_GRID_LEVELS,
    DigitsSettings,
    digits_methods,
    run_digits,
    run_digits_comparison,
)

#: A few minibatches per step: enough to learn something, quick on two cores.
TINY = DigitsSettings(members=4, steps=6, ready=2, batches_per_step=6)


def test_splits_are_stratified_disjoint_and_cached():
    data = digits_data()
    sizes = [len(data.y_train), len(data.y_val), len(data.y_test)]
    assert sum(sizes) == 1797
    assert sizes[1] == pytest.approx(0.2 * 1797, abs=2) and sizes[2] == pytest.approx(
        0.2 * 1797, abs=2
    )
    for labels in (data.y_train, data.y_val, data.y_test):
        assert set(labels.tolist()) == set(range(10))
    assert data.x_train.shape[1:] == (1, 8, 8)
    assert float(data.x_train.max()) <= 1.0 and float(data.x_train.min()) >= 0.0
    # No image is in two splits (the digits set has no exact duplicates across them).
    flat = {tuple(x.flatten().tolist()) for x in data.x_test}
    assert not any(tuple(x.flatten().tolist()) in flat for x in data.x_val)
    assert digits_data() is data


def test_a_member_learns_and_resumes_bit_identically(tmp_path: Path):
    hparams = {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "dropout": 0.2}
    member = DigitsTrainable(hparams, seed=5, threads=1, batches_per_step=10)
    before = member.evaluate()["accuracy"]
    for _ in range(12):
        member.step()
    after = member.evaluate()["accuracy"]
    assert after > 0.5 > before  # 120 minibatches: far above chance (0.1)
    member.save(tmp_path)
    copy = DigitsTrainable(hparams, seed=6, threads=1, batches_per_step=10)
    copy.load(tmp_path)
    member.step()
    copy.step()  # same data order, same augmentation, same dropout
    assert member.evaluate() == copy.evaluate()
    assert 0.0 <= member.test_accuracy() <= 1.0


def test_end_to_end_tiny_pbt_run_on_local_processes(tmp_path: Path):
    outcome, test = run_digits("pbt", settings=TINY, seed=1, run_dir=tmp_path / "pbt", workers=2)
    result = outcome.results[0]
    assert result.status == "finished"
    assert outcome.steps_trained == TINY.members * TINY.steps
    assert 0.3 < test <= 1.0  # chance is 0.1
    assert outcome.best.score == max(
        e.score for e in result.evaluations if e.score is not None and e.step % TINY.ready == 0
    )
    assert result.schedule and result.schedule[0].step == 0
    assert RunDir.read(tmp_path / "pbt").result().best.score == outcome.best.score

    # Synchronous generations and per-member random streams: the same seed gives the same
    # run on one worker in this process as on two worker processes.
    again, test_again = run_digits(
        "pbt", settings=TINY, seed=1, run_dir=tmp_path / "again", executor="inline"
    )
    rerun = again.results[0]

    def scores(r):
        return sorted((e.member, e.step, e.score) for e in r.evaluations)

    assert scores(rerun) == scores(result)
    assert rerun.schedule == result.schedule and rerun.exploits == result.exploits > 0
    assert (again.best.member, again.best.hparams, test_again) == (
        outcome.best.member,
        outcome.best.hparams,
        test,
    )


def test_every_method_trains_the_same_budget(tmp_path: Path):
    methods = ["pbt", "random_search", "grid_search"]
    try:
        import optuna  # noqa: F401

        methods.append("tpe")
    except ImportError:
        pass
    figures = run_digits_comparison(
        seeds=1, methods=methods, settings=TINY, run_dir=tmp_path, executor="inline"
    )
    budget = TINY.members * TINY.steps
    assert figures["budget_steps"] == budget
    keys = set(figures["pbt"])
    for method in methods:
        row = figures[method]
        assert set(row) == keys
        assert row["steps_trained"] == [budget]
        assert 0.0 <= row["test_accuracy_mean"] <= 1.0
        (run,) = row["runs"]
        assert run["steps_trained"] == budget
        if method != "pbt":
            assert run["exploits"] == 0
    # Random search starts from PBT's own initial draws; the grid from the grid.
    pbt = RunDir.read(tmp_path / "seed-0" / "pbt").result()
    random = RunDir.read(tmp_path / "seed-0" / "random_search").result()
    grid = RunDir.read(tmp_path / "seed-0" / "grid_search").result()
    # A schedule starts with the initial hyperparameters of the member its weights began in.
    random_hparams = {m.member: m.hparams for m in random.members}
    for member in pbt.members:
        origin = member.schedule[0]
        assert random_hparams[origin["member"]] == origin["hparams"]
    assert [m.hparams for m in grid.members] == grid_hparams(DIGITS_SPACE, TINY.members)


def test_the_digits_grid_gives_the_learning_rate_four_levels():
    grid = grid_hparams(DIGITS_SPACE, 8, DIGITS_GRID_LEVELS)
    assert len({h["lr"] for h in grid}) == 4 and len({h["momentum"] for h in grid}) == 2
    assert len({(h["weight_decay"], h["dropout"]) for h in grid}) == 1
    assert digits_methods(8)["grid_search"].grid_levels == DIGITS_GRID_LEVELS
    assert digits_methods(4)["grid_search"].grid_levels is None


def test_cli_demo_digits_json(tmp_path: Path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "poptrain.cli",
            "demo",
            "digits",
            "--json",
            "--steps",
            "2",
            "--members",
            "2",
            "--executor",
            "inline",
            "--run-dir",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert 0.0 <= out["test_accuracy"] <= 1.0
    assert out["steps_trained"] == 4
    assert out["schedule"][0]["step"] == 0
    assert Path(out["run_dir"]) == tmp_path / "run"
    assert (tmp_path / "run" / "run.json").is_file()


def test_plain_demo_command_means_digits():
    from poptrain.cli import build_parser
    from poptrain.commands import demo

    args = build_parser().parse_args(["demo"])
    assert args.func is demo._digits
    assert args.compare is False and args.workers == 2
    args = build_parser().parse_args(["demo", "digits", "--compare", "--seeds", "2", "--json"])
    assert args.func is demo._digits and args.compare and args.seeds == 2 and args.json
