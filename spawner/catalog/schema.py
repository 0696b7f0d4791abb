"""JSON schemas of the catalog files. Unknown keys are refused everywhere.

The schemas check shape; ``load.py`` checks meaning (units, references,
uniqueness) and turns every problem into a message that names the file, the
entry, the key, and what is allowed.
"""

from __future__ import annotations

from typing import Any

# "(?!\n)$": Python's re (which jsonschema uses) lets "$" match before a final newline.
SLUG = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(?!\n)$"
SLUG_HELP = "lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters"
# Numbers pass the schema so that the size parser can say that a unit is missing.
SIZE: dict[str, Any] = {
    "type": ["string", "number"],
    "description": "a size with a unit: '512MiB', '20GiB', '2TiB'",
}
SECONDS: dict[str, Any] = {"type": "number", "exclusiveMinimum": 0, "maximum": 86400}
STR_LIST: dict[str, Any] = {"type": "array", "items": {"type": "string", "minLength": 1}}

SPEC: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["slug", "display_name", "cpu", "memory"],
    "properties": {
        "slug": {
            "type": "string",
            "pattern": SLUG,
            "description": "stable id used in forms and the API",
        },
        "display_name": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "gpus": {
            "type": "integer",
            "minimum": 0,
            "maximum": 16,
            "description": "GPUs per server; 0 = CPU only",
        },
        "gpu_model": {
            "description": "model filter: a substring or a list of substrings of the GPU model name",
            "anyOf": [{"type": "string", "minLength": 1}, STR_LIST],
        },
        "gpu_memory": {**SIZE, "description": "GPU memory per GPU; absent = whole cards"},
        "gpu_sm_percent": {
            "type": "integer",
            "minimum": 1,
            "maximum": 100,
            "description": "share of each GPU's SMs",
        },
        "slice": {
            "type": "boolean",
            "description": "true when the spec shares cards (gpu_memory set)",
        },
        "cpu": {"type": "number", "minimum": 0.01, "description": "CPU cores"},
        "memory": {**SIZE, "description": "RAM"},
        "disk": {**SIZE, "description": "disk"},
        "price_per_hour": {"type": "number", "minimum": 0},
        "groups": {**STR_LIST, "description": "hub groups allowed; absent = everyone"},
        "images": {
            **STR_LIST,
            "description": "image names allowed; absent = every image that suits",
        },
    },
}

IMAGE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "reference"],
    "properties": {
        "name": {"type": "string", "pattern": SLUG},
        "reference": {"type": "string", "minLength": 1, "pattern": r"^[^\s]+(?!\n)$"},
        "description": {"type": "string"},
        "gpu": {"type": "boolean"},
        "slicing": {"type": "boolean"},
        "training": {
            "type": "boolean",
            "description": "runs trainings: has gpupool-train and PyTorch (the trainer image)",
        },
    },
}

GPU: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["index", "uuid", "model", "memory"],
    "properties": {
        "index": {"type": "integer", "minimum": 0},
        "uuid": {"type": "string", "pattern": r"^(GPU|MIG)-[A-Za-z0-9-]+(?!\n)$"},
        "model": {"type": "string", "minLength": 1},
        "memory": SIZE,
    },
}

NODE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "engine", "cpu", "memory"],
    "properties": {
        "name": {"type": "string", "pattern": SLUG},
        "engine": {
            "type": "string",
            "pattern": r"^(unix|tcp|ssh)://\S+(?!\n)$",
            "description": "Docker engine URL",
        },
        "tls": {
            "type": "object",
            "additionalProperties": False,
            "required": ["ca", "cert", "key"],
            "properties": {
                "ca": {"type": "string"},
                "cert": {"type": "string"},
                "key": {"type": "string"},
            },
        },
        "address": {
            "type": "string",
            "minLength": 1,
            "description": "address to reach its containers",
        },
        "network": {"enum": ["host", "bridge"]},
        "gpu_runtime": {"enum": ["nvidia", "cdi", "none"]},
        "hami_core": {"type": "string", "pattern": r"^/", "description": "host path of libvgpu.so"},
        "cpu": {"type": "number", "minimum": 0.01},
        "memory": SIZE,
        "disk": SIZE,
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "ports": {
            "type": "string",
            "pattern": r"^\d{2,5}-\d{2,5}(?!\n)$",
            "description": "port range for servers on this node, e.g. '20000-29999'",
        },
        "gpus": {"type": "array", "items": GPU},
        "agent": {
            "type": "object",
            "additionalProperties": False,
            "required": ["url", "token_file"],
            "description": "the node's gpupool-agent: real GPU inventory and metrics",
            "properties": {
                "url": {"type": "string", "pattern": r"^https?://\S+(?!\n)$"},
                "token_file": {
                    "type": "string",
                    "minLength": 1,
                    "description": "file holding the agent's token (relative to the catalog folder)",
                },
                "ca": {"type": "string", "description": "CA bundle for an https agent"},
            },
        },
    },
}

DATASET: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "path", "format"],
    "properties": {
        "name": {"type": "string", "pattern": SLUG},
        "description": {"type": "string"},
        "path": {"type": "string", "pattern": r"^/", "description": "absolute path on the nodes"},
        "format": {"enum": ["numpy", "csv", "image-folder", "parquet", "text", "other"]},
        "read_only": {"type": "boolean"},
    },
}

QUOTA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "gpus": {"type": "integer", "minimum": 0, "description": "GPUs held at once"},
        "gpu_memory": {**SIZE, "description": "GPU memory held at once (whole cards count fully)"},
        "gpu_hours_per_month": {"type": "number", "minimum": 0},
    },
}

_PEOPLE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"users": STR_LIST, "groups": STR_LIST},
}

POOL: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "scheduler": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "node_policy": {"enum": ["binpack", "spread"]},
                "gpu_policy": {"enum": ["binpack", "spread"]},
            },
        },
        "database_url": {"type": "string", "minLength": 1},
        "health": {
            "type": "object",
            "additionalProperties": False,
            "description": "how the pool watches nodes (all times in seconds)",
            "properties": {
                "probe_interval": SECONDS,
                "probe_timeout": SECONDS,
                "down_after": {"type": "integer", "minimum": 1, "maximum": 100},
                "max_backoff": SECONDS,
                "fan_out": {"type": "integer", "minimum": 1, "maximum": 256},
                "reconcile_interval": SECONDS,
                "orphan_grace": SECONDS,
                "start_grace": SECONDS,
                "history": {"type": "integer", "minimum": 10, "maximum": 100000},
            },
        },
        "culling": {
            "type": "object",
            "additionalProperties": False,
            "description": "stop servers whose GPUs stay idle (seconds; 0 turns it off)",
            "properties": {
                "gpu_idle_timeout": {"type": "number", "minimum": 0, "maximum": 30 * 86400},
                "server_idle_timeout": {"type": "number", "minimum": 0, "maximum": 30 * 86400},
                "warn_before": SECONDS,
                "busy_percent": {"type": "integer", "minimum": 0, "maximum": 100},
            },
        },
        "alerts": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "webhook": {"type": "string", "pattern": r"^https?://\S+(?!\n)$"},
                "gpu_temperature": {"type": "integer", "minimum": 30, "maximum": 120},
            },
        },
        "quotas": {
            "type": "object",
            "additionalProperties": False,
            "description": "limits per user and per group; a user's own entry wins, else the "
            "most generous of their groups, else default",
            "properties": {
                "default": QUOTA,
                "groups": {"type": "object", "additionalProperties": QUOTA},
                "users": {"type": "object", "additionalProperties": QUOTA},
            },
        },
        "trainings": {
            "type": "object",
            "additionalProperties": False,
            "description": "the trainings queue and dispatcher (times in seconds)",
            "properties": {
                "per_user_running": {"type": "integer", "minimum": 1, "maximum": 1000},
                "aging_seconds": {"type": "number", "minimum": 1, "maximum": 30 * 86400},
                "hold_after": {"type": "number", "minimum": 0, "maximum": 30 * 86400},
                "max_attempts": {"type": "integer", "minimum": 1, "maximum": 100},
                "default_run_time": {"type": "number", "minimum": 60, "maximum": 90 * 86400},
                "max_run_time": {"type": "number", "minimum": 60, "maximum": 90 * 86400},
                "requeue_after": {"type": "number", "minimum": 0, "maximum": 86400},
                "poll_interval": {"type": "number", "minimum": 0.1, "maximum": 600},
                "fair_share_days": {"type": "number", "minimum": 0.01, "maximum": 365},
                "max_checkpoint_mib": {"type": "integer", "minimum": 1, "maximum": 1048576},
                "max_log_mib": {"type": "integer", "minimum": 1, "maximum": 10240},
                "max_priority_user": {"type": "integer", "minimum": -10, "maximum": 10},
            },
        },
        "admins": _PEOPLE,
        "observers": _PEOPLE,
    },
}


def _file(top: str, item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {top: {"type": "array", "items": item}},
    }


# file name -> (top-level key or None for a plain mapping, schema)
FILES: dict[str, tuple[str | None, dict[str, Any]]] = {
    "specs.yaml": ("specs", _file("specs", SPEC)),
    "images.yaml": ("images", _file("images", IMAGE)),
    "nodes.yaml": ("nodes", _file("nodes", NODE)),
    "datasets.yaml": ("datasets", _file("datasets", DATASET)),
    "pool.yaml": (None, POOL),
}
REQUIRED_FILES = ("specs.yaml", "nodes.yaml")
