"""gpupool.nvml.simulated: the GPU source of demo nodes (no GPU runtime). It answers the
pynvml calls gpupool's readers make, for the slice in GPUPOOL_GPUS, with figures that
follow the container's cgroup (written here by the test, v1 and v2 layouts), and marks
itself simulated everywhere it shows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import gpupool.nvml.simulated as sim
from gpupool.lab.metrics import Cgroup, LocalMetrics, Slice
from gpupool.nvml.reader import NvmlReader

SLICE = [
    {
        "uuid": "GPU-aaaa",
        "index": 0,
        "memory_mib": 10240,
        "sm": 20,
        "model": "NVIDIA A100-SXM4-80GB",
    }
]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cgroup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cgroup v1 layout: half a core of quota, CPU used in ns, memory in bytes."""
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpuacct").mkdir()
    (tmp_path / "memory").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    (tmp_path / "cpuacct" / "cpuacct.usage").write_text("0\n")
    (tmp_path / "memory" / "memory.usage_in_bytes").write_text(str(300 * 1024**2))
    monkeypatch.setattr(sim, "CGROUP", tmp_path)
    monkeypatch.setenv("GPUPOOL_GPUS", json.dumps(SLICE))
    monkeypatch.setattr(sim.time, "monotonic", CLOCK)
    sim._state.update(gpus=None, load=None)
    return tmp_path


CLOCK = Clock()


def use_cpu(cgroup: Path, seconds_of_cpu: float, after: float) -> None:
    """The container used this much CPU time over the next ``after`` seconds."""
    used = int((cgroup / "cpuacct" / "cpuacct.usage").read_text())
    (cgroup / "cpuacct" / "cpuacct.usage").write_text(str(used + int(seconds_of_cpu * 1e9)))
    CLOCK.now += after


def test_the_slice_is_the_inventory_and_says_it_is_simulated(cgroup: Path) -> None:
    reader = NvmlReader(sim)
    assert reader.ensure(), reader.status
    (info,) = reader.inventory
    assert info.uuid == "GPU-aaaa" and info.model == "NVIDIA A100-SXM4-80GB (simulated)"
    assert reader.status.driver_version == "simulated"
    (r,) = reader.read()
    assert r.memory_total_mib == 10240 and r.memory_used_mib == 300
    assert r.processes == []


def test_utilization_follows_the_containers_cpu_against_its_limit(cgroup: Path) -> None:
    reader = NvmlReader(sim)
    reader.ensure()
    assert reader.read()[0].utilization_gpu == 0  # first reading: no interval yet
    use_cpu(cgroup, 0.5, after=2.0)  # 0.25 cores of a 0.5-core limit
    assert reader.read()[0].utilization_gpu == 50
    use_cpu(cgroup, 2.0, after=2.0)  # 1 core: more than the limit, clamped
    assert reader.read()[0].utilization_gpu == 100
    use_cpu(cgroup, 0.0, after=2.0)
    assert reader.read()[0].utilization_gpu == 0


def test_memory_used_is_the_containers_up_to_the_slice(cgroup: Path) -> None:
    reader = NvmlReader(sim)
    reader.ensure()
    (cgroup / "memory" / "memory.usage_in_bytes").write_text(str(64 * 1024**3))
    (r,) = reader.read()
    assert r.memory_used_mib == r.memory_total_mib == 10240 and r.memory_free_mib == 0


@pytest.mark.parametrize(
    "raw", ["not json", json.dumps({"uuid": "x"}), json.dumps([1, "x", {"index": 0}])]
)
def test_a_malformed_slice_gives_no_gpu_not_a_crash(
    cgroup: Path, monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("GPUPOOL_GPUS", raw)
    reader = NvmlReader(sim)
    reader.ensure()
    assert reader.inventory == () and reader.read() == []


def test_the_servers_samples_are_marked_simulated(cgroup: Path) -> None:
    m = LocalMetrics(
        slice=Slice.from_env({"GPUPOOL_GPUS": json.dumps(SLICE)}),
        nvml=sim,
        cgroup=Cgroup(cgroup),
    )
    s = m.sample()
    assert s["simulated"] is True and "nvml_error" not in s
    assert s["gpus"][0]["uuid"] == "GPU-aaaa" and s["gpus"][0]["memory_limit_mib"] == 10240


def test_load_keeps_a_core_busy_for_the_seconds_asked() -> None:
    import time

    t0 = time.process_time()
    assert sim.load(0.3) == 0.3
    assert time.process_time() - t0 >= 0.2
