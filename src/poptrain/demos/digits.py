"""The main demo: a small convolutional network on scikit-learn's handwritten digits.

The 1,797 8x8 images ship with scikit-learn (no download). They are split once, stratified,
into train / validation / test (60 / 20 / 20 by default) with a fixed split seed, so every
member, method and seed sees the same three sets. PBT's score is the validation accuracy;
the test accuracy is measured once, at the end, on the best state.

One training step is ``batches_per_step`` minibatches (default: one epoch) of SGD with
momentum, weight decay and dropout, all four tuned by PBT. Training images are shifted by
up to one pixel at random (augmentation): the network then never fits the training set
exactly, and a learning rate that falls during training pays off, which is the kind of
schedule PBT finds and fixed hyperparameters cannot follow.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..integrations.torch import TorchTrainable
from ..space import LogUniform, Uniform

__all__ = [
    "DIGITS_SPACE",
    "DigitsCNN",
    "DigitsData",
    "DigitsTrainable",
    "digits_data",
]

#: What PBT tunes, and what random search samples from.
DIGITS_SPACE = {
    "lr": LogUniform(1e-3, 0.3),
    "momentum": Uniform(0.0, 0.95),
    "weight_decay": LogUniform(1e-6, 1e-2),
    "dropout": Uniform(0.0, 0.6),
}


@dataclass(frozen=True)
class DigitsData:
    """The three splits as CPU tensors: images ``(n, 1, 8, 8)`` in ``[0, 1]``, labels ``(n,)``."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


@functools.lru_cache(maxsize=4)
def digits_data(
    split_seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.2
) -> DigitsData:
    """Load the bundled digits and split them (stratified); cached per process."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype("float32") / 16.0
    labels = digits.target.astype("int64")
    x_rest, x_test, y_rest, y_test = train_test_split(
        images, labels, test_size=test_fraction, stratify=labels, random_state=split_seed
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest,
        y_rest,
        test_size=val_fraction / (1.0 - test_fraction),
        stratify=y_rest,
        random_state=split_seed,
    )

    def images_of(array: Any) -> torch.Tensor:
        return torch.from_numpy(array).unsqueeze(1).contiguous()

    return DigitsData(
        images_of(x_train),
        torch.from_numpy(y_train),
        images_of(x_val),
        torch.from_numpy(y_val),
        images_of(x_test),
        torch.from_numpy(y_test),
    )


def random_shift(images: torch.Tensor, pixels: int) -> torch.Tensor:
    """Translate each image by up to ``pixels`` in x and y (zero fill): data augmentation."""
    count, _, height, width = images.shape
    padded = F.pad(images, (pixels, pixels, pixels, pixels))
    dy = torch.randint(0, 2 * pixels + 1, (count,), device=images.device)
    dx = torch.randint(0, 2 * pixels + 1, (count,), device=images.device)
    rows = (dy[:, None] + torch.arange(height, device=images.device))[:, :, None]
    cols = (dx[:, None] + torch.arange(width, device=images.device))[:, None, :]
    batch = torch.arange(count, device=images.device)[:, None, None]
    return padded[batch, 0, rows, cols].unsqueeze(1)


class DigitsCNN(nn.Module):
    """Two 3x3 convolutions, a 2x2 max-pool, a dropout-regularised hidden layer."""

    def __init__(self, channels: int = 16, hidden: int = 64, dropout: float = 0.0) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(2 * channels * 16, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x))
        return out


class DigitsTrainable(TorchTrainable):
    """One member: :class:`DigitsCNN` trained by SGD; the score is the validation accuracy.

    ``trainable_options``: ``batch_size`` (32), ``batches_per_step`` (None: one epoch),
    ``shift`` (1: training images are translated by up to one pixel; 0: no augmentation),
    ``channels`` (16), ``hidden`` (64), ``split_seed`` (0), ``threads``, ``device``.
    """

    def build_model(self, hparams: dict[str, Any]) -> nn.Module:
        # Runs with the member's random state: the first shuffle below is the member's own.
        options = self.options
        data = digits_data(int(options.get("split_seed", 0)))
        self.batch_size = int(options.get("batch_size", 32))
        self.shift = int(options.get("shift", 1))
        self._x_train, self._y_train = data.x_train.to(self.device), data.y_train.to(self.device)
        self._x_val, self._y_val = data.x_val.to(self.device), data.y_val.to(self.device)
        n = len(self._y_train)
        per_step = options.get("batches_per_step")
        self.batches_per_step = -(-n // self.batch_size) if per_step is None else int(per_step)
        # Where the member stands in its current pass over the shuffled training set.
        self._order = torch.randperm(n, device=self.device)
        self._cursor = 0
        return DigitsCNN(
            channels=int(options.get("channels", 16)),
            hidden=int(options.get("hidden", 64)),
            dropout=float(hparams.get("dropout", 0.0)),
        )

    def train_step(self) -> None:
        n = len(self._y_train)
        for _ in range(self.batches_per_step):
            if self._cursor >= n:
                self._order = torch.randperm(n, device=self.device)
                self._cursor = 0
            index = self._order[self._cursor : self._cursor + self.batch_size]
            self._cursor += len(index)
            images = self._x_train[index]
            if self.shift:
                images = random_shift(images, self.shift)
            self.optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(self.model(images), self._y_train[index])
            loss.backward()  # type: ignore[no-untyped-call]
            self.optimizer.step()

    def evaluate(self) -> dict[str, float]:
        return self.score_on(self._x_val, self._y_val)

    def test_accuracy(self) -> float:
        """Accuracy on the held-out test split (never used for selection)."""
        data = digits_data(int(self.options.get("split_seed", 0)))
        return self.score_on(data.x_test.to(self.device), data.y_test.to(self.device))["accuracy"]

    def score_on(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        with self.evaluation():
            logits = self.model(x)
            loss = float(F.cross_entropy(logits, y))
            # Exact fractions (k / n), not float32 means: equal counts give equal scores.
            accuracy = int((logits.argmax(dim=1) == y).sum()) / len(y)
        return {"accuracy": accuracy, "loss": loss}

    def extra_state(self) -> dict[str, Any]:
        return {"order": self._order.cpu(), "cursor": self._cursor}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "order" in state:
            self._order = state["order"].to(self.device)
            self._cursor = int(state["cursor"])
