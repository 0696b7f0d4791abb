"""REST API of the pool service, under ``<service prefix>/api/``.

One handler class per resource, one scope check per verb, the route table at the end.
Asking for another user's reservation answers 404, exactly as for one that does not exist.
"""

from __future__ import annotations

import re
from typing import Any

from tornado import web

from ..catalog.models import Catalog, Spec
from ..templating import render
from .access import SPAWN
from .base import ID_RE, ApiError, BaseHandler, NotFoundHandler, released
from .ledger import Ledger, LedgerError, Reservation
from .openapi import openapi_document
from .paging import BadPage, time_cursor, time_page
from .release import Refused, how_to_stop, stop_and_release, user_may_release
from .scheduler import Rejection

KINDS = ("notebook", "training", "manual")
RESERVE_FIELDS = {"spec", "server_name", "kind", "owner", "id", "container"}


class RootHandler(BaseHandler):
    def get(self) -> None:
        self.send(
            {
                "service": "gpupool",
                "openapi": "openapi.json",
                "links": [
                    "specs",
                    "datasets",
                    "trainings",
                    "reservations",
                    "nodes",
                    "health",
                    "alerts",
                    "metrics",
                ],
            }
        )


class IndexHandler(BaseHandler):
    """The service root, linked from the hub's Services menu."""

    auth_required = False

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        base = self.settings.get("prefix", "/")
        self.finish(render(self.ctx.catalog.directory, "gpupool/index.html", base=base))


class OpenApiHandler(BaseHandler):
    auth_required = False

    def get(self) -> None:
        self.send(openapi_document(self.settings.get("prefix", "/")))


def spec_json(spec: Spec, catalog: Catalog, fits: int) -> dict[str, Any]:
    return {
        "slug": spec.slug,
        "display_name": spec.display_name,
        "description": spec.description,
        "gpus": spec.gpus,
        "gpu_models": list(spec.gpu_models),
        "gpu_memory_mib": spec.gpu_memory_mib,
        "gpu_sm_percent": spec.gpu_sm_percent,
        "slice": spec.slice,
        "cpu_millicores": spec.cpu_millicores,
        "memory_mib": spec.memory_mib,
        "cpu_guarantee_millicores": spec.cpu_reserved,
        "memory_guarantee_mib": spec.memory_reserved,
        "disk_mib": spec.disk_mib,
        "price_per_hour": spec.price_per_hour,
        "groups": list(spec.groups),
        "images": [i.name for i in catalog.images_for(spec)],
        "kubernetes": spec.kubernetes_resources(),
        "fits_now": fits,
    }


class SpecsHandler(BaseHandler):
    async def get(self) -> None:
        specs = self.specs_for(self.caller)
        fits = await self.ctx.run(lambda: [self.ctx.ledger.fits_now(s) for s in specs])
        self.send(
            {"specs": [spec_json(s, self.ctx.catalog, f) for s, f in zip(specs, fits, strict=True)]}
        )


class SpecHandler(BaseHandler):
    async def get(self, slug: str) -> None:
        spec = next((s for s in self.specs_for(self.caller) if s.slug == slug), None)
        if spec is None:
            raise ApiError(404, f"no spec {slug!r}")
        fits = await self.ctx.run(self.ctx.ledger.fits_now, spec)
        self.send(spec_json(spec, self.ctx.catalog, fits))


class ReservationsHandler(BaseHandler):
    async def get(self) -> None:
        owner = self.get_argument("owner", None)
        include_released = self.choice("state", ("active", "all"), "active") == "all"
        if not (self.caller.can_observe or self.caller.acts_for_others):
            if owner not in (None, self.caller.name):
                raise ApiError(404, f"no user {owner!r}")  # other users are not visible
            owner = self.caller.name
        try:
            limit, after = time_page(
                self.get_argument("limit", None), self.get_argument("cursor", None)
            )
        except BadPage as e:
            raise ApiError(400, str(e)) from None
        found = await self.ctx.run(
            lambda: self.ctx.ledger.list(owner, not include_released, after=after, limit=limit + 1)
        )
        more = len(found) > limit
        found = found[:limit]
        nxt = time_cursor(found[-1].created_at, found[-1].id) if more else None
        self.send({"reservations": [r.to_json() for r in found], "next": nxt})

    async def post(self) -> None:
        if not self.caller.acts_for_others:
            # a reservation nothing uses would hold capacity from everyone for start_grace
            raise ApiError(
                403,
                "reservations are made for a server or a training: start a server from the "
                "hub, or submit a training (POST api/trainings); reserving directly needs "
                "custom:gpupool:spawn (the hub's spawner) or custom:gpupool:admin",
            )
        data = self.body(RESERVE_FIELDS)
        nulls = sorted(k for k, v in data.items() if v is None)
        if nulls:
            raise ApiError(
                400, f"{', '.join(nulls)}: null is not allowed; leave a field out for its default"
            )
        owner = data.get("owner", self.caller.name)
        if not isinstance(owner, str) or not owner:
            raise ApiError(400, "owner must be a user name")
        if owner != self.caller.name and not self.caller.acts_for_others:
            raise ApiError(
                403, "only pool admins (custom:gpupool:admin) may reserve for another user"
            )
        rid = data.get("id")
        if rid is not None:
            # the spawner names its reservation before asking, so that a start cancelled
            # while the answer is under way can still free it
            if not self.caller.acts_for_others:
                raise ApiError(403, "only the hub's spawner and pool admins choose an id")
            if not isinstance(rid, str) or not re.fullmatch(ID_RE, rid):
                raise ApiError(400, f"id must match {ID_RE}")
        container = data.get("container")
        if container is not None:
            if not self.caller.acts_for_others:
                raise ApiError(403, "only pool admins may name the container")
            if not isinstance(container, str) or not re.fullmatch(
                r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}", container
            ):
                raise ApiError(400, "container must be a Docker container name")
        kind = data.get("kind", "notebook")
        if kind not in KINDS:
            raise ApiError(400, f"kind {kind!r} is not allowed; allowed: {', '.join(KINDS)}")
        server_name = data.get("server_name", "")
        if not isinstance(server_name, str) or len(server_name) > 255:
            raise ApiError(400, "server_name must be a string of at most 255 characters")
        slug = data.get("spec")
        # specs the owner may use: for another user, that user's groups as the hub has them
        who = self.caller if owner == self.caller.name else await self.ctx.owner(owner)
        allowed = self.usable_by(who)
        spec = next((s for s in allowed if s.slug == slug), None)
        if spec is None:
            names = ", ".join(s.slug for s in allowed) or "none"
            what = "is required" if slug is None else f"{slug!r} is not a spec you may use"
            raise self.refused(
                f"spec {what}; allowed: {names}",
                data,
                "ReservationRequest",
                allowed=[s.slug for s in allowed],
            )
        quota, source = self.ctx.catalog.pool.quotas.for_user(owner, who.groups)
        try:
            result = await self.ctx.run(
                self.ctx.ledger.reserve,
                spec,
                owner,
                kind=kind,
                server_name=server_name,
                reservation_id=rid,
                container=container,
                quota=quota,
                quota_source=source,
            )
        except LedgerError as e:
            raise ApiError(409, str(e)) from None
        if isinstance(result, Rejection) and result.reason == "quota":
            raise ApiError(403, result.message, reason="quota")
        if isinstance(result, Rejection):
            raise ApiError(
                503, result.message, reason=result.reason, nodes=result.to_json()["nodes"]
            )
        self.set_header("Location", f"reservations/{result.id}")
        self.send(result.to_json(), status=201)


class ReservationHandler(BaseHandler):
    async def _find(self, rid: str, *, even_released: bool = False) -> Reservation:
        found = await self.ctx.run(self.ctx.ledger.get, rid)
        if found is None or not self.caller.may_see(found.owner):
            raise ApiError(404, f"no reservation {rid!r}")
        if found.state != "active" and not even_released:
            raise released(found)
        return found

    async def get(self, rid: str) -> None:
        self.send((await self._find(rid)).to_json())

    async def delete(self, rid: str) -> None:
        try:
            found = await self._find(rid, even_released=True)
        except ApiError:
            if self.caller.acts_for_others and re.fullmatch(ID_RE, rid):
                # the spawner frees what a cancelled start may still be reserving: a
                # reserve of this id that arrives later is refused
                await self.ctx.run(self.ctx.ledger.forget, rid)
            raise
        if not self.caller.may_change(found.owner):
            raise ApiError(403, "observers may read reservations, not release them")
        reason = f"released by {self.caller.name}"
        if SPAWN in self.caller.scopes and not self.caller.is_admin:
            # the spawner releases after it removed the container itself
            await self.ctx.run(self.ctx.ledger.release, rid, reason)
        elif not self.caller.acts_for_others:
            if found.state == "active" and not user_may_release(found):
                raise ApiError(409, how_to_stop(found), reason="workload-running")
            await self.ctx.run(self.ctx.ledger.release, rid, reason)
        else:
            try:
                outcome = await stop_and_release(self.ctx, found, self.caller.name, reason)
            except Refused as e:
                raise ApiError(e.status, e.message, reason="node-down") from None
            if outcome == "stopping":
                self.send(
                    {
                        "status": 202,
                        "message": f"stopping the workload of {rid}; the reservation is "
                        "freed when it has stopped",
                    },
                    status=202,
                )
                return
        self.set_status(204)
        self.finish()


def node_json(ledger: Ledger, name: str, monitor: Any = None) -> dict[str, Any]:
    st = ledger.state
    i = st.index[name]
    node = st.nodes[i]
    out: dict[str, Any] = {
        "name": node.name,
        "state": st.status[i],
        "drained": name in ledger.drained_nodes,
        "takes_slices": bool(st.sliceable[i]),
        "slice_problem": ledger.unsliceable.get(name),
        "labels": dict(node.labels),
        "gpu_runtime": node.gpu_runtime,
        "cpu_millicores": {
            "total": int(st.cpu_total[i]),
            "reserved": int(st.cpu_used[i]),
            "cores": node.cpu_millicores,
        },
        "memory_mib": {
            "total": int(st.ram_total[i]),
            "reserved": int(st.ram_used[i]),
            "physical": node.memory_mib,
        },
        "gpus": [
            {
                "index": g.index,
                "uuid": g.uuid,
                "model": g.model,
                "memory_mib": g.memory_mib,
                "reserved_memory_mib": int(st.mem_used[i, j]),
                "reserved_sm_percent": int(st.sm_used[i, j]),
                "reservations": int(st.holders[i, j]),
                "whole": bool(st.whole[i, j]),
            }
            for j, g in enumerate(node.gpus)
        ],
    }
    if monitor is not None:
        h = monitor.nodes[name]
        out["health"] = {
            "state": h.state,
            "engine": {"ok": h.engine_ok, "error": h.engine_error, "version": h.engine_version},
            "agent": (
                {"ok": h.agent_ok, "error": h.agent_error, "nvml_ok": h.nvml_ok}
                if h.has_agent
                else None
            ),
            "down_since": h.down_since,
            "inventory_mismatch": h.mismatch,
        }
        out["gpu_source"] = "agent" if name in ledger.inventory else "catalog"
    return out


class NodesHandler(BaseHandler):
    async def get(self) -> None:
        ledger = self.ctx.ledger
        mon = self.ctx.monitor
        nodes = await self.ctx.run(
            lambda: [node_json(ledger, n.name, mon) for n in ledger.state.nodes]
        )
        self.send({"nodes": nodes})


class NodeHandler(BaseHandler):
    async def get(self, name: str) -> None:
        if name not in self.ctx.ledger.state.index:
            raise ApiError(404, f"no node {name!r}")
        self.send(await self.ctx.run(node_json, self.ctx.ledger, name, self.ctx.monitor))


class NodeDrainHandler(BaseHandler):
    async def post(self, name: str, action: str) -> None:
        if not self.caller.is_admin:
            raise ApiError(403, f"{action} needs the scope custom:gpupool:admin")
        if name not in self.ctx.ledger.state.index:
            raise ApiError(404, f"no node {name!r}")
        await self.ctx.run(self.ctx.ledger.set_drained, name, action == "drain", self.caller.name)
        self.send(await self.ctx.run(node_json, self.ctx.ledger, name, self.ctx.monitor))


def routes(prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    from .datasets_api import dataset_routes
    from .health_api import health_routes
    from .trainings.api import training_routes
    from .usage_api import usage_routes

    api = prefix.rstrip("/") + "/api"
    return [
        *health_routes(api),
        *usage_routes(api),
        *dataset_routes(api),
        *training_routes(api),
        (rf"{prefix.rstrip('/')}/?", IndexHandler),
        (rf"{api}/?", RootHandler),
        (rf"{api}/openapi\.json", OpenApiHandler),
        (rf"{api}/specs", SpecsHandler),
        (rf"{api}/specs/({ID_RE})", SpecHandler),
        (rf"{api}/reservations", ReservationsHandler),
        (rf"{api}/reservations/({ID_RE})", ReservationHandler),
        (rf"{api}/nodes", NodesHandler),
        (rf"{api}/nodes/({ID_RE})", NodeHandler),
        (rf"{api}/nodes/({ID_RE})/(drain|undrain)", NodeDrainHandler),
        (rf"{api}/.*", NotFoundHandler),  # last: JSON 404 for paths no operation names
    ]
