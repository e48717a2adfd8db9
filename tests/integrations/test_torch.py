"""The PyTorch integration: safe checkpoints, live hyperparameters, per-member randomness."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from poptrain.errors import ConfigError  # noqa: E402
from poptrain.integrations.torch import (  # noqa: E402
    STATE_FILE,
    TorchTrainable,
    load_state,
    save_state,
    select_device,
    set_dropout,
    set_optimizer_hparams,
)

HPARAMS = {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3, "dropout": 0.3}


class TinyNet(TorchTrainable):
    """A dropout MLP on a fixed random regression-to-class task; shuffles every step."""

    def build_model(self, hparams: dict[str, Any]) -> nn.Module:
        generator = torch.Generator().manual_seed(1234)  # the data: the same for every member
        self.x = torch.randn(64, 6, generator=generator)
        self.y = (self.x[:, 0] + self.x[:, 1] > 0).long()
        return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.0), nn.Linear(16, 2))

    def train_step(self) -> None:
        order = torch.randperm(len(self.y))
        for start in range(0, len(order), 16):
            index = order[start : start + 16]
            self.optimizer.zero_grad()
            loss = nn.functional.cross_entropy(self.model(self.x[index]), self.y[index])
            loss.backward()
            self.optimizer.step()

    def evaluate(self) -> dict[str, float]:
        with self.evaluation():
            accuracy = (self.model(self.x).argmax(1) == self.y).float().mean()
        return {"accuracy": float(accuracy)}


def _weights(trainable: TorchTrainable) -> dict[str, Any]:
    return {k: v.clone() for k, v in trainable.model.state_dict().items()}


def _assert_identical(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _momentum_buffers(trainable: TorchTrainable) -> list[Any]:
    return [s["momentum_buffer"].clone() for s in trainable.optimizer.state.values()]


def test_importing_poptrain_does_not_import_torch() -> None:
    code = (
        "import sys, poptrain, poptrain.integrations, poptrain.cli, poptrain.baselines;"
        "poptrain.cli.build_parser();"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_save_load_round_trip_is_bit_identical(tmp_path: Path) -> None:
    original = TinyNet(HPARAMS, seed=7)
    for _ in range(3):
        original.step()
    original.save(tmp_path)
    assert (tmp_path / STATE_FILE).is_file()

    restored = TinyNet(HPARAMS, seed=99)  # another seed: every tensor must come from the file
    restored.load(tmp_path)
    _assert_identical(_weights(original), _weights(restored))
    for a, b in zip(_momentum_buffers(original), _momentum_buffers(restored), strict=True):
        assert torch.equal(a, b)

    # The random state travelled too: shuffling and dropout continue identically.
    for _ in range(2):
        original.step()
        restored.step()
    _assert_identical(_weights(original), _weights(restored))
    assert original.evaluate() == restored.evaluate()


def test_members_sharing_a_process_do_not_share_randomness() -> None:
    alone = TinyNet(HPARAMS, seed=3)
    for _ in range(3):
        alone.step()

    torch.manual_seed(0)
    mine, other = TinyNet(HPARAMS, seed=3), TinyNet(HPARAMS, seed=4)
    for _ in range(3):
        other.step()
        torch.rand(5)  # the process's own stream moves too
        mine.step()
    _assert_identical(_weights(alone), _weights(mine))
    assert not torch.equal(_weights(mine)["0.weight"], _weights(other)["0.weight"])


def test_new_hyperparameters_reach_the_live_optimiser_and_dropout() -> None:
    net = TinyNet(HPARAMS, seed=0)
    group = net.optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.05, 0.9, 1e-3)
    assert net.model[2].p == pytest.approx(0.3)

    net.step()
    buffers = _momentum_buffers(net)
    net.set_hparams({"lr": 0.2, "momentum": 0.5, "weight_decay": 0.0, "dropout": 0.6})
    for group in net.optimizer.param_groups:
        assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.2, 0.5, 0.0)
    assert net.model[2].p == pytest.approx(0.6)
    # The optimiser's state is kept across the change.
    for a, b in zip(buffers, _momentum_buffers(net), strict=True):
        assert torch.equal(a, b)


def test_a_zero_learning_rate_freezes_the_weights_and_a_positive_one_moves_them() -> None:
    net = TinyNet(HPARAMS, seed=0)
    net.step()
    net.set_hparams({"lr": 0.0, "momentum": 0.0, "weight_decay": 0.0, "dropout": 0.3})
    before = _weights(net)
    net.step()
    _assert_identical(before, _weights(net))
    net.set_hparams({"lr": 0.1, "momentum": 0.0, "weight_decay": 0.0, "dropout": 0.3})
    net.step()
    assert not torch.equal(before["0.weight"], _weights(net)["0.weight"])


def test_load_keeps_the_members_own_hyperparameters(tmp_path: Path) -> None:
    source = TinyNet({**HPARAMS, "lr": 0.1, "dropout": 0.1}, seed=1)
    source.step()
    source.save(tmp_path)
    member = TinyNet({**HPARAMS, "lr": 0.01, "dropout": 0.5}, seed=2)
    member.load(tmp_path)
    assert member.optimizer.param_groups[0]["lr"] == 0.01
    assert member.model[2].p == pytest.approx(0.5)
    _assert_identical(_weights(source), _weights(member))


class _Boom:
    """Unpickling this would run ``Path.touch`` on a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_a_checkpoint_holding_an_object_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    torch.save({"format": 1, "model": _Boom(marker)}, tmp_path / STATE_FILE)
    net = TinyNet(HPARAMS, seed=0)
    with pytest.raises(pickle.UnpicklingError):
        net.load(tmp_path)
    assert not marker.exists()


def test_save_state_and_load_state_keep_tensors_and_plain_values(tmp_path: Path) -> None:
    state = {"w": torch.arange(4.0), "nested": {"step": 3, "names": ["a", "b"]}, "flag": True}
    save_state(tmp_path / "s.pt", state)
    loaded = load_state(tmp_path / "s.pt")
    assert torch.equal(loaded["w"], state["w"])
    assert loaded["nested"] == {"step": 3, "names": ["a", "b"]} and loaded["flag"] is True


def test_an_optimiser_lacking_a_setting_is_refused() -> None:
    model = nn.Linear(2, 2)
    adam = torch.optim.Adam(model.parameters(), lr=0.1)
    set_optimizer_hparams(adam, {"lr": 0.01, "weight_decay": 0.1})
    assert adam.param_groups[0]["lr"] == 0.01
    with pytest.raises(ConfigError, match="momentum"):
        set_optimizer_hparams(adam, {"momentum": 0.9})


def test_set_dropout_sets_every_dropout_layer() -> None:
    model = nn.Sequential(nn.Dropout(0.1), nn.Linear(2, 2), nn.Sequential(nn.Dropout2d(0.2)))
    assert set_dropout(model, 0.45) == 2
    assert model[0].p == 0.45 and model[2][0].p == 0.45
    with pytest.raises(ConfigError):
        set_dropout(model, 1.5)


def test_device_selection() -> None:
    assert select_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():
        assert select_device(None).type == "cuda"
    else:
        assert select_device(None) == torch.device("cpu")
        assert select_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match="CUDA"):
            select_device("cuda")
    with pytest.raises(ConfigError):
        select_device("not-a-device")


def test_threads_option_is_validated() -> None:
    with pytest.raises(ConfigError, match="threads"):
        TinyNet(HPARAMS, seed=0, threads=0)
