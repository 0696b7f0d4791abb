"""The ledger's SQL tables, its row type and its engine (SQLite or PostgreSQL).

A change here needs a revision in ``migrations/versions`` (see ``migrate.py``); a unit
test fails while the two disagree.
"""

from __future__ import annotations

import datetime as dt
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
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool

from .state import GpuShare, Placement

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

# The GPUs a node's agent last reported; they replace the catalog's declared ones.
node_gpus = Table(
    "node_gpus",
    metadata,
    Column("node", String(64), primary_key=True),
    Column("uuid", String(128), primary_key=True),
    Column("gpu_index", Integer, nullable=False),
    Column("model", String(255), nullable=False),
    Column("memory_mib", Integer, nullable=False),
    Column("reported_at", DateTime(timezone=True), nullable=False),
)

# When the reconciler first saw a reservation's container: a reservation whose container
# was seen and is gone is freed at once; one never seen only after the start grace.
container_seen = Table(
    "container_seen",
    metadata,
    Column(
        "reservation_id",
        String(64),
        ForeignKey("reservations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("container_id", String(128), nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),
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


def iso(t: dt.datetime | None) -> str | None:
    """ISO 8601 with the zone (SQLite gives back naive datetimes: they are UTC)."""
    if t is None:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)).isoformat()


def utcnow() -> dt.datetime:
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


# What the pool tells the lab side about one reservation, e.g. "your GPUs have been idle;
# this server stops at ...". ``stop_reason``, set when the pool acts, becomes the
# reservation's release reason, whoever releases it then (the spawner, the reconciler).
notices = Table(
    "reservation_notices",
    metadata,
    Column(
        "reservation_id",
        String(64),
        ForeignKey("reservations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("kind", String(32), nullable=False),
    Column("message", String(1024), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("act_at", DateTime(timezone=True), nullable=True),
    Column("stop_reason", String(255), nullable=True),
)
