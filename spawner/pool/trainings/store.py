"""Trainings in SQL, beside the ledger (same database, their own tables).

A training's row is its whole state: what was asked, where it stands (queued, starting,
running, succeeded, failed, cancelled), its current attempt (node, reservation,
container, how far its log was read) and its last checkpoint. Metrics and events are
rows of ``training_events``; earlier attempts, until their node is cleaned up, rows of
``training_attempts``. So a restart of the pool service (or of the hub) loses nothing:
the dispatcher picks every training up where the database says it is.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Engine

from gpupool.pool.tables import iso, utcnow

MAX_EVENTS_PER_KIND = 10_000  # of one training: its latest steps, epochs, warnings, ...
# kinds a run prints once (or once per attempt): their records are the largest (a done
# record carries a 16 KiB snippet), so only the latest few are kept
FEW_PER_KIND = {"start": 20, "resume": 20, "done": 5, "error": 5}

metadata = MetaData()

trainings = Table(
    "trainings",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner", String(255), nullable=False, index=True),
    Column("name", String(128), nullable=False),
    Column("kind", String(16), nullable=False),  # graph | command
    Column("state", String(16), nullable=False, index=True),
    Column("spec", String(64), nullable=False),
    Column("image", String(64), nullable=False),
    Column("dataset", String(64), nullable=True),
    Column("request", Text, nullable=False),  # JSON: graph or command, hyperparameters
    Column("priority", Integer, nullable=False, default=0),
    Column("processes", Integer, nullable=False, default=1),
    Column("max_run_seconds", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("attempt", Integer, nullable=False, default=0),  # 0 = never started
    Column("submitted_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),  # of the current attempt
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("run_seconds", Float, nullable=False, default=0.0),  # earlier attempts together
    Column("reservation_id", String(64), nullable=True),
    Column("node", String(64), nullable=True),
    Column("container", String(128), nullable=True),
    Column("log_cursor", BigInteger, nullable=False, default=0),  # ns of the last log line read
    Column("message", String(2048), nullable=False, default=""),
    Column("checkpoint_epoch", Integer, nullable=True),
    Column("result", Text, nullable=True),  # JSON of the runner's "done" record
    Column("exit_code", Integer, nullable=True),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("cancelled_by", String(255), nullable=True),
)

events = Table(
    "training_events",
    metadata,
    Column("training_id", String(32), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("attempt", Integer, nullable=False),
    Column("time", Float, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("epoch", Integer, nullable=True),
    Column("data", Text, nullable=False),
)

attempts = Table(
    "training_attempts",
    metadata,
    Column("training_id", String(32), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("node", String(64), nullable=False),
    Column("reservation_id", String(64), nullable=True),
    Column("container", String(128), nullable=True),
    Column("state", String(16), nullable=False),  # active | superseded | ended
    Column("reason", String(512), nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True),
)


@dataclass(frozen=True)
class Training:
    id: str
    owner: str
    name: str
    kind: str
    state: str
    spec: str
    image: str
    dataset: str | None
    request: str
    priority: int
    processes: int
    max_run_seconds: int
    max_attempts: int
    attempt: int
    submitted_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    run_seconds: float
    reservation_id: str | None
    node: str | None
    container: str | None
    log_cursor: int
    message: str
    checkpoint_epoch: int | None
    result: str | None
    exit_code: int | None
    cancel_requested: bool
    cancelled_by: str | None

    @classmethod
    def from_row(cls, row: Any) -> Training:
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(self.request)

    def to_json(self) -> dict[str, Any]:
        body = self.body
        return {
            "id": self.id,
            "owner": self.owner,
            "name": self.name,
            "kind": self.kind,
            "state": self.state,
            "spec": self.spec,
            "image": self.image,
            "dataset": self.dataset,
            "hyperparameters": body.get("hyperparameters"),
            "command": body.get("command"),
            "priority": self.priority,
            "processes": self.processes,
            "max_run_time": self.max_run_seconds,
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
            "submitted_at": iso(self.submitted_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "node": self.node,
            "reservation": self.reservation_id,
            "message": self.message,
            "checkpoint_epoch": self.checkpoint_epoch,
            "result": json.loads(self.result) if self.result else None,
            "exit_code": self.exit_code,
            "cancel_requested": self.cancel_requested,
            "output": f"~/trainings/{self.id}/",
        }


class TrainingStore:
    """Reads and writes of the trainings tables; every method is one transaction."""

    def __init__(self, engine: Engine):
        # the ledger's engine: its migrations (gpupool.pool.migrate) made these tables
        self.engine = engine

    def add(self, **values: Any) -> Training:
        with self.engine.begin() as conn:
            conn.execute(insert(trainings).values(**values))
        found = self.get(values["id"])
        assert found is not None
        return found

    def get(self, tid: str) -> Training | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(trainings).where(trainings.c.id == tid)).first()
        return Training.from_row(row) if row else None

    def list(
        self,
        owner: str | None = None,
        states: Iterable[str] | None = None,
        *,
        after: tuple[dt.datetime, str] | None = None,
        limit: int | None = None,
    ) -> list[Training]:
        """Trainings in the order they were submitted; ``after`` (submitted_at, id) of the
        last one seen and ``limit`` page through them."""
        c = trainings.c
        q = select(trainings)
        if owner is not None:
            q = q.where(c.owner == owner)
        if states is not None:
            q = q.where(c.state.in_(list(states)))
        if after is not None:  # keyset pagination on the listing's order
            at, last = after
            q = q.where(or_(c.submitted_at > at, and_(c.submitted_at == at, c.id > last)))
        q = q.order_by(c.submitted_at, c.id)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [Training.from_row(r) for r in rows]

    def count(self, owner: str, states: Iterable[str]) -> int:
        q = select(func.count()).where(
            trainings.c.owner == owner, trainings.c.state.in_(list(states))
        )
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar() or 0)

    def update(self, tid: str, *, only_from: Iterable[str] | None = None, **values: Any) -> bool:
        """Change a training; with ``only_from``, only if its state is one of those (a
        compare-and-set: a cancel and a finish cannot both win). True if it changed."""
        q = update(trainings).where(trainings.c.id == tid)
        if only_from is not None:
            q = q.where(trainings.c.state.in_(list(only_from)))
        with self.engine.begin() as conn:
            return conn.execute(q.values(**values)).rowcount == 1

    # -- events (metrics) ----------------------------------------------------------
    def add_events(
        self,
        tid: str,
        attempt: int,
        records: list[dict[str, Any]],
        *,
        log_cursor: int | None = None,
    ) -> None:
        """Store ``records``; with ``log_cursor``, move the training's log cursor past them
        in the same transaction (a pool stopped between the two would read the same log
        lines again at its next start and store every one of them twice). Of each kind
        the latest MAX_EVENTS_PER_KIND are kept: a training printing without end cannot
        fill the database. Records come checked (output.py); the columns are guarded
        again here, so that no record can fail the transaction."""
        if not records and log_cursor is None:
            return
        records = _latest_per_kind(records)
        with self.engine.begin() as conn:
            if log_cursor is not None:
                conn.execute(
                    update(trainings).where(trainings.c.id == tid).values(log_cursor=log_cursor)
                )
            if not records:
                return
            last = conn.execute(
                select(func.max(events.c.seq)).where(events.c.training_id == tid)
            ).scalar()
            seq = (last or 0) + 1
            now = utcnow().timestamp()
            rows = []
            for rec in records:
                t, epoch = rec.get("time"), rec.get("epoch")
                rows.append(
                    {
                        "training_id": tid,
                        "seq": seq,
                        "attempt": attempt,
                        "time": float(t) if _number(t) and 0 <= t <= 1e11 else now,
                        "kind": str(rec.get("kind", "event"))[:32],
                        "epoch": epoch if _number(epoch, int) and 0 <= epoch < 2**31 else None,
                        # not ASCII-escaped: 3 bytes a CJK character, not 12
                        "data": json.dumps(rec, default=str, ensure_ascii=False),
                    }
                )
                seq += 1
            conn.execute(insert(events), rows)
            for kind in {r["kind"] for r in rows}:
                # the seq of the oldest one to keep; older ones of its kind go
                cutoff = conn.execute(
                    select(events.c.seq)
                    .where(events.c.training_id == tid, events.c.kind == kind)
                    .order_by(events.c.seq.desc())
                    .offset(_keep(kind) - 1)
                    .limit(1)
                ).scalar()
                if cutoff is not None:
                    conn.execute(
                        delete(events).where(
                            events.c.training_id == tid,
                            events.c.kind == kind,
                            events.c.seq < cutoff,
                        )
                    )

    def events(
        self, tid: str, since: int = 0, kinds: Iterable[str] | None = None, limit: int = 10_000
    ) -> list[dict[str, Any]]:
        q = select(events).where(events.c.training_id == tid, events.c.seq > since)
        if kinds is not None:
            q = q.where(events.c.kind.in_(list(kinds)))
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(events.c.seq).limit(limit)).all()
        return [{"seq": r.seq, "attempt": r.attempt, **json.loads(r.data)} for r in rows]

    def last_event(self, tid: str, kind: str) -> dict[str, Any] | None:
        q = (
            select(events)
            .where(events.c.training_id == tid, events.c.kind == kind)
            .order_by(events.c.seq.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return {"seq": row.seq, "attempt": row.attempt, **json.loads(row.data)} if row else None

    def roll_back(self, tid: str, epoch: int) -> int:
        """Drop the step and epoch records past ``epoch`` (work of a lost attempt after its
        last checkpoint, done again by the next one). Returns how many."""
        with self.engine.begin() as conn:
            return conn.execute(
                delete(events).where(
                    events.c.training_id == tid,
                    events.c.kind.in_(["step", "epoch", "checkpoint"]),
                    events.c.epoch > epoch,
                )
            ).rowcount

    # -- attempts ------------------------------------------------------------------
    def add_attempt(self, tid: str, attempt: int, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(attempts).values(
                    training_id=tid, attempt=attempt, state="active", started_at=utcnow(), **values
                )
            )

    def end_attempt(self, tid: str, attempt: int, state: str, reason: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(attempts)
                .where(attempts.c.training_id == tid, attempts.c.attempt == attempt)
                .values(state=state, reason=reason[:512], ended_at=utcnow())
            )

    def superseded(self) -> list[Any]:
        """Attempts given up while their node was down (with their training's owner):
        their container and reservation are cleaned up when the node answers again."""
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(attempts, trainings.c.owner)
                    .join(trainings, trainings.c.id == attempts.c.training_id)
                    .where(attempts.c.state == "superseded")
                )
            )

    def attempts(self, tid: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(attempts).where(attempts.c.training_id == tid).order_by(attempts.c.attempt)
            ).all()
        return [
            {
                "attempt": r.attempt,
                "node": r.node,
                "reservation": r.reservation_id,
                "state": r.state,
                "reason": r.reason,
                "started_at": iso(r.started_at),
                "ended_at": iso(r.ended_at),
            }
            for r in rows
        ]


def _number(v: Any, kind: type | tuple[type, ...] = (int, float)) -> bool:
    if isinstance(v, bool) or not isinstance(v, kind):
        return False
    return isinstance(v, int) or math.isfinite(v)  # an int too large for a float is finite


def _keep(kind: str) -> int:
    return FEW_PER_KIND.get(kind, MAX_EVENTS_PER_KIND)


def _latest_per_kind(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last _keep(kind) records of each kind, in their order."""
    counts: dict[str, int] = {}
    for rec in records:
        k = str(rec.get("kind"))
        counts[k] = counts.get(k, 0) + 1
    skip = {k: n - _keep(k) for k, n in counts.items() if n > _keep(k)}
    if not skip:
        return records
    kept = []
    for rec in records:
        k = str(rec.get("kind"))
        if skip.get(k, 0) > 0:
            skip[k] -= 1
            continue
        kept.append(rec)
    return kept
