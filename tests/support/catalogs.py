"""Catalog folders for tests and benchmarks whose nodes are engines started by the tests.

No GPU in CI: the nodes declare A100s and run with no GPU runtime, and a stand-in
libvgpu.so (images/hami-stand-in, named as such) takes HAMi-core's place, so containers get
every variable and mount of a sliced spec and the preload is seen to load.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .docker import Engine
from .ports import free_base_port

REPO = Path(__file__).resolve().parents[2]
STAND_IN = REPO / "images" / "hami-stand-in" / "libvgpu.c"

SPECS: list[dict[str, Any]] = [
    {
        "slug": "a100-40g",
        "display_name": "A100 half",
        "gpus": 1,
        "gpu_model": "A100",
        "gpu_memory": "40GiB",
        "gpu_sm_percent": 50,
        "cpu": 0.5,
        "cpu_guarantee": 0.25,
        "memory": "1GiB",
        "memory_guarantee": "512MiB",
    },
    {
        "slug": "a100-1x",
        "display_name": "A100",
        "gpus": 1,
        "gpu_model": "A100",
        "cpu": 0.5,
        "memory": "1GiB",
    },
]
IMAGES: list[dict[str, Any]] = [
    {"name": "lab", "reference": "gpupool/singleuser:latest", "gpu": True, "slicing": True}
]


def declared_gpus(tag: str, count: int = 2) -> list[dict[str, Any]]:
    return [
        {
            "index": i,
            "uuid": f"GPU-{tag * 8}-0000-4000-8000-{i:012d}",
            "model": "NVIDIA A100-SXM4-80GB",
            "memory": "80GiB",
        }
        for i in range(count)
    ]


def build_stand_in(folder: Path) -> Path:
    """Compile the HAMi-core stand-in into ``folder``, with the ld.so.preload file a node
    keeps beside it; returns the library's path."""
    folder.mkdir(parents=True, exist_ok=True)
    lib = folder / "libvgpu.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(lib), str(STAND_IN)], check=True)
    (folder / "ld.so.preload").write_text("/usr/local/vgpu/libvgpu.so\n")
    return lib


def write_engine_catalog(
    folder: Path,
    engines: Mapping[str, Engine],
    *,
    gpus_per_node: int = 2,
    specs: list[dict[str, Any]] | None = None,
) -> Path:
    """A catalog folder whose nodes are ``engines`` (host networking, a port range each,
    TLS files for engines that have them), with :data:`SPECS` and :data:`IMAGES`."""
    lib = build_stand_in(folder / "vgpu")
    # every port of every node's range free now, and outside the ephemeral range (where an
    # outgoing connection could take a server's port before it binds)
    base = free_base_port(tuple(range(100 * len(engines))))
    nodes = []
    for i, (name, eng) in enumerate(engines.items()):
        lo = base + 100 * i
        node: dict[str, Any] = {
            "name": name,
            "engine": eng.url,
            "address": "127.0.0.1",
            "network": "host",
            "gpu_runtime": "none",
            "hami_core": str(lib),
            "cpu": 16,
            "memory": "64GiB",
            "ports": f"{lo}-{lo + 99}",
            "gpus": declared_gpus("abcdef"[i % 6], gpus_per_node),
        }
        if eng.tls_config():
            node["tls"] = eng.tls_config()
        nodes.append(node)
    (folder / "nodes.yaml").write_text(yaml.safe_dump({"nodes": nodes}))
    (folder / "specs.yaml").write_text(yaml.safe_dump({"specs": specs or SPECS}))
    (folder / "images.yaml").write_text(yaml.safe_dump({"images": IMAGES}))
    return folder
