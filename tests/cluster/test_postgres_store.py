"""The store on a real PostgreSQL server: schema creation under concurrency, migration,
leases, bad URLs, and connections that drop (server restarts, killed backends).

The protocol itself is checked on every backend by ``tests/conformance``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time

import pytest
import sqlalchemy as sa
from cluster_procs import open_store_together

from poptrain.errors import StorageError
from poptrain.store import MemberRecord, MemberStatus, SQLStore, StoreUnavailable
from servers import PASSWORD, PASSWORD_ROLE, PostgresServer, free_port

pytestmark = pytest.mark.postgres


def members(count: int) -> list[MemberRecord]:
    return [MemberRecord(member=i, hparams={"x": i}, seed=i) for i in range(count)]


def database_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def test_many_processes_create_the_schema_at_once(postgres_url, tmp_path):
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    outs = [tmp_path / f"out-{i}.json" for i in range(6)]
    procs = [
        ctx.Process(target=open_store_together, args=(postgres_url, str(out), start))
        for out in outs
    ]
    for proc in procs:
        proc.start()
    time.sleep(1.0)  # let every process reach the start line
    start.set()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    results = [json.loads(out.read_text()) for out in outs]
    assert all(r["ok"] for r in results), results
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    engine.dispose()
    expected = {"poptrain_runs", "poptrain_members", "poptrain_evaluations", "poptrain_events"}
    assert expected <= tables


def test_an_older_schema_gets_the_new_columns(postgres_url):
    SQLStore(postgres_url).close()
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:  # the schema as the first release created it
        conn.execute(sa.text("ALTER TABLE poptrain_runs DROP COLUMN checkpoints"))
    engine.dispose()
    store = SQLStore(postgres_url)
    try:
        store.create_run("r", {"k": 1}, members(2), checkpoints="s3://bucket/ckpt")
        record = store.get_run("r")
        assert record is not None and record.checkpoints == "s3://bucket/ckpt"
    finally:
        store.close()


def test_the_run_records_its_checkpoint_location(store):
    store.create_run("with", {}, members(1), checkpoints="/nfs/ckpt")
    store.create_run("without", {}, members(1))
    assert store.get_run("with").checkpoints == "/nfs/ckpt"
    assert store.get_run("without").checkpoints is None


def test_renew_leases_extends_only_what_the_owner_holds(store):
    store.create_run("r", {}, members(3))
    first = store.claim("r", "a", now=100.0, lease_seconds=10.0)
    second = store.claim("r", "b", now=100.0, lease_seconds=10.0)
    assert first is not None and second is not None
    held = store.renew_leases("r", "a", [first.member, second.member], lease_expires=500.0)
    assert held == [first.member]
    by_member = {m.member: m for m in store.members("r")}
    assert by_member[first.member].lease_expires == 500.0
    assert by_member[second.member].lease_expires == 110.0
    # Renewed: another owner cannot take it at a time the old lease would have expired.
    claimed = [store.claim("r", "c", now=200.0, lease_seconds=10.0) for _ in range(3)]
    taken = {r.member for r in claimed if r is not None}
    assert first.member not in taken and second.member in taken
    assert store.renew_leases("r", "b", [second.member], lease_expires=900.0) == []
    assert store.renew_leases("r", "a", [], lease_expires=900.0) == []


def test_an_unreachable_server_fails_at_once_with_the_url():
    url = f"postgresql+psycopg://pt@127.0.0.1:{free_port()}/nothing"
    started = time.monotonic()
    with pytest.raises(StorageError, match=r"cannot open the store at .*127\.0\.0\.1"):
        SQLStore(url)
    assert time.monotonic() - started < 30  # no retry loop before the first success


def test_a_wrong_password_is_refused_without_showing_it(postgres_server: PostgresServer):
    name = database_name(postgres_server.database())
    good = postgres_server.url(name, user=PASSWORD_ROLE, password=PASSWORD)
    SQLStore(good).close()
    bad = postgres_server.url(name, user=PASSWORD_ROLE, password="not-the-password")
    with pytest.raises(StorageError, match="password authentication failed") as caught:
        SQLStore(bad)
    assert "not-the-password" not in str(caught.value)


def test_a_missing_database_is_refused(postgres_server: PostgresServer):
    with pytest.raises(StorageError, match="does not exist"):
        SQLStore(postgres_server.url("no_such_database"))


def _kill_other_backends(server: PostgresServer, database: str) -> None:
    server.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    )


def test_a_dropped_connection_is_retried(postgres_server: PostgresServer, postgres_url):
    store = SQLStore(postgres_url)
    try:
        store.create_run("r", {}, members(2))
        _kill_other_backends(postgres_server, database_name(postgres_url))
        assert [m.member for m in store.members("r")] == [0, 1]
        record = store.claim("r", "a", now=1.0, lease_seconds=5.0)
        assert record is not None
        _kill_other_backends(postgres_server, database_name(postgres_url))
        record.step = 3
        assert store.update_member("r", record, owner="a")
        assert next(m for m in store.members("r") if m.member == record.member).step == 3
    finally:
        store.close()


def test_a_connection_lost_inside_locked_rolls_back(postgres_server: PostgresServer, postgres_url):
    store = SQLStore(postgres_url)
    try:
        store.create_run("r", {}, members(1))
        with pytest.raises(StoreUnavailable, match="locked section"), store.locked("r"):
            record = store.members("r")[0]
            record.steps_trained = 99
            store.update_member("r", record)
            _kill_other_backends(postgres_server, database_name(postgres_url))
            store.update_member("r", record)
        # Nothing of the section was written, and the store goes on working.
        assert store.members("r")[0].steps_trained == 0
        with store.locked("r"):
            record = store.members("r")[0]
            record.steps_trained = 1
            store.update_member("r", record)
        assert store.members("r")[0].steps_trained == 1
    finally:
        store.close()


def test_a_server_that_stays_away_gives_store_unavailable(
    postgres_server: PostgresServer, postgres_url
):
    name = database_name(postgres_url)
    # Connection limits do not apply to superusers: connect as the ordinary role.
    url = postgres_server.url(name, user=PASSWORD_ROLE, password=PASSWORD)
    store = SQLStore(url, retry_seconds=2.0)
    try:
        store.create_run("r", {}, members(1))
        postgres_server.execute(f"ALTER DATABASE {name} CONNECTION LIMIT 0")
        _kill_other_backends(postgres_server, name)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="has not answered"):
            store.members("r")
        assert time.monotonic() - started >= 2.0
        postgres_server.execute(f"ALTER DATABASE {name} CONNECTION LIMIT -1")
        assert len(store.members("r")) == 1
    finally:
        postgres_server.execute(f"ALTER DATABASE {name} CONNECTION LIMIT -1")
        store.close()


def test_the_store_rides_out_a_server_restart(postgres_server: PostgresServer, postgres_url):
    store = SQLStore(postgres_url)
    try:
        store.create_run("r", {}, members(2))
        record = store.claim("r", "a", now=1.0, lease_seconds=5.0)
        assert record is not None
        postgres_server.restart()
        record.status = MemberStatus.IDLE
        record.owner = None
        assert store.update_member("r", record, owner="a")
        with store.locked("r"):
            assert {m.status for m in store.members("r")} == {MemberStatus.IDLE}
    finally:
        store.close()
