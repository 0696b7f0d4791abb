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
        "display_name": {
            "type": "string",
            "minLength": 1,
            "description": "title shown in the spawn form",
        },
        "description": {
            "type": "string",
            "description": "text shown under the title in the spawn form",
        },
        "gpus": {
            "type": "integer",
            "minimum": 0,
            "maximum": 16,
            "description": "GPUs per server; 0 = CPU only",
        },
        "gpu_model": {
            "description": "model filter: a substring or a list of substrings of the GPU model "
            "name",
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
        "cpu": {
            "type": "number",
            "minimum": 0.01,
            "description": "CPU cores: the limit a server cannot exceed",
        },
        "cpu_guarantee": {
            "type": "number",
            "minimum": 0.01,
            "description": "CPU cores reserved for it on its node, at most cpu (default: cpu); "
            "under contention each server gets CPU in proportion to its guarantee, as "
            "KubeSpawner's cpu_guarantee",
        },
        "memory": {**SIZE, "description": "RAM: the limit a server cannot exceed"},
        "memory_guarantee": {
            **SIZE,
            "description": "RAM reserved for it on its node, at most memory (default: memory); "
            "the engine reclaims down to it first when the node runs short",
        },
        "disk": {**SIZE, "description": "disk"},
        "price_per_hour": {
            "type": "number",
            "minimum": 0,
            "description": "price of one hour of a server, shown in the form and used for costs "
            "in usage reports (default 0)",
        },
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
        "name": {
            "type": "string",
            "pattern": SLUG,
            "description": "image name, used by specs' images, the spawn form and trainings",
        },
        "reference": {
            "type": "string",
            "minLength": 1,
            "pattern": r"^[^\s]+(?!\n)$",
            "description": "the container image the node's engine runs, e.g. "
            "'gpupool/singleuser:latest' (no spaces)",
        },
        "description": {
            "type": "string",
            "description": "text shown next to the name in the spawn form",
        },
        "gpu": {
            "type": "boolean",
            "description": "suits GPU specs; false = offered with CPU-only specs only (default "
            "true)",
        },
        "slicing": {
            "type": "boolean",
            "description": "works in a GPU slice (HAMi-core); false = not offered with sliced "
            "specs (default true)",
        },
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
        "index": {
            "type": "integer",
            "minimum": 0,
            "description": "the GPU's device index on the node",
        },
        "uuid": {
            "type": "string",
            "pattern": r"^(GPU|MIG)-[A-Za-z0-9-]+(?!\n)$",
            "description": "the GPU's UUID as nvidia-smi -L shows it: 'GPU-…' or 'MIG-…'",
        },
        "model": {
            "type": "string",
            "minLength": 1,
            "description": "model name, e.g. 'NVIDIA A100-SXM4-80GB'; specs' gpu_model matches it",
        },
        "memory": SIZE,
    },
}

NODE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "engine", "cpu", "memory"],
    "properties": {
        "name": {
            "type": "string",
            "pattern": SLUG,
            "description": "node name, shown in the API, the dashboard and alerts",
        },
        "engine": {
            "type": "string",
            "pattern": r"^(unix|tcp|ssh)://\S+(?!\n)$",
            "description": "Docker engine URL",
        },
        "tls": {
            "type": "object",
            "additionalProperties": False,
            "required": ["ca", "cert", "key"],
            "description": "TLS client files for a tcp:// engine (required for every TCP "
            "engine, loopback included); paths relative to the catalog folder",
            "properties": {
                "ca": {
                    "type": "string",
                    "description": "CA certificate that signed the engine's certificate",
                },
                "cert": {"type": "string", "description": "client certificate"},
                "key": {"type": "string", "description": "client private key"},
            },
        },
        "address": {
            "type": "string",
            "minLength": 1,
            "description": "address to reach its containers",
        },
        "network": {
            "enum": ["host", "bridge"],
            "description": "bridge (the default): servers and trainings join gpupool's own "
            "network gpupool-users (inter-container communication off; the engine must manage "
            "iptables), port 8888 published on address at a port from ports, and the hub API "
            "must listen where they reach it (GPUPOOL_HUB_IP); host: servers share the node's "
            "network namespace, each on a port from ports (trusted users only: they reach the "
            "node's loopback services and each other's ports)",
        },
        "gpu_runtime": {
            "enum": ["nvidia", "cdi", "none"],
            "description": "how containers get their GPUs: nvidia (device request by UUID), cdi "
            "(CDI names), none (no device: demo and CI nodes) (default nvidia)",
        },
        "hami_core": {"type": "string", "pattern": r"^/", "description": "host path of libvgpu.so"},
        "cpu": {
            "type": "number",
            "minimum": 0.01,
            "description": "CPU cores the pool hands out on this node",
        },
        "memory": SIZE,
        "overcommit": {
            "type": "object",
            "additionalProperties": False,
            "description": "how far the guarantees of specs may add up past this node's cpu "
            "and memory: cpu: 4 lets guarantees total four times its cores (default 1 each: "
            "guarantees never exceed what the node has)",
            "properties": {
                "cpu": {
                    "type": "number",
                    "minimum": 1,
                    "maximum": 64,
                    "description": "CPU guarantees may total this many times the node's cpu",
                },
                "memory": {
                    "type": "number",
                    "minimum": 1,
                    "maximum": 4,
                    "description": "RAM guarantees may total this many times its memory; "
                    "whenever guarantees are below limits, servers that all use their "
                    "limits can run the node short, and the kernel then kills one",
                },
            },
        },
        "disk": SIZE,
        "disk_quota": {
            "type": "boolean",
            "description": "the engine's storage driver limits each container's writable "
            "layer (overlay2 on xfs mounted with pquota, btrfs, zfs): a spec's disk is then "
            "enforced (storage-opt size); default false: booked, not enforced, and the spec "
            "cards say so",
        },
        "labels": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "free-form key: value tags, shown in the API and the dashboard",
        },
        "ports": {
            "type": "string",
            "pattern": r"^\d{2,5}-\d{2,5}(?!\n)$",
            "description": "port range for servers on this node (default '20000-29999'); "
            "keep it below 32768, where Linux's range for outgoing connections starts",
        },
        "gpus": {
            "type": "array",
            "items": GPU,
            "description": "the node's GPUs; used until its agent reports its own",
        },
        "agent": {
            "type": "object",
            "additionalProperties": False,
            "required": ["url", "token_file"],
            "description": "the node's gpupool-agent: real GPU inventory and metrics",
            "properties": {
                "url": {
                    "type": "string",
                    "pattern": r"^https?://\S+(?!\n)$",
                    "description": "the agent's http:// or https:// URL",
                },
                "token_file": {
                    "type": "string",
                    "minLength": 1,
                    "description": "file holding the agent's token (relative to the catalog "
                    "folder)",
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
        "name": {
            "type": "string",
            "pattern": SLUG,
            "description": "dataset name; mounted at /datasets/<name> in every server",
        },
        "description": {
            "type": "string",
            "description": "text shown in the dataset picker and the API",
        },
        "path": {"type": "string", "pattern": r"^/", "description": "absolute path on the nodes"},
        "format": {
            "enum": ["numpy", "csv", "image-folder", "parquet", "text", "other"],
            "description": "how the files are laid out; trainings take numpy, csv and image-folder",
        },
        "read_only": {
            "type": "boolean",
            "description": "mounted read-only in servers (default true; trainings always mount "
            "read-only)",
        },
    },
}

QUOTA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "gpus": {"type": "integer", "minimum": 0, "description": "GPUs held at once"},
        "gpu_memory": {**SIZE, "description": "GPU memory held at once (whole cards count fully)"},
        "gpu_hours_per_month": {
            "type": "number",
            "minimum": 0,
            "description": "GPU-hours used per calendar month (UTC)",
        },
        "cpu": {
            "type": "number",
            "minimum": 0,
            "description": "CPU cores held at once, by every spec (CPU-only ones too), counted as specs book them: their cpu_guarantee, else their cpu",
        },
        "memory": {
            **SIZE,
            "description": "RAM held at once, by every spec (what specs book: their memory_guarantee, else their memory)",
        },
        "reservations": {
            "type": "integer",
            "minimum": 0,
            "description": "servers and trainings running at once",
        },
    },
}

_PEOPLE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "users": {**STR_LIST, "description": "hub user names"},
        "groups": {**STR_LIST, "description": "hub group names; every member counts"},
    },
}

POOL: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "scheduler": {
            "type": "object",
            "additionalProperties": False,
            "description": "where servers go, with HAMi's policies",
            "properties": {
                "node_policy": {
                    "enum": ["binpack", "spread"],
                    "description": "binpack fills the busiest node that fits, spread the "
                    "emptiest (default binpack)",
                },
                "gpu_policy": {
                    "enum": ["binpack", "spread"],
                    "description": "binpack fills the busiest card that fits, spread the "
                    "emptiest (default binpack)",
                },
            },
        },
        "database_url": {
            "type": "string",
            "minLength": 1,
            "description": "SQLAlchemy URL of the pool's database, e.g. "
            "postgresql+psycopg://user:password@host/db; GPUPOOL_DB_URL wins (default SQLite in "
            "the state folder)",
        },
        "health": {
            "type": "object",
            "additionalProperties": False,
            "description": "how the pool watches nodes (all times in seconds)",
            "properties": {
                "probe_interval": {
                    **SECONDS,
                    "description": "seconds between probes of each node's engine and agent "
                    "(default 2)",
                },
                "probe_timeout": {
                    **SECONDS,
                    "description": "seconds a probe waits for an answer; at most five probe "
                    "intervals (default 2)",
                },
                "down_after": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 100,
                    "description": "probes in a row without an answer before a node is down "
                    "(default 2)",
                },
                "max_backoff": {
                    **SECONDS,
                    "description": "longest wait between probes of a down node, in seconds "
                    "(default 15)",
                },
                "fan_out": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 256,
                    "description": "nodes probed at once (default 16)",
                },
                "reconcile_interval": {
                    **SECONDS,
                    "description": "seconds between reconciler passes, containers against "
                    "reservations (default 30)",
                },
                "orphan_grace": {
                    **SECONDS,
                    "description": "a labelled container without a reservation is stopped after "
                    "this many seconds (default 300)",
                },
                "start_grace": {
                    **SECONDS,
                    "description": "a reservation whose container never appeared is freed after "
                    "this many seconds (default 900)",
                },
                "history": {
                    "type": "integer",
                    "minimum": 10,
                    "maximum": 100000,
                    "description": "metric samples kept per GPU and per reservation (default 300)",
                },
            },
        },
        "culling": {
            "type": "object",
            "additionalProperties": False,
            "description": "stop servers whose GPUs stay idle (seconds; 0 turns it off)",
            "properties": {
                "gpu_idle_timeout": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 30 * 86400,
                    "description": "the pool stops a server whose GPUs showed no utilization "
                    "this many seconds (default 0: off)",
                },
                "server_idle_timeout": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 30 * 86400,
                    "description": "jupyterhub-idle-culler stops a server with no lab activity "
                    "this many seconds (default 0: off)",
                },
                "warn_before": {
                    **SECONDS,
                    "description": "seconds before the stop that the idle notice is posted; less "
                    "than gpu_idle_timeout (default 900)",
                },
                "busy_percent": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 100,
                    "description": "GPU utilization (%) at or below which a GPU counts as idle "
                    "(default 1)",
                },
            },
        },
        "slices": {
            "type": "object",
            "additionalProperties": False,
            "description": "the slice watchdog: GPU memory of each reservation's processes "
            "(NVML, through the node agent) against its slice; HAMi-core limits only "
            "processes that load it",
            "properties": {
                "enforce": {
                    "type": "boolean",
                    "description": "alert, tell the user and, after grace, stop a workload over "
                    "its slice (default true; false: nothing is judged)",
                },
                "grace": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 86400,
                    "description": "seconds a workload may stay over its slice before it is "
                    "stopped (default 60)",
                },
                "tolerance_mib": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 1048576,
                    "description": "MiB over the slice that are not judged, for NVML's and "
                    "HAMi-core's differing counts (default 256)",
                },
            },
        },
        "alerts": {
            "type": "object",
            "additionalProperties": False,
            "description": "where alerts are posted, and when a GPU is too hot",
            "properties": {
                "webhook": {
                    "type": "string",
                    "pattern": r"^https?://\S+(?!\n)$",
                    "description": "http:// or https:// URL that receives every alert raised, "
                    "updated and cleared as JSON (default none)",
                },
                "gpu_temperature": {
                    "type": "integer",
                    "minimum": 30,
                    "maximum": 120,
                    "description": "GPU temperature in °C at or above which an alert is raised "
                    "(default 85)",
                },
            },
        },
        "quotas": {
            "type": "object",
            "additionalProperties": False,
            "description": "limits per user and per group; a user's own entry wins, else the "
            "most generous of their groups, else default",
            "properties": {
                "default": {
                    **QUOTA,
                    "description": "quota of users with no entry of their own or of a group "
                    "(default none: no limit)",
                },
                "groups": {
                    "type": "object",
                    "additionalProperties": QUOTA,
                    "description": "a quota per hub group name: gpus, gpu_memory, "
                    "gpu_hours_per_month, cpu, memory, reservations",
                },
                "users": {
                    "type": "object",
                    "additionalProperties": QUOTA,
                    "description": "a quota per user name: gpus, gpu_memory, gpu_hours_per_month, "
                    "cpu, memory, reservations",
                },
            },
        },
        "limits": {
            "type": "object",
            "additionalProperties": False,
            "description": "per-user bounds on the pool API (over them: 429 with Retry-After; "
            "the hub's services and pool admins are not limited)",
            "properties": {
                "writes_per_minute": {
                    "type": "number",
                    "minimum": 1,
                    "maximum": 100000,
                    "description": "POST and DELETE requests per user and minute, on average "
                    "(default 60)",
                },
                "write_burst": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 100000,
                    "description": "that many may come at once before the rate applies "
                    "(default 20)",
                },
            },
        },
        "trainings": {
            "type": "object",
            "additionalProperties": False,
            "description": "the trainings queue and dispatcher (times in seconds)",
            "properties": {
                "per_user_running": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 1000,
                    "description": "trainings of one user running at once (default 2)",
                },
                "aging_seconds": {
                    "type": "number",
                    "minimum": 1,
                    "maximum": 30 * 86400,
                    "description": "waiting this many seconds raises a training's priority by "
                    "one (default 1800)",
                },
                "hold_after": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 30 * 86400,
                    "description": "a training waiting this many seconds for capacity stops "
                    "smaller ones behind it from starting (default 900)",
                },
                "max_attempts": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 100,
                    "description": "starts of one training, the first and the retries (default 3)",
                },
                "default_run_time": {
                    "type": "number",
                    "minimum": 60,
                    "maximum": 90 * 86400,
                    "description": "run-time limit in seconds of a training that asks for none "
                    "(default 86400)",
                },
                "max_run_time": {
                    "type": "number",
                    "minimum": 60,
                    "maximum": 90 * 86400,
                    "description": "longest run time in seconds a training may ask for (default "
                    "604800)",
                },
                "requeue_after": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 86400,
                    "description": "a training whose node is down this many seconds resumes "
                    "elsewhere (default 60)",
                },
                "poll_interval": {
                    "type": "number",
                    "minimum": 0.1,
                    "maximum": 600,
                    "description": "seconds between the dispatcher's passes (default 2)",
                },
                "fair_share_days": {
                    "type": "number",
                    "minimum": 0.01,
                    "maximum": 365,
                    "description": "days of GPU-hours that fair share counts (default 7)",
                },
                "max_checkpoint_mib": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 1048576,
                    "description": "largest checkpoint in MiB the pool keeps; larger ones stay "
                    "in the home folder only (default 4096)",
                },
                "max_log_mib": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 10240,
                    "description": "a training's log is cut at this size in MiB (default 16)",
                },
                "max_priority_user": {
                    "type": "integer",
                    "minimum": -10,
                    "maximum": 10,
                    "description": "highest priority a user may ask for; admins up to 10 "
                    "(default 0)",
                },
                "per_user_queued": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 100000,
                    "description": "trainings of one user waiting in the queue at once; a "
                    "submit over it is refused with 429 (default 100)",
                },
            },
        },
        "admins": {
            **_PEOPLE,
            "description": "pool admins: act for anyone, drain nodes, reconcile, the dashboard's "
            "actions",
        },
        "observers": {
            **_PEOPLE,
            "description": "read everything: reservations, health, alerts, metrics, everyone's "
            "usage, the dashboard",
        },
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
