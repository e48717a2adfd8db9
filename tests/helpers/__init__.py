"""Importable helpers for the tests (trainables, callables), also from spawned workers.

``tests/`` is on ``sys.path`` under pytest (its ``conftest.py`` sits in a folder without
``__init__.py``); spawned processes inherit that path, and subprocesses get it through
``PYTHONPATH`` (see :func:`helpers.env_with_tests_path`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent
SRC_DIR = TESTS_DIR.parent / "src"


def env_with_tests_path(**extra: str) -> dict[str, str]:
    """The environment for a ``python -m poptrain.cli`` subprocess that can import ``helpers``."""
    env = dict(os.environ)
    parts = [str(TESTS_DIR), str(SRC_DIR)]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env.update(extra)
    return env


def python() -> str:
    return sys.executable
