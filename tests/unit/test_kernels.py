"""gpupool's kernels, started for real through jupyter_client from their installed specs:
the PyTorch kernel says its slice (banner and first cell), the CPU-only kernel hides the
GPUs. The GPU models come from the FAKE NVML (CI has no GPU)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from gpupool.cli import main as cli
from gpupool.kernels import available, install
from gpupool.kernels.launch import describe

ROOT = Path(__file__).resolve().parents[2]
SLICE = [
    {"index": 0, "uuid": "GPU-11111111-aaaa", "memory_mib": 20480, "sm": 30, "whole": False},
    {"index": 1, "uuid": "GPU-22222222-bbbb", "memory_mib": 81920, "sm": 100, "whole": True},
]
POOL_ENV = {
    "GPUPOOL_SPEC": "a100-20g",
    "GPUPOOL_NODE": "gpu-1",
    "GPUPOOL_RESERVATION": "r-1",
    "GPUPOOL_GPUS": json.dumps(SLICE),
}


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    done = install(tmp_path / "prefix")
    assert [what.startswith("installed") for _, what in done] == [True, True]
    return tmp_path / "prefix"


def run_kernel(prefix: Path, name: str, env: dict[str, str], cells: list[str]) -> dict[str, Any]:
    """Start kernel ``name`` from its installed spec, run ``cells``; banner and outputs."""
    ksm = KernelSpecManager(kernel_dirs=[str(prefix / "share" / "jupyter" / "kernels")])
    km = KernelManager(kernel_name=name, kernel_spec_manager=ksm)
    km.start_kernel(env={**os.environ, "PYTHONPATH": str(ROOT), **env})
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        info = kc.kernel_info(reply=True, timeout=30)["content"]
        outputs = []
        for code in cells:
            text: list[str] = []
            kc.execute_interactive(
                code,
                timeout=60,
                output_hook=lambda m, text=text: (
                    text.append(m["content"].get("text", "")) if m["msg_type"] == "stream" else None
                ),
            )
            outputs.append("".join(text))
        return {
            "banner": info["banner"],
            "implementation": info["implementation"],
            "outputs": outputs,
        }
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.fixture
def fake_gpus(tmp_path: Path) -> Iterator[dict[str, str]]:
    world = tmp_path / "world.json"
    world.write_text(
        json.dumps(
            {
                "gpus": [
                    {"uuid": "GPU-11111111-aaaa", "name": "NVIDIA A100-SXM4-80GB"},
                    {"uuid": "GPU-22222222-bbbb", "name": "NVIDIA H100 80GB HBM3"},
                ]
            }
        )
    )
    yield {
        "GPUPOOL_NVML_MODULE": "tests.support.fake_nvml",
        "GPUPOOL_FAKE_NVML_WORLD": str(world),
    }


def test_the_pytorch_kernel_says_its_slice(prefix: Path, fake_gpus: dict[str, str]) -> None:
    got = run_kernel(
        prefix,
        "gpupool-pytorch",
        {**POOL_ENV, **fake_gpus},
        ["print('hello')", "print('again')"],
    )
    assert got["implementation"] == "gpupool"
    for text in (got["banner"], got["outputs"][0]):
        assert "gpupool · spec a100-20g on node gpu-1" in text
        assert (
            "GPU 0: NVIDIA A100-SXM4-80GB (GPU-11111111…): 20 GiB of memory, 30 % of the SMs"
            in text
        )
        assert "GPU 1: NVIDIA H100 80GB HBM3 (GPU-22222222…): the whole card" in text
        assert "PyTorch " in text
    assert got["outputs"][0].endswith("hello\n")
    assert got["outputs"][1] == "again\n"  # said once only


def test_the_cpu_kernel_hides_the_gpus(prefix: Path, fake_gpus: dict[str, str]) -> None:
    got = run_kernel(
        prefix,
        "gpupool-cpu",
        {**POOL_ENV, **fake_gpus, "CUDA_VISIBLE_DEVICES": "0,1"},
        [
            "import os, torch; print(repr(os.environ['CUDA_VISIBLE_DEVICES']), torch.cuda.device_count())"
        ],
    )
    assert "CPU-only kernel: this server's GPUs (2 GPUs) are hidden" in got["banner"]
    assert got["outputs"][0].strip().endswith("'' 0")


def test_outside_the_pool_and_without_gpus() -> None:
    assert describe("pytorch", {}, {}).startswith("gpupool · not started by the pool (no slice)")
    cpu_spec = describe("pytorch", {"GPUPOOL_SPEC": "cpu-1", "GPUPOOL_NODE": "n"}, {})
    assert "no GPU in this server's spec: PyTorch runs on the CPU" in cpu_spec
    # NVML missing: the slice is still said, without models
    text = describe("pytorch", POOL_ENV, {})
    assert "GPU 0: GPU (GPU-11111111…): 20 GiB of memory, 30 % of the SMs" in text
    # ... or with the model the catalog declares, which the spawner passes along
    declared = [{**SLICE[0], "model": "NVIDIA A100-SXM4-80GB"}, SLICE[1]]
    text = describe("pytorch", {**POOL_ENV, "GPUPOOL_GPUS": json.dumps(declared)}, {})
    assert "GPU 0: NVIDIA A100-SXM4-80GB (GPU-11111111…): 20 GiB" in text
    assert "GPU 1: GPU (GPU-22222222…): the whole card" in text
    # NVML's name, where there is one, wins over the catalog's
    text = describe(
        "pytorch",
        {**POOL_ENV, "GPUPOOL_GPUS": json.dumps(declared)},
        {"GPU-11111111-aaaa": "NVIDIA H100"},
    )
    assert "GPU 0: NVIDIA H100 (GPU-11111111…)" in text


def test_install_skips_a_kernel_whose_needs_are_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    assert {k.name: k.missing for k in available()} == {
        "gpupool-cpu": [],
        "gpupool-pytorch": ["torch"],
    }
    assert cli(["kernels", "install", "--prefix", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "gpupool-pytorch: skipped: needs torch" in out
    kernels = tmp_path / "share" / "jupyter" / "kernels"
    assert sorted(p.name for p in kernels.iterdir()) == ["gpupool-cpu"]
    spec = json.loads((kernels / "gpupool-cpu" / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable
