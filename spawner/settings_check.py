"""DockerSpawner's settings that GpuPoolSpawner does not apply, and what decides instead.

GpuPoolSpawner is a DockerSpawner, so an admin may carry over DockerSpawner settings from
an earlier hub. The catalog decides what they decided (the image, the node's engine and
network, the limits, the mounts), and a setting that is silently dropped is worse than
one refused: a spawn with any of these set fails with a message naming each one and
what to use instead. The few it applies as DockerSpawner does are in APPLIED. Pure
code: a config goes in, the problems come out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_CATALOG_IMAGES = "images.yaml (the spec's images; users choose among them)"
_NODES = "nodes.yaml (each node's engine, TLS, network and address)"
_SPEC = "specs.yaml (the spec's cpu and memory; the container enforces them)"
_NAMES = "nothing: gpupool names containers and volumes one-to-one with user and server"

# DockerSpawner's (and Spawner's) setting -> where gpupool takes it from
INSTEAD: dict[str, str] = {
    **dict.fromkeys(
        ("image", "container_image", "allowed_images", "image_whitelist"), _CATALOG_IMAGES
    ),
    **dict.fromkeys(
        ("volumes", "read_only_volumes", "mounts", "format_volume_name"),
        "datasets.yaml (read-only datasets) and the home volume gpupool makes; no other "
        "mount is offered to users",
    ),
    **dict.fromkeys(
        ("extra_host_config", "extra_create_kwargs"),
        "specs.yaml and nodes.yaml: the container's host config is built from them alone",
    ),
    **dict.fromkeys(
        (
            "network_name",
            "use_internal_ip",
            "use_internal_hostname",
            "links",
            "host_ip",
            "container_ip",
            "container_port",
            "hub_ip_connect",
            "client_kwargs",
            "use_docker_client_env",
            "tls",
            "tls_config",
            "tls_verify",
            "tls_ca",
            "tls_cert",
            "tls_key",
            "tls_assert_hostname",
        ),
        _NODES,
    ),
    "post_start_cmd": "the image (its start script); gpupool runs no command after start",
    **dict.fromkeys(
        ("remove", "remove_containers"),
        "nothing: a stopped server's container is always removed, its home volume kept",
    ),
    **dict.fromkeys(
        ("prefix", "name_template", "container_name_template", "container_prefix", "escape"),
        _NAMES,
    ),
    **dict.fromkeys(
        ("certs_volume_name", "move_certs_image"),
        "nothing: JupyterHub's internal_ssl is not supported with gpupool",
    ),
    **dict.fromkeys(("mem_limit", "cpu_limit", "mem_guarantee", "cpu_guarantee"), _SPEC),
}
SECTIONS = ("Spawner", "DockerSpawner", "GpuPoolSpawner")

# DockerSpawner's settings that gpupool applies, and how
APPLIED: dict[str, str] = {
    "pull_policy": "DockerSpawner's policies (ifnotpresent, always, never, skip) for the "
    "images.yaml image of the spawn, on the chosen node's engine (pull.py)",
}


def refused_settings(config: Mapping[str, Any]) -> list[str]:
    """One line per setting in ``config`` that GpuPoolSpawner would not apply."""
    out = []
    for section in SECTIONS:
        values = config[section] if section in config else {}
        for name in sorted(INSTEAD):
            if name in values:
                out.append(f"c.{section}.{name} is not applied by gpupool; set {INSTEAD[name]}")
    return out
