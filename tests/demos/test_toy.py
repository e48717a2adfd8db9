"""``poptrain demo toy``: the paper's toy example, PBT against the baselines."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from helpers import env_with_tests_path
from poptrain.api import RunDir
from poptrain.demos.toy import ToyTrainable, toy_initial_hparams


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "poptrain.cli", "demo", "toy", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env_with_tests_path(),
    )


def test_toy_demo_pbt_beats_every_baseline(tmp_path):
    proc = demo("--seeds", "2", "--json", "--run-dir", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    figures = json.loads(proc.stdout)
    pbt = figures["pbt"]
    assert pbt["best_q"] >= 1.19
    for baseline in ("grid", "explore_only", "exploit_only"):
        assert pbt["best_q"] > figures[baseline]["best_q"], baseline
    # Fixed h can only shrink one coordinate: Q tops out at 1.2 - 0.81 = 0.39.
    assert figures["grid"]["best_q"] < 0.39 + 1e-6
    assert isinstance(pbt["steps_to_1.19"], (int, float))
    assert math.isfinite(pbt["steps_to_1.19"])
    assert 0 < pbt["steps_to_1.19"] <= 200
    assert pbt["seeds_reaching_1.19"] == 2
    assert [run["seed"] for run in pbt["runs"]] == [0, 1]
    assert figures["settings"]["seeds"] == 2
    assert pbt["exploits_mean"] > 0
    assert figures["grid"]["exploits_mean"] == 0


def test_toy_demo_keeps_its_runs(tmp_path):
    root = tmp_path / "toy"
    proc = demo("--seeds", "1", "--steps", "60", "--executor", "inline", "--run-dir", str(root))
    assert proc.returncode == 0, proc.stderr
    for method in ("pbt", "grid", "explore_only", "exploit_only"):
        assert (root / method / "run.json").is_file(), method
    assert str(root) in proc.stdout
    pbt = RunDir.read(root / "pbt").result()
    grid = RunDir.read(root / "grid").result()
    assert pbt.status == grid.status == "finished"
    assert pbt.exploits > 0 and grid.exploits == 0
    # The kept best state can be loaded and scores what the store says.
    best = pbt.best.load()
    assert isinstance(best, ToyTrainable)
    assert best.evaluate()["q"] == pbt.best.score
    assert grid.best.hparams in toy_initial_hparams()
