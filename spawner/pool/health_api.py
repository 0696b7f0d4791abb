"""API of pool health: alerts, reconcile on demand, metrics history, Prometheus gauges.

Observers (custom:gpupool:observe) read the pool's health; admins also reconcile on
demand. A user reads the metrics of their own reservations; another user's answer 404,
the same as one that does not exist.
"""

from __future__ import annotations

import re
from typing import Any

from gpupool.exposition import Family, render

from .ledger import STOP_PENDING
from .openapi_parts import AUTH_ERRORS, ERR, FLAG, json_answer, path_param, query, ref
from .patterns import CONTAINER_ID_RE, ID_RE
from .web import ApiError, BaseHandler


class _HealthHandler(BaseHandler):
    @property
    def monitor(self) -> Any:
        m = self.ctx.monitor
        if m is None:
            raise ApiError(503, "the pool service runs without its health monitor")
        return m

    def need_observe(self) -> None:
        if not self.caller.can_observe:
            raise ApiError(403, "reading the pool's health needs custom:gpupool:observe")


class HealthHandler(_HealthHandler):
    async def get(self) -> None:
        self.need_observe()
        m = self.monitor
        self.send(
            {
                "nodes": [m.node_json(n.name) for n in self.ctx.catalog.nodes],
                "alerts": len(m.alerts.list()),
            }
        )


class AlertsHandler(_HealthHandler):
    async def get(self) -> None:
        self.need_observe()
        alerts = self.monitor.alerts
        node = self.get_argument("node", None)
        body: dict[str, Any] = {"alerts": [a.to_json() for a in alerts.list(node)]}
        if self.choice("history", ("1", "0"), "0") == "1":
            body["history"] = list(alerts.history)
        self.send(body)


class ReconcileHandler(_HealthHandler):
    async def post(self) -> None:
        if not self.caller.is_admin:
            raise ApiError(403, "reconcile needs the scope custom:gpupool:admin")
        node = self.get_argument("node", None)
        if node is not None and self.ctx.catalog.node(node) is None:
            raise ApiError(404, f"no node {node!r}")
        self.send({"nodes": await self.monitor.reconcile(node)})


class NodeHistoryHandler(_HealthHandler):
    async def get(self, name: str) -> None:
        self.need_observe()
        if name not in self.ctx.ledger.state.index:
            raise ApiError(404, f"no node {name!r}")
        node = self.ctx.ledger.state.nodes[self.ctx.ledger.state.index[name]]
        hist = self.monitor.history.gpus
        self.send(
            {
                "node": name,
                "gpus": [
                    {"index": g.index, "uuid": g.uuid, "samples": list(hist.get(g.uuid, ()))}
                    for g in node.gpus
                ],
            }
        )


class ReservationMetricsHandler(_HealthHandler):
    async def get(self, rid: str) -> None:
        found = await self.visible_reservation(rid)
        samples = list(self.monitor.history.reservations.get(rid, ()))
        self.send({"reservation": rid, "state": found.state, "samples": samples})


class ReservationStartedHandler(_HealthHandler):
    """The spawner says its container runs: from now on, the container vanishing frees
    the reservation at the next reconcile pass (not only after the start grace)."""

    async def post(self, rid: str) -> None:
        found = await self.ctx.run(self.ctx.ledger.get, rid)
        if found is None or not self.caller.may_see(found.owner):
            raise ApiError(404, f"no reservation {rid!r}")
        if not self.caller.acts_for_others:
            raise ApiError(403, "only the hub's spawner and pool admins report containers")
        data = self.body({"container_id"})
        cid = data.get("container_id")
        if not isinstance(cid, str) or not re.fullmatch(CONTAINER_ID_RE, cid):
            raise ApiError(400, "container_id must be a Docker container id (hex)")
        if found.state != "active":
            raise ApiError(409, f"reservation {rid} is {found.state}")
        await self.ctx.run(self.ctx.ledger.mark_seen, {rid: cid})
        self.set_status(204)
        self.finish()


class ReservationStopHandler(_HealthHandler):
    """The hub's spawner stopped a server while its node did not answer: the container may
    still run, so the reservation is kept, with a pending stop that the reconciler finishes
    (container removed, then the reservation freed) when the node answers again."""

    async def post(self, rid: str) -> None:
        found = await self.ctx.run(self.ctx.ledger.get, rid)
        if found is None or not self.caller.may_see(found.owner):
            raise ApiError(404, f"no reservation {rid!r}")
        if not self.caller.acts_for_others:
            raise ApiError(403, "only the hub's spawner and pool admins leave stops pending")
        data = self.body({"reason"})
        reason = data.get("reason", f"stopped by {self.caller.name}")
        if not isinstance(reason, str) or not reason.strip():
            raise ApiError(400, "reason must be a non-empty string")
        if found.state != "active":
            raise ApiError(409, f"reservation {rid} is {found.state}")
        message = (
            f"Your server on {found.node} was stopped while the node did not answer. Its "
            "container may still run there; the pool removes it and frees its GPUs as soon "
            "as the node answers. Your home folder is kept."
        )
        if found.kind == "training":
            message = message.replace("Your server", "Your training").replace(
                " Your home folder is kept.", ""
            )
        ok = await self.ctx.run(
            self.ctx.ledger.set_notice, rid, STOP_PENDING, message, None, reason.strip()[:255]
        )
        if not ok:
            raise ApiError(409, f"reservation {rid} is no longer active")
        self.send(
            {
                "status": 202,
                "message": f"reservation {rid} is kept until node {found.node} answers; then "
                "its container is removed and the reservation freed",
            },
            status=202,
        )


class PrometheusHandler(_HealthHandler):
    """Pool gauges in Prometheus text format (scrape with an observer's token)."""

    async def get(self) -> None:
        self.need_observe()
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(render(pool_families(self.ctx.ledger, self.monitor)))


def pool_families(ledger: Any, monitor: Any) -> list[Family]:
    st = ledger.state
    up = Family("gpupool_node_up", "gauge", "1 if the node's engine and agent answer")
    sched = Family("gpupool_node_schedulable", "gauge", "1 if the node takes new work")
    gpus = Family("gpupool_gpus", "gauge", "GPUs per node and model")
    total = Family("gpupool_gpu_memory_total_mib", "gauge", "GPU memory, MiB")
    reserved = Family("gpupool_gpu_memory_reserved_mib", "gauge", "GPU memory reserved, MiB")
    sm = Family("gpupool_gpu_sm_reserved_percent", "gauge", "SM share reserved, percent")
    holders = Family("gpupool_gpu_reservations", "gauge", "reservations holding a share")
    res = Family("gpupool_reservations", "gauge", "active reservations per node and kind")
    alerts = Family("gpupool_alerts", "gauge", "active alerts per kind and severity")
    kinds: dict[tuple[str, str], int] = {}
    for r in ledger.list():
        kinds[(r.node, r.kind)] = kinds.get((r.node, r.kind), 0) + 1
    for i, node in enumerate(st.nodes):
        h = monitor.nodes.get(node.name)
        up.add(1 if h is not None and h.state == "up" else 0, node=node.name)
        sched.add(int(bool(st.schedulable[i])), node=node.name)
        models: dict[str, int] = {}
        for j, g in enumerate(node.gpus):
            models[g.model] = models.get(g.model, 0) + 1
            labels = {"node": node.name, "gpu": str(g.index), "UUID": g.uuid, "modelName": g.model}
            total.add(int(st.mem_total[i, j]), **labels)
            reserved.add(int(st.mem_used[i, j]), **labels)
            sm.add(int(st.sm_used[i, j]), **labels)
            holders.add(int(st.holders[i, j]), **labels)
        for model, n in sorted(models.items()):
            gpus.add(n, node=node.name, modelName=model)
    for (node_name, kind), n in sorted(kinds.items()):
        res.add(n, node=node_name, kind=kind)
    counts: dict[tuple[str, str], int] = {}
    for a in monitor.alerts.list():
        counts[(a.kind, a.severity)] = counts.get((a.kind, a.severity), 0) + 1
    for (kind, severity), n in sorted(counts.items()):
        alerts.add(n, kind=kind, severity=severity)
    return [up, sched, gpus, total, reserved, sm, holders, res, alerts]


class NoticesHandler(BaseHandler):
    """``GET notices[?all=1]``: what the pool tells the caller's servers (today: their GPUs
    are idle and when the pool stops them). The lab side polls it with its server token;
    observers may ask for every user's with ``all=1``."""

    async def get(self) -> None:
        every = self.choice("all", ("1", "0"), "0") == "1"
        if every and not self.caller.can_observe:
            raise ApiError(403, "every user's notices need custom:gpupool:observe")
        if not every and not self.caller.can_use:
            raise ApiError(403, "notices need custom:gpupool:use")
        owner = None if every else self.caller.name
        self.send({"notices": await self.ctx.run(self.ctx.ledger.notices, owner)})


default_handlers: list[tuple[str, type[BaseHandler]]] = [
    (r"/api/health", HealthHandler),
    (r"/api/alerts", AlertsHandler),
    (r"/api/notices", NoticesHandler),
    (r"/api/reconcile", ReconcileHandler),
    (r"/api/metrics", PrometheusHandler),
    (rf"/api/nodes/({ID_RE})/history", NodeHistoryHandler),
    (rf"/api/reservations/({ID_RE})/metrics", ReservationMetricsHandler),
    (rf"/api/reservations/({ID_RE})/started", ReservationStartedHandler),
    (rf"/api/reservations/({ID_RE})/stop", ReservationStopHandler),
]

NOTICE: dict[str, Any] = {
    "type": "object",
    "required": ["reservation", "owner", "server_name", "spec", "kind", "message", "act_at"],
    "properties": {
        "reservation": {"type": "string"},
        "owner": {"type": "string"},
        "server_name": {"type": "string"},
        "spec": {"type": "string"},
        "kind": {
            "enum": ["gpu-idle", "over-slice", "stop-pending"],
            "description": "gpu-idle: stopped at act_at unless used; over-slice: its "
            "processes use more GPU memory than the slice; stop-pending: stopped while its "
            "node did not answer, finished when it does",
        },
        "message": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "act_at": {"type": ["string", "null"], "format": "date-time"},
        "stopping": {"type": "boolean"},
    },
}
_ID = path_param("id")
_NAME = path_param("name")

OPENAPI_PATHS: dict[str, Any] = {
    "/nodes/{name}/history": {
        "get": {
            "summary": "Short metrics history of the node's GPUs (observers)",
            "parameters": [_NAME],
            "responses": {
                "200": json_answer({"type": "object"}, "samples per GPU"),
                "404": json_answer(ERR, "no such node"),
                **AUTH_ERRORS,
            },
        }
    },
    "/health": {
        "get": {
            "summary": "Every node's engine and agent health (observers)",
            "responses": {"200": json_answer({"type": "object"}, "nodes"), **AUTH_ERRORS},
        }
    },
    "/alerts": {
        "get": {
            "summary": "Active alerts, most severe first; ?history=1 adds raises and clears",
            "parameters": [
                query("node", {"type": "string"}, "one node's only"),
                query("history", FLAG, "1: add the recent raises and clears"),
            ],
            "responses": {
                "200": json_answer(
                    {
                        "type": "object",
                        "properties": {"alerts": {"type": "array", "items": ref("Alert")}},
                    },
                    "alerts",
                ),
                **AUTH_ERRORS,
            },
        }
    },
    "/reconcile": {
        "post": {
            "summary": "Reconcile containers against reservations now (admins)",
            "parameters": [query("node", {"type": "string"}, "one node only")],
            "responses": {
                "200": json_answer({"type": "object"}, "what each node's pass did"),
                "404": json_answer(ERR, "no such node"),
                **AUTH_ERRORS,
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Pool gauges in Prometheus text format (observers)",
            "responses": {
                "200": {
                    "description": "text/plain; version=0.0.4",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **AUTH_ERRORS,
            },
        }
    },
    "/notices": {
        "get": {
            "summary": "Notices for the caller's servers (GPU idle: when the pool stops it)",
            "parameters": [query("all", FLAG, "1: every user's (observers)")],
            "responses": {
                "200": json_answer(
                    {
                        "type": "object",
                        "required": ["notices"],
                        "properties": {"notices": {"type": "array", "items": NOTICE}},
                    },
                    "notices of active reservations, oldest first",
                ),
                **AUTH_ERRORS,
            },
        }
    },
    "/reservations/{id}/metrics": {
        "get": {
            "summary": "Metrics history of a reservation's GPUs (memory used by its processes)",
            "parameters": [_ID],
            "responses": {
                "200": json_answer({"type": "object"}, "samples"),
                "404": json_answer(ERR, "not found or not yours"),
                **AUTH_ERRORS,
            },
        }
    },
    "/reservations/{id}/started": {
        "post": {
            "summary": "The spawner reports the reservation's container runs",
            "parameters": [_ID],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["container_id"],
                            "properties": {
                                "container_id": {
                                    "type": "string",
                                    "pattern": f"^{CONTAINER_ID_RE}$",
                                    "description": "the Docker id (hex)",
                                }
                            },
                        }
                    }
                },
            },
            "responses": {
                "204": {"description": "recorded"},
                "400": json_answer(ERR, "the body is not what this document allows"),
                "404": json_answer(ERR, "not found or not yours"),
                "409": json_answer(ERR, "the reservation is released"),
                **AUTH_ERRORS,
            },
        }
    },
    "/reservations/{id}/stop": {
        "post": {
            "summary": "The spawner stopped the workload while its node did not answer: "
            "keep the reservation, remove its container and free it when the node "
            "answers (the hub's spawner and pool admins)",
            "parameters": [_ID],
            "requestBody": {
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "reason": {
                                    "type": "string",
                                    "pattern": "\\S",
                                    "description": "kept as the release reason "
                                    "(cut to 255 characters)",
                                }
                            },
                        }
                    }
                }
            },
            "responses": {
                "202": json_answer(ERR, "kept; the stop is finished when the node answers"),
                "400": json_answer(ERR, "the body is not what this document allows"),
                "404": json_answer(ERR, "not found or not yours"),
                "409": json_answer(ERR, "the reservation is released"),
                **AUTH_ERRORS,
            },
        }
    },
}
