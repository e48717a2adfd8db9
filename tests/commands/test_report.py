"""``poptrain report``, the run's history (stretches, lineage) and worker utilisation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from toys import TOY_STEPS, Cli

from poptrain import RunDir
from poptrain.history import history
from poptrain.report import WAIT_FACTOR, utilisation
from poptrain.store import EvaluationRecord


def test_demo_toy_leaves_each_run_in_its_folder(toy_dir: Path) -> None:
    for method in ("pbt", "grid", "explore_only", "exploit_only"):
        info = json.loads((toy_dir / method / "run.json").read_text())
        assert info["config"]["max_steps"] == TOY_STEPS
        assert (toy_dir / method / "poptrain.db").is_file()
        assert (toy_dir / method / "checkpoints" / "_best").is_dir()


def test_report_json_matches_the_result(toy_dir: Path, cli: Cli) -> None:
    code, out, _ = cli("report", str(toy_dir / "pbt"), "--json")
    assert code == 0
    report = json.loads(out)
    result = RunDir.read(toy_dir / "pbt").result()
    assert result.best is not None
    assert report["best"]["member"] == result.best.member
    assert report["best"]["score"] == result.best.score
    assert report["best"]["step"] == result.best.step
    assert report["best"]["hparams"] == result.best.hparams
    assert report["schedule"] == [
        {"step": e.step, "hparams": e.hparams, "member": e.member} for e in result.schedule
    ]
    assert report["schedule"][0]["step"] == 0
    assert report["members"] == 2
    assert report["exploits"] == sum(1 for e in result.events if e.kind == "exploit") > 0
    assert report["failures"] == 0
    assert report["steps"] == 2 * TOY_STEPS
    assert report["evaluations"] == len(result.evaluations)
    assert report["status"] == "finished"
    assert report["wall_seconds"] > 0
    assert 0 < report["utilisation"] <= 1
    assert [row["step"] for row in report["population"]] == [TOY_STEPS, TOY_STEPS]


def test_report_table_shows_summary_members_and_schedule(toy_dir: Path, cli: Cli) -> None:
    code, out, _ = cli("report", str(toy_dir / "pbt"))
    assert code == 0
    result = RunDir.read(toy_dir / "pbt").result()
    assert result.best is not None
    for heading in ("summary", "members", "utilisation", "winner", "the winner's schedule"):
        assert heading in out
    assert f"{result.best.score:.6g}" in out
    # One schedule row per entry: "from–to" ranges that tile 0..age.
    for index, entry in enumerate(result.schedule):
        last = index + 1 == len(result.schedule)
        end = result.best.age if last else result.schedule[index + 1].step
        assert f"{entry.step}–{end}" in out


def test_report_counts_failures(mixed_dir: Path, cli: Cli) -> None:
    code, out, _ = cli("report", str(mixed_dir), "--json")
    assert code == 0
    report = json.loads(out)
    result = RunDir.read(mixed_dir).result()
    failures = [e for e in result.events if e.kind == "failure"]
    assert report["failures"] == len(failures) > 0
    per_member = {row["member"]: row["failures"] for row in report["population"]}
    for member in per_member:
        assert per_member[member] == sum(1 for e in failures if e.member == member)


def test_report_on_a_folder_of_runs_names_them(toy_dir: Path, cli: Cli) -> None:
    code, _, err = cli("report", str(toy_dir))
    assert code == 2
    assert "pbt" in err and "grid" in err


def test_report_on_a_missing_folder_is_a_clear_error(tmp_path: Path, cli: Cli) -> None:
    code, _, err = cli("report", str(tmp_path / "nowhere"))
    assert code == 2
    assert "run.json" in err


@pytest.mark.parametrize("fixture", ["toy_dir", "async_dir", "mixed_dir"])
def test_lineage_follows_the_schedule(fixture: str, request: pytest.FixtureRequest) -> None:
    root = request.getfixturevalue(fixture)
    run_dir = root / "pbt" if fixture == "toy_dir" else root
    result = RunDir.read(run_dir).result()
    assert result.best is not None
    lineage = history(result).best_lineage()
    assert lineage is not None
    # The members that trained the winning weights, in order, are the schedule's.
    members: list[int] = []
    for entry in result.schedule:
        if not members or members[-1] != entry.member:
            members.append(entry.member)
    assert lineage.members == members
    end = lineage.pieces[-1].end
    assert (lineage.pieces[-1].stretch.member, end.step, end.age, end.score) == (
        result.best.member,
        result.best.step,
        result.best.age,
        result.best.score,
    )
    # Each piece ends where the next one's copy took its weights.
    for piece, copy in zip(lineage.pieces, lineage.copies, strict=False):
        assert copy.source == piece.stretch.member
        assert copy.source_step == piece.end.step
        assert copy.age == piece.end.age
    assert lineage.pieces[0].stretch.start.step == 0


def test_ages_rebuilt_from_records_match_the_members(async_dir: Path) -> None:
    result = RunDir.read(async_dir).result()
    hist = history(result)
    for member in result.members:
        last = hist.stretches[member.member][-1].points[-1]
        assert (last.step, last.age, last.score) == (member.step, member.age, member.score)


def _evals(owner: str, times: list[float]) -> list[EvaluationRecord]:
    return [EvaluationRecord(0, i + 1, 1.0, t, owner=owner) for i, t in enumerate(times)]


def test_utilisation_counts_long_gaps_as_waiting() -> None:
    # Worker a: steps of 1 s, then a 10 s wait (more than WAIT_FACTOR steps), then 2 steps.
    a = _evals("a", [1.0, 2.0, 3.0, 4.0, 14.0, 15.0])
    # Worker b: steps of 1 s throughout, active from t=0 to t=15.
    b = _evals("b", [float(t) for t in range(1, 16)])
    use = utilisation(a + b)
    assert WAIT_FACTOR < 10.0
    # a: median gap 1 s; busy = first step 1 + gaps 1+1+1 + (10 -> 1) + 1 = 6 s.
    assert use.busy_seconds["a"] == pytest.approx(6.0)
    assert use.busy_seconds["b"] == pytest.approx(15.0)
    assert use.workers == 2
    assert use.wall_seconds == pytest.approx(15.0)
    assert use.fraction == pytest.approx(21.0 / 30.0)


def test_utilisation_leaves_out_the_time_a_run_was_stopped() -> None:
    before = _evals("w-1", [1.0, 2.0, 3.0])
    after = _evals("w-2", [1001.0, 1002.0, 1003.0])  # resumed much later
    use = utilisation(before + after)
    assert use.workers == 1
    assert use.wall_seconds == pytest.approx(6.0)
    assert use.fraction == pytest.approx(1.0)
