"""gpupool's GPU discovery on a real card: NVML against nvidia-smi, and the quickstart's
local catalog built from it loading through the catalog loader."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gpupool.catalog import load_catalog, parse_size_mib
from gpupool.localnode import write_local_catalog
from gpupool.pool.scheduler import place
from gpupool.pool.state import ClusterState, Placement, Request

from .sliced import slice_spec

pytestmark = pytest.mark.gpu
REPO = Path(__file__).resolve().parents[2]


def smi_gpus() -> list[dict[str, str]]:
    if not shutil.which("nvidia-smi"):
        pytest.skip("nvidia-smi is not on PATH")
    fields = ["index", "uuid", "name", "memory.total", "driver_version"]
    p = subprocess.run(
        ["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [
        dict(zip(fields, (x.strip() for x in line.split(",")), strict=True))
        for line in p.stdout.splitlines()
        if line.strip()
    ]


def test_nvml_discovery_matches_nvidia_smi(gpus: list[dict[str, Any]], figures: dict) -> None:
    smi = smi_gpus()
    assert len(gpus) == len(smi), (gpus, smi)
    for g, s in zip(gpus, smi, strict=True):
        assert g["index"] == int(s["index"])
        assert g["uuid"].startswith("GPU-") and g["uuid"] == s["uuid"]
        assert g["model"] == s["name"]
        assert g["memory"] == f"{s['memory.total']}MiB"
    figures["gpus"] = [{**g, "driver": s["driver_version"]} for g, s in zip(gpus, smi, strict=True)]
    print(f"\nNVML: {figures['gpus']}")


def test_local_catalog_from_nvml_loads(tmp_path: Path, gpus: list[dict[str, Any]]) -> None:
    out = tmp_path / "catalog"
    summary = write_local_catalog(
        REPO / "hub_config",
        out,
        engine="unix:///var/run/docker.sock",
        hami_core="/usr/local/vgpu/libvgpu.so",
        real_hami=True,
    )
    assert f"{len(gpus)} GPU(s) from NVML" in summary, summary
    catalog = load_catalog(out)
    node = catalog.node("local")
    assert node is not None
    assert node.gpu_runtime == "nvidia"
    assert [(g.index, g.uuid, g.model) for g in node.gpus] == [
        (g["index"], g["uuid"], g["model"]) for g in gpus
    ]
    assert [g.memory_mib for g in node.gpus] == [parse_size_mib(g["memory"]) for g in gpus]
    # a slice lands on a real card, by its real UUID
    placement = place(ClusterState(catalog.nodes), Request.from_spec(slice_spec(4096, 30)))
    assert isinstance(placement, Placement), placement
    assert placement.node == "local"
    assert placement.gpus[0].uuid in {g["uuid"] for g in gpus}
    print(f"\n{summary}")
