"""REST API of the pool service, under ``<service prefix>/api/``.

One handler class per resource, one scope check per verb, the route table at the end.
Asking for another user's reservation answers 404, exactly as for one that does not exist.
"""

from __future__ import annotations

import asyncio
import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tornado import web
from tornado.escape import url_escape
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from ..catalog.models import Catalog, Spec
from .access import ADMIN, OBSERVE, SPAWN, Caller
from .ledger import Ledger, LedgerError, Reservation
from .limits import (
    DEFAULT_MAX_BODY,
    WRITES,
    BadPage,
    RateLimiter,
    time_cursor,
    time_page,
)
from .openapi import openapi_document
from .release import Refused, how_to_stop, stop_and_release, user_may_release
from .scheduler import Rejection

ID_RE = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
KINDS = ("notebook", "training", "manual")
RESERVE_FIELDS = {"spec", "server_name", "kind", "owner", "id", "container"}


class ApiError(web.HTTPError):
    """An HTTP error with a JSON body; ``extra`` is merged into it."""

    def __init__(
        self, status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any
    ):
        super().__init__(status, log_message=message)
        self.message = message
        self.extra = extra
        self.headers = headers or {}


class PoolContext:
    """What handlers share: the catalog, the ledger, and one thread for ledger calls
    (blocking SQL stays off the event loop; one thread keeps writes in order)."""

    def __init__(self, catalog: Catalog, ledger: Ledger, hub_auth: Any):
        self.catalog = catalog
        self.ledger = ledger
        self.hub_auth = hub_auth
        self.monitor: Any = None  # the health monitor (health.Monitor), set by the service
        self.trainings: Any = None  # the trainings dispatcher (trainings.dispatch), likewise
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpupool-ledger")
        limits = catalog.pool.limits
        self.write_limiter = RateLimiter(limits.writes_per_minute / 60, limits.write_burst)

    async def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))

    async def owner(self, name: str) -> Caller:
        """The hub's user ``name`` (its groups decide the specs it may use), looked up
        with the service's own token; an unknown user answers 404."""
        url = f"{self.hub_auth.api_url}/users/{url_escape(name, plus=False)}"
        req = HTTPRequest(url, headers={"Authorization": f"token {self.hub_auth.api_token}"})
        try:
            resp = await AsyncHTTPClient().fetch(req)
        except HTTPClientError as e:
            if e.code == 404:
                raise ApiError(404, f"no hub user {name!r}") from None
            raise ApiError(502, f"the hub did not answer for user {name!r}: {e}") from None
        model = json.loads(resp.body)
        roles = set(model.get("roles") or ())
        groups = frozenset(model.get("groups") or ())
        scopes = {OBSERVE} if roles & {"gpupool-admin", "gpupool-observer"} else set()
        if model.get("admin") or self.catalog.is_pool_admin(name, groups):
            scopes.add(ADMIN)
        return Caller(name=name, kind="user", scopes=frozenset(scopes), groups=groups)

    async def stop_server(self, user: str, server_name: str = "") -> bool:
        """Ask the hub to stop a user's server (its spawner then frees the reservation),
        with the service's token (hub scope ``servers``). False if the hub has no such
        server; a refusal or a hub that does not answer is a 502 that says so."""
        # the hub answers a stop of a server that is not running with success as well:
        # ask first, so that 'stopped' means a spawner will free the reservation
        auth = {"Authorization": f"token {self.hub_auth.api_token}"}
        user_url = f"{self.hub_auth.api_url}/users/{url_escape(user, plus=False)}"
        try:
            resp = await AsyncHTTPClient().fetch(HTTPRequest(user_url, headers=auth))
            if server_name not in (json.loads(resp.body).get("servers") or {}):
                return False
        except HTTPClientError as e:
            if e.code == 404:
                return False
            raise ApiError(502, f"the hub did not answer for user {user!r}: {e}") from None
        except OSError as e:
            raise ApiError(502, f"the hub did not answer: {e}") from None
        path = f"users/{url_escape(user, plus=False)}/server"
        if server_name:
            path += f"s/{url_escape(server_name, plus=False)}"
        req = HTTPRequest(
            f"{self.hub_auth.api_url}/{path}",
            method="DELETE",
            headers={"Authorization": f"token {self.hub_auth.api_token}"},
            request_timeout=60,
        )
        try:
            await AsyncHTTPClient().fetch(req)
        except HTTPClientError as e:
            if e.code == 404:
                return False
            detail = ""
            if e.response is not None and e.response.body:
                try:
                    detail = json.loads(e.response.body).get("message", "")
                except ValueError:
                    pass
            raise ApiError(
                502, f"the hub did not stop {user}'s server: {e.code} {detail}".strip()
            ) from None
        except OSError as e:
            raise ApiError(502, f"the hub did not answer: {e}") from None
        return True


class BaseHandler(web.RequestHandler):
    caller: Caller
    auth_required = True

    @property
    def ctx(self) -> PoolContext:
        return self.settings["pool"]

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    max_body = DEFAULT_MAX_BODY  # bytes this endpoint reads; more answers 413

    async def prepare(self) -> None:
        size = len(self.request.body or b"")
        if size > self.max_body:
            raise ApiError(
                413,
                f"the request body is {size} bytes; this endpoint takes at most "
                f"{self.max_body} bytes",
            )
        if not self.auth_required:
            return
        header = self.request.headers.get("Authorization", "")
        m = re.match(r"(?:token|bearer)\s+(\S+)$", header, re.IGNORECASE)
        if not m:
            raise ApiError(401, "a hub token is required: send 'Authorization: token <token>'")
        model = await self.ctx.hub_auth.user_for_token(m.group(1), sync=False)
        if not model:
            raise ApiError(403, "the hub does not accept this token")
        self.caller = Caller.from_hub_model(model)
        if not (self.caller.can_use or self.caller.can_observe or self.caller.acts_for_others):
            raise ApiError(
                403, "this token has no gpupool scope (custom:gpupool:use, :observe or :admin)"
            )
        if (
            self.request.method in WRITES
            and self.caller.kind == "user"
            and not self.caller.acts_for_others
        ):
            wait = self.ctx.write_limiter.take(self.caller.name)
            if wait:
                after = RateLimiter.retry_after(wait)
                limits = self.ctx.catalog.pool.limits
                raise ApiError(
                    429,
                    f"too many changes: at most {limits.writes_per_minute:g} per minute "
                    f"({limits.write_burst} at once) per user; retry in {after} s",
                    headers={"Retry-After": after},
                    reason="rate-limit",
                )

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        body: dict[str, Any] = {"status": status_code}
        if isinstance(exc, ApiError):
            body["message"] = exc.message
            body.update(exc.extra)
            for name, value in exc.headers.items():
                self.set_header(name, value)
        else:
            body["message"] = self._reason
        self.finish(json.dumps(body))

    def send(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(obj))

    def json_object(self) -> dict[str, Any]:
        """The request body, a JSON object; else 400 saying what it is not."""
        try:
            data = json.loads(self.request.body or b"{}")
        except RecursionError:
            raise ApiError(400, "request body is not JSON: nested too deeply") from None
        except ValueError as e:  # not JSON, or not UTF-8
            raise ApiError(400, f"request body is not JSON: {e}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "request body must be a JSON object")
        return data

    def body(self, allowed: set[str]) -> dict[str, Any]:
        data = self.json_object()
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ApiError(
                400, f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
            )
        return data

    def specs_for(self, caller: Caller) -> list[Spec]:
        """The specs ``caller`` sees: those they may use, and every one for observers."""
        if caller.can_observe:
            return list(self.ctx.catalog.specs)
        return self.usable_by(caller)

    def usable_by(self, caller: Caller) -> list[Spec]:
        """The specs ``caller`` may use (Catalog.usable_specs: the form's rule too)."""
        return list(
            self.ctx.catalog.usable_specs(caller.name, caller.groups, hub_admin=caller.is_admin)
        )


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


INDEX_HTML = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>gpupool</title>
<style>body{font-family:system-ui,sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem;line-height:1.5}
code{background:#f3f3f3;padding:0 .3em}</style></head><body>
<h1>gpupool pool service</h1>
<p><a href="{base}usage">My usage</a>: your GPU-hours, cost and quota this month.</p>
<p><a href="{base}admin">Pool dashboard</a>: nodes, GPUs, reservations and alerts (pool admins
and observers).</p>
<p>The GPU pool's REST API is at <a href="api/">api/</a>; its OpenAPI document at
<a href="api/openapi.json">api/openapi.json</a>.</p>
<p>Call it with a hub token (hub home &rarr; Token):
<code>curl -H "Authorization: token $TOKEN" {base}api/specs</code></p>
</body></html>"""


class IndexHandler(BaseHandler):
    """The service root, linked from the hub's Services menu."""

    auth_required = False

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(INDEX_HTML.replace("{base}", self.settings.get("prefix", "/")))


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
        include_released = self.get_argument("state", "active") == "all"
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
            raise ApiError(400, f"spec {what}; allowed: {names}", allowed=[s.slug for s in allowed])
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
    async def _find(self, rid: str) -> Reservation:
        found = await self.ctx.run(self.ctx.ledger.get, rid)
        if found is None or not self.caller.may_see(found.owner):
            raise ApiError(404, f"no reservation {rid!r}")
        return found

    async def get(self, rid: str) -> None:
        self.send((await self._find(rid)).to_json())

    async def delete(self, rid: str) -> None:
        try:
            found = await self._find(rid)
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
        "cpu_millicores": {"total": int(st.cpu_total[i]), "reserved": int(st.cpu_used[i])},
        "memory_mib": {"total": int(st.ram_total[i]), "reserved": int(st.ram_used[i])},
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
    ]
