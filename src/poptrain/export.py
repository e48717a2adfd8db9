"""Export every evaluation and event of a run: CSV, JSON lines, pandas, TensorBoard.

Rows come in time order. An evaluation row (``record == "evaluation"``) also carries the
age of the weights it scored and the hyperparameters the step that led to it was trained
with (rebuilt by :mod:`poptrain.history`); an event row (``record == "event"``) carries the
exploit/explore, failure or rollback as the store keeps it. See ``docs/run-directory.md``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from .errors import ConfigError
from .history import history
from .results import Result

__all__ = [
    "EVALUATION_COLUMNS",
    "EVENT_COLUMNS",
    "FORMATS",
    "dataframe",
    "rows",
    "write",
    "write_csv",
    "write_jsonl",
    "write_tensorboard",
]

FORMATS = ("csv", "jsonl", "tensorboard")

EVALUATION_COLUMNS = ("member", "step", "age", "score", "error", "owner")
EVENT_COLUMNS = (
    "kind",
    "source",
    "source_step",
    "new_step",
    "copied_weights",
    "old_hparams",
    "new_hparams",
    "operations",
    "message",
)


def evaluation_rows(result: Result) -> list[dict[str, Any]]:
    """Every evaluation with the age of its weights and the hyperparameters in force."""
    out = []
    for p in history(result).points():
        out.append(
            {
                "record": "evaluation",
                "id": p.id,
                "time": p.time,
                "member": p.member,
                "step": p.step,
                "age": p.age,
                "score": p.score,
                "error": p.error,
                "owner": p.owner,
                "hparams": p.hparams,
            }
        )
    return out


def event_rows(result: Result) -> list[dict[str, Any]]:
    out = []
    for event in result.events:
        row = asdict(event)
        out.append({"record": "event", **row})
    return out


def rows(result: Result, kind: str = "all") -> list[dict[str, Any]]:
    """``kind``: ``"all"``, ``"evaluations"`` or ``"events"``; in time order."""
    if kind not in ("all", "evaluations", "events"):
        raise ConfigError("kind", kind, "must be 'all', 'evaluations' or 'events'")
    out: list[dict[str, Any]] = []
    if kind in ("all", "evaluations"):
        out += evaluation_rows(result)
    if kind in ("all", "events"):
        out += event_rows(result)
    # An evaluation and the decision it led to share a time: the evaluation comes first.
    out.sort(key=lambda r: (r["time"], r["record"] == "event", r["id"] or 0))
    return out


def write_jsonl(data: Iterable[dict[str, Any]], stream: IO[str]) -> int:
    count = 0
    for row in data:
        stream.write(json.dumps(row, default=str) + "\n")
        count += 1
    return count


def write_csv(data: list[dict[str, Any]], stream: IO[str], hparam_names: Iterable[str]) -> int:
    """One table: evaluation and event columns side by side, ``hparam.<name>`` flattened;
    the event's dict and list values (``new_hparams``, ``operations``) as JSON text."""
    names = list(hparam_names)
    columns = [
        "record",
        "id",
        "time",
        *EVALUATION_COLUMNS,
        *(f"hparam.{n}" for n in names),
        *EVENT_COLUMNS,
    ]
    writer = csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in data:
        flat = {k: v for k, v in row.items() if k != "hparams"}
        for name, value in (row.get("hparams") or {}).items():
            flat[f"hparam.{name}"] = value
        for key in ("old_hparams", "new_hparams", "operations"):
            if key in flat:
                flat[key] = "" if flat[key] is None else json.dumps(flat[key])
        writer.writerow({k: "" if v is None else v for k, v in flat.items()})
    return len(data)


def write_tensorboard(result: Result, logdir: str | Path) -> Path:
    """TensorBoard scalars: one run per member (``member-<i>``), each tag ``score`` and
    ``hparams/<name>`` over the member's step, and ``age``. Needs the ``tensorboard``
    package (``torch.utils.tensorboard``) or ``tensorboardX``."""
    import importlib

    writer_class: Any = None
    for module in ("torch.utils.tensorboard", "tensorboardX"):
        try:
            writer_class = importlib.import_module(module).SummaryWriter
            break
        except ImportError:
            continue
    if writer_class is None:
        raise ConfigError(
            "--format",
            "tensorboard",
            "needs a TensorBoard writer: pip install tensorboard (with torch) or tensorboardX",
        )
    root = Path(logdir)
    by_member: dict[int, list[dict[str, Any]]] = {}
    for row in evaluation_rows(result):
        by_member.setdefault(row["member"], []).append(row)
    for member, member_rows in sorted(by_member.items()):
        writer = writer_class(log_dir=str(root / f"member-{member}"))
        try:
            for row in member_rows:
                step, when = row["step"], row["time"]
                if row["score"] is not None:
                    writer.add_scalar(result.config.metric, row["score"], step, walltime=when)
                writer.add_scalar("age", row["age"], step, walltime=when)
                for name, value in row["hparams"].items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        writer.add_scalar(f"hparams/{name}", value, step, walltime=when)
        finally:
            writer.close()
    return root


def write(result: Result, fmt: str, stream: IO[str], *, kind: str = "all") -> int:
    """Write ``result``'s rows to ``stream`` as ``csv`` or ``jsonl``; return the row count."""
    data = rows(result, kind)
    if fmt == "jsonl":
        return write_jsonl(data, stream)
    if fmt == "csv":
        return write_csv(data, stream, result.config.space)
    raise ConfigError("--format", fmt, "must be csv or jsonl (tensorboard writes a folder)")


def dataframe(result: Result, kind: str = "evaluations") -> Any:
    """A pandas DataFrame of the rows; hyperparameters as ``hparam.<name>`` columns."""
    try:
        import pandas as pd
    except ImportError:
        raise ConfigError(
            "to_dataframe", "pandas", "is not installed: pip install 'poptrain[pandas]'"
        ) from None
    flat = []
    for row in rows(result, kind):
        out = {k: v for k, v in row.items() if k != "hparams"}
        for name, value in (row.get("hparams") or {}).items():
            out[f"hparam.{name}"] = value
        flat.append(out)
    return pd.DataFrame(flat)
