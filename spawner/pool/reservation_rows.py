"""Reservations as SQL rows: read back with their GPU shares, written when made and when
freed, with the port each holds on its node and the container the reconciler saw for it.

Functions on an open connection: the ledger holds the transaction (and its lock) they
run in and keeps its in-memory state in step with them.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.engine import Connection

from .state import GpuShare
from .tables import Reservation, container_seen, reservation_gpus, reservations


def select_reservations(
    conn: Connection,
    *,
    owner: str | None = None,
    rid: str | None = None,
    active_only: bool = False,
    after: tuple[dt.datetime, str] | None = None,
    limit: int | None = None,
) -> list[Reservation]:
    """Reservations in the order they were made (created_at, id), with their GPU shares."""
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


def state_of(conn: Connection, rid: str) -> str | None:
    """``active`` or ``released``; None for an id never used."""
    return conn.execute(select(reservations.c.state).where(reservations.c.id == rid)).scalar()


def insert_reservation(conn: Connection, r: Reservation) -> None:
    """Record a new reservation with its GPU shares."""
    conn.execute(
        insert(reservations).values(
            id=r.id,
            owner=r.owner,
            spec=r.spec,
            kind=r.kind,
            server_name=r.server_name,
            node=r.node,
            cpu_millicores=r.cpu_millicores,
            memory_mib=r.memory_mib,
            disk_mib=r.disk_mib,
            price_per_hour=r.price_per_hour,
            container=r.container,
            port=r.port,
            state=r.state,
            created_at=r.created_at,
        )
    )
    if r.gpus:
        conn.execute(
            insert(reservation_gpus),
            [
                {
                    "reservation_id": r.id,
                    "uuid": g.uuid,
                    "gpu_index": g.index,
                    "memory_mib": g.memory_mib,
                    "sm_percent": g.sm_percent,
                    "whole": g.whole,
                }
                for g in r.gpus
            ],
        )


def mark_released(conn: Connection, rid: str, when: dt.datetime, reason: str) -> None:
    """Record that a reservation was freed, when and why."""
    conn.execute(
        update(reservations)
        .where(reservations.c.id == rid)
        # the column's size; a user's name is part of some reasons
        .values(state="released", released_at=when, release_reason=reason[:255])
    )


def free_port(conn: Connection, node: str, ports: tuple[int, int]) -> int | None:
    """A port of the node's range ``ports`` (lowest, highest) that no active reservation
    on it holds, at random."""
    lo, hi = ports
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


def containers_seen(conn: Connection) -> dict[str, str]:
    """reservation id -> id of the container the reconciler saw for it (active ones)."""
    q = (
        select(container_seen)
        .join(reservations, reservations.c.id == container_seen.c.reservation_id)
        .where(reservations.c.state == "active")
    )
    return {r.reservation_id: r.container_id for r in conn.execute(q)}


def record_seen(conn: Connection, found: dict[str, str], clock: Callable[[], dt.datetime]) -> None:
    """Record containers seen for the first time (reservation id -> container id)."""
    known = set(
        conn.execute(
            select(container_seen.c.reservation_id).where(
                container_seen.c.reservation_id.in_(list(found))
            )
        ).scalars()
    )
    live = set(
        conn.execute(select(reservations.c.id).where(reservations.c.id.in_(list(found)))).scalars()
    )
    rows = [
        {"reservation_id": rid, "container_id": cid, "seen_at": clock()}
        for rid, cid in found.items()
        if rid not in known and rid in live
    ]
    if rows:
        conn.execute(insert(container_seen), rows)
