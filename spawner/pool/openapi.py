"""The OpenAPI 3.1 document of the pool API, served at ``<prefix>/api/openapi.json``."""

from __future__ import annotations

from typing import Any

from .. import __version__


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERR = _ref("Error")
NOTICE: dict[str, Any] = {
    "type": "object",
    "required": ["reservation", "owner", "server_name", "spec", "kind", "message", "act_at"],
    "properties": {
        "reservation": {"type": "string"},
        "owner": {"type": "string"},
        "server_name": {"type": "string"},
        "spec": {"type": "string"},
        "kind": {"enum": ["gpu-idle"]},
        "message": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "act_at": {"type": ["string", "null"], "format": "date-time"},
        "stopping": {"type": "boolean"},
    },
}

_ERRORS = {
    "401": _json(_ERR, "No token was sent"),
    "403": _json(_ERR, "The token lacks the scope this needs"),
}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_PAGE = [
    {
        "name": "limit",
        "in": "query",
        "description": "items per page (default 200)",
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
    },
    {
        "name": "cursor",
        "in": "query",
        "description": "the 'next' of the previous page",
        "schema": {"type": "string"},
    },
]
_NEXT = {"type": ["string", "null"], "description": "cursor of the next page; null on the last"}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["status", "message"],
        "properties": {
            "status": {"type": "integer"},
            "message": {"type": "string", "description": "what was wrong and what is allowed"},
            "allowed": {"type": "array", "items": {"type": "string"}},
        },
    },
    "Capacity": {
        "type": "object",
        "description": "Nothing fits now: the reason is 'capacity', with one line per node.",
        "required": ["status", "reason", "message", "nodes"],
        "properties": {
            "status": {"type": "integer", "const": 503},
            "reason": {"type": "string", "const": "capacity"},
            "message": {"type": "string"},
            "nodes": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"node": {"type": "string"}, "why": {"type": "string"}},
                },
            },
        },
    },
    "GpuShare": {
        "type": "object",
        "properties": {
            "uuid": {"type": "string"},
            "index": {"type": "integer"},
            "memory_mib": {"type": "integer"},
            "sm": {"type": "integer", "description": "SM percent reserved on this GPU"},
            "whole": {"type": "boolean"},
        },
    },
    "Dataset": {
        "type": "object",
        "required": ["name", "format", "read_only", "mount"],
        "properties": {
            "name": {"type": "string"},
            "description": {"type": "string"},
            "format": {
                "type": "string",
                "enum": ["numpy", "csv", "image-folder", "parquet", "text", "other"],
            },
            "read_only": {"type": "boolean"},
            "mount": {"type": "string", "description": "where every server finds it"},
        },
    },
    "Spec": {
        "type": "object",
        "properties": {
            "slug": {"type": "string"},
            "display_name": {"type": "string"},
            "description": {"type": "string"},
            "gpus": {"type": "integer"},
            "gpu_models": {"type": "array", "items": {"type": "string"}},
            "gpu_memory_mib": {"type": ["integer", "null"]},
            "gpu_sm_percent": {"type": ["integer", "null"]},
            "slice": {"type": "boolean"},
            "cpu_millicores": {"type": "integer"},
            "memory_mib": {"type": "integer"},
            "disk_mib": {"type": ["integer", "null"]},
            "price_per_hour": {"type": "number"},
            "groups": {"type": "array", "items": {"type": "string"}},
            "images": {"type": "array", "items": {"type": "string"}},
            "kubernetes": {
                "type": "object",
                "description": "the same request in HAMi resource names",
            },
            "fits_now": {"type": "integer", "description": "how many more fit right now"},
        },
    },
    "ReservationRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["spec"],
        "properties": {
            "spec": {"type": "string"},
            "server_name": {"type": "string"},
            "kind": {"type": "string", "enum": ["notebook", "training", "manual"]},
            "owner": {"type": "string", "description": "admins only"},
            "id": {"type": "string", "description": "admins only"},
            "container": {"type": "string", "description": "admins only: the container's name"},
        },
    },
    "Reservation": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "owner": {"type": "string"},
            "spec": {"type": "string"},
            "kind": {"type": "string"},
            "server_name": {"type": "string"},
            "node": {"type": "string"},
            "gpus": {"type": "array", "items": _ref("GpuShare")},
            "cpu_millicores": {"type": "integer"},
            "memory_mib": {"type": "integer"},
            "disk_mib": {"type": "integer"},
            "price_per_hour": {"type": "number"},
            "container": {"type": ["string", "null"]},
            "port": {"type": ["integer", "null"], "description": "the server's port on its node"},
            "state": {"type": "string", "enum": ["active", "released"]},
            "created_at": {"type": "string", "format": "date-time"},
            "released_at": {"type": ["string", "null"], "format": "date-time"},
            "release_reason": {"type": ["string", "null"]},
        },
    },
    "Node": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "state": {"type": "string", "enum": ["up", "draining", "down"]},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "gpu_runtime": {"type": "string"},
            "cpu_millicores": {"type": "object"},
            "memory_mib": {"type": "object"},
            "gpus": {"type": "array", "items": {"type": "object"}},
            "drained": {"type": "boolean"},
            "takes_slices": {
                "type": "boolean",
                "description": "false while the node's agent reports HAMi-core not installed "
                "as sliced containers need it (slice_problem says what)",
            },
            "slice_problem": {"type": ["string", "null"]},
            "gpu_source": {
                "type": "string",
                "enum": ["agent", "catalog"],
                "description": "where the GPU list comes from: the node's agent or nodes.yaml",
            },
            "health": {
                "type": "object",
                "description": "engine and agent probes: state unknown | up | down",
            },
        },
    },
    "Alert": {
        "type": "object",
        "properties": {
            "key": {"type": "string"},
            "kind": {
                "type": "string",
                "description": "node-down, gpu-missing, gpu-temperature, xid, container-gone, "
                "orphan-container, inventory-mismatch, inventory-conflict, nvml-unavailable, "
                "over-slice, hami-core-missing",
            },
            "severity": {"type": "string", "enum": ["info", "warning", "critical"]},
            "message": {"type": "string"},
            "node": {"type": ["string", "null"]},
            "gpu": {"type": ["string", "null"]},
            "reservation": {"type": ["string", "null"]},
            "since": {"type": "number"},
            "updated": {"type": "number"},
            "count": {"type": "integer"},
            "details": {"type": "object"},
        },
    },
}


def openapi_document(prefix: str = "/services/gpupool/") -> dict[str, Any]:
    from .trainings.api import OPENAPI_PATHS, OPENAPI_SCHEMAS

    doc = _document(prefix)
    doc["components"]["schemas"] = {**SCHEMAS, **OPENAPI_SCHEMAS}
    doc["paths"].update(OPENAPI_PATHS)
    return doc


def _document(prefix: str) -> dict[str, Any]:
    server = prefix.rstrip("/") + "/api"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gpupool pool API",
            "version": __version__,
            "description": "GPU specs, reservations and nodes of a gpupool JupyterHub. "
            "Authenticate with a hub token: 'Authorization: token <token>'. "
            "Scopes: custom:gpupool:use (own reservations), custom:gpupool:observe (read all), "
            "custom:gpupool:admin (everything). Another user's reservation answers 404.",
        },
        "servers": [{"url": server}],
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "hubToken": {"type": "apiKey", "in": "header", "name": "Authorization"},
            },
        },
        "security": [{"hubToken": []}],
        "paths": {
            "/": {
                "get": {
                    "summary": "Index of the API",
                    "responses": {"200": {"description": "links"}, **_ERRORS},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": {"description": "OpenAPI"}},
                }
            },
            "/specs": {
                "get": {
                    "summary": "Specs you may use, each with how many more fit right now",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {"specs": {"type": "array", "items": _ref("Spec")}},
                            },
                            "specs",
                        ),
                        **_ERRORS,
                    },
                }
            },
            "/specs/{slug}": {
                "get": {
                    "summary": "One spec",
                    "parameters": [
                        {
                            "name": "slug",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": _json(_ref("Spec"), "the spec"),
                        "404": _json(_ERR, "no such spec for you"),
                        **_ERRORS,
                    },
                }
            },
            "/datasets": {
                "get": {
                    "summary": "The dataset catalog: what every server finds under /datasets",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "datasets": {"type": "array", "items": _ref("Dataset")}
                                },
                            },
                            "datasets",
                        ),
                        **_ERRORS,
                    },
                }
            },
            "/datasets/{name}": {
                "get": {
                    "summary": "One dataset",
                    "parameters": [
                        {
                            "name": "name",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": _json(_ref("Dataset"), "the dataset"),
                        "404": _json(_ERR, "no such dataset"),
                        **_ERRORS,
                    },
                }
            },
            "/reservations": {
                "get": {
                    "summary": "Your reservations (all users' with custom:gpupool:observe)",
                    "parameters": [
                        {"name": "owner", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "state",
                            "in": "query",
                            "schema": {"type": "string", "enum": ["active", "all"]},
                        },
                        *_PAGE,
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "reservations": {"type": "array", "items": _ref("Reservation")},
                                    "next": _NEXT,
                                },
                            },
                            "reservations, oldest first; 'next' is the cursor of the next page",
                        ),
                        "400": _json(_ERR, "a limit or cursor this API does not take"),
                        **_ERRORS,
                    },
                },
                "post": {
                    "summary": "Reserve GPUs for a spec (atomic; never oversubscribes)",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("ReservationRequest")}},
                    },
                    "responses": {
                        "201": _json(_ref("Reservation"), "placed"),
                        "400": _json(
                            _ERR, "unknown field, spec or kind; the message lists what is allowed"
                        ),
                        "409": _json(_ERR, "reservation id already used"),
                        "503": _json(_ref("Capacity"), "nothing fits now"),
                        **_ERRORS,
                    },
                },
            },
            "/reservations/{id}": {
                "get": {
                    "summary": "One reservation",
                    "parameters": [_ID],
                    "responses": {
                        "200": _json(_ref("Reservation"), "found"),
                        "404": _json(_ERR, "not found or not yours"),
                        **_ERRORS,
                    },
                },
                "delete": {
                    "summary": "Release a reservation (releasing a released one succeeds). "
                    "Releasing means stopping: an admin's release stops the server or "
                    "training that holds it; a user stops their server or cancels their "
                    "training instead",
                    "parameters": [_ID],
                    "responses": {
                        "202": _json(_ERR, "its workload is being stopped; freed after"),
                        "204": {"description": "released"},
                        "404": _json(_ERR, "not found or not yours"),
                        "409": _json(_ERR, "it holds your running server or training"),
                        "429": _json(_ERR, "too many changes; see Retry-After"),
                        "503": _json(_ERR, "its node does not answer; kept until it does"),
                        **_ERRORS,
                    },
                },
            },
            "/nodes": {
                "get": {
                    "summary": "Nodes with their GPUs and what is reserved on them",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {"nodes": {"type": "array", "items": _ref("Node")}},
                            },
                            "nodes",
                        ),
                        **_ERRORS,
                    },
                }
            },
            "/nodes/{name}": {
                "get": {
                    "summary": "One node",
                    "parameters": [_NAME],
                    "responses": {
                        "200": _json(_ref("Node"), "found"),
                        "404": _json(_ERR, "no such node"),
                        **_ERRORS,
                    },
                }
            },
            "/nodes/{name}/drain": {
                "post": {
                    "summary": "Stop placing new work on a node (running work stays)",
                    "parameters": [_NAME],
                    "responses": {
                        "200": _json(_ref("Node"), "drained"),
                        "404": _json(_ERR, "no such node"),
                        **_ERRORS,
                    },
                }
            },
            "/nodes/{name}/history": {
                "get": {
                    "summary": "Short metrics history of the node's GPUs (observers)",
                    "parameters": [_NAME],
                    "responses": {
                        "200": _json({"type": "object"}, "samples per GPU"),
                        "404": _json(_ERR, "no such node"),
                        **_ERRORS,
                    },
                }
            },
            "/health": {
                "get": {
                    "summary": "Every node's engine and agent health (observers)",
                    "responses": {"200": _json({"type": "object"}, "nodes"), **_ERRORS},
                }
            },
            "/alerts": {
                "get": {
                    "summary": "Active alerts, most severe first; ?history=1 adds raises and clears",
                    "parameters": [
                        {"name": "node", "in": "query", "schema": {"type": "string"}},
                        {"name": "history", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {"alerts": {"type": "array", "items": _ref("Alert")}},
                            },
                            "alerts",
                        ),
                        **_ERRORS,
                    },
                }
            },
            "/reconcile": {
                "post": {
                    "summary": "Reconcile containers against reservations now (admins)",
                    "parameters": [{"name": "node", "in": "query", "schema": {"type": "string"}}],
                    "responses": {
                        "200": _json({"type": "object"}, "what each node's pass did"),
                        "404": _json(_ERR, "no such node"),
                        **_ERRORS,
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
                        **_ERRORS,
                    },
                }
            },
            "/notices": {
                "get": {
                    "summary": "Notices for the caller's servers (GPU idle: when the pool stops it)",
                    "parameters": [
                        {
                            "name": "all",
                            "in": "query",
                            "required": False,
                            "schema": {"enum": ["1"]},
                            "description": "every user's (observers)",
                        }
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["notices"],
                                "properties": {"notices": {"type": "array", "items": NOTICE}},
                            },
                            "notices of active reservations, oldest first",
                        ),
                        **_ERRORS,
                    },
                }
            },
            "/reservations/{id}/metrics": {
                "get": {
                    "summary": "Metrics history of a reservation's GPUs (memory used by its processes)",
                    "parameters": [_ID],
                    "responses": {
                        "200": _json({"type": "object"}, "samples"),
                        "404": _json(_ERR, "not found or not yours"),
                        **_ERRORS,
                    },
                }
            },
            "/reservations/{id}/started": {
                "post": {
                    "summary": "The spawner reports the reservation's container runs",
                    "parameters": [_ID],
                    "requestBody": {
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["container_id"],
                                    "properties": {"container_id": {"type": "string"}},
                                }
                            }
                        }
                    },
                    "responses": {
                        "204": {"description": "recorded"},
                        "404": _json(_ERR, "not found or not yours"),
                        "409": _json(_ERR, "the reservation is released"),
                        **_ERRORS,
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
                                            "minLength": 1,
                                            "description": "kept as the release reason "
                                            "(cut to 255 characters)",
                                        }
                                    },
                                }
                            }
                        }
                    },
                    "responses": {
                        "202": _json(_ERR, "kept; the stop is finished when the node answers"),
                        "404": _json(_ERR, "not found or not yours"),
                        "409": _json(_ERR, "the reservation is released"),
                        **_ERRORS,
                    },
                }
            },
            "/usage": {
                "get": {
                    "summary": "GPU-hours and cost of a month by spec, with the quota left "
                    "(own; observers: ?user= anyone, ?all=1 everyone)",
                    "parameters": [
                        {"name": "month", "in": "query", "schema": {"type": "string"}},
                        {"name": "user", "in": "query", "schema": {"type": "string"}},
                        {"name": "all", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": _json({"type": "object"}, "usage"),
                        "400": _json(_ERR, "month is not YYYY-MM"),
                        "404": _json(_ERR, "no such user for you"),
                        **_ERRORS,
                    },
                }
            },
            "/usage.csv": {
                "get": {
                    "summary": "Every user's month by spec, or every group's, as CSV (observers)",
                    "parameters": [
                        {"name": "month", "in": "query", "schema": {"type": "string"}},
                        {"name": "by", "in": "query", "schema": {"enum": ["user", "group"]}},
                    ],
                    "responses": {
                        "200": {
                            "description": "month,user,spec,hours,gpu_hours,cost or "
                            "month,group,users,hours,gpu_hours,cost",
                            "content": {"text/csv": {"schema": {"type": "string"}}},
                        },
                        **_ERRORS,
                    },
                }
            },
            "/nodes/{name}/undrain": {
                "post": {
                    "summary": "Place work on a node again",
                    "parameters": [_NAME],
                    "responses": {
                        "200": _json(_ref("Node"), "undrained"),
                        "404": _json(_ERR, "no such node"),
                        **_ERRORS,
                    },
                }
            },
        },
    }
