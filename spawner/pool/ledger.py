"""The allocation ledger: reservations in SQL (SQLite by default, any SQLAlchemy URL).

The ledger is the truth about who holds which GPU share; ``ClusterState`` is its
in-memory copy. Every write runs in one database transaction that first takes a
database-wide lock (``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped advisory lock
on PostgreSQL) and compares a generation counter: if another process wrote since we
last looked, the copy is reloaded before deciding. So reserve is atomic within one
process (a lock), across processes (the database lock), and across restarts (the rows).

The ledger decides and keeps the in-memory state in step; ``transactions`` runs the
locked transactions, ``reservation_rows``, ``notices`` and ``inventory`` hold the SQL of
what it stores, ``quotas`` the quota rules.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection

from gpupool.catalog.models import Catalog, Gpu, Node, Quota, Spec

from . import accounting, inventory, quotas
from . import notices as notice_rows
from .notices import STOP_PENDING
from .reservation_rows import (
    containers_seen,
    free_port,
    insert_reservation,
    mark_released,
    record_seen,
    select_reservations,
    state_of,
)
from .scheduler import Rejection, fits_now, place
from .state import ClusterState, Request
from .tables import LedgerError, Reservation, make_engine, node_states, utcnow
from .transactions import Transactions

#: how the service's parts call the ledger: off the event loop (in its executor), awaited
LedgerCall = Callable[..., Awaitable[Any]]

__all__ = ["STOP_PENDING", "Ledger", "LedgerError", "Reservation"]


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
        self._db = Transactions(self.engine, self._reload)
        self.last_decision_ns = 0  # how long the last scheduler decision took (for `gpupool plan`)
        self.orphans: dict[str, str] = {}  # reservation id -> why it could not be applied
        self.down: set[str] = set()  # nodes whose engine or agent does not answer (not stored)
        self.unsliceable: dict[str, str] = {}  # node -> what its agent found wrong with HAMi-core
        # ids the spawner released before the pool had made them (a start cancelled while
        # its reserve was under way): a reserve of one of them is refused; an hour each
        self.forgotten: dict[str, float] = {}
        self.drained_nodes: set[str] = set()
        self.inventory: dict[str, tuple[Gpu, ...]] = {}  # node -> GPUs its agent reported
        self.schema = self._db.open()

    def close(self) -> None:
        self.engine.dispose()

    def refresh(self) -> None:
        """Reload the in-memory state if another writer changed the database."""
        self._db.refresh()

    def nodes(self) -> list[Node]:
        """The catalog's nodes with the GPUs their agents reported in place of the declared."""
        return inventory.overlay(self.catalog.nodes, self.inventory)

    def _reload(self, conn: Connection) -> None:
        """Rebuild the in-memory state from the database (``Transactions`` calls it)."""
        self.inventory = inventory.load(conn)
        self.drained_nodes = {r.name for r in conn.execute(select(node_states)) if r.drained}
        state = ClusterState(self.nodes())
        for name in state.index:
            state.set_status(name, self._status(name))  # type: ignore[arg-type]
            state.set_sliceable(name, name not in self.unsliceable)
        self.orphans = {}
        for r in select_reservations(conn, active_only=True):
            p = r.placement
            if state.knows(p):
                state.apply(r.id, p)
            else:
                self.orphans[r.id] = f"node {r.node} or its GPUs are no longer in the catalog"
        self.state = state

    # -- reads ---------------------------------------------------------------------
    def get(self, rid: str) -> Reservation | None:
        with self.engine.connect() as conn:
            found = select_reservations(conn, rid=rid)
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
            r for r in select_reservations(conn, owner=owner) if accounting.alive_in(r, start, end)
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
            return select_reservations(
                conn, owner=owner, active_only=active_only, after=after, limit=limit
            )

    def fits_now(self, spec: Spec) -> int:
        with self._db.lock:
            return fits_now(self.state, Request.from_spec(spec), self.gpu_policy)

    def drained(self) -> dict[str, bool]:
        with self._db.lock:
            return {n.name: n.name in self.drained_nodes for n in self.catalog.nodes}

    def seen(self) -> dict[str, str]:
        """reservation id -> id of the container the reconciler saw for it."""
        with self.engine.connect() as conn:
            return containers_seen(conn)

    # -- reservations ----------------------------------------------------------------
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
        with self._db.write() as conn:
            if rid in self.forgotten:
                raise LedgerError(
                    f"reservation {rid!r} was released before it was made (its start was "
                    "cancelled while the pool answered)"
                )
            if state_of(conn, rid) is not None:
                raise LedgerError(f"reservation id {rid!r} is already used")
            mine: list[Reservation] = []
            if quota is not None and not quota.unlimited and (spec.gpus or quota.holds):
                mine = select_reservations(conn, owner=owner, active_only=True)
                over = quotas.before_placement(
                    spec, quota, quota_source, mine, lambda: self._month_use(conn, owner)
                )
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
                over = quotas.after_placement(spec, quota, quota_source, mine, decision)
                if over is not None:
                    conn.info["unchanged"] = True
                    return over
            ports = self.catalog.node(decision.node).ports  # type: ignore[union-attr]
            port = free_port(conn, decision.node, ports)
            if port is None:
                conn.info["unchanged"] = True
                lo, hi = ports
                return Rejection(f"node {decision.node} has no free port in {lo}-{hi}")
            r = Reservation(
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
                created_at=self.clock(),
                released_at=None,
                release_reason=None,
            )
            insert_reservation(conn, r)
            self.state.apply(rid, decision)
        return r

    def _month_use(self, conn: Connection, owner: str) -> tuple[float, dt.datetime, dt.datetime]:
        """GPU-hours ``owner`` used this month (as accounting counts them), and the month."""
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
        return used, start, end

    def release(self, rid: str, reason: str = "released") -> Reservation | None:
        """Free a reservation. Releasing one already released is success (idempotent);
        an unknown id returns None."""
        with self._db.write() as conn:
            state = state_of(conn, rid)
            if state is None:
                return None
            if state == "active":
                why = notice_rows.take_stop_reason(conn, rid)
                if why:  # the pool stopped it (GPU idle): that is the reason, not the stop
                    reason = why
                mark_released(conn, rid, self.clock(), reason)
                self.state.remove(rid)
                self.orphans.pop(rid, None)
        return self.get(rid)

    def forget(self, rid: str) -> None:
        """Refuse a later reserve of ``rid`` (released before it was made)."""
        with self._db.lock:
            now = time.monotonic()
            for old in [k for k, t in self.forgotten.items() if now - t > 3600]:
                del self.forgotten[old]
            if len(self.forgotten) < 100_000:
                self.forgotten[rid] = now

    def mark_seen(self, found: dict[str, str]) -> None:
        """Record containers seen for the first time (reservation id -> container id)."""
        if not found:
            return
        with self._db.write() as conn:
            conn.info["unchanged"] = True  # nothing the scheduler reads
            record_seen(conn, found, self.clock)

    # -- notices to the lab side (notices.py) -----------------------------------------
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
        with self._db.write() as conn:
            conn.info["unchanged"] = True  # notices do not change placements
            return notice_rows.post(conn, rid, kind, message, self.clock, act_at, stop_reason)

    def clear_notice(self, rid: str, kind: str | None = None) -> None:
        """Withdraw a reservation's notice (of ``kind`` only, when given; never a pending
        stop: that ends with a release)."""
        with self._db.write() as conn:
            conn.info["unchanged"] = True
            notice_rows.withdraw(conn, rid, kind)

    def stops_pending(self) -> dict[str, str]:
        """Reservation id -> release reason, for active reservations whose workload is to
        be stopped as soon as its node answers (the reconciler finishes those)."""
        with self.engine.connect() as conn:
            return notice_rows.stops_pending(conn)

    def notices(self, owner: str | None = None) -> list[dict[str, object]]:
        """The notices of active reservations (of one owner), oldest first."""
        with self.engine.connect() as conn:
            return notice_rows.listing(conn, owner)

    # -- nodes: down, drained, sliceable, their GPUs -----------------------------------
    def _status(self, node: str) -> str:
        if node in self.down:
            return "down"
        return "draining" if node in self.drained_nodes else "up"

    def set_down(self, node: str, down: bool) -> None:
        """Mark a node down (no new work, reservations kept) or back up. Kept in memory:
        health is observed afresh after a restart."""
        with self._db.lock:
            (self.down.add if down else self.down.discard)(node)
            if node in self.state.index:
                self.state.set_status(node, self._status(node))  # type: ignore[arg-type]

    def set_sliceable(self, node: str, problem: str | None) -> None:
        """Whether ``node`` takes sliced specs: not while its agent reports ``problem``
        with HAMi-core. Kept in memory: the agent says it again after a restart."""
        with self._db.lock:
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
        clash = inventory.clashes(self.nodes(), node, gpus)
        if clash:
            raise LedgerError(f"node {node} reports GPUs another node holds: {', '.join(clash)}")
        with self._db.write() as conn:
            inventory.store(conn, node, gpus, self.clock())
            self._db.generation = None  # rebuild the state from the new inventory on exit
            self._db.reload(conn)
        return True

    def set_drained(self, node: str, drained: bool, by: str = "") -> None:
        if node not in self.state.index:
            raise LedgerError(
                f"unknown node {node!r}; nodes: {', '.join(n.name for n in self.catalog.nodes)}"
            )
        with self._db.write() as conn:
            conn.execute(delete(node_states).where(node_states.c.name == node))
            conn.execute(
                insert(node_states).values(
                    name=node, drained=drained, changed_by=by, changed_at=self.clock()
                )
            )
            (self.drained_nodes.add if drained else self.drained_nodes.discard)(node)
            self.state.set_status(node, self._status(node))  # type: ignore[arg-type]
