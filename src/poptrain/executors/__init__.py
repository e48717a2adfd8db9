"""Executors launch and supervise workers; they hold no PBT logic."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .base import Executor, Interrupted
from .inline import InlineExecutor
from .local import LocalExecutor, gpu_assignment

__all__ = [
    "EXECUTORS",
    "Executor",
    "InlineExecutor",
    "Interrupted",
    "LocalExecutor",
    "gpu_assignment",
    "make_executor",
]

EXECUTORS = ("local", "inline", "ray")


def make_executor(name: str | Executor, *, workers: int | None = None, **options: Any) -> Executor:
    """An executor from its name: ``local`` (processes), ``inline`` (this process), ``ray``."""
    if not isinstance(name, str):
        return name
    if name == "local":
        return LocalExecutor(workers, **options)
    if name == "inline":
        return InlineExecutor()
    if name == "ray":
        from .ray import RayExecutor  # Ray is an optional extra, imported only here

        return RayExecutor(workers, **options)
    raise ConfigError("executor", name, f"must be one of {', '.join(EXECUTORS)}")
