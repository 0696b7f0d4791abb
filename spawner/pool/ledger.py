"""The allocation ledger: reservations in SQL (SQLite by default, any SQLAlchemy URL).

The ledger is the truth about who holds which GPU share; ``ClusterState`` is its
in-memory copy. Every write runs in one database transaction that first takes a
database-wide lock (``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped advisory lock
on PostgreSQL) and compares a generation counter: if another process wrote since we
last looked, the copy is reloaded before deciding. So reserve is atomic within one
process (a lock), across processes (the database lock), and across restarts (the rows).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from ..catalog.models import Catalog, Spec
from .scheduler import Rejection, fits_now, place
from .state import ClusterState, GpuShare, Placement, Request

metadata = MetaData()

reservations = Table(
    "reservations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(255), nullable=False, index=True),
    Column("spec", String(64), nullable=False),
    Column("kind", String(16), nullable=False, default="notebook"),
    Column("server_name", String(255), nullable=False, default=""),
    Column("node", String(64), nullable=False, index=True),
    Column("cpu_millicores", Integer, nullable=False),
    Column("memory_mib", Integer, nullable=False),
    Column("disk_mib", Integer, nullable=False),
    Column("price_per_hour", Float, nullable=False, default=0.0),
    Column("container", String(128), nullable=True),
    Column("port", Integer, nullable=True),  # the server's port on its node, unique among active
    Column("state", String(16), nullable=False, index=True),  # active | released
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("released_at", DateTime(timezone=True), nullable=True),
    Column("release_reason", String(255), nullable=True),
)

reservation_gpus = Table(
    "reservation_gpus",
    metadata,
    Column(
        "reservation_id",
        String(64),
        ForeignKey("reservations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("uuid", String(128), primary_key=True),
    Column("gpu_index", Integer, nullable=False),
    Column("memory_mib", Integer, nullable=False),
    Column("sm_percent", Integer, nullable=False),
    Column("whole", Boolean, nullable=False),
)

node_states = Table(
    "node_states",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("drained", Boolean, nullable=False, default=False),
    Column("changed_by", String(255), nullable=True),
    Column("changed_at", DateTime(timezone=True), nullable=True),
)

meta = Table(
    "pool_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Integer, nullable=False),
)

PG_LOCK_KEY = 0x6770_7570  # "gpup"


class LedgerError(ValueError):
    """A request the ledger refuses (duplicate id, unknown node); the message says why."""


@dataclass(frozen=True)
class Reservation:
    id: str
    owner: str
    spec: str
    kind: str
    server_name: str
    node: str
    gpus: tuple[GpuShare, ...]
    cpu_millicores: int
    memory_mib: int
    disk_mib: int
    price_per_hour: float
    container: str | None
    port: int | None
    state: str
    created_at: dt.datetime
    released_at: dt.datetime | None
    release_reason: str | None

    @property
    def placement(self) -> Placement:
        return Placement(self.node, self.gpus, self.cpu_millicores, self.memory_mib, self.disk_mib)

    def to_json(self) -> dict[str, object]:
        def iso(t: dt.datetime | None) -> str | None:
            if t is None:
                return None
            return (t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)).isoformat()

        return {
            "id": self.id,
            "owner": self.owner,
            "spec": self.spec,
            "kind": self.kind,
            "server_name": self.server_name,
            "node": self.node,
            "gpus": [g.to_json() for g in self.gpus],
            "cpu_millicores": self.cpu_millicores,
            "memory_mib": self.memory_mib,
            "disk_mib": self.disk_mib,
            "price_per_hour": self.price_per_hour,
            "container": self.container,
            "port": self.port,
            "state": self.state,
            "created_at": iso(self.created_at),
            "released_at": iso(self.released_at),
            "release_reason": self.release_reason,
        }


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def make_engine(url: str) -> Engine:
    """An engine whose transactions serialize writers (see module doc)."""
    if url.startswith("sqlite"):
        memory = url in ("sqlite://", "sqlite:///:memory:") or "mode=memory" in url
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            poolclass=StaticPool if memory else None,
        )

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn, _rec):  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):  # type: ignore[no-untyped-def]
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True)


class Ledger:
    """Reservations, node drain flags and the in-memory cluster state derived from them."""

    def __init__(
        self,
        url: str,
        catalog: Catalog,
        *,
        node_policy: str | None = None,
        gpu_policy: str | None = None,
        clock: Callable[[], dt.datetime] = _utcnow,
    ):
        self.url = url
        self.catalog = catalog
        self.node_policy = node_policy or catalog.pool.node_policy
        self.gpu_policy = gpu_policy or catalog.pool.gpu_policy
        self.clock = clock
        self.engine = make_engine(url)
        self._pg = self.engine.dialect.name == "postgresql"
        self._lock = threading.RLock()
        self._generation: int | None = None
        self.last_decision_ns = 0  # how long the last scheduler decision took (for `gpupool plan`)
        self.orphans: dict[str, str] = {}  # reservation id -> why it could not be applied
        with self._lock, self._tx() as conn:
            metadata.create_all(conn)
            if conn.execute(select(meta.c.value).where(meta.c.key == "generation")).first() is None:
                conn.execute(insert(meta).values(key="generation", value=0))
            self._reload(conn)

    def close(self) -> None:
        self.engine.dispose()

    # -- transactions --------------------------------------------------------------
    @contextlib.contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            if self._pg:
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_LOCK_KEY})")
            yield conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """A locked transaction on an up-to-date state; bumps the generation on success."""
        with self._lock:
            try:
                with self._tx() as conn:
                    gen = conn.execute(
                        select(meta.c.value).where(meta.c.key == "generation")
                    ).scalar_one()
                    if gen != self._generation:
                        self._reload(conn)
                    yield conn
                    if not conn.info.pop("unchanged", False):
                        gen += 1
                        conn.execute(
                            update(meta).where(meta.c.key == "generation").values(value=gen)
                        )
                self._generation = gen
            except BaseException:
                self._generation = None  # the in-memory copy may be ahead of the database
                raise

    def _reload(self, conn: Connection) -> None:
        state = ClusterState(self.catalog.nodes)
        for row in conn.execute(select(node_states)):
            if row.drained and row.name in state.index:
                state.set_status(row.name, "draining")
        self.orphans = {}
        for r in self._select(conn, active_only=True):
            p = r.placement
            if state.knows(p):
                state.apply(r.id, p)
            else:
                self.orphans[r.id] = f"node {r.node} or its GPUs are no longer in the catalog"
        self.state = state
        self._generation = conn.execute(
            select(meta.c.value).where(meta.c.key == "generation")
        ).scalar_one()

    def refresh(self) -> None:
        """Reload the in-memory state if another writer changed the database."""
        with self._lock, self._tx() as conn:
            gen = conn.execute(select(meta.c.value).where(meta.c.key == "generation")).scalar_one()
            if gen != self._generation:
                self._reload(conn)

    # -- reads ---------------------------------------------------------------------
    def _select(
        self,
        conn: Connection,
        *,
        owner: str | None = None,
        rid: str | None = None,
        active_only: bool = False,
    ) -> list[Reservation]:
        q = select(reservations)
        if owner is not None:
            q = q.where(reservations.c.owner == owner)
        if rid is not None:
            q = q.where(reservations.c.id == rid)
        if active_only:
            q = q.where(reservations.c.state == "active")
        rows = conn.execute(q.order_by(reservations.c.created_at, reservations.c.id)).all()
        if not rows:
            return []
        ids = [r.id for r in rows]
        shares: dict[str, list[GpuShare]] = {i: [] for i in ids}
        gq = select(reservation_gpus)
        if len(ids) < 500:
            gq = gq.where(reservation_gpus.c.reservation_id.in_(ids))
        for g in conn.execute(gq.order_by(reservation_gpus.c.gpu_index)):
            if g.reservation_id in shares:
                shares[g.reservation_id].append(
                    GpuShare(g.uuid, g.gpu_index, g.memory_mib, g.sm_percent, bool(g.whole))
                )
        return [
            Reservation(
                id=r.id,
                owner=r.owner,
                spec=r.spec,
                kind=r.kind,
                server_name=r.server_name,
                node=r.node,
                gpus=tuple(shares[r.id]),
                cpu_millicores=r.cpu_millicores,
                memory_mib=r.memory_mib,
                disk_mib=r.disk_mib,
                price_per_hour=r.price_per_hour,
                container=r.container,
                port=r.port,
                state=r.state,
                created_at=r.created_at,
                released_at=r.released_at,
                release_reason=r.release_reason,
            )
            for r in rows
        ]

    def get(self, rid: str) -> Reservation | None:
        with self.engine.connect() as conn:
            found = self._select(conn, rid=rid)
        return found[0] if found else None

    def list(self, owner: str | None = None, active_only: bool = True) -> list[Reservation]:
        with self.engine.connect() as conn:
            return self._select(conn, owner=owner, active_only=active_only)

    def holdings(self) -> list[tuple[str, GpuShare]]:
        """(reservation id, GPU share) of every active reservation, straight from the database."""
        q = (
            select(reservation_gpus)
            .join(reservations, reservations.c.id == reservation_gpus.c.reservation_id)
            .where(reservations.c.state == "active")
        )
        with self.engine.connect() as conn:
            return [
                (
                    g.reservation_id,
                    GpuShare(g.uuid, g.gpu_index, g.memory_mib, g.sm_percent, bool(g.whole)),
                )
                for g in conn.execute(q)
            ]

    def fits_now(self, spec: Spec) -> int:
        with self._lock:
            return fits_now(self.state, Request.from_spec(spec), self.gpu_policy)

    def drained(self) -> dict[str, bool]:
        with self._lock:
            return {
                n.name: self.state.status[i] == "draining" for i, n in enumerate(self.state.nodes)
            }

    # -- writes --------------------------------------------------------------------
    def reserve(
        self,
        spec: Spec,
        owner: str,
        *,
        kind: str = "notebook",
        server_name: str = "",
        reservation_id: str | None = None,
        container: str | None = None,
    ) -> Reservation | Rejection:
        """Place and record a reservation atomically, or return why nothing fits."""
        req = Request.from_spec(spec)
        rid = reservation_id or "r-" + secrets.token_hex(8)
        with self._write() as conn:
            if conn.execute(select(reservations.c.id).where(reservations.c.id == rid)).first():
                raise LedgerError(f"reservation id {rid!r} is already used")
            t0 = time.perf_counter_ns()
            decision = place(self.state, req, self.node_policy, self.gpu_policy)
            self.last_decision_ns = time.perf_counter_ns() - t0
            if isinstance(decision, Rejection):
                conn.info["unchanged"] = True
                return decision
            port = self._free_port(conn, decision.node)
            if port is None:
                conn.info["unchanged"] = True
                lo, hi = self.catalog.node(decision.node).ports  # type: ignore[union-attr]
                return Rejection(f"node {decision.node} has no free port in {lo}-{hi}")
            now = self.clock()
            conn.execute(
                insert(reservations).values(
                    id=rid,
                    owner=owner,
                    spec=spec.slug,
                    kind=kind,
                    server_name=server_name,
                    node=decision.node,
                    cpu_millicores=decision.cpu_millicores,
                    memory_mib=decision.memory_mib,
                    disk_mib=decision.disk_mib,
                    price_per_hour=spec.price_per_hour,
                    container=container,
                    port=port,
                    state="active",
                    created_at=now,
                )
            )
            if decision.gpus:
                conn.execute(
                    insert(reservation_gpus),
                    [
                        {
                            "reservation_id": rid,
                            "uuid": g.uuid,
                            "gpu_index": g.index,
                            "memory_mib": g.memory_mib,
                            "sm_percent": g.sm_percent,
                            "whole": g.whole,
                        }
                        for g in decision.gpus
                    ],
                )
            self.state.apply(rid, decision)
        return Reservation(
            id=rid,
            owner=owner,
            spec=spec.slug,
            kind=kind,
            server_name=server_name,
            node=decision.node,
            gpus=decision.gpus,
            cpu_millicores=decision.cpu_millicores,
            memory_mib=decision.memory_mib,
            disk_mib=decision.disk_mib,
            price_per_hour=spec.price_per_hour,
            container=container,
            port=port,
            state="active",
            created_at=now,
            released_at=None,
            release_reason=None,
        )

    def _free_port(self, conn: Connection, node: str) -> int | None:
        """The lowest port of the node's range that no active reservation on it holds."""
        lo, hi = self.catalog.node(node).ports  # type: ignore[union-attr]
        used = set(
            conn.execute(
                select(reservations.c.port).where(
                    reservations.c.node == node, reservations.c.state == "active"
                )
            ).scalars()
        )
        return next((p for p in range(lo, hi + 1) if p not in used), None)

    def release(self, rid: str, reason: str = "released") -> Reservation | None:
        """Free a reservation. Releasing one already released is success (idempotent);
        an unknown id returns None."""
        with self._write() as conn:
            row = conn.execute(select(reservations.c.state).where(reservations.c.id == rid)).first()
            if row is None:
                return None
            if row.state == "active":
                conn.execute(
                    update(reservations)
                    .where(reservations.c.id == rid)
                    .values(state="released", released_at=self.clock(), release_reason=reason)
                )
                self.state.remove(rid)
                self.orphans.pop(rid, None)
        return self.get(rid)

    def set_container(self, rid: str, container: str | None) -> None:
        with self._write() as conn:
            conn.execute(
                update(reservations).where(reservations.c.id == rid).values(container=container)
            )

    def set_drained(self, node: str, drained: bool, by: str = "") -> None:
        if node not in self.state.index:
            raise LedgerError(
                f"unknown node {node!r}; nodes: {', '.join(n.name for n in self.catalog.nodes)}"
            )
        with self._write() as conn:
            conn.execute(delete(node_states).where(node_states.c.name == node))
            conn.execute(
                insert(node_states).values(
                    name=node, drained=drained, changed_by=by, changed_at=self.clock()
                )
            )
            self.state.set_status(node, "draining" if drained else "up")
