"""``poptrain export`` and ``Result.to_dataframe``: every evaluation and event."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
from toys import Cli

from poptrain import RunDir


def _counts(result) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    return len(result.evaluations), len(result.events)


def test_export_csv_has_every_row_in_time_order(async_dir: Path, tmp_path: Path, cli: Cli) -> None:
    target = tmp_path / "rows.csv"
    code, _, err = cli("export", str(async_dir), "--format", "csv", "-o", str(target))
    assert code == 0
    result = RunDir.read(async_dir).result()
    evaluations, events = _counts(result)
    assert f"{evaluations + events} rows" in err
    with target.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == evaluations + events
    assert sum(r["record"] == "evaluation" for r in rows) == evaluations
    assert {r["kind"] for r in rows if r["record"] == "event"} >= {"exploit"}
    times = [float(r["time"]) for r in rows]
    assert times == sorted(times)
    assert {"hparam.h0", "hparam.h1", "age", "source_step", "new_hparams"} <= set(rows[0])


def test_export_hparams_follow_the_exploits(async_dir: Path, cli: Cli) -> None:
    code, out, _ = cli("export", str(async_dir), "--format", "jsonl")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    checked = 0
    for index, row in enumerate(rows):
        if row["record"] != "event" or row["kind"] != "exploit":
            continue
        later = rows[index + 1 :]
        mine = (r for r in later if r["record"] == "evaluation" and r["member"] == row["member"])
        after = next(mine, None)
        if after is None:
            continue
        # The member's next evaluation was trained with the exploit's new hyperparameters,
        # on weights one step older than the copied ones.
        assert after["hparams"] == row["new_hparams"]
        assert after["step"] == row["step"] + 1
        assert after["age"] == row["new_step"] + 1
        checked += 1
    assert checked > 0


def test_export_only_events(toy_dir: Path, cli: Cli) -> None:
    code, out, _ = cli("export", str(toy_dir / "pbt"), "--format", "jsonl", "--only", "events")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    result = RunDir.read(toy_dir / "pbt").result()
    assert len(rows) == len(result.events)
    assert all(r["record"] == "event" for r in rows)
    exploit = next(r for r in rows if r["kind"] == "exploit")
    fields = {"source", "source_step", "new_step", "old_hparams", "new_hparams", "operations"}
    assert fields <= set(exploit)
    assert all({"name", "old", "new", "op"} <= set(op) for op in exploit["operations"])


def test_export_failures_carry_their_error(mixed_dir: Path, cli: Cli) -> None:
    code, out, _ = cli("export", str(mixed_dir), "--format", "jsonl", "--only", "evaluations")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    failed = [r for r in rows if r["score"] is None]
    assert failed and all("h0 too large" in r["error"] for r in failed)
    assert {type(r["hparams"]["optimiser"]) for r in rows} == {str}


def test_to_dataframe(async_dir: Path) -> None:
    pd = pytest.importorskip("pandas")
    result = RunDir.read(async_dir).result()
    frame = result.to_dataframe()
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) == len(result.evaluations)
    assert {"member", "step", "age", "score", "hparam.h0", "hparam.h1"} <= set(frame.columns)
    last = frame.sort_values("time").groupby("member").tail(1).set_index("member")
    for member in result.members:
        assert last.loc[member.member, "score"] == member.score
        assert last.loc[member.member, "age"] == member.age
        assert last.loc[member.member, "hparam.h0"] == member.hparams["h0"]
    events = result.to_dataframe("events")
    assert len(events) == len(result.events)


#: torch.utils.tensorboard (torch and tensorboard) or tensorboardX can write event files.
WRITER = importlib.util.find_spec("tensorboardX") is not None or all(
    importlib.util.find_spec(name) is not None for name in ("torch", "tensorboard")
)


@pytest.mark.skipif(WRITER, reason="a TensorBoard writer is installed")
def test_export_tensorboard_without_tensorboard_says_what_to_install(
    toy_dir: Path, tmp_path: Path, cli: Cli
) -> None:
    run_dir = str(toy_dir / "pbt")
    code, _, err = cli("export", run_dir, "--format", "tensorboard", "-o", str(tmp_path))
    assert code == 2
    assert "pip install tensorboard" in err and "tensorboardX" in err


@pytest.mark.skipif(
    not WRITER or importlib.util.find_spec("tensorboard") is None,
    reason="needs a TensorBoard writer and reader",
)
def test_export_tensorboard_writes_one_run_per_member(
    toy_dir: Path, tmp_path: Path, cli: Cli
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = toy_dir / "pbt"
    code, out, _ = cli("export", str(run_dir), "--format", "tensorboard", "-o", str(tmp_path))
    assert code == 0
    assert Path(out.strip()) == tmp_path
    result = RunDir.read(run_dir).result()
    for member in result.members:
        events = EventAccumulator(str(tmp_path / f"member-{member.member}"))
        events.Reload()
        assert {"q", "age", "hparams/h0", "hparams/h1"} <= set(events.Tags()["scalars"])
        scores = events.Scalars("q")
        mine = [e for e in result.evaluations if e.member == member.member]
        assert [s.step for s in scores] == [e.step for e in mine]
        assert scores[-1].value == pytest.approx(member.score, rel=1e-6)
