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
import dataclasses
import datetime as dt
import secrets
import threading
import time
from collections.abc import Callable, Iterator

from sqlalchemy import (
    and_,
    delete,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection

from ..catalog.models import Catalog, Gpu, Node, Quota, Spec
from ..catalog.units import format_mib
from . import accounting
from .migrate import upgrade_connection
from .scheduler import Rejection, fits_now, place
from .state import ClusterState, GpuShare, Placement, Request
from .tables import (
    PG_LOCK_KEY,
    LedgerError,
    Reservation,
    container_seen,
    iso,
    make_engine,
    meta,
    node_gpus,
    node_states,
    notices,
    reservation_gpus,
    reservations,
    utcnow,
)

__all__ = ["STOP_PENDING", "Ledger", "LedgerError", "Reservation"]

# The notice of a reservation whose workload is to be stopped once its node answers: the
# hub stopped the server while the node's engine did not answer (issue 18).
STOP_PENDING = "stop-pending"
# One notice per reservation: one of a higher rank is not replaced by one of a lower
# (a pending stop by nothing; the slice watchdog's by no idle warning).
_RANK = {STOP_PENDING: 3, "over-slice": 2}


class Ledger:
    """Reservations, node drain flags and the in-memory cluster state derived from them."""

    def __init__(
        self,
        url: str,
        catalog: Catalog,
        *,
        node_policy: str | None = None,
        gpu_policy: str | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
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
        self.down: set[str] = set()  # nodes whose engine or agent does not answer (not stored)
        self.unsliceable: dict[str, str] = {}  # node -> what its agent found wrong with HAMi-core
        # ids the spawner released before the pool had made them (a start cancelled while
        # its reserve was under way): a reserve of one of them is refused; an hour each
        self.forgotten: dict[str, float] = {}
        self.drained_nodes: set[str] = set()
        self.inventory: dict[str, tuple[Gpu, ...]] = {}  # node -> GPUs its agent reported
        with self._lock, self._tx() as conn:
            self.schema = upgrade_connection(conn)
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

    def nodes(self) -> list[Node]:
        """The catalog's nodes with the GPUs their agents reported in place of the declared."""
        return [
            dataclasses.replace(n, gpus=self.inventory[n.name]) if n.name in self.inventory else n
            for n in self.catalog.nodes
        ]

    def _reload(self, conn: Connection) -> None:
        inventory: dict[str, list[Gpu]] = {}
        for row in conn.execute(select(node_gpus).order_by(node_gpus.c.gpu_index)):
            gpus = inventory.setdefault(row.node, [])
            if row.uuid:  # "" marks a node whose agent reported no GPU
                gpus.append(Gpu(row.gpu_index, row.uuid, row.model, row.memory_mib))
        self.inventory = {k: tuple(v) for k, v in inventory.items()}
        self.drained_nodes = {r.name for r in conn.execute(select(node_states)) if r.drained}
        state = ClusterState(self.nodes())
        for name in state.index:
            state.set_status(name, self._status(name))  # type: ignore[arg-type]
            state.set_sliceable(name, name not in self.unsliceable)
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
        after: tuple[dt.datetime, str] | None = None,
        limit: int | None = None,
    ) -> list[Reservation]:
        q = select(reservations)
        if after is not None:  # keyset pagination on (created_at, id), the listing's order
            t, last = after
            c = reservations.c
            q = q.where(or_(c.created_at > t, and_(c.created_at == t, c.id > last)))
        if owner is not None:
            q = q.where(reservations.c.owner == owner)
        if rid is not None:
            q = q.where(reservations.c.id == rid)
        if active_only:
            q = q.where(reservations.c.state == "active")
        q = q.order_by(reservations.c.created_at, reservations.c.id)
        if limit is not None:
            q = q.limit(limit)
        rows = conn.execute(q).all()
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

    def between(
        self, start: dt.datetime, end: dt.datetime, owner: str | None = None
    ) -> list[Reservation]:
        """Reservations alive at some time in [start, end) (for accounting)."""
        with self.engine.connect() as conn:
            return self._between(conn, start, end, owner)

    def _between(
        self, conn: Connection, start: dt.datetime, end: dt.datetime, owner: str | None
    ) -> list[Reservation]:
        return [
            r
            for r in self._select(conn, owner=owner)
            if accounting.aware(r.created_at) < end
            and (r.released_at is None or accounting.aware(r.released_at) >= start)
        ]

    def card_memory(self) -> dict[str, int]:
        """GPU UUID -> its memory in MiB, for every GPU the pool knows now."""
        return {g.uuid: g.memory_mib for n in self.nodes() for g in n.gpus}

    def list(
        self,
        owner: str | None = None,
        active_only: bool = True,
        *,
        after: tuple[dt.datetime, str] | None = None,
        limit: int | None = None,
    ) -> list[Reservation]:
        """Reservations in the order they were made; ``after`` (created_at, id) of the last
        one seen and ``limit`` page through them."""
        with self.engine.connect() as conn:
            return self._select(
                conn, owner=owner, active_only=active_only, after=after, limit=limit
            )

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
            return {n.name: n.name in self.drained_nodes for n in self.catalog.nodes}

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
        quota: Quota | None = None,
        quota_source: str = "",
    ) -> Reservation | Rejection:
        """Place and record a reservation atomically, or return why not: nothing fits
        (reason ``capacity``) or the owner's quota would be exceeded (reason ``quota``).
        The quota is checked in the same transaction, so concurrent requests of one user
        cannot pass it together."""
        req = Request.from_spec(spec)
        rid = reservation_id or "r-" + secrets.token_hex(8)
        with self._write() as conn:
            if rid in self.forgotten:
                raise LedgerError(
                    f"reservation {rid!r} was released before it was made (its start was "
                    "cancelled while the pool answered)"
                )
            if conn.execute(select(reservations.c.id).where(reservations.c.id == rid)).first():
                raise LedgerError(f"reservation id {rid!r} is already used")
            mine: list[Reservation] = []
            if quota is not None and not quota.unlimited and (spec.gpus or quota.holds):
                mine = self._select(conn, owner=owner, active_only=True)
                over = self._over_quota(conn, spec, owner, quota, quota_source, mine, None)
                if over is not None:
                    conn.info["unchanged"] = True
                    return over
            t0 = time.perf_counter_ns()
            decision = place(self.state, req, self.node_policy, self.gpu_policy)
            self.last_decision_ns = time.perf_counter_ns() - t0
            if isinstance(decision, Rejection):
                conn.info["unchanged"] = True
                return decision
            if quota is not None and quota.gpu_memory_mib is not None and spec.gpus:
                over = self._over_quota(conn, spec, owner, quota, quota_source, mine, decision)
                if over is not None:
                    conn.info["unchanged"] = True
                    return over
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

    def _over_quota(
        self,
        conn: Connection,
        spec: Spec,
        owner: str,
        quota: Quota,
        source: str,
        mine: list[Reservation],
        decision: Placement | None,
    ) -> Rejection | None:
        """Why this reservation would break the owner's quota, or None."""
        who = f"quota of {source}" if source else "quota"
        if decision is None:
            held_of = self._held_over(spec, quota, who, mine)
            if held_of is not None:
                return held_of
            if not spec.gpus:
                return None
            held = sum(len(r.gpus) for r in mine)
            if quota.gpus is not None and held + spec.gpus > quota.gpus:
                left = max(0, quota.gpus - held)
                return Rejection(
                    f"over the {who}: at most {quota.gpus} GPU(s) at a time; you hold {held}, "
                    f"{spec.display_name} needs {spec.gpus}; {left} left",
                    reason="quota",
                )
            if quota.gpu_hours_per_month is not None:
                now = self.clock()
                start, end = accounting.month_window(now)
                cards = self.card_memory()
                used = sum(
                    (
                        accounting.usage(r, start, end, now, cards)
                        for r in self._between(conn, start, end, owner)
                    ),
                    accounting.ZERO,
                ).gpu_hours
                if used >= quota.gpu_hours_per_month:
                    return Rejection(
                        f"over the {who}: {quota.gpu_hours_per_month:g} GPU-hours per month; "
                        f"you used {used:.2f} in {start:%Y-%m}; 0 left until "
                        f"{end:%Y-%m-%d}",
                        reason="quota",
                    )
            return None
        if quota.gpu_memory_mib is None:
            return None
        held_mib = sum(g.memory_mib for r in mine for g in r.gpus)
        need = sum(g.memory_mib for g in decision.gpus)
        if held_mib + need > quota.gpu_memory_mib:
            left = max(0, quota.gpu_memory_mib - held_mib)
            return Rejection(
                f"over the {who}: at most {format_mib(quota.gpu_memory_mib)} of GPU memory at "
                f"a time; you hold {format_mib(held_mib) if held_mib else 'none'}, "
                f"{spec.display_name} needs {format_mib(need)}; "
                f"{format_mib(left) if left else 'none'} left",
                reason="quota",
            )
        return None

    @staticmethod
    def _held_over(spec: Spec, quota: Quota, who: str, mine: list[Reservation]) -> Rejection | None:
        """The quotas on what every spec holds (CPU-only ones too): servers and trainings
        at once, CPU, RAM."""
        if quota.reservations is not None and len(mine) + 1 > quota.reservations:
            return Rejection(
                f"over the {who}: at most {quota.reservations} servers and trainings at a "
                f"time; you run {len(mine)}; stop one first",
                reason="quota",
            )
        if quota.cpu_millicores is not None:
            # what a reservation books (the guarantee), as Kubernetes counts requests.cpu
            held = sum(r.cpu_millicores for r in mine)
            if held + spec.cpu_reserved > quota.cpu_millicores:
                left = max(0, quota.cpu_millicores - held)
                return Rejection(
                    f"over the {who}: at most {quota.cpu_millicores / 1000:g} CPU at a time; "
                    f"you hold {held / 1000:g}, {spec.display_name} needs "
                    f"{spec.cpu_reserved / 1000:g}; {left / 1000:g} left",
                    reason="quota",
                )
        if quota.memory_mib is not None:
            held = sum(r.memory_mib for r in mine)
            if held + spec.memory_reserved > quota.memory_mib:
                left = max(0, quota.memory_mib - held)
                return Rejection(
                    f"over the {who}: at most {format_mib(quota.memory_mib)} of RAM at a time; "
                    f"you hold {format_mib(held) if held else 'none'}, {spec.display_name} "
                    f"needs {format_mib(spec.memory_reserved)}; "
                    f"{format_mib(left) if left else 'none'} left",
                    reason="quota",
                )
        return None

    def _free_port(self, conn: Connection, node: str) -> int | None:
        """A port of the node's range that no active reservation on it holds, at random."""
        lo, hi = self.catalog.node(node).ports  # type: ignore[union-attr]
        used = set(
            conn.execute(
                select(reservations.c.port).where(
                    reservations.c.node == node, reservations.c.state == "active"
                )
            ).scalars()
        )
        free = [p for p in range(lo, hi + 1) if p not in used]
        # drawn, not the lowest: a user must not know (and bind first) the next server's port
        return secrets.choice(free) if free else None

    def release(self, rid: str, reason: str = "released") -> Reservation | None:
        """Free a reservation. Releasing one already released is success (idempotent);
        an unknown id returns None."""
        with self._write() as conn:
            row = conn.execute(select(reservations.c.state).where(reservations.c.id == rid)).first()
            if row is None:
                return None
            if row.state == "active":
                why = conn.execute(
                    select(notices.c.stop_reason).where(notices.c.reservation_id == rid)
                ).scalar()
                if why:  # the pool stopped it (GPU idle): that is the reason, not the stop
                    reason = why
                conn.execute(delete(notices).where(notices.c.reservation_id == rid))
                conn.execute(
                    update(reservations)
                    .where(reservations.c.id == rid)
                    .values(
                        state="released",
                        released_at=self.clock(),
                        # the column's size; a user's name is part of some reasons
                        release_reason=reason[:255],
                    )
                )
                self.state.remove(rid)
                self.orphans.pop(rid, None)
        return self.get(rid)

    # -- notices to the lab side ------------------------------------------------------
    def set_notice(
        self,
        rid: str,
        kind: str,
        message: str,
        act_at: dt.datetime | None = None,
        stop_reason: str | None = None,
    ) -> bool:
        """Post (or replace) the notice of an active reservation; False if it is not active,
        or holds a notice of a higher rank (a pending stop, then the slice watchdog's)."""
        with self._write() as conn:
            conn.info["unchanged"] = True  # notices do not change placements
            state = conn.execute(
                select(reservations.c.state).where(reservations.c.id == rid)
            ).scalar()
            if state != "active":
                return False
            held = conn.execute(
                select(notices.c.kind).where(notices.c.reservation_id == rid)
            ).scalar()
            if held is not None and _RANK.get(held, 1) > _RANK.get(kind, 1):
                return False
            conn.execute(delete(notices).where(notices.c.reservation_id == rid))
            conn.execute(
                insert(notices).values(
                    reservation_id=rid,
                    kind=kind,
                    message=message,
                    created_at=self.clock(),
                    act_at=act_at,
                    stop_reason=stop_reason,
                )
            )
            return True

    def clear_notice(self, rid: str, kind: str | None = None) -> None:
        """Withdraw a reservation's notice (of ``kind`` only, when given; never a pending
        stop: that ends with a release)."""
        cond = [notices.c.reservation_id == rid, notices.c.kind != STOP_PENDING]
        if kind is not None:
            cond.append(notices.c.kind == kind)
        with self._write() as conn:
            conn.info["unchanged"] = True
            conn.execute(delete(notices).where(*cond))

    def stops_pending(self) -> dict[str, str]:
        """Reservation id -> release reason, for active reservations whose workload is to
        be stopped as soon as its node answers (the reconciler finishes those)."""
        q = (
            select(notices.c.reservation_id, notices.c.stop_reason)
            .join(reservations, reservations.c.id == notices.c.reservation_id)
            .where(reservations.c.state == "active", notices.c.kind == STOP_PENDING)
        )
        with self.engine.connect() as conn:
            return {r.reservation_id: r.stop_reason or "stop pending" for r in conn.execute(q)}

    def notices(self, owner: str | None = None) -> list[dict[str, object]]:
        """The notices of active reservations (of one owner), oldest first."""
        q = (
            select(notices, reservations.c.owner, reservations.c.server_name, reservations.c.spec)
            .join(reservations, reservations.c.id == notices.c.reservation_id)
            .where(reservations.c.state == "active")
            .order_by(notices.c.created_at)
        )
        if owner is not None:
            q = q.where(reservations.c.owner == owner)
        with self.engine.connect() as conn:
            return [
                {
                    "reservation": r.reservation_id,
                    "owner": r.owner,
                    "server_name": r.server_name,
                    "spec": r.spec,
                    "kind": r.kind,
                    "message": r.message,
                    "created_at": iso(r.created_at),
                    "act_at": iso(r.act_at),
                    "stopping": r.stop_reason is not None,
                }
                for r in conn.execute(q)
            ]

    def set_container(self, rid: str, container: str | None) -> None:
        with self._write() as conn:
            conn.execute(
                update(reservations).where(reservations.c.id == rid).values(container=container)
            )

    def _status(self, node: str) -> str:
        if node in self.down:
            return "down"
        return "draining" if node in self.drained_nodes else "up"

    def set_down(self, node: str, down: bool) -> None:
        """Mark a node down (no new work, reservations kept) or back up. Kept in memory:
        health is observed afresh after a restart."""
        with self._lock:
            (self.down.add if down else self.down.discard)(node)
            if node in self.state.index:
                self.state.set_status(node, self._status(node))  # type: ignore[arg-type]

    def forget(self, rid: str) -> None:
        """Refuse a later reserve of ``rid`` (released before it was made)."""
        with self._lock:
            now = time.monotonic()
            for old in [k for k, t in self.forgotten.items() if now - t > 3600]:
                del self.forgotten[old]
            if len(self.forgotten) < 100_000:
                self.forgotten[rid] = now

    def set_sliceable(self, node: str, problem: str | None) -> None:
        """Whether ``node`` takes sliced specs: not while its agent reports ``problem``
        with HAMi-core. Kept in memory: the agent says it again after a restart."""
        with self._lock:
            if problem:
                self.unsliceable[node] = problem
            else:
                self.unsliceable.pop(node, None)
            if node in self.state.index:
                self.state.set_sliceable(node, not problem)

    def set_inventory(self, node: str, gpus: tuple[Gpu, ...]) -> bool:
        """Record the GPUs a node's agent reported; they replace the declared ones.
        Returns whether anything changed. Reservations on GPUs no longer reported stay
        in the database (kept, not placed) and come back if the GPU does."""
        if self.catalog.node(node) is None:
            raise LedgerError(f"unknown node {node!r}")
        gpus = tuple(sorted(gpus, key=lambda g: g.index))
        if self.inventory.get(node) == gpus:
            return False
        elsewhere = {g.uuid: n.name for n in self.nodes() if n.name != node for g in n.gpus}
        clash = [f"{g.uuid} (also on {elsewhere[g.uuid]})" for g in gpus if g.uuid in elsewhere]
        if clash:
            raise LedgerError(f"node {node} reports GPUs another node holds: {', '.join(clash)}")
        with self._write() as conn:
            conn.execute(delete(node_gpus).where(node_gpus.c.node == node))
            now = self.clock()
            if gpus:
                conn.execute(
                    insert(node_gpus),
                    [
                        {
                            "node": node,
                            "uuid": g.uuid,
                            "gpu_index": g.index,
                            "model": g.model,
                            "memory_mib": g.memory_mib,
                            "reported_at": now,
                        }
                        for g in gpus
                    ],
                )
            else:
                # an agent that sees no GPU replaces the declared list with an empty one
                conn.execute(
                    insert(node_gpus).values(
                        node=node, uuid="", gpu_index=-1, model="", memory_mib=0, reported_at=now
                    )
                )
            self._generation = None  # rebuild the state from the new inventory on exit
            self._reload(conn)
        return True

    def seen(self) -> dict[str, str]:
        """reservation id -> id of the container the reconciler saw for it."""
        q = (
            select(container_seen)
            .join(reservations, reservations.c.id == container_seen.c.reservation_id)
            .where(reservations.c.state == "active")
        )
        with self.engine.connect() as conn:
            return {r.reservation_id: r.container_id for r in conn.execute(q)}

    def mark_seen(self, found: dict[str, str]) -> None:
        """Record containers seen for the first time (reservation id -> container id)."""
        if not found:
            return
        with self._write() as conn:
            conn.info["unchanged"] = True  # nothing the scheduler reads
            known = set(
                conn.execute(
                    select(container_seen.c.reservation_id).where(
                        container_seen.c.reservation_id.in_(list(found))
                    )
                ).scalars()
            )
            live = set(
                conn.execute(
                    select(reservations.c.id).where(reservations.c.id.in_(list(found)))
                ).scalars()
            )
            rows = [
                {"reservation_id": rid, "container_id": cid, "seen_at": self.clock()}
                for rid, cid in found.items()
                if rid not in known and rid in live
            ]
            if rows:
                conn.execute(insert(container_seen), rows)

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
            (self.drained_nodes.add if drained else self.drained_nodes.discard)(node)
            self.state.set_status(node, self._status(node))  # type: ignore[arg-type]
