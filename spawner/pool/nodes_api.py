"""API of the nodes: each GPU node with its GPUs, what is reserved on them and its health;
admins drain a node (no new work placed on it; running work stays) and undrain it."""

from __future__ import annotations

from typing import Any

from .ledger import Ledger
from .openapi_parts import AUTH_ERRORS, ERR, json_answer, path_param, ref
from .patterns import ID_RE
from .web import ApiError, BaseHandler


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


default_handlers: list[tuple[str, type[BaseHandler]]] = [
    (r"/api/nodes", NodesHandler),
    (rf"/api/nodes/({ID_RE})", NodeHandler),
    (rf"/api/nodes/({ID_RE})/(drain|undrain)", NodeDrainHandler),
]

_NAME = path_param("name")

OPENAPI_PATHS: dict[str, Any] = {
    "/nodes": {
        "get": {
            "summary": "Nodes with their GPUs and what is reserved on them",
            "responses": {
                "200": json_answer(
                    {
                        "type": "object",
                        "properties": {"nodes": {"type": "array", "items": ref("Node")}},
                    },
                    "nodes",
                ),
                **AUTH_ERRORS,
            },
        }
    },
    "/nodes/{name}": {
        "get": {
            "summary": "One node",
            "parameters": [_NAME],
            "responses": {
                "200": json_answer(ref("Node"), "found"),
                "404": json_answer(ERR, "no such node"),
                **AUTH_ERRORS,
            },
        }
    },
    "/nodes/{name}/drain": {
        "post": {
            "summary": "Stop placing new work on a node (running work stays)",
            "parameters": [_NAME],
            "responses": {
                "200": json_answer(ref("Node"), "drained"),
                "404": json_answer(ERR, "no such node"),
                **AUTH_ERRORS,
            },
        }
    },
    "/nodes/{name}/undrain": {
        "post": {
            "summary": "Place work on a node again",
            "parameters": [_NAME],
            "responses": {
                "200": json_answer(ref("Node"), "undrained"),
                "404": json_answer(ERR, "no such node"),
                **AUTH_ERRORS,
            },
        }
    },
}
