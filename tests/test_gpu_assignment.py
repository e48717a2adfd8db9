"""One GPU per worker: the assignment logic, and what local worker processes really see.

No GPU is needed: the assignment is only ``CUDA_VISIBLE_DEVICES`` in each worker process.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

import poptrain
from poptrain.executors.local import gpu_assignment, visible_gpus
from poptrain.trainable import Trainable


@pytest.mark.parametrize(
    ("visible", "expected"),
    [
        (None, [None, None, None]),
        ("", [None, None, None]),
        (" , ", [None, None, None]),
        ("0", ["0", "0", "0"]),
        ("0,1", ["0", "1", "0"]),
        ("3, 5 ,7", ["3", "5", "7"]),
        ("GPU-8f1c,GPU-22ab", ["GPU-8f1c", "GPU-22ab", "GPU-8f1c"]),
    ],
)
def test_gpu_assignment_is_round_robin_over_the_visible_devices(visible, expected):
    assert [gpu_assignment(i, visible) for i in range(3)] == expected


def test_visible_gpus_prefers_the_environment(tmp_path: Path):
    driver = tmp_path / "gpus"
    for bus in ("0000:17:00.0", "0000:65:00.0", "0000:ca:00.0"):
        (driver / bus).mkdir(parents=True)
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}, driver) == "2,3"
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, driver) == ""  # set empty: no GPU
    assert visible_gpus({}, driver) == "0,1,2"  # every GPU the driver lists
    assert visible_gpus({}, tmp_path / "no-driver") is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert visible_gpus({}, empty) is None


class DeviceProbe(Trainable):
    """Records the CUDA devices its worker process sees (``options["out"]``)."""

    def setup(self, hparams: dict[str, Any], seed: int) -> None:
        out = Path(self.options["out"]) / f"{os.getpid()}.json"
        out.write_text(json.dumps(os.environ.get("CUDA_VISIBLE_DEVICES")))
        self.value = 0.0

    def step(self) -> None:
        time.sleep(0.5)  # each worker holds its member a while: both workers take one
        self.value += float(self.hparams["x"])

    def evaluate(self) -> float:
        return self.value

    def save(self, path: Path) -> None:
        (path / "v.json").write_text(json.dumps(self.value))

    def load(self, path: Path) -> None:
        self.value = float(json.loads((path / "v.json").read_text()))


def test_each_local_worker_process_sees_one_device(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    out = tmp_path / "seen"
    out.mkdir()
    result = poptrain.run(
        DeviceProbe,
        space={"x": poptrain.Uniform(0.0, 1.0)},
        metric="value",
        mode="max",
        population_size=2,
        max_steps=4,
        ready=poptrain.EverySteps(100),
        trainable_options={"out": str(out)},
        run_dir=tmp_path / "run",
        executor="local",
        workers=2,
    )
    assert result.status == "finished"
    seen = {json.loads(f.read_text()) for f in out.glob("*.json")}
    assert seen == {"4", "6"}  # one device each, never both
