"""Errors a user can act on: each names the field and the value that was refused."""

from __future__ import annotations

from typing import Any

__all__ = ["ConfigError", "PopTrainError", "StorageError"]


class PopTrainError(Exception):
    """Base class of poptrain's own errors."""


class ConfigError(PopTrainError, ValueError):
    """A refused input: ``field`` names what was wrong and ``value`` what was given."""

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field}={value!r}: {reason}")


class StorageError(PopTrainError):
    """The population store or checkpoint location cannot be used."""
