"""The component schemas of the pool API's OpenAPI document: what its request bodies and
answers are. The document (openapi.py) lists them, and contract.py checks request bodies
against them; neither the handlers nor the document are imported here, so both can use it.
"""

from __future__ import annotations

from typing import Any

from gpupool.job import STATES

from .openapi_parts import ref
from .patterns import CONTAINER_NAME_RE, ID_RE
from .ssh_sessions import MAX_AGE, MAX_SESSIONS

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
                "pattern": f"^{CONTAINER_NAME_RE}$",
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
            "gpus": {"type": "array", "items": ref("GpuShare")},
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
    "SshReport": {
        "type": "object",
        "description": "The SSH sessions open on a server now, as its lab extension sees them "
        "(it sends the whole list; the list replaces the last one)",
        "additionalProperties": False,
        "required": ["sessions"],
        "properties": {
            "sessions": {
                "type": "array",
                "maxItems": MAX_SESSIONS,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["id", "open_s"],
                    "properties": {
                        "id": {"type": "string", "pattern": "^[0-9a-f]{4,32}$"},
                        "from": {
                            "type": "string",
                            "maxLength": 64,
                            "pattern": "^[ -~]*$",
                            "description": "where the client connected from",
                        },
                        "open_s": {
                            "type": "number",
                            "minimum": 0,
                            "maximum": MAX_AGE,
                            "description": "seconds since the session opened",
                        },
                        "idle_s": {
                            "type": ["number", "null"],
                            "minimum": 0,
                            "maximum": MAX_AGE,
                            "description": "seconds since it last carried work; null: not yet",
                        },
                    },
                },
            },
        },
    },
    "SshSessions": {
        "type": "object",
        "required": ["reservation", "sessions"],
        "properties": {
            "reservation": {"type": "string"},
            "reported_at": {"type": ["string", "null"], "format": "date-time"},
            "last_activity": {"type": ["string", "null"], "format": "date-time"},
            "sessions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "from": {"type": "string"},
                        "opened": {"type": "string", "format": "date-time"},
                        "last_activity": {"type": ["string", "null"], "format": "date-time"},
                    },
                },
            },
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
    # trainings (trainings/api.py)
    "Training": {
        "type": "object",
        "required": ["id", "owner", "state", "spec", "message"],
        "properties": {
            "id": {"type": "string"},
            "owner": {"type": "string"},
            "name": {"type": "string"},
            "kind": {"enum": ["graph", "command"]},
            "state": {"enum": list(STATES)},
            "spec": {"type": "string"},
            "image": {"type": "string"},
            "dataset": {"type": ["string", "null"]},
            "hyperparameters": {"type": "object"},
            "priority": {"type": "integer"},
            "queue_position": {"type": ["integer", "null"]},
            "message": {"type": "string", "description": "where it stands and why it waits"},
            "node": {"type": ["string", "null"]},
            "attempt": {"type": "integer"},
            "checkpoint_epoch": {"type": ["integer", "null"]},
            "result": {"type": ["object", "null"], "description": "final metrics, files, snippet"},
            "output": {"type": "string", "description": "its folder in the owner's home"},
        },
    },
    "TrainingRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["spec"],
        "description": "A graph to train or a command to run: exactly one of the two.",
        "oneOf": [{"required": ["graph"]}, {"required": ["command"]}],
        "properties": {
            "name": {"type": "string"},
            "graph": {"type": "object", "description": "a gpupool.graph/1 document"},
            "command": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "dataset": {"type": "string", "description": "a dataset of the catalog"},
            "spec": {"type": "string"},
            "image": {"type": "string", "description": "a training image for the spec"},
            "hyperparameters": {"type": "object"},
            "priority": {
                "type": "integer",
                "minimum": -10,
                "maximum": 10,
                "description": "users up to the pool's max_priority_user, admins to 10",
            },
            "max_run_time": {"type": "number", "description": "seconds, 60 to the pool's most"},
        },
    },
    "TrainingList": {
        "type": "object",
        "required": ["trainings", "next"],
        "properties": {
            "trainings": {"type": "array", "items": ref("Training")},
            "next": {"type": ["string", "null"], "description": "cursor of the next page"},
        },
    },
}
