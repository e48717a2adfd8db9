"""The ask-and-tell core driven directly: a real SQLite store, real checkpoint folders."""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from poptrain.checkpoints import CheckpointStore
from poptrain.config import RunConfig
from poptrain.decision import Continue, Exploit, Stop, Wait
from poptrain.errors import ConfigError
from poptrain.population import Population
from poptrain.space import Uniform
from poptrain.store import MemberStatus, SQLStore, sqlite_url
from poptrain.strategies import MILD, Elitist, EverySeconds, EverySteps, Perturb, Truncation

INITIAL = [{"x": 0.1}, {"x": 0.2}, {"x": 0.3}, {"x": 0.4}]


class Clock:
    """A settable clock (the core takes any ``() -> float``)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Harness:
    """One population over a store on disk, with a ``save`` that writes recognisable bytes."""

    def __init__(self, root: Path, *, clock: Callable[[], float] | None = None, **overrides):
        options = {
            "trainable": "poptrain.demos.toy:ToyTrainable",
            "space": {"x": Uniform(0.0, 1.0)},
            "metric": "score",
            "mode": "max",
            "population_size": 4,
            "max_steps": 20,
            "ready": EverySteps(2),
            "exploit": Truncation(0.25),
            "explore": Perturb(MILD, resample_probability=0.0),
            "initial_hparams": INITIAL[: overrides.get("population_size", 4)],
            "max_failures": 2,
        }
        options.update(overrides)
        self.config = RunConfig(**options)
        root.mkdir(parents=True)
        self.store = SQLStore(sqlite_url(root / "pop.db"))
        self.checkpoints = CheckpointStore(root / "checkpoints")
        extra = {} if clock is None else {"clock": clock}
        self.pop = Population.create(
            self.store, "run", self.config, self.checkpoints, owner="me", **extra
        )
        self.saves: list[tuple[int, int]] = []

    def close(self) -> None:
        self.store.close()

    def claim_all(self) -> list[int]:
        claimed = []
        while (record := self.pop.claim()) is not None:
            claimed.append(record.member)
        return claimed

    def save(self, member: int, step: int) -> Callable[[], str]:
        def write() -> str:
            self.saves.append((member, step))
            return self.checkpoints.save(
                member, step, lambda folder: (folder / "state").write_text(content(member, step))
            )

        return write

    def tell(self, member: int, step: int, score: float):
        return self.pop.tell(member, step, score, save=self.save(member, step))

    def read(self, ref: str) -> str:
        return (self.checkpoints.path(ref) / "state").read_text()

    def member(self, member: int):
        return next(m for m in self.store.members("run") if m.member == member)


def content(member: int, step: int) -> str:
    return f"weights of member {member} after step {step}"


@pytest.fixture
def harness(tmp_path):
    made: list[Harness] = []

    def make(**overrides) -> Harness:
        h = Harness(tmp_path / f"h{len(made)}", **overrides)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


# -- continue and ready points --------------------------------------------------------------


def test_continue_between_ready_points_and_ready_continue(harness):
    h = harness()
    assert h.claim_all() == [0, 1, 2, 3]
    assert h.tell(0, 1, 0.5) == Continue()
    assert h.saves == []  # no checkpoint between ready points
    assert h.member(0).step == 1
    assert h.member(0).score == 0.5
    decision = h.tell(0, 2, 0.6)  # ready; the best member keeps going
    assert decision == Continue(ready=True)
    assert h.saves == [(0, 2)]
    stored = h.member(0)
    assert stored.last_ready_step == 2
    assert stored.checkpoint is not None and stored.checkpoint_step == 2
    assert h.read(stored.checkpoint) == content(0, 2)
    assert [(e.step, e.score) for e in h.store.evaluations("run", member=0)] == [(1, 0.5), (2, 0.6)]
    assert h.tell(0, 3, 0.7) == Continue()  # the ready clock restarted at step 2


def test_tell_on_a_member_not_held_is_refused(harness):
    h = harness()
    with pytest.raises(ConfigError) as info:
        h.tell(0, 1, 0.5)
    assert info.value.field == "member"


def advance(h: Harness, member: int, scores: dict[int, float]):
    """Tell ``scores`` (step -> score) in order; return the last decision."""
    decision = None
    for step, score in scores.items():
        decision = h.tell(member, step, score)
    return decision


# -- exploit -------------------------------------------------------------------------------


def test_bottom_member_copies_the_sources_saved_checkpoint(harness):
    h = harness()
    h.claim_all()
    advance(h, 1, {1: 0.5, 2: 0.5})
    advance(h, 2, {1: 0.6, 2: 0.6})
    # Member 0 is the best: checkpoints at its ready points 2 and 4, then trains on to 5.
    assert advance(h, 0, {1: 0.9, 2: 0.9, 3: 0.9, 4: 0.9}) == Continue(ready=True)
    source_ref = h.member(0).checkpoint
    assert h.read(source_ref) == content(0, 4)
    assert advance(h, 0, {5: 0.95}) == Continue()
    h.saves.clear()

    decision = advance(h, 3, {1: 0.1, 2: 0.1})
    assert isinstance(decision, Exploit)
    assert decision.source == 0
    assert decision.source_step == 4
    assert decision.age == 4
    assert decision.checkpoint is not None and decision.checkpoint != source_ref
    assert decision.checkpoint.startswith("3/")
    # The copy holds what the source SAVED at step 4: not the source's newer state (step 5,
    # never saved), and not the exploiting member's own weights.
    assert h.read(decision.checkpoint) == content(0, 4)
    assert (3, 2) not in h.saves  # the member that copies never saves its own weights
    # Explore perturbed the source's hyperparameters (only a member that copied explores).
    assert decision.hparams["x"] in (0.1 * 0.8, 0.1 * 1.2)
    (op,) = decision.operations
    assert (op.name, op.old, op.new) == ("x", 0.1, decision.hparams["x"])

    stored = h.member(3)
    assert stored.step == 2  # the budget clock never changes on exploit
    assert stored.age == 4  # the weights' age is the copied checkpoint's
    assert stored.checkpoint == decision.checkpoint
    assert stored.hparams == decision.hparams
    assert stored.schedule == [
        {"step": 0, "hparams": {"x": 0.1}, "member": 0},
        {"step": 4, "hparams": decision.hparams, "member": 3},
    ]
    (event,) = [e for e in h.store.events("run") if e.kind == "exploit"]
    assert (event.member, event.source, event.source_step) == (3, 0, 4)
    assert event.copied_weights is True
    assert event.new_hparams == decision.hparams
    assert event.operations == [op.to_dict() for op in decision.operations]

    # The source moving on (its old checkpoint superseded and deleted) leaves the copy intact.
    advance(h, 0, {6: 0.97})
    assert not h.checkpoints.exists(source_ref)
    assert h.read(decision.checkpoint) == content(0, 4)


def test_members_outside_the_bottom_keep_their_hyperparameters(harness):
    h = harness()
    h.claim_all()
    for member, score in ((0, 0.9), (1, 0.8), (2, 0.7)):
        assert advance(h, member, {1: score, 2: score}) == Continue(ready=True)
    for member in (0, 1, 2):
        assert h.member(member).hparams == INITIAL[member]
        assert h.member(member).schedule == [
            {"step": 0, "hparams": INITIAL[member], "member": member}
        ]


def test_hyperparameter_only_exploit_keeps_the_members_weights(harness):
    h = harness(exploit=Truncation(0.25, copy_weights=False))
    h.claim_all()
    for member, score in ((0, 0.9), (1, 0.8), (2, 0.7)):
        advance(h, member, {1: score, 2: score})
    decision = advance(h, 3, {1: 0.1, 2: 0.1})
    assert isinstance(decision, Exploit)
    assert decision.checkpoint is None
    assert decision.source == 0
    stored = h.member(3)
    assert h.read(stored.checkpoint) == content(3, 2)  # its own weights, saved
    assert stored.age == 2
    assert stored.schedule[-1] == {"step": 2, "hparams": decision.hparams, "member": 3}


def scenario_with_deleted_source(h: Harness, delete: bool):
    h.claim_all()
    advance(h, 0, {1: 0.9, 2: 0.9})
    advance(h, 1, {1: 0.8, 2: 0.8})
    advance(h, 2, {1: 0.3, 2: 0.3})
    if delete:
        shutil.rmtree(h.checkpoints.path(h.member(0).checkpoint))
    return advance(h, 3, {1: 0.1, 2: 0.1})


def test_deleted_source_checkpoint_is_never_returned(harness):
    # Truncation(0.5): the bottom two copy one of the top two (members 0 and 1). Member 0's
    # checkpoint disappears before member 3 decides: the core must look again.
    picked_again = False
    for seed in range(12):
        first = scenario_with_deleted_source(harness(exploit=Truncation(0.5), seed=seed), False)
        h = harness(exploit=Truncation(0.5), seed=seed)
        decision = scenario_with_deleted_source(h, True)
        if isinstance(decision, Exploit):
            assert decision.source == 1
            assert h.checkpoints.exists(decision.checkpoint)
            assert h.read(decision.checkpoint) == content(1, 2)
            assert h.checkpoints.exists(h.member(3).checkpoint)
            if isinstance(first, Exploit) and first.source == 0:
                picked_again = True
        else:
            assert decision == Continue(ready=True)
            assert h.read(h.member(3).checkpoint) == content(3, 2)
    assert picked_again


def test_only_source_deleted_falls_back_to_continue(harness):
    h = harness(exploit=Elitist())
    decision = scenario_with_deleted_source(h, True)
    assert decision == Continue(ready=True)
    stored = h.member(3)
    assert h.checkpoints.exists(stored.checkpoint)
    assert h.read(stored.checkpoint) == content(3, 2)
    assert stored.hparams == INITIAL[3]


# -- failures ------------------------------------------------------------------------------


def test_nan_score_is_a_failure_replaced_through_exploit(harness):
    h = harness()
    h.claim_all()
    for member, score in ((0, 0.9), (1, 0.8), (2, 0.7)):
        advance(h, member, {1: score, 2: score})
    decision = h.tell(3, 1, math.nan)
    assert isinstance(decision, Exploit)
    assert decision.checkpoint is not None and h.checkpoints.exists(decision.checkpoint)
    assert decision.source != 3
    assert h.read(decision.checkpoint) == content(decision.source, 2)
    (evaluation,) = h.store.evaluations("run", member=3)
    assert evaluation.score is None
    assert "nan" in evaluation.error
    failures = [e for e in h.store.events("run", member=3) if e.kind == "failure"]
    assert len(failures) == 1 and "nan" in failures[0].message
    stored = h.member(3)
    assert stored.failures == 1
    assert stored.status == MemberStatus.RUNNING
    assert stored.score is None
    assert stored.step == 1  # the failed step still used the budget
    assert stored.age == 2  # the copied weights' age


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_after_max_failures_the_member_fails_for_good(harness, bad):
    h = harness(max_failures=2)
    h.claim_all()
    for member, score in ((0, 0.9), (1, 0.8), (2, 0.7)):
        advance(h, member, {1: score, 2: score})
    assert isinstance(h.tell(3, 1, bad), Exploit)
    assert isinstance(h.pop.fail(3, 2, "RuntimeError: boom"), Exploit)
    assert h.tell(3, 3, bad) == Stop("failed")
    stored = h.member(3)
    assert stored.status == MemberStatus.FAILED
    assert stored.failures == 3
    assert stored.owner is None
    assert [e.kind for e in h.store.events("run", member=3)].count("failure") == 3
    assert [e.error for e in h.store.evaluations("run", member=3)][1] == "RuntimeError: boom"
    with pytest.raises(ConfigError):
        h.pop.held(3)
    # A member that failed for good is never a source.
    advance(h, 0, {3: 0.95, 4: 0.95})
    advance(h, 1, {3: 0.01, 4: 0.01})
    assert all(e.source != 3 for e in h.store.events("run") if e.kind == "exploit")


def test_failure_at_the_last_step_finishes_on_a_copied_state(harness):
    # REGRESSION: a member that failed at its last step used to get an Exploit and train
    # on past max_steps; its budget is spent, so it ends on the copy of a good member.
    h = harness(max_steps=4)
    h.claim_all()
    for member, score in ((0, 0.9), (1, 0.8), (2, 0.7)):
        advance(h, member, {1: score, 2: score})
    advance(h, 3, {1: 0.6, 2: 0.6, 3: 0.6})
    assert h.pop.fail(3, 4, "RuntimeError: boom") == Stop("finished")
    stored = h.member(3)
    assert stored.status == MemberStatus.FINISHED
    assert stored.step == 4 and stored.steps_trained == 4
    assert stored.owner is None
    assert stored.checkpoint is not None
    source = next(e for e in h.store.events("run", member=3) if e.kind == "exploit").source
    assert source != 3
    assert h.read(stored.checkpoint) == content(source, 2)
    with pytest.raises(ConfigError):
        h.pop.held(3)


def test_failure_with_nobody_to_copy_restarts_from_own_checkpoint(harness):
    h = harness(population_size=2, exploit=Truncation(0.5))
    h.claim_all()
    advance(h, 0, {1: 0.5, 2: 0.5})
    own = h.member(0).checkpoint
    decision = h.tell(0, 3, math.nan)
    assert isinstance(decision, Exploit)
    assert decision.source == 0
    assert decision.checkpoint != own
    assert h.read(decision.checkpoint) == content(0, 2)
    assert h.member(0).step == 3  # failures cost steps: the budget is not given back


# -- finishing -----------------------------------------------------------------------------


def test_member_stops_at_max_steps(harness):
    h = harness(population_size=2, max_steps=3, ready=EverySteps(10), exploit=Truncation(0.5))
    h.claim_all()
    assert advance(h, 0, {1: 0.1, 2: 0.2}) == Continue()
    assert h.tell(0, 3, 0.3) == Stop("finished")
    stored = h.member(0)
    assert stored.status == MemberStatus.FINISHED
    assert h.read(stored.checkpoint) == content(0, 3)
    assert not h.pop.is_done()
    assert advance(h, 1, {1: 0.1, 2: 0.2, 3: 0.3}) == Stop("finished")
    assert h.pop.is_done()
    assert h.store.members("run")[0].steps_trained == 3


# -- best-ever state ------------------------------------------------------------------------


def test_best_ever_is_kept_in_best_folder_and_only_improves(harness):
    h = harness(population_size=2, exploit=None, explore=None)
    h.claim_all()
    advance(h, 0, {1: 0.5, 2: 0.5})
    first = h.store.get_run("run").best
    assert first.checkpoint.startswith("_best/")
    assert (first.member, first.step, first.score) == (0, 2, 0.5)
    assert h.read(first.checkpoint) == content(0, 2)
    # A worse state does not replace it.
    advance(h, 1, {1: 0.3, 2: 0.3})
    assert h.store.get_run("run").best == first
    # Member 0's own checkpoint is superseded later, but the best copy stays.
    advance(h, 0, {3: 0.4, 4: 0.4})
    assert h.read(first.checkpoint) == content(0, 2)
    assert h.store.get_run("run").best == first
    # A better state replaces it, and the replaced copy is deleted.
    advance(h, 1, {3: 0.8, 4: 0.8})
    better = h.store.get_run("run").best
    assert (better.member, better.step, better.score) == (1, 4, 0.8)
    assert h.read(better.checkpoint) == content(1, 4)
    assert better.schedule == [{"step": 0, "hparams": INITIAL[1], "member": 1}]
    assert not h.checkpoints.exists(first.checkpoint)
    assert [ref for ref in h.checkpoints.refs() if ref.startswith("_best/")] == [better.checkpoint]


def test_mode_min_ranks_lower_scores_higher(harness):
    h = harness(mode="min")
    h.claim_all()
    for member, loss in ((0, 0.1), (1, 0.2), (2, 0.3)):
        advance(h, member, {1: loss, 2: loss})
    decision = advance(h, 3, {1: 5.0, 2: 5.0})
    assert isinstance(decision, Exploit) and decision.source == 0
    assert h.store.get_run("run").best.score == 0.1


# -- synchronous mode -----------------------------------------------------------------------


def test_synchronous_barrier_waits_then_decides_for_all(harness):
    h = harness(population_size=3, synchronous=True, exploit=Truncation(0.34), max_steps=6)
    h.claim_all()
    assert advance(h, 0, {1: 0.9, 2: 0.9}) == Wait()
    assert advance(h, 1, {1: 0.5, 2: 0.5}) == Wait()
    assert h.member(0).status == MemberStatus.WAITING
    assert h.member(1).status == MemberStatus.WAITING
    assert [e for e in h.store.events("run") if e.kind == "exploit"] == []
    assert h.pop.claim() is None  # nobody at the barrier can be claimed
    assert advance(h, 2, {1: 0.1, 2: 0.1}) == Wait()  # the last arrival closes the generation
    members = h.store.members("run")
    assert [m.status for m in members] == [MemberStatus.IDLE] * 3
    (event,) = [e for e in h.store.events("run") if e.kind == "exploit"]
    assert (event.member, event.source) == (2, 0)
    worst = members[2]
    assert h.read(worst.checkpoint) == content(0, 2)
    assert worst.hparams == event.new_hparams
    assert members[0].hparams == INITIAL[0] and members[1].hparams == INITIAL[1]
    # The next generation: claimed again, each from its (possibly new) state.
    assert sorted(h.claim_all()) == [0, 1, 2]
    assert all(h.pop.held(m).step == 2 for m in range(3))


@pytest.mark.parametrize("how", ["finished", "failed", "failed_at_last_step"])
def test_synchronous_barrier_releases_others_when_one_member_leaves(harness, how):
    # REGRESSION: with one member leaving (done or failed for good) just before the
    # barrier, the members already waiting there must be released, not left hanging.
    clock = Clock()
    h = harness(
        population_size=3,
        synchronous=True,
        ready=EverySeconds(10.0),
        exploit=Truncation(0.34),
        max_steps=4,
        max_failures=1,
        clock=clock,
    )
    h.claim_all()
    advance(h, 0, {1: 0.9, 2: 0.9})
    advance(h, 1, {1: 0.5, 2: 0.5})
    # Member 2 trains faster: it is one step from its budget before the barrier.
    assert advance(h, 2, {1: 0.2, 2: 0.2}) == Continue()
    if how == "failed":
        assert isinstance(h.pop.fail(2, 3, "boom"), Exploit)  # its one allowed failure
    else:
        assert h.tell(2, 3, 0.2) == Continue()
    clock.now += 11
    assert h.tell(0, 3, 0.9) == Wait()
    assert h.tell(1, 3, 0.5) == Wait()
    if how == "finished":
        assert h.tell(2, 4, 0.3) == Stop("finished")
    elif how == "failed":
        assert h.pop.fail(2, 4, "boom") == Stop("failed")
    else:
        assert h.pop.fail(2, 4, "boom") == Stop("finished")
    members = h.store.members("run")
    assert members[2].status == (MemberStatus.FAILED if how == "failed" else MemberStatus.FINISHED)
    assert members[0].status == MemberStatus.IDLE
    assert members[1].status == MemberStatus.IDLE
    # ...and the run can go on to the end.
    clock.now += 100
    assert sorted(h.claim_all()) == [0, 1]
    assert h.tell(0, 4, 0.9) == Stop("finished")
    assert h.tell(1, 4, 0.6) == Stop("finished")
    assert h.pop.is_done()


def test_synchronous_members_at_the_barrier_with_a_finished_member_still_close(harness):
    # All but one member finished: the last one's generation closes on its own.
    h = harness(population_size=2, synchronous=True, exploit=Truncation(0.5), max_steps=3)
    h.claim_all()
    assert advance(h, 0, {1: 0.5, 2: 0.5}) == Wait()
    assert advance(h, 1, {1: 0.9, 2: 0.9}) == Wait()
    assert sorted(h.claim_all()) == [0, 1]
    assert h.tell(1, 3, 0.9) == Stop("finished")
    assert h.tell(0, 3, 0.8) == Stop("finished")
    assert h.pop.is_done()


# -- suspend and claim after a lost worker ----------------------------------------------------


def test_suspend_checkpoints_and_claim_resumes_from_it(tmp_path, harness):
    h = harness(population_size=2, exploit=Truncation(0.5))
    h.claim_all()
    advance(h, 0, {1: 0.5, 2: 0.5, 3: 0.6})
    h.pop.suspend(0, save=h.save(0, 3))
    stored = h.member(0)
    assert stored.status == MemberStatus.IDLE and stored.owner is None
    assert stored.checkpoint_step == 3
    assert h.read(stored.checkpoint) == content(0, 3)
    again = h.pop.claim()
    assert again.member == 0 and again.step == 3


def test_claim_after_a_dead_holder_rolls_back_to_the_checkpoint(harness):
    h = harness(population_size=2, exploit=Truncation(0.5))
    h.claim_all()
    advance(h, 0, {1: 0.5, 2: 0.5, 3: 0.6})  # checkpoint at 2, trained on to 3
    h.store.release_owner("run", "me")  # the holder died
    other = Population.open(h.store, "run", h.checkpoints, owner="other")
    claimed = {r.member: r for r in (other.claim(), other.claim())}
    record = claimed[0]
    assert record.step == 2 and record.age == 2
    assert other.held(0).step == 2
    assert h.member(0).step == 2  # the lost step is given back in the store too
    (rollback,) = [e for e in h.store.events("run") if e.kind == "rollback"]
    assert (rollback.step, rollback.new_step) == (3, 2)
