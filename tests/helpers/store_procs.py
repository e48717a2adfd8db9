"""Process targets for the store conformance suite (spawned processes import them by name)."""

from __future__ import annotations

import json
from pathlib import Path

from poptrain.store import SQLStore


def claim_until_empty(url: str, run: str, owner: str, out: str, start: object) -> None:
    """Claim members until none is left; write the claimed member ids to ``out`` as JSON."""
    store = SQLStore(url, create=False)
    claimed: list[int] = []
    try:
        start.wait(60)  # type: ignore[attr-defined]
        while True:
            record = store.claim(run, owner, now=1000.0, lease_seconds=3600.0)
            if record is None:
                break
            assert record.owner == owner
            claimed.append(record.member)
    finally:
        store.close()
    Path(out).write_text(json.dumps(claimed))


def increment_locked(url: str, run: str, times: int, start: object) -> None:
    """Read-modify-write ``steps_trained`` of member 0 ``times`` times inside ``locked``."""
    store = SQLStore(url, create=False)
    try:
        start.wait(60)  # type: ignore[attr-defined]
        for _ in range(times):
            with store.locked(run):
                record = next(m for m in store.members(run) if m.member == 0)
                record.steps_trained += 1
                assert store.update_member(run, record)
    finally:
        store.close()
