"""Small real runs shared by the command tests (made once per session, read many times)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import poptrain
from poptrain.cli import main
from poptrain.demos.toy import TOY_SPACE, ToyTrainable

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # ``toys`` must import in this process and in spawned workers
    sys.path.insert(0, str(HERE))

from toys import TOY_STEPS, Cli  # noqa: E402


@pytest.fixture(scope="session")
def toy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``poptrain demo toy --seeds 1``: PBT in DIR/pbt, each baseline beside it."""
    root = tmp_path_factory.mktemp("toy")
    code = main(
        [
            "demo",
            "toy",
            "--seeds",
            "1",
            "--steps",
            str(TOY_STEPS),
            "--run-dir",
            str(root),
            "--executor",
            "inline",
            "--json",
        ]
    )
    assert code == 0
    return root


@pytest.fixture(scope="session")
def async_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An asynchronous run: 6 members on 2 worker processes, exploits across steps."""
    root = tmp_path_factory.mktemp("async") / "run"
    poptrain.run(
        ToyTrainable,
        space=TOY_SPACE,
        metric="q",
        mode="max",
        population_size=6,
        max_steps=40,
        ready=poptrain.EverySteps(5),
        exploit=poptrain.Truncation(0.25),
        explore=poptrain.Perturb(),
        seed=3,
        trainable_options={"lr": 0.005},
        run_dir=root,
        executor="local",
        workers=2,
    )
    return root


@pytest.fixture(scope="session")
def mixed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Failures, and log-scaled, integer and categorical hyperparameters (ignored by the toy)."""
    root = tmp_path_factory.mktemp("mixed") / "run"
    poptrain.run(
        "toys:FlakyToy",
        space={
            **TOY_SPACE,
            "scale": poptrain.LogUniform(1e-3, 1.0),
            "layers": poptrain.IntUniform(1, 4),
            "optimiser": poptrain.Choice(["sgd", "adam", "rmsprop"]),
        },
        metric="q",
        mode="max",
        population_size=5,
        max_steps=30,
        ready=poptrain.EverySteps(5),
        seed=1,
        trainable_options={"lr": 0.005, "limit": 7.0},
        run_dir=root,
        executor="inline",
    )
    return root


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    """Run ``poptrain ARGS`` in this process; return (exit code, stdout, stderr)."""

    def call(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    yield call
