"""JSON schema of pool.yaml, the pool's settings: scheduler, database, health, culling,
slices, alerts, quotas, limits, trainings, admins and observers. Unknown keys are refused.
"""

from __future__ import annotations

from typing import Any

from .schema_parts import SECONDS, SIZE, STR_LIST

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
                "count_ssh": {
                    "type": "boolean",
                    "description": "an SSH session on the server that carries work keeps it "
                    "from GPU-idle culling, as GPU use does (default true)",
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
