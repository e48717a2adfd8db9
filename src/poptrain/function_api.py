"""The function-style API: keep an existing training loop, report a score each step.

::

    def train(session: poptrain.Session) -> None:
        model = build(session.hparams)
        if session.checkpoint is not None:       # resuming, or started from a copy
            model.load(session.checkpoint)
        while True:
            train_one_step(model, session.hparams)
            if session.report(evaluate(model), save=model.save):
                model.load(session.checkpoint)   # exploit: another member's state...
                model.set(session.hparams)       # ...and new hyperparameters

    poptrain.run(train, space=..., metric="accuracy", mode="max", ...)

Everything between two ``report`` calls is one step. ``report`` returns True when the
member exploited: ``session.checkpoint`` then names the copied state (None when only
hyperparameters were copied) and ``session.hparams`` holds the new values. ``save(folder)``
is called only when the engine wants a checkpoint, while the loop waits inside ``report``.

The loop runs in a thread of the worker, driven one step at a time, so rotation of members
over fewer workers, failures and resumption behave exactly as with a :class:`Trainable`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .trainable import Trainable

__all__ = ["FunctionTrainable", "Session", "TrainFunction", "function_trainable"]

TrainFunction = Callable[["Session"], None]
SaveFn = Callable[[Path], None]


class _Abandoned(BaseException):
    """Raised inside ``report`` when the worker drops this member: ends the loop's thread."""


class Session:
    """What a training function sees: hyperparameters, seed, options, state to start from."""

    def __init__(
        self, hparams: dict[str, Any], seed: int, options: dict[str, Any], checkpoint: Path | None
    ) -> None:
        self.hparams = hparams
        self.seed = seed
        self.options = options
        #: Folder to load the state from (at start: resuming; after report() is True: copy).
        self.checkpoint = checkpoint
        self._turn = threading.Condition()
        self._loop_may_run = False
        self._reported = False
        self._abandoned = False
        self._changed = False
        self._score: float | Mapping[str, float] | None = None
        self._save: SaveFn | None = None
        self._error: BaseException | None = None
        self._returned = False

    def report(self, score: float | Mapping[str, float], *, save: SaveFn) -> bool:
        """End one step with ``score``; True if the member exploited (see the module doc)."""
        with self._turn:
            self._score, self._save, self._reported = score, save, True
            self._loop_may_run = False
            self._turn.notify_all()
            while not self._loop_may_run and not self._abandoned:
                self._turn.wait()
            if self._abandoned:
                raise _Abandoned
            changed, self._changed = self._changed, False
            return changed


class FunctionTrainable(Trainable):
    """Adapts a training function to the :class:`Trainable` contract (see the module doc)."""

    function: TrainFunction

    def setup(self, hparams: dict[str, Any], seed: int) -> None:
        self.session = Session(dict(hparams), seed, dict(self.options), None)
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        session = self.session
        try:
            type(self).function(session)
        except _Abandoned:
            return
        except BaseException as exc:  # handed to the worker, which records it
            with session._turn:
                session._error = exc
        with session._turn:
            session._returned = True
            session._turn.notify_all()

    def step(self) -> None:
        session = self.session
        with session._turn:
            session._reported = False
            session._loop_may_run = True
            session._turn.notify_all()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="poptrain-function", daemon=True)
            self._thread.start()
        with session._turn:
            while not session._reported and not session._returned:
                session._turn.wait()
            if session._reported:
                return
        if session._error is not None:
            raise session._error
        raise RuntimeError("the training function returned before the member's last step")

    def evaluate(self) -> float | Mapping[str, float]:
        if self.session._score is None:
            raise RuntimeError("the training function has not reported a score yet")
        return self.session._score

    def save(self, path: Path) -> None:
        if self.session._save is None:
            raise RuntimeError("the training function has not reported yet: nothing to save")
        self.session._save(path)

    def load(self, path: Path) -> None:
        self.session.checkpoint = path
        # Before the loop started it reads session.checkpoint itself; later, report() says so.
        self.session._changed = self._thread is not None

    def apply_hparams(self, hparams: dict[str, Any]) -> None:
        self.session.hparams = dict(hparams)
        self.session._changed = self._thread is not None

    def close(self) -> None:
        with self.session._turn:
            self.session._abandoned = True
            self.session._turn.notify_all()


def function_trainable(function: TrainFunction) -> type[FunctionTrainable]:
    """A :class:`Trainable` class that runs ``function(session)`` (see the module doc)."""
    name = getattr(function, "__name__", "train")
    cls: type[FunctionTrainable] = type(
        f"FunctionTrainable[{name}]", (FunctionTrainable,), {"function": staticmethod(function)}
    )
    cls.__module__ = getattr(function, "__module__", __name__)
    cls.__qualname__ = getattr(function, "__qualname__", name)
    return cls
