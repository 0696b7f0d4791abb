"""The node agent on a real GPU, through real NVML (nvidia-ml-py): its inventory and sample
against nvidia-smi, a PyTorch process found by its PID, Xid registration, and the CPU one
sample costs. Imports only the agent's HTTP-free modules (no Tornado, no traitlets)."""

from __future__ import annotations

import importlib.util
import logging
import os
import select
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from gpupool.agent.prometheus import render_metrics
from gpupool.nvml.sampler import NodeSampler
from gpupool.nvml.xid import XidLog, XidWatcher

pytestmark = pytest.mark.gpu
pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed (carry it in .whl/)")

SMI_FIELDS = ("index", "uuid", "name", "memory.total", "memory.used", "driver_version")
ALLOC_MIB = 768
CHILD = f"""
import sys, torch
x = torch.empty({ALLOC_MIB} * 2**20, dtype=torch.uint8, device="cuda")
torch.cuda.synchronize()
print("ready", flush=True)
sys.stdin.read()
"""


def smi() -> list[dict[str, str]]:
    if not shutil.which("nvidia-smi"):
        pytest.skip("nvidia-smi is not on PATH")
    p = subprocess.run(
        ["nvidia-smi", f"--query-gpu={','.join(SMI_FIELDS)}", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [
        dict(zip(SMI_FIELDS, (x.strip() for x in line.split(",")), strict=True))
        for line in p.stdout.splitlines()
        if line.strip()
    ]


@pytest.fixture(scope="module")
def agent(gpus: list[dict[str, Any]]) -> Iterator[NodeSampler]:
    """The agent's sampling part on real NVML; no Docker on the GPU machine, so no labels."""
    a = NodeSampler(pynvml, node="gpu-test", proc_root="/proc", labels=None)
    s = a.take_sample()
    assert s.nvml.ok, s.nvml.error
    try:
        yield a
    finally:
        a.reader.shutdown()


def test_inventory_and_sample_match_nvidia_smi(agent: NodeSampler, figures: dict) -> None:
    s = agent.take_sample()
    rows = smi()  # right after the sample: memory.used compared close together
    inv = {g.index: g for g in s.inventory}
    got = {g.index: g for g in s.gpus}
    assert sorted(inv) == [int(r["index"]) for r in rows], (s.inventory, rows)
    out = []
    for r in rows:
        i = int(r["index"])
        g, reading = inv[i], got[i]
        assert g.uuid == r["uuid"] and reading.uuid == r["uuid"]
        assert g.model == r["name"]
        total = int(r["memory.total"])
        assert abs(g.memory_mib - total) <= 0.01 * total, (g, r)
        assert reading.memory_total_mib is not None
        assert abs(reading.memory_total_mib - total) <= 0.01 * total
        used = int(r["memory.used"])
        assert reading.memory_used_mib is not None
        assert abs(reading.memory_used_mib - used) <= max(64, 0.01 * used), (reading, r)
        assert g.mig_mode in ("enabled", "disabled", "unsupported")
        assert g.pci_bus_id is None or ":" in g.pci_bus_id
        out.append(
            {
                "index": i,
                "uuid": g.uuid,
                "model": g.model,
                "memory_mib": g.memory_mib,
                "smi_memory_total": total,
                "memory_used_mib": reading.memory_used_mib,
                "smi_memory_used": used,
                "mig_mode": g.mig_mode,
                "utilization_gpu": reading.utilization_gpu,
                "temperature_c": reading.temperature_c,
                "power_w": reading.power_w,
                "energy_mj": reading.energy_mj,
            }
        )
    assert s.nvml.driver_version == rows[0]["driver_version"]
    assert s.nvml.cuda_version and s.nvml.cuda_version.replace(".", "").isdigit()
    # a datacenter card reports these; a null here would be a reading bug, not the card
    assert all(g.temperature_c is not None and g.power_w is not None for g in s.gpus)
    text = render_metrics(s)
    for g in s.gpus:
        assert f'DCGM_FI_DEV_FB_USED{{gpu="{g.index}",UUID="{g.uuid}"' in text
    figures["agent_inventory"] = {
        "driver": s.nvml.driver_version,
        "cuda": s.nvml.cuda_version,
        "gpus": out,
    }
    print(f"\nagent inventory and sample vs nvidia-smi: {figures['agent_inventory']}")


def _wait_ready(child: subprocess.Popen[str], timeout: float) -> None:
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], timeout)
    line = child.stdout.readline() if ready else ""
    if line.strip() != "ready":
        child.kill()
        err = child.stderr.read() if child.stderr else ""
        pytest.fail(f"the PyTorch child did not allocate GPU memory: {line!r} {err[-2000:]}")


def test_sample_finds_a_pytorch_process_by_pid(agent: NodeSampler, figures: dict) -> None:
    if importlib.util.find_spec("torch") is None:
        pytest.skip("PyTorch is not installed")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_ready(child, 180)
        deadline = time.monotonic() + 15
        found = None
        while time.monotonic() < deadline and found is None:
            s = agent.take_sample()
            found = next(((g, p) for g in s.gpus for p in g.processes if p.pid == child.pid), None)
            if found is None:
                time.sleep(0.2)
        if found is None:
            listed = [p.pid for g in s.gpus for p in g.processes]
            foreign = [pid for pid in listed if not os.path.exists(f"/proc/{pid}")]
            if listed and len(foreign) == len(listed):
                figures["agent_process_pid"] = {"foreign_pid_namespace": listed}
                pytest.skip(
                    f"NVML lists PIDs {listed}, none of which is in this PID namespace: the "
                    "test runs in a container without --pid=host (the agent needs it)"
                )
            pytest.fail(f"PID {child.pid} not among the processes NVML reports: {listed}")
        g, p = found
        assert p.memory_mib is None or p.memory_mib >= ALLOC_MIB, p
        figures["agent_process_pid"] = {
            "pid": p.pid,
            "gpu": g.index,
            "memory_mib": p.memory_mib,
            "container_id": p.container_id,
        }
        print(f"\nthe PyTorch child in the agent's sample: {figures['agent_process_pid']}")
    finally:
        if child.stdin:
            child.stdin.close()
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()


def test_xid_watcher_on_real_nvml(agent: NodeSampler, figures: dict, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="gpupool.agent")
    xids = XidLog()
    watcher = XidWatcher(agent.reader, xids, wait_ms=200)
    stop = threading.Event()
    t = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    t.start()
    time.sleep(2.0)  # several timed-out waits
    stop.set()
    t.join(5)
    assert not t.is_alive()
    failed = [m for m in caplog.messages if "nvmlEventSet" in m]
    assert not failed, failed  # a timed-out wait is not an error
    uuids = {g.uuid for g in agent.reader.inventory}
    assert set(watcher.watched) <= uuids
    figures["agent_xid_watched"] = {"watched": len(watcher.watched), "gpus": len(uuids)}
    print(f"\nXid events watched on {len(watcher.watched)} of {len(uuids)} GPU(s)")


def test_cpu_per_sample(agent: NodeSampler, figures: dict) -> None:
    nv = agent.reader.nvml
    handles = [h for _, h in agent.reader.devices]

    def bare() -> None:
        for h in handles:
            for fn, args in (
                (nv.nvmlDeviceGetUtilizationRates, ()),
                (nv.nvmlDeviceGetMemoryInfo, ()),
                (nv.nvmlDeviceGetTemperature, (nv.NVML_TEMPERATURE_GPU,)),
                (nv.nvmlDeviceGetPowerUsage, ()),
                (nv.nvmlDeviceGetTotalEnergyConsumption, ()),
                (nv.nvmlDeviceGetComputeRunningProcesses, ()),
                (nv.nvmlDeviceGetGraphicsRunningProcesses, ()),
            ):
                try:
                    fn(h, *args)
                except nv.NVMLError:
                    pass

    def per_call(fn: Any, n: int) -> tuple[float, float]:
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(n):
            fn()
        return (time.process_time() - c0) / n, (time.perf_counter() - w0) / n

    base, ours, wall = [], [], []
    for _ in range(5):
        base.append(per_call(bare, 20)[0])
        cpu, w = per_call(agent.take_sample, 20)
        ours.append(cpu)
        wall.append(w)
    s = agent.latest
    assert s is not None
    render = per_call(lambda: render_metrics(s), 20)[0]
    b, a = statistics.median(base), statistics.median(ours)
    fig = {
        "gpus": len(handles),
        "processes": sum(len(g.processes) for g in s.gpus),
        "bare_nvml_cpu_ms": round(1000 * b, 3),
        "sample_cpu_ms": round(1000 * a, 3),
        "sample_wall_ms": round(1000 * statistics.median(wall), 3),
        "ratio": round(a / b, 2) if b else None,
        "metrics_render_ms": round(1000 * render, 3),
        "core_share_at_1s": round(a, 5),
    }
    figures["agent_sample_cost"] = fig
    print(f"\nagent sample cost on real NVML: {fig}")
    # at the 1 s interval a sample must stay a small share of one core
    assert a < 0.1, fig


BUSY_CHILD = f"""
import sys, time, torch
x = torch.empty({ALLOC_MIB} * 2**20, dtype=torch.uint8, device="cuda")
a = torch.randn(4096, 4096, device="cuda")
torch.cuda.synchronize()
print("ready", flush=True)
for line in sys.stdin:
    end = time.monotonic() + float(line)
    while time.monotonic() < end:
        for _ in range(20):
            a = (a @ a).clamp_(-1, 1)
        torch.cuda.synchronize()
    print("done", flush=True)
"""


def test_utilization_tells_held_but_idle_from_busy(agent: NodeSampler, figures: dict) -> None:
    """What GPU-idle culling reads: a process that holds GPU memory and computes nothing
    reads (about) 0 % on the agent's samples; the same process multiplying matrices reads
    busy. NVML's utilization is per card: the test needs the card to itself."""
    if importlib.util.find_spec("torch") is None:
        pytest.skip("PyTorch is not installed")
    child = subprocess.Popen(
        [sys.executable, "-c", BUSY_CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None

    def util_over(seconds: float) -> list[int]:
        out, end = [], time.monotonic() + seconds
        while time.monotonic() < end:
            for g in agent.take_sample().gpus:
                if any(p.pid == child.pid for p in g.processes) and g.utilization_gpu is not None:
                    out.append(g.utilization_gpu)
            time.sleep(0.5)
        return out

    try:
        _wait_ready(child, 180)
        time.sleep(2)  # let the card's utilization window pass the start-up kernels
        idle = util_over(4)
        child.stdin.write("6\n")
        child.stdin.flush()
        time.sleep(1.5)
        busy = util_over(4)
        child.stdout.readline()
        figures["utilization_idle_vs_busy"] = {"held_idle": idle, "busy": busy}
        print(f"\nutilization while holding {ALLOC_MIB} MiB idle: {idle}; multiplying: {busy}")
        assert idle and max(idle) <= 1, idle
        assert busy and statistics.median(busy) >= 50, busy
    finally:
        child.stdin.close()
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
