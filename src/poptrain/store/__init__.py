"""Population stores: the protocol, its records, and the SQLAlchemy backend."""

from __future__ import annotations

from pathlib import Path

from .base import (
    BestRecord,
    EvaluationRecord,
    EventRecord,
    LeaseLost,
    MemberRecord,
    MemberStatus,
    PopulationStore,
    RunRecord,
    StoreUnavailable,
)
from .sql import SQLStore

__all__ = [
    "BestRecord",
    "EvaluationRecord",
    "EventRecord",
    "LeaseLost",
    "MemberRecord",
    "MemberStatus",
    "PopulationStore",
    "RunRecord",
    "SQLStore",
    "StoreUnavailable",
    "open_store",
    "sqlite_url",
]


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def open_store(url: str) -> PopulationStore:
    """Open the store at ``url`` (any SQLAlchemy URL: ``sqlite:///…``, ``postgresql+psycopg://…``)."""
    return SQLStore(url)
