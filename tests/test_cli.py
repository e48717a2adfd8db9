"""The ``poptrain`` command: bad input refused before training, a good config trains."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from helpers import env_with_tests_path
from poptrain import cli
from poptrain.api import RunDir

GOOD = {
    "trainable": "poptrain.demos.toy:ToyTrainable",
    "space": {
        "h0": {"type": "Uniform", "low": 0.0, "high": 10.0},
        "h1": {"type": "Uniform", "low": 0.0, "high": 10.0},
    },
    "metric": "q",
    "mode": "max",
    "population_size": 2,
    "max_steps": 40,
    "ready": {"type": "EverySteps", "steps": 4},
    "exploit": {"type": "Truncation", "quantile": 0.5},
    "explore": {"type": "GaussianNoise", "scale": 0.1},
    "initial_hparams": [{"h0": 1.0, "h1": 0.0}, {"h0": 0.0, "h1": 1.0}],
    "synchronous": True,
    "trainable_options": {"lr": 0.02},
}

BAD = {
    "log-uniform low <= 0": (
        {"space": {"lr": {"type": "LogUniform", "low": 0.0, "high": 0.1}}},
        "space.lr.low=0.0: ",
    ),
    "mode maximise": ({"mode": "maximise"}, "mode='maximise': "),
    "unknown strategy": ({"exploit": {"type": "Hyperband"}}, "strategy.type='Hyperband': "),
    "population 0": ({"population_size": 0}, "population_size=0: "),
    "bad quantile": (
        {"exploit": {"type": "Truncation", "quantile": 0.9}},
        "Truncation.quantile=0.9: ",
    ),
    "unknown field": ({"populaton_size": 4}, "config=['populaton_size']: "),
}


def write(tmp_path, config: dict, name: str = "config.json"):
    path = tmp_path / name
    path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_config_is_refused_before_training(tmp_path, capsys, case):
    change, expected = BAD[case]
    config = write(tmp_path, {**GOOD, **change})
    run_dir = tmp_path / "run"
    code = cli.main(["run", str(config), "--run-dir", str(run_dir), "--workers", "1"])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.startswith(f"poptrain: error: {expected}"), err
    assert "Traceback" not in err
    assert out == ""
    assert not run_dir.exists()  # nothing was created, nothing trained


def test_missing_config_file(tmp_path, capsys):
    missing = tmp_path / "nope.json"
    code = cli.main(["run", str(missing)])
    _out, err = capsys.readouterr()
    assert code == 2
    assert err.startswith(f"poptrain: error: config={str(missing)!r}: no such file"), err


def test_unparsable_config_file(tmp_path, capsys):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    code = cli.main(["run", str(path)])
    _out, err = capsys.readouterr()
    assert code == 2
    assert err.startswith(f"poptrain: error: config={str(path)!r}: cannot be parsed"), err


@pytest.mark.parametrize("case", ["log-uniform low <= 0", "mode maximise"])
def test_the_installed_command_refuses_bad_input_without_traceback(tmp_path, case):
    change, expected = BAD[case]
    config = write(tmp_path, {**GOOD, **change})
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "poptrain.cli",
            "run",
            str(config),
            "--run-dir",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env_with_tests_path(),
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"poptrain: error: {expected}"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()


def test_run_prints_the_best_score(tmp_path):
    config = write(tmp_path, GOOD)
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "poptrain.cli",
            "run",
            str(config),
            "--run-dir",
            str(run_dir),
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env_with_tests_path(),
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    match = re.search(r"best q = ([-+0-9.eE]+) \(member (\d+), step (\d+)\)", proc.stdout)
    assert match, proc.stdout
    result = RunDir.read(run_dir).result()
    assert result.status == "finished"
    assert result.best is not None
    assert float(match.group(1)) == pytest.approx(result.best.score, rel=1e-5)
    assert int(match.group(2)) == result.best.member
    # PBT on the toy beats what either fixed h can reach (Q = 0.39).
    assert result.best.score > 0.39
    assert "from step" in proc.stdout  # the schedule is printed
