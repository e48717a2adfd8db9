#!/usr/bin/env bash
# Set up a fresh machine and run every check: lint, types, then the whole test suite.
# The tests start the services they need themselves (a PostgreSQL server in a temporary
# folder, a two-node Ray cluster on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# The CPU build of torch lies on local disk here: install it first, so the project's range
# (torch>=2.1) is already met and pip never pulls a multi-GB CUDA build.
"$PY" -m pip install --quiet torch==2.13.0
"$PY" -m pip install --quiet -e ".[all,dev]"

# PostgreSQL's server binaries (initdb, pg_ctl) for the PostgreSQL store tests.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi

"$PY" -m ruff check src tests benchmarks
"$PY" -m mypy
"$PY" -m pytest -q "$@"
