"""Shared fixtures. ``store_url`` runs a test once per store backend (the conformance suite)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from poptrain.store import SQLStore, sqlite_url

#: Every backend the store conformance suite runs on.
STORE_BACKENDS = ["sqlite"]


@pytest.fixture(params=STORE_BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty store on each backend."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / f"store-{uuid.uuid4().hex[:8]}.db")
    raise AssertionError(f"unknown backend {request.param}")


@pytest.fixture
def store(store_url: str) -> Iterator[SQLStore]:
    opened = SQLStore(store_url)
    yield opened
    opened.close()
