"""Notices to the lab side: what the pool tells one reservation's server, kept in the
ledger's database ("your GPUs have been idle; this server stops at ...").

One notice per reservation. Functions on an open connection: the ledger holds the
transaction (and its lock) they run in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection

from .tables import iso, notices, reservations

# The notice of a reservation whose workload is to be stopped once its node answers: the
# hub stopped the server while the node's engine did not answer (issue 18).
STOP_PENDING = "stop-pending"
# One notice per reservation: one of a higher rank is not replaced by one of a lower
# (a pending stop by nothing; the slice watchdog's by no idle warning).
_RANK = {STOP_PENDING: 3, "over-slice": 2}


def post(
    conn: Connection,
    rid: str,
    kind: str,
    message: str,
    clock: Callable[[], dt.datetime],
    act_at: dt.datetime | None = None,
    stop_reason: str | None = None,
) -> bool:
    """Post (or replace) the notice of an active reservation; False if it is not active,
    or holds a notice of a higher rank (a pending stop, then the slice watchdog's)."""
    state = conn.execute(select(reservations.c.state).where(reservations.c.id == rid)).scalar()
    if state != "active":
        return False
    held = conn.execute(select(notices.c.kind).where(notices.c.reservation_id == rid)).scalar()
    if held is not None and _RANK.get(held, 1) > _RANK.get(kind, 1):
        return False
    conn.execute(delete(notices).where(notices.c.reservation_id == rid))
    conn.execute(
        insert(notices).values(
            reservation_id=rid,
            kind=kind,
            message=message,
            created_at=clock(),
            act_at=act_at,
            stop_reason=stop_reason,
        )
    )
    return True


def withdraw(conn: Connection, rid: str, kind: str | None = None) -> None:
    """Withdraw a reservation's notice (of ``kind`` only, when given; never a pending
    stop: that ends with a release)."""
    cond = [notices.c.reservation_id == rid, notices.c.kind != STOP_PENDING]
    if kind is not None:
        cond.append(notices.c.kind == kind)
    conn.execute(delete(notices).where(*cond))


def take_stop_reason(conn: Connection, rid: str) -> str | None:
    """Remove the notice of a reservation being released; the reason the pool gave when
    it acted on it (it stopped the server), if it did."""
    why = conn.execute(
        select(notices.c.stop_reason).where(notices.c.reservation_id == rid)
    ).scalar()
    conn.execute(delete(notices).where(notices.c.reservation_id == rid))
    return why


def stops_pending(conn: Connection) -> dict[str, str]:
    """Reservation id -> release reason, for active reservations whose workload is to
    be stopped as soon as its node answers (the reconciler finishes those)."""
    q = (
        select(notices.c.reservation_id, notices.c.stop_reason)
        .join(reservations, reservations.c.id == notices.c.reservation_id)
        .where(reservations.c.state == "active", notices.c.kind == STOP_PENDING)
    )
    return {r.reservation_id: r.stop_reason or "stop pending" for r in conn.execute(q)}


def listing(conn: Connection, owner: str | None = None) -> list[dict[str, object]]:
    """The notices of active reservations (of one owner), oldest first."""
    q = (
        select(notices, reservations.c.owner, reservations.c.server_name, reservations.c.spec)
        .join(reservations, reservations.c.id == notices.c.reservation_id)
        .where(reservations.c.state == "active")
        .order_by(notices.c.created_at)
    )
    if owner is not None:
        q = q.where(reservations.c.owner == owner)
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
