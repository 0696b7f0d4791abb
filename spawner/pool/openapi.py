"""The OpenAPI 3.1 document of the pool API, served at ``<prefix>/api/openapi.json``."""

from __future__ import annotations

from typing import Any

from .. import __version__
from .accounting import MONTH_RE
from .base import ID_RE
from .openapi_parts import ERR as _ERR
from .openapi_parts import FLAG, path_param, query
from .openapi_parts import json_answer as _json
from .openapi_parts import ref as _ref
from .paging import openapi_parameters

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

_ERRORS = {
    "401": _json(_ERR, "No token was sent"),
    "403": _json(_ERR, "The token lacks the scope this needs"),
}


MONTH = query(
    "month",
    {"type": "string", "pattern": f"^{MONTH_RE}$"},
    "YYYY-MM, 1970-01 to 2999-12 (default: this month, UTC)",
)
_ID = path_param("id")
_PAGE = openapi_parameters()
_NEXT = {"type": ["string", "null"], "description": "cursor of the next page; null on the last"}
_NAME = path_param("name")

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
    "Gone": {
        "type": "object",
        "description": "A 404; for a released reservation of the caller's, when and why",
        "required": ["status", "message"],
        "properties": {
            "status": {"type": "integer", "const": 404},
            "message": {"type": "string"},
            "id": {"type": "string"},
            "state": {"type": "string", "enum": ["released"]},
            "released_at": {"type": ["string", "null"], "format": "date-time"},
            "release_reason": {"type": ["string", "null"]},
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
            "cpu_millicores": {"type": "integer", "description": "the CPU limit"},
            "memory_mib": {"type": "integer", "description": "the RAM limit"},
            "cpu_guarantee_millicores": {
                "type": "integer",
                "description": "CPU booked on the node (the limit unless the spec says less)",
            },
            "memory_guarantee_mib": {
                "type": "integer",
                "description": "RAM booked on the node (the limit unless the spec says less)",
            },
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
            "spec": {"type": "string", "description": "a spec the owner may use (else 422)"},
            "server_name": {"type": "string", "maxLength": 255},
            "kind": {"type": "string", "enum": ["notebook", "training", "manual"]},
            "owner": {
                "type": "string",
                "minLength": 1,
                "description": "admins only; a hub user (else 404)",
            },
            "id": {
                "type": "string",
                "pattern": f"^{ID_RE}$",
                "description": "admins only; one never used before (else 409)",
            },
            "container": {
                "type": "string",
                "pattern": "^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$",
                "description": "admins only: the container's name",
            },
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
            "cpu_millicores": {
                "type": "object",
                "description": "total: what guarantees may add up to (cores x overcommit); "
                "reserved: the guarantees booked; cores: the node's own",
            },
            "memory_mib": {
                "type": "object",
                "description": "total: what guarantees may add up to; reserved; physical",
            },
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
    from .trainings.api import OPENAPI_LINKS, OPENAPI_PATHS, OPENAPI_SCHEMAS

    doc = _document(prefix)
    doc["components"]["schemas"] = {**SCHEMAS, **OPENAPI_SCHEMAS}
    doc["paths"].update(OPENAPI_PATHS)
    _links(doc, {("/reservations", "post"): RESERVATION_LINKS, **OPENAPI_LINKS})
    _common_answers(doc)
    return doc


# What a reservation made by POST leads to (stateful clients and testers follow these).
RESERVATION_LINKS: dict[str, tuple[str, str]] = {
    "GetReservation": ("/reservations/{id}", "get"),
    "ReservationMetrics": ("/reservations/{id}/metrics", "get"),
    "ReleaseReservation": ("/reservations/{id}", "delete"),
}

# Answers any operation may give, whatever it does: the token (401, 403), the body size
# (413) and the per-user write limit (429) of the base handler.
_COMMON = {
    "401": "No token was sent",
    "403": "The hub does not accept the token, or it lacks the scope this needs",
}
_WRITES = {
    "413": "The request body is larger than this endpoint takes",
    "429": "Too many changes a minute for one user; see Retry-After",
}


def _links(doc: dict[str, Any], links: dict[tuple[str, str], dict[str, tuple[str, str]]]) -> None:
    """OpenAPI links from what a POST creates to the operations on it, by its ``id``."""
    for (path, method), targets in links.items():
        op = doc["paths"][path][method]
        created = next(c for c in ("201", "202", "200") if c in op["responses"])
        op["responses"][created]["links"] = {
            name: {
                "operationRef": "#/paths/" + target.replace("/", "~1") + f"/{verb}",
                "parameters": {"id": "$response.body#/id"},
            }
            for name, (target, verb) in targets.items()
        }


def _common_answers(doc: dict[str, Any]) -> None:
    """Every operation documents the answers of the base handler and of its routes."""
    for path, item in doc["paths"].items():
        for method, op in item.items():
            answers = op.setdefault("responses", {})
            common = dict(_COMMON) if op.get("security") != [] else {}
            if method in ("post", "put", "patch", "delete"):
                common.update(_WRITES)
            if "{" in path:
                common.setdefault("404", "No such object, or one the caller may not see")
            params = op.get("parameters") or []
            if op.get("requestBody") or any(p.get("in") == "query" for p in params):
                common.setdefault("400", "A parameter or body this document does not allow")
            for code, why in common.items():
                answers.setdefault(code, _json(_ERR, why))


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
                    "parameters": [path_param("slug")],
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
                    "parameters": [path_param("name")],
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
                        query(
                            "owner",
                            {"type": "string"},
                            "whose (observers and admins; others: their own, else 404)",
                        ),
                        query(
                            "state",
                            {"type": "string", "enum": ["active", "all"]},
                            "active (default) or all, released ones included",
                        ),
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
                        "400": _json(_ERR, "a state, limit or cursor this API does not take"),
                        "404": _json(_ERR, "another user's, for a caller who sees only their own"),
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
                            _ERR,
                            "the body is not what this document allows; the message "
                            "names the field and what is allowed",
                        ),
                        "404": _json(_ERR, "the owner is not a hub user"),
                        "409": _json(_ERR, "reservation id already used"),
                        "422": _json(_ERR, "a spec the owner may not use; 'allowed' lists theirs"),
                        "502": _json(_ERR, "the hub did not answer for the owner"),
                        "503": _json(_ref("Capacity"), "nothing fits now"),
                        **_ERRORS,
                    },
                },
            },
            "/reservations/{id}": {
                "get": {
                    "summary": "One active reservation",
                    "parameters": [_ID],
                    "responses": {
                        "200": _json(_ref("Reservation"), "found"),
                        "404": _json(
                            _ref("Gone"),
                            "not found or not yours; or released (gone, as after DELETE): "
                            "then the answer says when and why, and ?state=all lists it",
                        ),
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
                        "502": _json(_ERR, "the hub did not answer when asked to stop a server"),
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
                        query("node", {"type": "string"}, "one node's only"),
                        query("history", FLAG, "1: add the recent raises and clears"),
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
                    "parameters": [query("node", {"type": "string"}, "one node only")],
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
                    "parameters": [query("all", FLAG, "1: every user's (observers)")],
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
                                            "pattern": "^[0-9a-f]{12,64}$",
                                            "description": "the Docker id (hex)",
                                        }
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "204": {"description": "recorded"},
                        "400": _json(_ERR, "the body is not what this document allows"),
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
                        "202": _json(_ERR, "kept; the stop is finished when the node answers"),
                        "400": _json(_ERR, "the body is not what this document allows"),
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
                        MONTH,
                        query("user", {"type": "string"}, "whose (observers; others: own)"),
                        query("all", FLAG, "1: every user's totals (observers)"),
                    ],
                    "responses": {
                        "200": _json({"type": "object"}, "usage"),
                        "400": _json(_ERR, "month is not YYYY-MM"),
                        "404": _json(_ERR, "no such user for you"),
                        "502": _json(_ERR, "the hub did not answer for a user's groups"),
                        **_ERRORS,
                    },
                }
            },
            "/usage.csv": {
                "get": {
                    "summary": "Every user's month by spec, or every group's, as CSV (observers)",
                    "parameters": [
                        MONTH,
                        query("by", {"type": "string", "enum": ["user", "group"]}, "rows per"),
                    ],
                    "responses": {
                        "200": {
                            "description": "month,user,spec,hours,gpu_hours,cost or "
                            "month,group,users,hours,gpu_hours,cost",
                            "content": {"text/csv": {"schema": {"type": "string"}}},
                        },
                        "400": _json(_ERR, "month or by is not what this document allows"),
                        "502": _json(_ERR, "the hub did not answer for the users' groups"),
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
