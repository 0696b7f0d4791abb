"""Fixtures for the GPU tests; each skips, saying why, where its part is missing."""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpupool.localnode import nvml_gpus


@pytest.fixture(scope="session")
def gpus() -> list[dict[str, Any]]:
    """This machine's GPUs from NVML (gpupool's own discovery)."""
    found, why = nvml_gpus()
    if not found:
        pytest.skip(f"no NVIDIA GPU through NVML: {why}")
    return found


@pytest.fixture(scope="session")
def libvgpu(gpus: list[dict[str, Any]]) -> Path:
    """A built HAMi-core libvgpu.so, named by GPUPOOL_HAMI_CORE (tests/gpu/device.sh builds one)."""
    path = os.environ.get("GPUPOOL_HAMI_CORE", "")
    if not path:
        pytest.skip("GPUPOOL_HAMI_CORE is not set (the path of a built HAMi-core libvgpu.so)")
    if not Path(path).is_file():
        pytest.skip(f"GPUPOOL_HAMI_CORE={path}: no such file (HAMi-core was not built?)")
    if importlib.util.find_spec("torch") is None:
        pytest.skip("the workloads need PyTorch with CUDA, and torch is not installed")
    return Path(path).resolve()


@pytest.fixture(scope="session")
def figures() -> Iterator[dict[str, Any]]:
    """Measured figures; written as JSON to GPUPOOL_GPU_FIGURES when that is set."""
    out: dict[str, Any] = {}
    yield out
    dest = os.environ.get("GPUPOOL_GPU_FIGURES")
    if dest and out:
        Path(dest).write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
