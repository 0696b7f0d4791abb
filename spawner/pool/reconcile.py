"""The reconciler: labelled containers against reservations, node by node.

DESIGN.md's invariant: every container gpupool started carries its reservation's id as
a label, every reservation names its container, and the two are made to agree.
:func:`decide` is the pure part (tested exhaustively); :class:`Reconciler` lists a
node's containers, reads the ledger and carries the decision out.

Order matters: the containers are listed before the ledger is read. A spawner reserves
before it creates, so every container in the listing has its reservation in the later
read (no false orphans); a reservation whose container is not listed may have been made
after the listing, so one never seen is given ``start_grace`` before it is freed.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from docker.errors import NotFound

from gpupool.catalog.models import Node
from gpupool.container import LABEL

from .ledger import Reservation

RESERVATION_LABEL = f"{LABEL}.reservation"
_EXIT = re.compile(r"Exited \((-?\d+)\)")


@dataclass(frozen=True)
class Container:
    """A labelled container as a node's engine lists it."""

    id: str
    name: str
    reservation: str
    owner: str | None
    kind: str | None
    state: str  # created | running | paused | restarting | removing | exited | dead
    exit_code: int | None = None

    @property
    def running(self) -> bool:
        return self.state in ("running", "paused", "restarting")

    @classmethod
    def from_engine(cls, c: dict[str, Any]) -> Container:
        labels = c.get("Labels") or {}
        m = _EXIT.search(c.get("Status") or "")
        return cls(
            id=c["Id"],
            name=(c.get("Names") or ["/"])[0].lstrip("/"),
            reservation=labels.get(RESERVATION_LABEL, ""),
            owner=labels.get(f"{LABEL}.owner"),
            kind=labels.get(f"{LABEL}.kind"),
            state=c.get("State") or "unknown",
            exit_code=int(m.group(1)) if m else None,
        )


@dataclass
class Decision:
    release: list[tuple[Reservation, str]] = field(default_factory=list)  # (reservation, why)
    first_seen: dict[str, str] = field(default_factory=dict)  # reservation id -> container id
    orphans: list[Container] = field(default_factory=list)  # running, no active reservation
    stop: list[Container] = field(default_factory=list)  # orphans past their grace
    waiting: list[str] = field(default_factory=list)  # reservations whose container may still come
    # stops the hub asked for while the node did not answer: (reservation, its containers
    # to remove, release reason); released once they are removed
    finish: list[tuple[Reservation, list[Container], str]] = field(default_factory=list)


def _age(r: Reservation, now: float) -> float:
    t = r.created_at if r.created_at.tzinfo else r.created_at.replace(tzinfo=dt.timezone.utc)
    return now - t.timestamp()


def decide(
    reservations: Iterable[Reservation],
    containers: Sequence[Container],
    seen: dict[str, str],
    orphan_since: dict[str, float],
    now: float,
    *,
    start_grace: float,
    orphan_grace: float,
    pending: dict[str, str] | None = None,
) -> Decision:
    """What to do on one node. ``reservations``: the active ones on the node; ``seen``:
    reservation id -> container id the reconciler saw before; ``orphan_since``: container
    id -> when it was first found orphaned (updated in place: entries are added for new
    orphans and dropped for containers that are no longer orphans); ``pending``:
    reservation id -> release reason of stops asked for while the node did not answer."""
    out = Decision()
    by_rid: dict[str, list[Container]] = {}
    for c in containers:
        by_rid.setdefault(c.reservation, []).append(c)
    claimed: set[str] = set()
    for r in reservations:
        mine = by_rid.get(r.id, [])
        if pending and r.id in pending:
            # its owner's containers go (another's at its label is never touched), then it
            own = [c for c in mine if c.owner == r.owner]
            claimed.update(c.id for c in own)
            out.finish.append((r, own, pending[r.id]))
            continue
        # its container: the one it names, else a running one, else any
        c = next((x for x in mine if r.container and x.name == r.container), None)
        c = c or next((x for x in mine if x.running), None) or (mine[0] if mine else None)
        if c is None:
            if r.id in seen:
                out.release.append((r, "container gone"))
            elif _age(r, now) > start_grace:
                out.release.append(
                    (r, f"container never appeared within the start grace ({start_grace:.0f} s)")
                )
            else:
                out.waiting.append(r.id)
            continue
        claimed.add(c.id)
        if c.running:
            if r.id not in seen:
                out.first_seen[r.id] = c.id
        elif c.state == "created" and _age(r, now) <= start_grace:
            out.waiting.append(r.id)  # created, not started yet
        else:
            code = f" (exit code {c.exit_code})" if c.exit_code is not None else ""
            out.release.append((r, f"container {c.state}{code}"))
    orphaned = {c.id for c in containers if c.id not in claimed and c.running}
    for cid in list(orphan_since):
        if cid not in orphaned:
            del orphan_since[cid]
    for c in containers:
        if c.id in orphaned:
            since = orphan_since.setdefault(c.id, now)
            out.orphans.append(c)
            if now - since >= orphan_grace:
                out.stop.append(c)
    return out


Call = Callable[..., Awaitable[Any]]


@dataclass
class NodeResult:
    node: str
    time: float
    containers: int = 0
    released: list[dict[str, str]] = field(default_factory=list)
    orphans: list[dict[str, Any]] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Reconciler:
    """Carries :func:`decide` out on nodes whose engines answer.

    ``engine(node, method, *args)``: a Docker APIClient call on the node's engine;
    ``ledger(fn, *args)``: a ledger call off the event loop; ``on_release`` and
    ``on_orphan``: what the pool does besides (alerts)."""

    def __init__(
        self,
        engine: Call,
        ledger_call: Call,
        ledger: Any,
        *,
        start_grace: float,
        orphan_grace: float,
        clock: Callable[[], float] = time.time,
        on_release: Callable[[Reservation, str], None] | None = None,
        on_orphan: Callable[[Node, Container, float, bool], None] | None = None,
    ):
        self.engine = engine
        self.ledger_call = ledger_call
        self.ledger = ledger
        self.start_grace = start_grace
        self.orphan_grace = orphan_grace
        self.clock = clock
        self.on_release = on_release
        self.on_orphan = on_orphan
        self.orphan_since: dict[str, dict[str, float]] = {}  # node -> container id -> since
        self.last: dict[str, NodeResult] = {}

    async def node(self, node: Node) -> NodeResult:
        listed = await self.engine(
            node, "containers", all=True, filters={"label": RESERVATION_LABEL}
        )
        containers = [Container.from_engine(c) for c in listed]
        active = await self.ledger_call(self.ledger.list)
        seen = await self.ledger_call(self.ledger.seen)
        pending = await self.ledger_call(self.ledger.stops_pending)
        now = self.clock()
        since = self.orphan_since.setdefault(node.name, {})
        d = decide(
            [r for r in active if r.node == node.name],
            containers,
            seen,
            since,
            now,
            start_grace=self.start_grace,
            orphan_grace=self.orphan_grace,
            pending=pending,
        )
        result = NodeResult(node.name, now, containers=len(containers), waiting=d.waiting)
        if d.first_seen:
            await self.ledger_call(self.ledger.mark_seen, d.first_seen)
        for r, own, why in d.finish:
            try:
                for c in own:
                    try:
                        await self.engine(node, "remove_container", c.id, force=True)
                    except NotFound:
                        pass  # gone meanwhile: that is what was asked
                    result.stopped.append(c.name)
            except Exception as e:  # reported, tried again next pass; the GPUs stay held
                result.error = f"could not remove {r.id}'s container: {e}"
                continue
            await self.ledger_call(self.ledger.release, r.id, why)
            result.released.append({"reservation": r.id, "owner": r.owner, "reason": why})
        for r, why in d.release:
            await self.ledger_call(self.ledger.release, r.id, f"reconciler: {why}")
            result.released.append({"reservation": r.id, "owner": r.owner, "reason": why})
            if self.on_release:
                self.on_release(r, why)
        stopping = {c.id for c in d.stop}
        for c in d.orphans:
            result.orphans.append(
                {
                    "container": c.name,
                    "id": c.id[:12],
                    "reservation": c.reservation,
                    "owner": c.owner,
                    "orphan_for_s": round(now - since.get(c.id, now), 1),
                }
            )
            if self.on_orphan:
                self.on_orphan(node, c, since.get(c.id, now), c.id in stopping)
        for c in d.stop:
            try:
                await self.engine(node, "stop", c.id, timeout=10)
                result.stopped.append(c.name)
                since.pop(c.id, None)
            except Exception as e:  # reported, tried again next pass
                result.error = f"could not stop orphan {c.name}: {e}"
        self.last[node.name] = result
        return result
