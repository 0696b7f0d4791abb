"""Releasing means stopping: a reservation is freed only when its workload is gone.

Who asks decides the path (DESIGN.md, "a reservation is freed only when its workload is
gone"):

- the hub's spawner (scope ``custom:gpupool:spawn``) releases after it removed the
  container itself: freed at once;
- a pool admin (the API's DELETE, the dashboard's Cancel) stops the workload: a server
  through the hub (its spawner then frees the reservation), a training through the
  dispatcher (cancel), a labelled container nobody else stops is removed here; only a
  reservation with no container left is freed directly;
- a user may not free a reservation that holds a server or a training of theirs: the
  answer says how to stop it instead (and a user cannot make bare reservations).
"""

from __future__ import annotations

from typing import Any

from docker.errors import NotFound
from tornado.escape import url_escape

from gpupool.engines import EngineUnreachable
from gpupool.job import ACTIVE
from gpupool.owners import OWNER, NotYours, remove_own_container

from .ledger import Reservation

_KEPT = (
    "reservation {id} is kept while its container may still run, and freed once the node "
    "answers and the container is gone"
)


class Refused(Exception):
    """The release cannot happen now; ``status`` and the message say why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def how_to_stop(r: Reservation, hub_prefix: str = "/hub/") -> str:
    """What a user does instead of releasing ``r`` (it holds a live workload)."""
    if r.kind == "training":
        return (
            f"reservation {r.id} holds your training {r.server_name}: cancel it "
            f"(gpupool train cancel {r.server_name}, or POST api/trainings/"
            f"{r.server_name}/cancel) and the pool frees it when the training has stopped"
        )
    server = f"server {r.server_name!r}" if r.server_name else "default server"
    path = f"users/{url_escape(r.owner, plus=False)}/server"
    if r.server_name:
        path += f"s/{url_escape(r.server_name, plus=False)}"
    return (
        f"reservation {r.id} holds your {server}: stop the server (hub home, 'Stop My "
        f"Server', or DELETE {hub_prefix}api/{path}) and the pool frees it when the server "
        "has stopped; releasing it under a running server would hand its GPUs to someone else"
    )


def user_may_release(r: Reservation) -> bool:
    """A user frees directly only what holds no workload: the spawner and the dispatcher
    name the container of every reservation they make; an admin's bare one names none."""
    return not r.container


async def cancel_training(ctx: Any, tid: str, by: str) -> bool:
    """Mark an active training to be stopped (the dispatcher stops its container, then
    frees its reservation). False if it is not active any more."""
    store = ctx.trainings.store if ctx.trainings is not None else None
    if store is None:
        return False
    ok = await ctx.run(
        store.update,
        tid,
        only_from=ACTIVE,
        cancel_requested=True,
        cancelled_by=by,
        message=f"stopping: cancelled by {by}",
    )
    if ok:
        ctx.trainings.wake()
    return bool(ok)


async def stop_and_release(ctx: Any, r: Reservation, by: str, reason: str) -> str:
    """Stop ``r``'s workload and free it: 'released' when freed now, 'stopping' when its
    workload is being stopped (the reservation is freed by whoever stops it). Refused
    when its node does not answer (its container may still run)."""
    if r.state != "active":
        return "released"
    if r.kind == "training" and r.server_name:
        if await cancel_training(ctx, r.server_name, by):
            return "stopping"
    node = ctx.catalog.node(r.node)
    monitor = ctx.monitor
    engines = monitor.engines if monitor is not None and monitor.watching else None
    running = bool(r.container)
    health = monitor.nodes.get(r.node) if engines is not None else None
    if health is not None and r.container and health.state == "down":
        raise Refused(503, f"node {r.node} is down: {_KEPT.format(id=r.id)}")
    if r.container and node is not None and engines is not None:
        try:
            info = await engines.call(node, "inspect_container", r.container)
            running = (info.get("Config") or {}).get("Labels", {}).get(OWNER) == r.owner
        except NotFound:
            running = False
        except EngineUnreachable:
            raise Refused(503, f"node {r.node} does not answer: {_KEPT.format(id=r.id)}") from None
    if running and r.kind == "notebook" and await ctx.stop_server(r.owner, r.server_name):
        return "stopping"
    if running and r.container and node is not None and engines is not None:
        try:
            await remove_own_container(engines, node, r.container, r.owner)
        except NotYours:
            pass  # not its workload: another's container at that name is left alone
        except EngineUnreachable:
            raise Refused(
                503, f"node {r.node} does not answer; reservation {r.id} is kept"
            ) from None
    await ctx.run(ctx.ledger.release, r.id, reason[:255])
    return "released"
