"""The store conformance suite: every backend in ``STORE_BACKENDS`` must pass it.

Written against the :class:`~poptrain.store.PopulationStore` protocol only, through the
``store_url``/``store`` fixtures; extra connections are opened with ``SQLStore(store_url)``.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import uuid
from pathlib import Path

import pytest

from helpers.store_procs import claim_until_empty, increment_locked
from poptrain.errors import StorageError
from poptrain.store import (
    BestRecord,
    EvaluationRecord,
    EventRecord,
    LeaseLost,
    MemberRecord,
    MemberStatus,
    PopulationStore,
    SQLStore,
)

CONFIG = {
    "metric": "loss",
    "mode": "min",
    "space": {"lr": {"type": "Uniform", "low": 0, "high": 1}},
}


def run_name() -> str:
    return f"run-{uuid.uuid4().hex[:8]}"


def members(count: int, **fields) -> list[MemberRecord]:
    return [
        MemberRecord(member=i, hparams={"lr": 0.1 * (i + 1)}, seed=100 + i, **fields)
        for i in range(count)
    ]


def by_id(store: PopulationStore, run: str) -> dict[int, MemberRecord]:
    return {m.member: m for m in store.members(run)}


def test_store_satisfies_the_protocol(store):
    assert isinstance(store, PopulationStore)


# -- runs ---------------------------------------------------------------------------------


def test_create_get_and_list_runs(store):
    assert store.list_runs() == []
    assert store.get_run("nope") is None
    store.create_run("a", CONFIG, members(2))
    store.create_run("b", {**CONFIG, "mode": "max"}, [])
    a = store.get_run("a")
    assert a is not None
    assert a.name == "a"
    assert a.config == CONFIG
    assert a.status == "created"
    assert a.best is None
    assert a.created <= a.updated
    assert sorted(r.name for r in store.list_runs()) == ["a", "b"]
    assert store.get_run("b").config["mode"] == "max"
    assert store.members("b") == []
    assert [m.member for m in store.members("a")] == [0, 1]
    store.set_run_status("a", "running")
    assert store.get_run("a").status == "running"
    assert store.get_run("b").status == "created"


def test_duplicate_run_name_is_refused(store):
    store.create_run("a", CONFIG, members(2))
    with pytest.raises(StorageError):
        store.create_run("a", {"other": True}, members(3))
    # The first run is untouched by the refused one.
    assert store.get_run("a").config == CONFIG
    assert len(store.members("a")) == 2


def test_runs_are_visible_from_another_connection(store_url, store):
    store.create_run("shared", CONFIG, members(3))
    other = SQLStore(store_url)
    try:
        assert other.get_run("shared").config == CONFIG
        assert len(other.members("shared")) == 3
    finally:
        other.close()


def test_long_run_status_round_trips(store):
    # Workers record "error: <message>" as the status when a run cannot go on.
    status = "error: trainable='some.module:Class': cannot be imported (" + "x" * 300 + ")"
    store.create_run("a", CONFIG, members(1))
    store.set_run_status("a", status)
    assert store.get_run("a").status == status


def test_members_of_runs_are_separate(store):
    store.create_run("a", CONFIG, members(2))
    store.create_run("b", CONFIG, members(3))
    assert len(store.members("a")) == 2
    assert len(store.members("b")) == 3
    assert store.claim("a", "w", 0.0, 10.0) is not None
    assert all(m.status == MemberStatus.IDLE for m in store.members("b"))


# -- members -------------------------------------------------------------------------------


def full_member() -> MemberRecord:
    return MemberRecord(
        member=3,
        hparams={"lr": 0.0123, "opt": "adam", "layers": 4, "nested": {"a": [1, 2]}},
        seed=4_000_000_000,
        step=17,
        age=25,
        score=0.875,
        recent_scores=[0.5, None, 0.875],
        last_ready_step=16,
        last_ready_time=1234.5,
        checkpoint="3/00000016-abcdef",
        checkpoint_step=16,
        checkpoint_age=24,
        checkpoint_score=0.8,
        schedule=[
            {"step": 0, "hparams": {"lr": 0.01, "opt": "sgd", "layers": 4}, "member": 1},
            {"step": 12, "hparams": {"lr": 0.0123, "opt": "adam", "layers": 4}, "member": 3},
        ],
        status=MemberStatus.WAITING,
        owner="worker-x",
        lease_expires=9999.25,
        version=7,
        failures=2,
        steps_trained=19,
    )


def test_member_round_trip_keeps_every_field(store):
    record = full_member()
    store.create_run("r", CONFIG, [record])
    (stored,) = store.members("r")
    assert stored == record
    assert isinstance(stored.status, MemberStatus)


def test_update_member_round_trip(store):
    store.create_run("r", CONFIG, members(2))
    record = full_member()
    record.member = 1
    assert store.update_member("r", record) is True
    assert by_id(store, "r")[1] == record
    assert by_id(store, "r")[0] == members(2)[0]


def test_non_finite_member_scores_are_stored_as_none(store):
    record = MemberRecord(
        member=0,
        hparams={},
        seed=0,
        score=math.nan,
        recent_scores=[1.0, math.inf, -math.inf, math.nan],
        checkpoint_score=math.inf,
    )
    store.create_run("r", CONFIG, [record])
    (stored,) = store.members("r")
    assert stored.score is None
    assert stored.checkpoint_score is None
    assert stored.recent_scores == [1.0, None, None, None]


# -- claims and leases ----------------------------------------------------------------------


def test_claim_hands_out_each_member_once(store):
    store.create_run("r", CONFIG, members(3))
    claimed = [store.claim("r", f"w{i}", 100.0, 60.0) for i in range(4)]
    assert claimed[3] is None
    assert sorted(c.member for c in claimed[:3]) == [0, 1, 2]
    for i, c in enumerate(claimed[:3]):
        assert c.status == MemberStatus.RUNNING
        assert c.owner == f"w{i}"
        assert c.lease_expires == 160.0
    stored = by_id(store, "r")
    assert {m.owner for m in stored.values()} == {"w0", "w1", "w2"}
    assert all(m.status == MemberStatus.RUNNING for m in stored.values())


def test_claim_is_exclusive_across_processes(store_url, store, tmp_path):
    count, processes = 20, 4
    run = run_name()
    store.create_run(run, CONFIG, members(count))
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(processes)  # every process starts claiming at the same moment
    outs = [tmp_path / f"claimed-{i}.json" for i in range(processes)]
    procs = [
        ctx.Process(target=claim_until_empty, args=(store_url, run, f"p{i}", str(out), start))
        for i, out in enumerate(outs)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    claims = [json.loads(Path(out).read_text()) for out in outs]
    everything = [m for claimed in claims for m in claimed]
    assert len(everything) == len(set(everything)), claims  # never twice
    assert sorted(everything) == list(range(count))  # and none left behind
    stored = by_id(store, run)
    for i, claimed in enumerate(claims):
        for member in claimed:
            assert stored[member].owner == f"p{i}"


def test_claim_picks_the_least_advanced_member(store):
    records = members(4)
    for record, step in zip(records, [5, 2, 7, 2], strict=True):
        record.step = step
    store.create_run("r", CONFIG, records)
    steps = [store.claim("r", "w", 0.0, 60.0).step for _ in range(4)]
    assert steps == [2, 2, 5, 7]


def test_claim_skips_members_that_are_not_idle(store):
    records = members(4)
    records[0].status = MemberStatus.FINISHED
    records[1].status = MemberStatus.FAILED
    records[2].status = MemberStatus.WAITING
    store.create_run("r", CONFIG, records)
    claimed = store.claim("r", "w", 0.0, 60.0)
    assert claimed is not None and claimed.member == 3
    # Long after: waiting, finished and failed members are still never handed out.
    assert store.claim("r", "w", 30.0, 60.0) is None
    reclaimed = store.claim("r", "w2", 10_000.0, 60.0)
    assert reclaimed is not None and reclaimed.member == 3  # only the expired lease
    assert store.claim("r", "w3", 10_000.0, 60.0) is None


def test_expired_lease_is_reclaimable_unexpired_is_not(store):
    store.create_run("r", CONFIG, members(1))
    first = store.claim("r", "old", now=1000.0, lease_seconds=10.0)
    assert first.lease_expires == 1010.0
    assert store.claim("r", "new", now=1005.0, lease_seconds=10.0) is None
    again = store.claim("r", "new", now=1011.0, lease_seconds=10.0)
    assert again is not None and again.member == 0
    assert again.owner == "new"
    assert again.lease_expires == 1021.0
    assert by_id(store, "r")[0].owner == "new"
    # The old owner lost it: its writes are refused.
    first.step = 99
    assert store.update_member("r", first, owner="old") is False
    assert by_id(store, "r")[0].step == 0


def test_update_member_checks_the_owner(store):
    store.create_run("r", CONFIG, members(1))
    record = store.claim("r", "me", 0.0, 60.0)
    record.step = 3
    assert store.update_member("r", record, owner="someone-else") is False
    assert by_id(store, "r")[0].step == 0
    assert store.update_member("r", record, owner="me") is True
    assert by_id(store, "r")[0].step == 3
    record.step = 4
    assert store.update_member("r", record) is True  # no owner: unconditional
    assert by_id(store, "r")[0].step == 4


def test_release_owner_returns_held_members_to_idle(store):
    store.create_run("r", CONFIG, members(5))
    a = [store.claim("r", "A", 0.0, 600.0) for _ in range(3)]
    b = store.claim("r", "B", 0.0, 600.0)
    assert store.release_owner("r", "A") == 3
    stored = by_id(store, "r")
    for record in a:
        assert stored[record.member].status == MemberStatus.IDLE
        assert stored[record.member].owner is None
        assert stored[record.member].lease_expires is None
    assert stored[b.member].status == MemberStatus.RUNNING
    assert stored[b.member].owner == "B"
    assert store.release_owner("r", "A") == 0
    # The released members can be claimed at once (long before their lease ran out).
    again = {store.claim("r", "C", 1.0, 600.0).member for _ in range(4)}
    assert {r.member for r in a} <= again


# -- record: evaluations, member, events in one transaction ---------------------------------


def test_record_writes_evaluation_member_and_events(store):
    store.create_run("r", CONFIG, members(2))
    record = store.claim("r", "me", 0.0, 60.0)
    record.step, record.score = 1, 0.5
    evaluation = EvaluationRecord(record.member, 1, 0.5, 12.5, owner="me")
    event = EventRecord(
        member=record.member,
        step=1,
        kind="exploit",
        time=12.5,
        new_step=4,
        source=1,
        source_step=4,
        old_hparams={"lr": 0.1},
        new_hparams={"lr": 0.08},
        operations=[{"name": "lr", "old": 0.1, "new": 0.08, "op": "x0.8"}],
        copied_weights=True,
        message="copied",
    )
    store.record("r", evaluation=evaluation, member=record, events=[event], owner="me")
    (stored_eval,) = store.evaluations("r")
    assert stored_eval.id is not None
    assert stored_eval == EvaluationRecord(
        record.member, 1, 0.5, 12.5, owner="me", id=stored_eval.id
    )
    (stored_event,) = store.events("r")
    assert stored_event.id is not None
    assert stored_event == EventRecord(**{**vars(event), "id": stored_event.id})
    assert by_id(store, "r")[record.member].score == 0.5


def test_record_with_wrong_owner_writes_nothing(store):
    store.create_run("r", CONFIG, members(1))
    record = store.claim("r", "me", 0.0, 60.0)
    before = by_id(store, "r")[0]
    record.step, record.score = 5, 0.9
    with pytest.raises(LeaseLost):
        store.record(
            "r",
            evaluation=EvaluationRecord(0, 5, 0.9, 1.0, owner="thief"),
            member=record,
            events=[EventRecord(0, 5, "failure", 1.0, message="x")],
            owner="thief",
        )
    assert store.evaluations("r") == []
    assert store.events("r") == []
    assert by_id(store, "r")[0] == before


def test_evaluations_and_events_filter_by_member_and_keep_order(store):
    store.create_run("r", CONFIG, members(2))
    for step in range(1, 4):
        for member in (0, 1):
            store.record(
                "r",
                evaluation=EvaluationRecord(member, step, step + member / 10, float(step)),
                events=[EventRecord(member, step, "ready", float(step))],
            )
    assert [(e.member, e.step) for e in store.evaluations("r")] == [
        (0, 1),
        (1, 1),
        (0, 2),
        (1, 2),
        (0, 3),
        (1, 3),
    ]
    assert [e.score for e in store.evaluations("r", member=1)] == [1.1, 2.1, 3.1]
    assert [e.step for e in store.events("r", member=0)] == [1, 2, 3]
    assert all(e.member == 0 for e in store.events("r", member=0))
    assert store.evaluations("other-run") == []


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, None])
def test_non_finite_evaluation_is_stored_as_none(store, bad):
    store.create_run("r", CONFIG, members(1))
    store.record("r", evaluation=EvaluationRecord(0, 1, bad, 1.0, error="score is nan"))
    (stored,) = store.evaluations("r")
    assert stored.score is None
    assert stored.error == "score is nan"


def test_event_defaults_round_trip(store):
    store.create_run("r", CONFIG, members(1))
    store.record("r", events=[EventRecord(0, 3, "rollback", 2.0, new_step=1)])
    (event,) = store.events("r")
    assert event.kind == "rollback"
    assert event.new_step == 1
    assert event.source is None and event.old_hparams is None and event.new_hparams is None
    assert event.operations == []
    assert event.copied_weights is False


# -- best state ----------------------------------------------------------------------------


def best(score: float, member: int = 0, checkpoint: str = "_best/a") -> BestRecord:
    return BestRecord(
        member=member,
        step=8,
        age=12,
        score=score,
        hparams={"lr": 0.01},
        checkpoint=checkpoint,
        schedule=[{"step": 0, "hparams": {"lr": 0.01}, "member": member}],
        time=5.0,
    )


def test_offer_best_only_replaces_with_a_better_rank(store):
    store.create_run("r", CONFIG, members(2))
    first = best(0.3, checkpoint="_best/a")
    assert store.offer_best("r", first, rank=-0.3) is None  # nothing replaced
    assert store.get_run("r").best == first
    worse = best(0.5, member=1, checkpoint="_best/b")
    assert store.offer_best("r", worse, rank=-0.5) is False
    assert store.offer_best("r", best(0.3, 1, "_best/c"), rank=-0.3) is False  # equal: no
    assert store.get_run("r").best == first
    better = best(0.1, member=1, checkpoint="_best/d")
    assert store.offer_best("r", better, rank=-0.1) == first  # returns the replaced record
    assert store.get_run("r").best == better
    assert [r.best for r in store.list_runs()] == [better]


def test_offer_best_on_a_missing_run_fails(store):
    with pytest.raises(StorageError):
        store.offer_best("missing", best(1.0), rank=1.0)


# -- locking -------------------------------------------------------------------------------


def test_locked_read_modify_write_loses_no_update(store_url, store):
    processes, times = 4, 25
    run = run_name()
    store.create_run(run, CONFIG, members(2))
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(processes)
    procs = [
        ctx.Process(target=increment_locked, args=(store_url, run, times, start))
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert by_id(store, run)[0].steps_trained == processes * times
    assert by_id(store, run)[1].steps_trained == 0


def test_locked_is_reentrant_and_commits(store):
    store.create_run("r", CONFIG, members(1))
    with store.locked("r"):
        record = store.members("r")[0]
        with store.locked("r"):
            record.step = 9
            store.update_member("r", record)
        store.record("r", evaluation=EvaluationRecord(0, 9, 1.0, 1.0))
    assert store.members("r")[0].step == 9
    assert len(store.evaluations("r")) == 1


def test_locked_rolls_back_on_error(store):
    store.create_run("r", CONFIG, members(1))
    with pytest.raises(RuntimeError), store.locked("r"):
        record = store.members("r")[0]
        record.step = 9
        store.update_member("r", record)
        store.record("r", evaluation=EvaluationRecord(0, 9, 1.0, 1.0))
        raise RuntimeError("boom")
    assert store.members("r")[0].step == 0
    assert store.evaluations("r") == []
