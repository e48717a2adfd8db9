"""The population store on SQLAlchemy Core: SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine

from ..errors import StorageError
from .base import (
    BestRecord,
    EvaluationRecord,
    EventRecord,
    LeaseLost,
    MemberRecord,
    MemberStatus,
    RunRecord,
    StoreUnavailable,
)

__all__ = ["SQLStore"]

log = logging.getLogger(__name__)

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
metadata = sa.MetaData()

runs_table = sa.Table(
    "poptrain_runs",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("config", _JSON, nullable=False),
    # Text: a run that hit an error keeps "error: <message>" here (PostgreSQL enforces lengths).
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
    sa.Column("best_member", sa.Integer),
    sa.Column("best_step", sa.Integer),
    sa.Column("best_age", sa.Integer),
    sa.Column("best_score", sa.Float),
    sa.Column("best_rank", sa.Float),
    sa.Column("best_hparams", _JSON),
    sa.Column("best_checkpoint", sa.Text),
    sa.Column("best_schedule", _JSON),
    sa.Column("best_time", sa.Float),
    sa.Column("checkpoints", sa.Text),
)

members_table = sa.Table(
    "poptrain_members",
    metadata,
    sa.Column("run", sa.String(200), primary_key=True),
    sa.Column("member", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("hparams", _JSON, nullable=False),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("age", sa.Integer, nullable=False),
    sa.Column("score", sa.Float),
    sa.Column("recent_scores", _JSON, nullable=False),
    sa.Column("last_ready_step", sa.Integer, nullable=False),
    sa.Column("last_ready_time", sa.Float, nullable=False),
    sa.Column("checkpoint", sa.Text),
    sa.Column("checkpoint_step", sa.Integer, nullable=False),
    sa.Column("checkpoint_age", sa.Integer, nullable=False),
    sa.Column("checkpoint_score", sa.Float),
    sa.Column("schedule", _JSON, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("owner", sa.String(200)),
    sa.Column("lease_expires", sa.Float),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("steps_trained", sa.Integer, nullable=False),
)

evaluations_table = sa.Table(
    "poptrain_evaluations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run", sa.String(200), nullable=False),
    sa.Column("member", sa.Integer, nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("score", sa.Float),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("owner", sa.String(200)),
    sa.Index("ix_poptrain_evaluations_run_member", "run", "member", "step"),
)

events_table = sa.Table(
    "poptrain_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run", sa.String(200), nullable=False),
    sa.Column("member", sa.Integer, nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("new_step", sa.Integer),
    sa.Column("source", sa.Integer),
    sa.Column("source_step", sa.Integer),
    sa.Column("old_hparams", _JSON),
    sa.Column("new_hparams", _JSON),
    sa.Column("operations", _JSON, nullable=False),
    sa.Column("copied_weights", sa.Boolean, nullable=False),
    sa.Column("message", sa.Text),
    sa.Index("ix_poptrain_events_run_member", "run", "member"),
)

_MEMBER_FIELDS = [c.name for c in members_table.columns if c.name not in ("run", "member")]

# Built once: SQLAlchemy then reuses their compiled form, which keeps a report's store write
# (the hot path) to one cheap UPDATE and one INSERT.
_UPDATE_MEMBER = (
    members_table.update()
    .where(
        members_table.c.run == sa.bindparam("k_run"),
        members_table.c.member == sa.bindparam("k_member"),
    )
    .values({name: sa.bindparam(f"v_{name}") for name in _MEMBER_FIELDS})
)
_UPDATE_OWNED_MEMBER = _UPDATE_MEMBER.where(members_table.c.owner == sa.bindparam("k_owner"))
_INSERT_EVALUATION = evaluations_table.insert()

#: Columns added since the first schema, as (table, column, SQL type): ``create_schema``
#: adds those an existing database lacks.
_ADDED_COLUMNS = (("poptrain_runs", "checkpoints", "TEXT"),)
#: PostgreSQL advisory lock that serialises schema creation and migration ("poptrain").
_SCHEMA_LOCK = 0x706F70747261696E
#: SQLSTATEs worth retrying: connection exceptions (class 08), a server shutting down or
#: starting up, too many connections, serialisation failures and deadlocks.
_TRANSIENT_STATES = frozenset({"57P01", "57P02", "57P03", "53300", "40001", "40P01"})

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _retrying(
    method: Callable[Concatenate[SQLStore, _P], _R],
) -> Callable[Concatenate[SQLStore, _P], _R]:
    """Run the store method again (a fresh transaction) while the server is unreachable."""

    @functools.wraps(method)
    def wrapper(self: SQLStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        return self._retry(functools.partial(method, self, *args, **kwargs), method.__name__)

    return wrapper


def _finite(value: float | None) -> float | None:
    # Non-finite scores are failures: stored as NULL on every backend.
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _member_values(record: MemberRecord) -> dict[str, Any]:
    values = {name: getattr(record, name) for name in _MEMBER_FIELDS}
    values["status"] = MemberStatus(record.status).value
    values["score"] = _finite(record.score)
    values["checkpoint_score"] = _finite(record.checkpoint_score)
    values["recent_scores"] = [_finite(s) for s in record.recent_scores]
    return values


def _member_from_row(row: Any) -> MemberRecord:
    data = dict(row._mapping)
    data.pop("run")
    data["status"] = MemberStatus(data["status"])
    return MemberRecord(**data)


class SQLStore:
    """:class:`~poptrain.store.PopulationStore` on any SQLAlchemy URL.

    SQLite runs in WAL mode, and every write transaction starts with ``BEGIN IMMEDIATE``
    so read-modify-write sections from many processes are serialised by the database.
    On PostgreSQL (READ COMMITTED), claims take row locks with ``FOR UPDATE SKIP LOCKED``,
    writes by a holder are conditional on its ownership, and ``locked`` and
    ``offer_best`` lock the run's row.

    A server that goes away (a restart, a fail-over) is waited for: once the store has
    been reached, every method is retried in a fresh transaction, with backoff, for up to
    ``retry_seconds``; then, or when the connection drops inside ``locked``, it raises
    :class:`~poptrain.store.StoreUnavailable`. A store that cannot be reached when it is
    opened fails at once with :class:`~poptrain.errors.StorageError`.
    """

    def __init__(
        self,
        url: str,
        *,
        create: bool = True,
        engine_options: dict[str, Any] | None = None,
        retry_seconds: float = 60.0,
    ):
        self.url = url
        self.retry_seconds = retry_seconds
        self._reachable = False
        try:
            self.engine: Engine = sa.create_engine(url, **self._engine_options(url, engine_options))
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
            raise StorageError(f"storage URL {url!r} cannot be used: {exc}") from None
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        if self.is_sqlite:
            self._configure_sqlite(self.engine)
        self._local = threading.local()
        if create:
            self.create_schema()

    @staticmethod
    def _engine_options(url: str, extra: dict[str, Any] | None) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if url.startswith("sqlite"):
            options["connect_args"] = {"timeout": 60, "check_same_thread": False}
        else:
            options.update(pool_pre_ping=True, pool_size=2, max_overflow=4)
            if url.startswith("postgresql") and "connect_timeout" not in url:
                # An unreachable host fails in seconds instead of the TCP timeout.
                options["connect_args"] = {"connect_timeout": 10}
        options.update(extra or {})
        return options

    @property
    def safe_url(self) -> str:
        """The URL without its password, for messages."""
        return self.engine.url.render_as_string(hide_password=True)

    @staticmethod
    def _configure_sqlite(engine: Engine) -> None:
        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would defer it).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            if conn.get_execution_options().get("poptrain_read"):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

    def create_schema(self) -> None:
        """Create the tables, or add the columns an older schema lacks.

        Safe when many workers start at once: on PostgreSQL the section holds a
        transaction-level advisory lock, on SQLite ``BEGIN IMMEDIATE`` serialises it.
        """
        try:
            with self.engine.begin() as conn:
                if self.engine.dialect.name == "postgresql":
                    lock = sa.text("SELECT pg_advisory_xact_lock(:key)")
                    conn.execute(lock, {"key": _SCHEMA_LOCK})
                metadata.create_all(conn, checkfirst=True)
                columns = {
                    table: {c["name"] for c in sa.inspect(conn).get_columns(table)}
                    for table in {table for table, _column, _type in _ADDED_COLUMNS}
                }
                for table, column, sql_type in _ADDED_COLUMNS:
                    if column not in columns[table]:
                        conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}"))
        except sa.exc.IntegrityError:
            pass  # a server without the advisory lock: another process created them just now
        except sa.exc.DBAPIError as exc:
            if "already exists" not in str(exc):
                reason = str(exc.orig).strip()
                raise StorageError(f"cannot open the store at {self.safe_url}: {reason}") from None
        self._reachable = True

    # -- retries -------------------------------------------------------------------
    def _transient(self, exc: sa.exc.DBAPIError) -> bool:
        """Whether ``exc`` means the server went away (worth a new connection), not a refusal."""
        if self.is_sqlite:
            return False  # one file: busy_timeout already waits for the lock
        if exc.connection_invalidated:
            return True
        state = getattr(exc.orig, "sqlstate", None)
        if state:
            return str(state).startswith("08") or state in _TRANSIENT_STATES
        return isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError))

    def _retry(self, call: Callable[[], _R], what: str) -> _R:
        if getattr(self._local, "conn", None) is not None:
            # Inside locked(): only the section's caller can redo the whole section.
            try:
                return call()
            except sa.exc.DBAPIError as exc:
                if self._transient(exc):
                    raise StoreUnavailable(
                        f"lost the store at {self.safe_url} in a locked section: {exc.orig}"
                    ) from exc
                raise
        delay, attempt, started = 0.05, 0, time.monotonic()
        try:
            while True:
                self._local.attempt = attempt
                try:
                    result = call()
                except sa.exc.DBAPIError as exc:
                    if not (self._reachable and self._transient(exc)):
                        raise
                    waited = time.monotonic() - started
                    if waited >= self.retry_seconds:
                        raise StoreUnavailable(
                            f"the store at {self.safe_url} has not answered for {waited:.0f} s: "
                            f"{str(exc.orig).strip()}"
                        ) from exc
                    if attempt == 0:
                        log.warning("store unreachable (%s); retrying %s", exc.orig, what)
                    time.sleep(min(delay, self.retry_seconds - waited))
                    delay, attempt = min(delay * 2, 2.0), attempt + 1
                    continue
                self._reachable = True
                if attempt:
                    log.warning("store reachable again after %d retries of %s", attempt, what)
                return result
        finally:
            self._local.attempt = 0

    # -- connections ---------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[Connection]:
        active = getattr(self._local, "conn", None)
        if active is not None:
            yield active
            return
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        active = getattr(self._local, "conn", None)
        if active is not None:
            yield active
            return
        with self.engine.connect() as conn:
            conn = conn.execution_options(poptrain_read=True)
            with conn.begin():
                yield conn

    def _begin_locked(self, run: str) -> tuple[Connection, sa.RootTransaction]:
        conn = self.engine.connect()
        try:
            transaction = conn.begin()
            if not self.is_sqlite:  # SQLite's BEGIN IMMEDIATE already holds the write lock
                conn.execute(
                    sa.select(runs_table.c.name).where(runs_table.c.name == run).with_for_update()
                )
        except BaseException:
            conn.close()
            raise
        return conn, transaction

    @contextmanager
    def locked(self, run: str) -> Iterator[None]:
        if getattr(self._local, "conn", None) is not None:
            yield  # re-entrant: already inside this thread's locked section
            return
        # Taking the lock is retried; a connection lost inside the section is not (its
        # body cannot be replayed here): the transaction rolls back, StoreUnavailable.
        conn, transaction = self._retry(lambda: self._begin_locked(run), "locked")
        self._local.conn = conn
        try:
            yield
            transaction.commit()
        except BaseException as exc:
            # A lost connection cannot roll back: the server already did.
            with suppress(sa.exc.DBAPIError):
                transaction.rollback()
            if isinstance(exc, sa.exc.DBAPIError) and self._transient(exc):
                raise StoreUnavailable(
                    f"lost the store at {self.safe_url} in a locked section: {exc.orig}"
                ) from exc
            raise
        finally:
            self._local.conn = None
            conn.close()

    # -- runs ----------------------------------------------------------------------
    @_retrying
    def create_run(
        self,
        name: str,
        config: dict[str, Any],
        members_: Sequence[MemberRecord],
        *,
        checkpoints: str | None = None,
    ) -> None:
        now = time.time()
        try:
            with self._write() as conn:
                conn.execute(
                    runs_table.insert().values(
                        name=name,
                        config=config,
                        status="created",
                        created=now,
                        updated=now,
                        checkpoints=checkpoints,
                    )
                )
                if members_:
                    conn.execute(
                        members_table.insert(),
                        [{"run": name, "member": m.member, **_member_values(m)} for m in members_],
                    )
        except sa.exc.IntegrityError:
            raise StorageError(f"a run named {name!r} already exists in {self.url}") from None

    @_retrying
    def get_run(self, name: str) -> RunRecord | None:
        with self._read() as conn:
            row = conn.execute(sa.select(runs_table).where(runs_table.c.name == name)).first()
        return None if row is None else self._run_from_row(row)

    @_retrying
    def list_runs(self) -> list[RunRecord]:
        with self._read() as conn:
            rows = conn.execute(sa.select(runs_table).order_by(runs_table.c.created)).all()
        return [self._run_from_row(row) for row in rows]

    @staticmethod
    def _run_from_row(row: Any) -> RunRecord:
        data = row._mapping
        best = None
        if data["best_checkpoint"] is not None:
            best = BestRecord(
                member=data["best_member"],
                step=data["best_step"],
                age=data["best_age"],
                score=data["best_score"],
                hparams=data["best_hparams"],
                checkpoint=data["best_checkpoint"],
                schedule=data["best_schedule"],
                time=data["best_time"],
            )
        return RunRecord(
            name=data["name"],
            config=data["config"],
            status=data["status"],
            created=data["created"],
            updated=data["updated"],
            best=best,
            checkpoints=data["checkpoints"],
        )

    @_retrying
    def set_run_status(self, name: str, status: str) -> None:
        with self._write() as conn:
            conn.execute(
                runs_table.update()
                .where(runs_table.c.name == name)
                .values(status=status, updated=time.time())
            )

    @_retrying
    def offer_best(self, run: str, best: BestRecord, rank: float) -> BestRecord | bool | None:
        with self._write() as conn:
            query = sa.select(runs_table).where(runs_table.c.name == run)
            if not self.is_sqlite:
                query = query.with_for_update()
            row = conn.execute(query).first()
            if row is None:
                raise StorageError(f"no run named {run!r}")
            current = row._mapping["best_rank"]
            if current is not None and not rank > current:
                return False
            previous = self._run_from_row(row).best
            conn.execute(
                runs_table.update()
                .where(runs_table.c.name == run)
                .values(
                    best_member=best.member,
                    best_step=best.step,
                    best_age=best.age,
                    best_score=best.score,
                    best_rank=rank,
                    best_hparams=best.hparams,
                    best_checkpoint=best.checkpoint,
                    best_schedule=best.schedule,
                    best_time=best.time,
                    updated=best.time,
                )
            )
            return previous

    # -- members -------------------------------------------------------------------
    @_retrying
    def members(self, run: str) -> list[MemberRecord]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(members_table)
                .where(members_table.c.run == run)
                .order_by(members_table.c.member)
            ).all()
        return [_member_from_row(row) for row in rows]

    @_retrying
    def claim(self, run: str, owner: str, now: float, lease_seconds: float) -> MemberRecord | None:
        claimable = sa.or_(
            members_table.c.status == MemberStatus.IDLE.value,
            sa.and_(
                members_table.c.status == MemberStatus.RUNNING.value,
                members_table.c.lease_expires < now,
            ),
        )
        query = (
            sa.select(members_table)
            .where(members_table.c.run == run, claimable)
            .order_by(members_table.c.step, members_table.c.member)
            .limit(1)
        )
        if not self.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        with self._write() as conn:
            row = conn.execute(query).first()
            if row is None:
                return None
            record = _member_from_row(row)
            record.status = MemberStatus.RUNNING
            record.owner = owner
            record.lease_expires = now + lease_seconds
            conn.execute(
                members_table.update()
                .where(members_table.c.run == run, members_table.c.member == record.member)
                .values(status=record.status.value, owner=owner, lease_expires=record.lease_expires)
            )
        return record

    def _update(self, conn: Connection, run: str, record: MemberRecord, owner: str | None) -> bool:
        params = {f"v_{name}": value for name, value in _member_values(record).items()}
        params.update(k_run=run, k_member=record.member)
        if owner is None:
            result = conn.execute(_UPDATE_MEMBER, params)
        else:
            result = conn.execute(_UPDATE_OWNED_MEMBER, {**params, "k_owner": owner})
        return bool(result.rowcount)

    @_retrying
    def update_member(self, run: str, member: MemberRecord, *, owner: str | None = None) -> bool:
        with self._write() as conn:
            return self._update(conn, run, member, owner)

    @_retrying
    def renew_leases(
        self, run: str, owner: str, members: Sequence[int], lease_expires: float
    ) -> list[int]:
        if not members:
            return []
        held = sa.and_(
            members_table.c.run == run,
            members_table.c.owner == owner,
            members_table.c.status == MemberStatus.RUNNING.value,
            members_table.c.member.in_(list(members)),
        )
        with self._write() as conn:
            conn.execute(members_table.update().where(held).values(lease_expires=lease_expires))
            rows = conn.execute(sa.select(members_table.c.member).where(held)).all()
        return sorted(row[0] for row in rows)

    @_retrying
    def release_owner(self, run: str, owner: str) -> int:
        with self._write() as conn:
            result = conn.execute(
                members_table.update()
                .where(
                    members_table.c.run == run,
                    members_table.c.owner == owner,
                    members_table.c.status == MemberStatus.RUNNING.value,
                )
                .values(status=MemberStatus.IDLE.value, owner=None, lease_expires=None)
            )
            return int(result.rowcount)

    # -- evaluations and events ---------------------------------------------------
    @_retrying
    def record(
        self,
        run: str,
        *,
        evaluation: EvaluationRecord | None = None,
        member: MemberRecord | None = None,
        events: Sequence[EventRecord] = (),
        owner: str | None = None,
    ) -> None:
        with self._write() as conn:
            retry = int(getattr(self._local, "attempt", 0)) > 0
            if evaluation is not None and retry:
                # A retry: the lost attempt may have committed before its answer was lost.
                # The transaction is atomic, so its evaluation tells.
                done = conn.execute(
                    sa.select(evaluations_table.c.id)
                    .where(
                        evaluations_table.c.run == run,
                        evaluations_table.c.member == evaluation.member,
                        evaluations_table.c.step == evaluation.step,
                        evaluations_table.c.time == evaluation.time,
                    )
                    .limit(1)
                ).first()
                if done is not None:
                    return
            if member is not None and not self._update(conn, run, member, owner):
                raise LeaseLost(
                    f"member {member.member} of run {run!r} is no longer held by {owner}"
                )
            if evaluation is not None:
                conn.execute(
                    _INSERT_EVALUATION,
                    {
                        "run": run,
                        "member": evaluation.member,
                        "step": evaluation.step,
                        "score": _finite(evaluation.score),
                        "time": evaluation.time,
                        "error": evaluation.error,
                        "owner": evaluation.owner,
                    },
                )
            if events:
                conn.execute(
                    events_table.insert(),
                    [
                        {
                            "run": run,
                            "member": e.member,
                            "step": e.step,
                            "kind": e.kind,
                            "time": e.time,
                            "new_step": e.new_step,
                            "source": e.source,
                            "source_step": e.source_step,
                            "old_hparams": e.old_hparams,
                            "new_hparams": e.new_hparams,
                            "operations": list(e.operations),
                            "copied_weights": e.copied_weights,
                            "message": e.message,
                        }
                        for e in events
                    ],
                )

    @_retrying
    def evaluations(self, run: str, member: int | None = None) -> list[EvaluationRecord]:
        query = sa.select(evaluations_table).where(evaluations_table.c.run == run)
        if member is not None:
            query = query.where(evaluations_table.c.member == member)
        with self._read() as conn:
            rows = conn.execute(query.order_by(evaluations_table.c.id)).all()
        out = []
        for row in rows:
            data = dict(row._mapping)
            data.pop("run")
            out.append(EvaluationRecord(**data))
        return out

    @_retrying
    def events(self, run: str, member: int | None = None) -> list[EventRecord]:
        query = sa.select(events_table).where(events_table.c.run == run)
        if member is not None:
            query = query.where(events_table.c.member == member)
        with self._read() as conn:
            rows = conn.execute(query.order_by(events_table.c.id)).all()
        out = []
        for row in rows:
            data = dict(row._mapping)
            data.pop("run")
            data["copied_weights"] = bool(data["copied_weights"])
            out.append(EventRecord(**data))
        return out

    def close(self) -> None:
        self.engine.dispose()
