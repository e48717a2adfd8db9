"""PyTorch integration: a model and its optimiser as a PBT member in a few lines.

Subclass :class:`TorchTrainable`, build the model, write one unit of training and an
evaluation; saving, loading, applying new hyperparameters to the live optimiser and to
the dropout layers, device selection and per-member random streams are done for you::

    from poptrain.integrations.torch import TorchTrainable

    class Net(TorchTrainable):
        def build_model(self, hparams):
            return torch.nn.Sequential(torch.nn.Linear(64, 10))

        def train_step(self):                  # runs with the member's own RNG
            for x, y in batches(self.device):
                self.optimizer.zero_grad()
                torch.nn.functional.cross_entropy(self.model(x), y).backward()
                self.optimizer.step()

        def evaluate(self):
            with self.evaluation():            # eval mode, no_grad, the member's RNG
                return {"accuracy": accuracy(self.model, self.device)}

The default optimiser is SGD; hyperparameters named in :attr:`TorchTrainable.OPTIMIZER_HPARAMS`
(``lr``, ``momentum``, ``weight_decay``) go into every parameter group, and the one named
:attr:`TorchTrainable.DROPOUT_HPARAM` (``dropout``) sets ``p`` of every dropout layer.

Checkpoints hold tensors and plain values only: they are written with :func:`torch.save`
and read with ``torch.load(weights_only=True)``, which never unpickles arbitrary objects.
The random state of the member (CPU, and CUDA when used) is saved with them, so a member
restored from a checkpoint continues exactly as the original would have.

Only this module imports PyTorch; ``import poptrain`` does not.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "poptrain.integrations.torch needs PyTorch: pip install 'poptrain[torch]'"
    ) from exc

from ..errors import ConfigError
from ..trainable import Trainable

__all__ = [
    "STATE_FILE",
    "TorchTrainable",
    "load_state",
    "save_state",
    "select_device",
    "set_dropout",
    "set_optimizer_hparams",
]

#: The file a :class:`TorchTrainable` writes in its checkpoint folder.
STATE_FILE = "state.pt"
_FORMAT = 1

_DROPOUT_TYPES: tuple[type[nn.modules.dropout._DropoutNd], ...] = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)


def select_device(preferred: str | None = None) -> torch.device:
    """The device a member trains on.

    ``preferred`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``…) wins when given; ``None`` or
    ``"auto"`` picks the first visible CUDA device, else the CPU. The local executor gives
    each worker process one GPU through ``CUDA_VISIBLE_DEVICES``, so the first visible
    device is that worker's own.
    """
    if preferred is not None and preferred != "auto":
        try:
            device = torch.device(preferred)
        except RuntimeError as exc:
            raise ConfigError("device", preferred, f"is not a torch device ({exc})") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            raise ConfigError(
                "device", preferred, f"CUDA is not available (CUDA_VISIBLE_DEVICES={visible!r})"
            )
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", 0)
    return torch.device("cpu")


def set_optimizer_hparams(optimizer: torch.optim.Optimizer, values: Mapping[str, float]) -> None:
    """Set ``key = value`` in every parameter group of a live optimiser.

    The optimiser reads its groups at every ``step()``, so the change takes effect at the
    next step and its state (momentum buffers, Adam moments) is kept. A key the optimiser
    does not have (``momentum`` for Adam) is refused rather than silently ignored.
    """
    for key, value in values.items():
        for group in optimizer.param_groups:
            if key not in group:
                raise ConfigError(
                    f"optimizer.{key}",
                    value,
                    f"{type(optimizer).__name__} has no {key!r} setting "
                    f"(it has {sorted(k for k in group if k != 'params')})",
                )
            group[key] = float(value)


def set_dropout(model: nn.Module, p: float) -> int:
    """Set the drop probability of every dropout layer in ``model``; return how many."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0:
        raise ConfigError("dropout", p, "must be a probability in [0, 1]")
    count = 0
    for module in model.modules():
        if isinstance(module, _DROPOUT_TYPES):
            module.p = float(p)
            count += 1
    return count


def save_state(path: str | Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` (nested dicts/lists of tensors and plain values) to the file ``path``."""
    torch.save(dict(state), Path(path))


def load_state(path: str | Path, map_location: torch.device | str | None = None) -> dict[str, Any]:
    """Read a file written by :func:`save_state`, refusing anything but tensors and plain data.

    ``weights_only=True`` makes :func:`torch.load` use a restricted unpickler: a checkpoint
    that holds any other object (a class, a function) raises instead of running code.
    """
    loaded = torch.load(Path(path), map_location=map_location, weights_only=True)
    if not isinstance(loaded, dict):
        raise ConfigError("checkpoint", str(path), "does not hold a state dictionary")
    return loaded


class TorchTrainable(Trainable):
    """A PyTorch model and optimiser as a member of the population.

    Implement :meth:`build_model`, :meth:`train_step` and :meth:`evaluate`; override
    :meth:`build_optimizer` for another optimiser than SGD. Attributes available to them:
    ``self.model``, ``self.optimizer``, ``self.device``, ``self.hparams``, ``self.options``
    (the run's ``trainable_options``).

    Options read from ``trainable_options``: ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``,
    ``"cuda:1"``; default auto) and ``threads`` (``torch.set_num_threads`` for the worker
    process; default: PyTorch's own choice; set it to 1 when several workers share a CPU).

    Randomness: every member has its own CPU (and CUDA) random state, seeded from the
    member's seed, swapped in around :meth:`build_model`, :meth:`train_step` and
    :meth:`evaluation`, and saved in the checkpoint. Draw every random number through
    ``torch`` (``torch.randperm`` for shuffling, dropout) and a member's training does not
    depend on which other members shared its worker process. An exploit loads the source's
    checkpoint, random state included: from that checkpoint on, the copy draws the batches
    and dropout masks its source drew, and what tells the two apart is their hyperparameters.
    """

    #: Hyperparameters set in every parameter group of the optimiser: hparam name -> group key.
    #: A name absent from the hyperparameters is left alone.
    OPTIMIZER_HPARAMS: ClassVar[Mapping[str, str]] = {
        "lr": "lr",
        "momentum": "momentum",
        "weight_decay": "weight_decay",
    }
    #: The hyperparameter that sets ``p`` of every dropout layer (None: no such hyperparameter).
    DROPOUT_HPARAM: ClassVar[str | None] = "dropout"

    model: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device

    # -- what a subclass writes -------------------------------------------------------------
    @abstractmethod
    def build_model(self, hparams: dict[str, Any]) -> nn.Module:
        """Build the network (any device: it is moved to ``self.device`` afterwards)."""

    def build_optimizer(self, model: nn.Module, hparams: dict[str, Any]) -> torch.optim.Optimizer:
        """The optimiser; the mapped hyperparameters are applied to it right after.

        Default: SGD (``lr``, ``momentum`` and ``weight_decay`` come from the hyperparameters
        through :attr:`OPTIMIZER_HPARAMS`).
        """
        return torch.optim.SGD(model.parameters(), lr=float(hparams.get("lr", 0.01)))

    @abstractmethod
    def train_step(self) -> None:
        """One unit of training (a few batches, an epoch) with ``self.model`` in train mode."""

    def extra_state(self) -> dict[str, Any]:
        """More state to checkpoint (tensors and plain values only), e.g. a data cursor."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""

    # -- the Trainable contract --------------------------------------------------------------
    def setup(self, hparams: dict[str, Any], seed: int) -> None:
        threads = self.options.get("threads")
        if threads is not None:
            if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
                raise ConfigError("trainable_options.threads", threads, "must be an integer >= 1")
            torch.set_num_threads(threads)
        self.device = select_device(self.options.get("device"))
        self._rng = _seeded_rng_state(seed, self.device)
        with self.member_rng():
            self.model = self.build_model(hparams).to(self.device)
        self.optimizer = self.build_optimizer(self.model, hparams)
        self.apply_hparams(hparams)

    def step(self) -> None:
        self.model.train()
        with self.member_rng():
            self.train_step()

    def apply_hparams(self, hparams: dict[str, Any]) -> None:
        values = {
            key: hparams[name] for name, key in self.OPTIMIZER_HPARAMS.items() if name in hparams
        }
        set_optimizer_hparams(self.optimizer, values)
        if self.DROPOUT_HPARAM is not None and self.DROPOUT_HPARAM in hparams:
            set_dropout(self.model, hparams[self.DROPOUT_HPARAM])

    def save(self, path: Path) -> None:
        save_state(
            Path(path) / STATE_FILE,
            {
                "format": _FORMAT,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "rng": dict(self._rng),
                "extra": self.extra_state(),
            },
        )

    def load(self, path: Path) -> None:
        state = load_state(Path(path) / STATE_FILE, map_location=self.device)
        if state.get("format") != _FORMAT:
            raise ConfigError("checkpoint", str(path), f"has format {state.get('format')!r}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._rng = _restore_rng(state.get("rng", {}), self.device, self._rng)
        self.load_extra_state(dict(state.get("extra", {})))
        # The checkpoint's optimiser carries the hyperparameters its writer used; this
        # member's own (self.hparams) are the ones to train with from now on.
        self.apply_hparams(self.hparams)

    # -- helpers for subclasses ---------------------------------------------------------------
    @contextmanager
    def member_rng(self) -> Iterator[None]:
        """Run the block with this member's random state, then put the process's back."""
        cuda = self.device.type == "cuda"
        outer_cpu = torch.get_rng_state()
        outer_cuda = torch.cuda.get_rng_state(self.device) if cuda else outer_cpu
        torch.set_rng_state(self._rng["cpu"])
        if cuda:
            torch.cuda.set_rng_state(self._rng["cuda"], self.device)
        try:
            yield
        finally:
            self._rng["cpu"] = torch.get_rng_state()
            torch.set_rng_state(outer_cpu)
            if cuda:
                self._rng["cuda"] = torch.cuda.get_rng_state(self.device)
                torch.cuda.set_rng_state(outer_cuda, self.device)

    @contextmanager
    def evaluation(self) -> Iterator[None]:
        """Evaluation mode, no gradients, the member's random state; train mode after."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), self.member_rng():
                yield
        finally:
            self.model.train(was_training)


def _seeded_rng_state(seed: int, device: torch.device) -> dict[str, torch.Tensor]:
    """The random state ``torch.manual_seed(seed)`` would give, without touching the process's."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        state = {"cpu": torch.get_rng_state()}
        if device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _restore_rng(
    saved: Mapping[str, Any], device: torch.device, current: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    state = dict(current)
    if isinstance(saved.get("cpu"), torch.Tensor):
        state["cpu"] = saved["cpu"].to("cpu", torch.uint8)
    # A CUDA state only fits a CUDA device; a checkpoint moved from CPU keeps the seeded one.
    if device.type == "cuda" and isinstance(saved.get("cuda"), torch.Tensor):
        state["cuda"] = saved["cuda"].to("cpu", torch.uint8)
    return state
