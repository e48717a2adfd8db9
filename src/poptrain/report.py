"""A run's summary, read from its run directory: the figures, the members and the schedule.

:func:`build_report` returns plain JSON-able data (what ``poptrain report --json`` prints);
:func:`render_report` draws it as tables in the terminal.

Worker utilisation is derived from the evaluations alone (their ``owner`` and ``time``):

* a worker's *busy time* counts every evaluation it wrote as one step, lasting the time since
  that worker's previous evaluation; a gap longer than three times the worker's median gap
  (waiting at the synchronous barrier, polling for a free member, a restart) counts as one
  median step, and so does the worker's first evaluation;
* a worker is *active* from one median step before its first evaluation to its last one;
  the run's *wall time* is the time during which at least one worker was active, so a run
  stopped and resumed later does not count the pause;
* utilisation = total busy time / (the most workers active at once × wall time).

It measures how much of the workers' time went into training steps rather than into waiting
and bookkeeping; start-up before a worker's first step is not seen.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .api import RunDir
from .errors import ConfigError
from .results import Result
from .store import EvaluationRecord

__all__ = ["Utilisation", "build_report", "read_run_dir", "render_report", "utilisation"]

#: A gap longer than this many median steps is counted as waiting, not training.
WAIT_FACTOR = 3.0


def read_run_dir(path: str | Path) -> tuple[RunDir, Result]:
    """Open a run directory and read its result; name the runs inside a folder of runs."""
    root = Path(path)
    if not (root / "run.json").is_file() and root.is_dir():
        found = [*root.glob("*/run.json"), *root.glob("*/*/run.json")]  # demo toy's layouts
        inside = sorted(str(p.parent.relative_to(root)) for p in found)
        if inside:
            shown = ", ".join(inside[:8]) + (", …" if len(inside) > 8 else "")
            raise ConfigError(
                "run_dir", str(path), f"holds several runs, name one of them: {shown}"
            )
    run_dir = RunDir.read(root)
    return run_dir, run_dir.result()


@dataclass(frozen=True)
class Utilisation:
    """Busy time per worker (owner) and the run's wall time; see the module docstring."""

    wall_seconds: float
    workers: int
    busy_seconds: dict[str, float]

    @property
    def fraction(self) -> float | None:
        if self.wall_seconds <= 0 or self.workers == 0:
            return None
        return min(1.0, sum(self.busy_seconds.values()) / (self.workers * self.wall_seconds))


def utilisation(evaluations: Sequence[EvaluationRecord]) -> Utilisation:
    """Estimate how busy the workers were from the evaluations' owners and times."""
    times: dict[str, list[float]] = {}
    for e in evaluations:
        times.setdefault(e.owner or "?", []).append(e.time)
    busy: dict[str, float] = {}
    spans: list[tuple[float, float]] = []
    for owner, ts in times.items():
        ts.sort()
        gaps = [b - a for a, b in itertools.pairwise(ts)]
        typical = statistics.median(gaps) if gaps else 0.0
        busy[owner] = typical + sum(g if g <= WAIT_FACTOR * typical else typical for g in gaps)
        spans.append((ts[0] - typical, ts[-1]))
    return Utilisation(_union_length(spans), _most_at_once(spans), busy)


def _union_length(spans: list[tuple[float, float]]) -> float:
    total = 0.0
    end = -math.inf
    for a, b in sorted(spans):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    # An end sorts before a start at the same time: touching spans do not overlap.
    edges = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    most = current = 0
    for _, delta in edges:
        current += delta
        most = max(most, current)
    return most


def _strategy(spec: Any) -> str:
    if spec is None:
        return "none"
    if isinstance(spec, dict):
        args = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "type" and v is not None)
        return f"{spec.get('type', '?')}({args})"
    return str(spec)


def build_report(result: Result, run_dir: str | Path | None = None) -> dict[str, Any]:
    """The run's summary as JSON-able data (see ``docs/run-directory.md``)."""
    config = result.config
    spec = config.to_spec()
    exploits: dict[int, int] = {}
    failures: dict[int, int] = {}
    for event in result.events:
        if event.kind == "exploit":
            exploits[event.member] = exploits.get(event.member, 0) + 1
        elif event.kind == "failure":
            failures[event.member] = failures.get(event.member, 0) + 1
    use = utilisation(result.evaluations)
    best_scores = result.best_score_by_member()
    best = result.best
    kinds = [e.kind for e in result.events]
    return {
        "run": result.run,
        "run_dir": None if run_dir is None else str(run_dir),
        "status": result.status,
        "trainable": spec["trainable"],
        "metric": config.metric,
        "mode": config.mode,
        "strategy": {
            "ready": _strategy(spec["ready"]),
            "exploit": _strategy(spec["exploit"]),
            "explore": _strategy(spec["explore"]),
            "synchronous": config.synchronous,
        },
        "members": len(result.members),
        "max_steps": config.max_steps,
        "steps": result.steps_trained,
        "evaluations": len(result.evaluations),
        "exploits": kinds.count("exploit"),
        "explores": kinds.count("explore"),
        "failures": kinds.count("failure"),
        "rollbacks": kinds.count("rollback"),
        "failed_members": sum(1 for m in result.members if m.status.value == "failed"),
        "wall_seconds": use.wall_seconds,
        "workers": use.workers,
        "utilisation": use.fraction,
        "busy_seconds": use.busy_seconds,
        "best": None if best is None else best.summary(),
        "schedule": [
            {"step": entry.step, "hparams": entry.hparams, "member": entry.member}
            for entry in result.schedule
        ],
        "population": [
            {
                "member": m.member,
                "status": m.status.value,
                "step": m.step,
                "age": m.age,
                "score": m.score,
                "best_score": best_scores.get(m.member),
                "exploits": exploits.get(m.member, 0),
                "failures": failures.get(m.member, 0),
                "hparams": m.hparams,
            }
            for m in result.members
        ],
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return str(value)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def render_report(report: dict[str, Any], console: Console | None = None) -> None:
    """Print ``report`` (from :func:`build_report`) as tables."""
    if console is None:
        console = Console()
        if not console.is_terminal:  # a pipe or a file: no 80-column squeeze
            console = Console(width=140)
    out = console
    metric = report["metric"]
    strategy = report["strategy"]
    out.print(
        f"[bold]run {report['run']}[/bold] ({report['status']})"
        + (f" in {report['run_dir']}" if report["run_dir"] else "")
    )
    out.print(
        f"{report['trainable']}: {metric} ({report['mode']}), ready {strategy['ready']}, "
        f"exploit {strategy['exploit']}, explore {strategy['explore']}"
        + (", synchronous" if strategy["synchronous"] else "")
    )
    best = report["best"]
    use = report["utilisation"]
    summary = Table(title="summary", title_justify="left")
    for column in (
        "members",
        f"best {metric}",
        "steps",
        "exploits",
        "failures",
        "wall time",
        "workers",
        "utilisation",
    ):
        summary.add_column(column, justify="right", no_wrap=True)
    summary.add_row(
        str(report["members"]),
        "—" if best is None else _fmt(best["score"]),
        f"{report['steps']} ({report['members']}×{report['max_steps']})",
        str(report["exploits"]),
        str(report["failures"])
        + (f" ({report['failed_members']} gave up)" if report["failed_members"] else ""),
        _duration(report["wall_seconds"]),
        str(report["workers"]),
        "—" if use is None else f"{100 * use:.0f}%",
    )
    out.print(summary)

    members = Table(title="members", title_justify="left")
    for column in (
        "member",
        "status",
        "step",
        "age",
        metric,
        f"best {metric}",
        "exploits",
        "failures",
        "hyperparameters",
    ):
        left = column in ("status", "hyperparameters")
        members.add_column(column, justify="left" if left else "right", no_wrap=not left)
    for row in report["population"]:
        members.add_row(
            str(row["member"]),
            row["status"],
            str(row["step"]),
            str(row["age"]),
            _fmt(row["score"]),
            _fmt(row["best_score"]),
            str(row["exploits"]),
            str(row["failures"]),
            ", ".join(f"{k}={_short(v)}" for k, v in row["hparams"].items()),
        )
    out.print(members)

    if best is None:
        out.print("no member produced a usable score yet")
        return
    out.print(
        f"[bold]winner[/bold]: member {best['member']}, {metric} = {_fmt(best['score'])} at its "
        f"step {best['step']} (weights trained {best['age']} steps), "
        f"checkpoint {best['checkpoint']}"
    )
    names = list(best["hparams"])
    out.print("the winner's schedule: its hyperparameters by the age of its weights")
    schedule = Table()
    schedule.add_column("steps", justify="right")
    schedule.add_column("trained by", justify="right")
    for name in names:
        schedule.add_column(name, justify="right")
    entries = report["schedule"]
    for index, entry in enumerate(entries):
        until = entries[index + 1]["step"] if index + 1 < len(entries) else best["age"]
        schedule.add_row(
            f"{entry['step']}–{until}",
            f"member {entry['member']}",
            *(_fmt(entry["hparams"].get(name)) for name in names),
        )
    out.print(schedule)
