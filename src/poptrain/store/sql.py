"""The population store on SQLAlchemy Core: SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

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
)

__all__ = ["SQLStore"]

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
metadata = sa.MetaData()

runs_table = sa.Table(
    "poptrain_runs",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("config", _JSON, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
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
    On PostgreSQL, claims take row locks with ``FOR UPDATE SKIP LOCKED``.
    """

    def __init__(
        self, url: str, *, create: bool = True, engine_options: dict[str, Any] | None = None
    ):
        self.url = url
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
        options.update(extra or {})
        return options

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
        try:
            with self.engine.begin() as conn:
                metadata.create_all(conn, checkfirst=True)
        except sa.exc.OperationalError as exc:
            if "already exists" not in str(exc):
                raise StorageError(f"cannot open the store at {self.url}: {exc.orig}") from None
        except sa.exc.IntegrityError:
            pass  # another process created the same tables a moment ago

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

    @contextmanager
    def locked(self, run: str) -> Iterator[None]:
        if getattr(self._local, "conn", None) is not None:
            yield  # re-entrant: already inside this thread's locked section
            return
        with self.engine.begin() as conn:
            if not self.is_sqlite:  # SQLite's BEGIN IMMEDIATE already holds the write lock
                conn.execute(
                    sa.select(runs_table.c.name).where(runs_table.c.name == run).with_for_update()
                )
            self._local.conn = conn
            try:
                yield
            finally:
                self._local.conn = None

    # -- runs ----------------------------------------------------------------------
    def create_run(
        self, name: str, config: dict[str, Any], members_: Sequence[MemberRecord]
    ) -> None:
        now = time.time()
        try:
            with self._write() as conn:
                conn.execute(
                    runs_table.insert().values(
                        name=name, config=config, status="created", created=now, updated=now
                    )
                )
                if members_:
                    conn.execute(
                        members_table.insert(),
                        [{"run": name, "member": m.member, **_member_values(m)} for m in members_],
                    )
        except sa.exc.IntegrityError:
            raise StorageError(f"a run named {name!r} already exists in {self.url}") from None

    def get_run(self, name: str) -> RunRecord | None:
        with self._read() as conn:
            row = conn.execute(sa.select(runs_table).where(runs_table.c.name == name)).first()
        return None if row is None else self._run_from_row(row)

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
        )

    def set_run_status(self, name: str, status: str) -> None:
        with self._write() as conn:
            conn.execute(
                runs_table.update()
                .where(runs_table.c.name == name)
                .values(status=status, updated=time.time())
            )

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
    def members(self, run: str) -> list[MemberRecord]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(members_table)
                .where(members_table.c.run == run)
                .order_by(members_table.c.member)
            ).all()
        return [_member_from_row(row) for row in rows]

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

    def update_member(self, run: str, member: MemberRecord, *, owner: str | None = None) -> bool:
        with self._write() as conn:
            return self._update(conn, run, member, owner)

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
