"""The lab server extension's metrics (gpupool.lab.metrics) on real NVML, against
nvidia-smi: a whole-card slice of GPU 0, read while a PyTorch process holds memory on it
and multiplies matrices (the numbers the panel and `gpupool status` show)."""

from __future__ import annotations

import importlib.util
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gpupool.lab.metrics import Cgroup, LocalMetrics, Slice

from .sliced import MARK, release, sliced_container
from .test_agent import BUSY_CHILD, _wait_ready, smi

GIB = 1024

pytestmark = pytest.mark.gpu
pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed (carry it in .whl/)")


def test_server_extension_metrics_match_nvidia_smi(figures: dict) -> None:
    if importlib.util.find_spec("torch") is None:
        pytest.skip("PyTorch is not installed")
    row = smi()[0]
    total = int(row["memory.total"])
    env = {
        "GPUPOOL_RESERVATION": "r-gpu-test",
        "GPUPOOL_SPEC": "whole-card",
        "GPUPOOL_GPUS": json.dumps(
            [{"index": 0, "uuid": row["uuid"], "memory_mib": total, "sm": 0, "whole": True}]
        ),
    }
    metrics = LocalMetrics(slice=Slice.from_env(env), nvml=pynvml, cgroup=Cgroup())
    child = subprocess.Popen(
        [sys.executable, "-c", BUSY_CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        _wait_ready(child, 180)
        time.sleep(1)
        idle = metrics.sample()["gpus"][0]
        idle_smi = smi()[0]
        child.stdin.write("6\n")
        child.stdin.flush()
        time.sleep(2)
        busy = metrics.sample()["gpus"][0]
        busy_smi = (
            subprocess.run(
                [
                    "nvidia-smi",
                    "--query-gpu=utilization.gpu,memory.used",
                    "--format=csv,noheader,nounits",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.split("\n")[0]
            .split(",")
        )
        child.stdout.readline()
    finally:
        child.stdin.close()
        child.wait(30)
        metrics.close()
    used_smi = int(idle_smi["memory.used"])
    figures["lab_metrics_vs_smi"] = {
        "idle": {"ours": idle, "smi_memory_used": used_smi},
        "busy": {
            "ours_util": busy["utilization_gpu"],
            "smi_util": int(busy_smi[0]),
            "ours_mem": busy["memory_used_mib"],
            "smi_mem": int(busy_smi[1]),
        },
    }
    print(f"\nserver extension vs nvidia-smi: {figures['lab_metrics_vs_smi']}")
    assert idle["uuid"] == row["uuid"] and idle["model"] == row["name"]
    assert abs(idle["memory_total_mib"] - total) <= 0.01 * total
    assert abs(idle["memory_used_mib"] - used_smi) <= max(64, 0.01 * used_smi)
    assert idle["utilization_gpu"] <= 1
    assert busy["utilization_gpu"] >= 50 and int(busy_smi[0]) >= 50
    assert abs(busy["memory_used_mib"] - int(busy_smi[1])) <= max(128, 0.02 * int(busy_smi[1]))


READ_METRICS = """
import json, sys
from gpupool.lab.metrics import Cgroup, LocalMetrics
import pynvml
m = LocalMetrics(nvml=pynvml, cgroup=Cgroup())
print("GPUPOOL-RESULT " + json.dumps(m.sample()), flush=True)
m.close()
"""


def test_inside_a_slice_memory_is_the_slices(
    tmp_path: Path, gpus: list[dict[str, Any]], libvgpu: Path, figures: dict
) -> None:
    """What the panel shows in a sliced server: the server extension's own process runs
    under HAMi-core like every process of the container, so NVML answers from inside the
    slice: its total is the 4 GiB limit, its used what the container holds."""
    mine = sliced_container(tmp_path / "c", gpus, libvgpu, memory_mib=4 * GIB, sm_percent=30)
    holder = mine.start("hold", 3 * GIB)
    try:
        assert holder.stdout is not None and holder.stderr is not None
        ready, _, _ = select.select([holder.stdout], [], [], 150)
        assert ready, "the holding process did not report within 150 s"
        assert holder.stdout.readline().startswith(MARK)
        env = mine.process_env(PYTHONPATH=os.environ.get("PYTHONPATH", ""))
        p = subprocess.run(
            [sys.executable, "-c", READ_METRICS],
            env=env,
            cwd=mine.root,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        release(holder)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith(MARK)]
    assert lines, f"exit {p.returncode}: {p.stdout[-2000:]} {p.stderr[-3000:]}"
    (g,) = json.loads(lines[-1][len(MARK) :])["gpus"]
    figures["lab_metrics_in_slice"] = g
    print(f"\nserver extension in a 4 GiB / 30 % slice with 3 GiB held: {g}")
    assert g["memory_limit_mib"] == 4 * GIB and g["sm_percent"] == 30
    assert g["memory_total_mib"] == 4 * GIB, g  # HAMi-core's view, not the card's
    assert 3 * GIB <= g["memory_used_mib"] <= 4 * GIB, g
