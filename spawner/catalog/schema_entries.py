"""JSON schemas of the entries of the list files: specs, images, nodes (and their GPUs),
datasets. Unknown keys are refused everywhere.
"""

from __future__ import annotations

from typing import Any

from .schema_parts import SIZE, SLUG, STR_LIST

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
