"""Live progress in the terminal while a run trains: read from the store, never from workers."""

from __future__ import annotations

import math
import threading
import time
from types import TracebackType

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .config import RunConfig
from .decision import Operation
from .store import MemberStatus, PopulationStore

__all__ = ["LiveProgress", "render_progress"]


def render_progress(store: PopulationStore, run: str, config: RunConfig, started: float) -> Group:
    """One frame: a row per member, the best score so far, the latest exploits."""
    members = store.members(run)
    record = store.get_run(run)
    events = store.events(run)
    sign = config.sign
    table = Table(expand=False, title=f"run {run}", title_justify="left")
    for column in ("member", "status", "step", config.metric, "exploits", "hyperparameters"):
        table.add_column(column)
    exploit_counts: dict[int, int] = {}
    for event in events:
        if event.kind == "exploit":
            exploit_counts[event.member] = exploit_counts.get(event.member, 0) + 1
    for member in members:
        score = "—" if member.score is None else f"{member.score:.4g}"
        hparams = ", ".join(f"{k}={_short(v)}" for k, v in member.hparams.items())
        table.add_row(
            str(member.member),
            member.status.value,
            f"{member.step}/{config.max_steps}",
            score,
            str(exploit_counts.get(member.member, 0)),
            hparams,
        )
    scores = [sign * m.score for m in members if m.score is not None and math.isfinite(m.score)]
    best = record.best if record is not None else None
    done = sum(1 for m in members if m.status.is_terminal())
    running = sum(1 for m in members if m.status == MemberStatus.RUNNING)
    lines = [
        Text(
            f"{done}/{len(members)} done, {running} training, "
            f"{sum(exploit_counts.values())} exploits, "
            f"{sum(1 for e in events if e.kind == 'failure')} failures, "
            f"{time.time() - started:.0f}s"
        ),
        Text(
            "best so far: "
            + (
                "—"
                if best is None
                else f"{config.metric}={best.score:.4g} (member {best.member}, step {best.step})"
            )
            + ("" if not scores else f"; best current {config.metric}={sign * max(scores):.4g}")
        ),
    ]
    recent = [e for e in events if e.kind == "exploit"][-3:]
    for event in recent:
        ops = "; ".join(str(Operation(**op)) for op in event.operations) or "hyperparameters copied"
        lines.append(
            Text(
                f"member {event.member} <- member {event.source} @ {event.source_step}: {ops}",
                style="dim",
            )
        )
    return Group(table, *lines)


def _short(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


class LiveProgress:
    """Redraw :func:`render_progress` every ``interval`` seconds in a background thread."""

    def __init__(
        self,
        store: PopulationStore,
        run: str,
        config: RunConfig,
        *,
        interval: float = 0.5,
        console: Console | None = None,
    ) -> None:
        self.store = store
        self.run = run
        self.config = config
        self.interval = interval
        self.console = console or Console(stderr=True)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.time()

    def _frame(self) -> Group:
        return render_progress(self.store, self.run, self.config, self._started)

    def _loop(self, live: Live) -> None:
        while not self._stop.wait(self.interval):
            try:
                live.update(self._frame())
            except Exception:
                continue

    def __enter__(self) -> LiveProgress:
        self._live = Live(
            self._frame(), console=self.console, refresh_per_second=4, transient=False
        )
        self._live.__enter__()
        self._thread = threading.Thread(target=self._loop, args=(self._live,), daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self._live.update(self._frame())
        finally:
            self._live.__exit__(exc_type, exc, tb)
