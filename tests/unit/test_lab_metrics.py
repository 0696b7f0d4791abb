"""The server's own metrics (gpupool.lab.metrics) against a FAKE NVML (no GPU in CI) and
cgroup files written by the test; the CLI's tables; the client's errors without a pool."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpupool.lab import cli
from gpupool.lab.client import PoolApi, PoolApiError
from gpupool.lab.metrics import Cgroup, LocalMetrics, Slice
from tests.support import fake_nvml

UUIDS = [f"GPU-fa4e0000-0000-4000-8000-{i:012d}" for i in range(3)]
ENV = {
    "GPUPOOL_RESERVATION": "r-1",
    "GPUPOOL_SPEC": "a100-20g",
    "GPUPOOL_NODE": "node-a",
    "GPUPOOL_GPUS": json.dumps(
        [{"index": 1, "uuid": UUIDS[1], "memory_mib": 20480, "sm": 30, "whole": False}]
    ),
}


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[fake_nvml.World]:
    monkeypatch.delenv(fake_nvml.ENV, raising=False)
    specs = [
        {
            "uuid": u,
            "memory_total_mib": 81920,
            "memory_used_mib": 1000 * (i + 1),
            "utilization_gpu": 10 * i,
        }
        for i, u in enumerate(UUIDS)
    ]
    yield fake_nvml.world.reset(gpus=specs)
    fake_nvml.world.reset(gpus=2)


def cgroup(tmp: Path, cpu_max: str = "150000 100000", usage: int = 0, mem: int = 512) -> Cgroup:
    (tmp / "cpu.max").write_text(cpu_max + "\n")
    (tmp / "cpu.stat").write_text(f"usage_usec {usage}\nuser_usec 1\nsystem_usec 2\n")
    (tmp / "memory.current").write_text(str(mem * 2**20))
    (tmp / "memory.max").write_text(str(4096 * 2**20))
    return Cgroup(tmp, clock=CLOCK)


CLOCK = Clock()


def test_slice_from_the_spawners_environment() -> None:
    s = Slice.from_env(ENV)
    assert (s.reservation, s.spec, s.node) == ("r-1", "a100-20g", "node-a")
    assert [(g.uuid, g.memory_mib, g.sm_percent) for g in s.gpus] == [(UUIDS[1], 20480, 30)]
    assert Slice.from_env({}) == Slice() and Slice.from_env({"GPUPOOL_GPUS": "{broken"}).gpus == ()


def test_only_the_reserved_gpus_are_read(world: fake_nvml.World, tmp_path: Path) -> None:
    m = LocalMetrics(slice=Slice.from_env(ENV), nvml=fake_nvml, cgroup=cgroup(tmp_path))
    (g,) = m.sample()["gpus"]
    assert g == {
        "index": 1,
        "uuid": UUIDS[1],
        "model": "NVIDIA A100-SXM4-80GB",
        "utilization_gpu": 10,
        "memory_used_mib": 2000,
        "memory_total_mib": 81920,
        "memory_limit_mib": 20480,
        "sm_percent": 30,
        "whole": False,
    }
    world.gpus[1].utilization_gpu = 77
    assert m.sample()["gpus"][0]["utilization_gpu"] == 77
    assert len(m.history) == 2


def test_cpu_and_memory_from_the_cgroup(tmp_path: Path) -> None:
    cg = cgroup(tmp_path, usage=1_000_000)
    first = cg.sample()
    assert first["cpu"] == {"used_cores": None, "limit_cores": 1.5}  # no rate from one reading
    assert first["memory"] == {"used_mib": 512, "limit_mib": 4096}
    (tmp_path / "cpu.stat").write_text("usage_usec 1500000\n")
    CLOCK.t += 2
    assert cg.sample()["cpu"]["used_cores"] == 0.25
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "memory.max").write_text("max\n")
    s = cg.sample()
    assert s["cpu"]["limit_cores"] is None and s["memory"]["limit_mib"] is None
    assert Cgroup(tmp_path / "none").sample() == {
        "cpu": {"used_cores": None, "limit_cores": None},
        "memory": {"used_mib": None, "limit_mib": None},
    }


def test_cgroup_v1(tmp_path: Path) -> None:
    for d in ("cpu", "cpuacct", "memory"):
        (tmp_path / d).mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    (tmp_path / "cpuacct" / "cpuacct.usage").write_text("2000000000\n")  # ns
    (tmp_path / "memory" / "memory.usage_in_bytes").write_text(str(300 * 2**20))
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text(str(1024 * 2**20))
    clock = Clock()
    cg = Cgroup(tmp_path, clock=clock)
    assert cg.v1 and cg.sample() == {
        "cpu": {"used_cores": None, "limit_cores": 0.5},
        "memory": {"used_mib": 300, "limit_mib": 1024},
    }
    (tmp_path / "cpuacct" / "cpuacct.usage").write_text("2500000000\n")
    clock.t += 1
    assert cg.sample()["cpu"]["used_cores"] == 0.5
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712")
    s = cg.sample()
    assert s["cpu"]["limit_cores"] is None and s["memory"]["limit_mib"] is None


def test_a_cpu_spec_reads_no_nvml(tmp_path: Path) -> None:
    m = LocalMetrics(
        slice=Slice.from_env({"GPUPOOL_SPEC": "cpu-1"}), nvml=None, cgroup=cgroup(tmp_path)
    )
    assert m.reader is None and m.sample()["gpus"] == []


def test_nvml_down_is_said(world: fake_nvml.World, tmp_path: Path) -> None:
    world.init_error = fake_nvml.NVML_ERROR_DRIVER_NOT_LOADED
    m = LocalMetrics(slice=Slice.from_env(ENV), nvml=fake_nvml, cgroup=cgroup(tmp_path))
    s = m.sample()
    assert s["gpus"] == [] and "Driver Not Loaded" in s["nvml_error"]


def test_client_says_what_is_missing() -> None:
    with pytest.raises(PoolApiError, match="JUPYTERHUB_API_TOKEN is not set"):
        PoolApi.from_env({})
    with pytest.raises(PoolApiError, match="GPUPOOL_API_URL is not set"):
        PoolApi.from_env({"JUPYTERHUB_API_TOKEN": "x"})
    api = PoolApi("http://127.0.0.1:9", "x", timeout=2)  # nothing listens on port 9
    with pytest.raises(PoolApiError, match=r"cannot reach the pool at http://127\.0\.0\.1:9"):
        api.specs()


def test_status_table_without_a_pool(
    world: fake_nvml.World, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("GPUPOOL_NVML_MODULE", "tests.support.fake_nvml")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "x")
    monkeypatch.setenv("GPUPOOL_API_URL", "http://127.0.0.1:9")
    out = io.StringIO()
    assert cli.status(argparse.Namespace(json=False, command="status"), out) == 0
    text = out.getvalue()
    assert "spec a100-20g on node node-a, reservation r-1 (unknown)" in text
    assert "20.0 GiB" in text and "30 %" in text and "10 %" in text
    assert "the pool did not answer: cannot reach the pool" in text
