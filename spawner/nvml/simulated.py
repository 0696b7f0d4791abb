"""Simulated GPUs, for a demo pool whose nodes have none (``gpu_runtime: none``, as the
quickstart on a machine without GPUs): a module with the pynvml names gpupool reads, so
that the status bar, the panel's charts and the notebook monitor move as they would on a
GPU. It measures no GPU, and says so wherever it shows: each GPU's name ends in
"(simulated)", the driver version is "simulated", and readers mark their samples
``simulated`` (:data:`SIMULATED`).

The GPUs are the slice the server holds (``GPUPOOL_GPUS``, as the spawner sets it). Their
load is the container's own, from its cgroup (v2 or v1): utilization is the CPU it used
since the last reading against its CPU limit, memory used is the memory it holds, up to
the slice. So a notebook cell that works hard (``gpupool.nvml.simulated.load()`` spins
for a while) makes the "GPU" chart rise, and a cell that allocates makes memory rise.

The spawner points a server at it with ``GPUPOOL_NVML_MODULE=gpupool.nvml.simulated`` on
nodes without a GPU runtime whose GPUs the catalog declares. The quickstart runs the demo
node's agent on it too (``--nvml-module gpupool.nvml.simulated``, ``GPUPOOL_GPUS`` the
node's declared GPUs): there the cgroup is the machine's own, so every simulated GPU shows
the machine's CPU load, and the Pool dashboard and GPU-idle notices move with it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SIMULATED = True
MIB = 1024 * 1024
CGROUP = Path(os.environ.get("GPUPOOL_SIMULATED_CGROUP", "/sys/fs/cgroup"))

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_TEMPERATURE_GPU = 0
NVML_DEVICE_MIG_DISABLE = 0
NVML_DEVICE_MIG_ENABLE = 1


class NVMLError(Exception):
    def __init__(self, value: int, text: str = "") -> None:
        super().__init__(text or f"simulated NVML error {value}")
        self.value = value


@dataclass(frozen=True)
class Memory:
    total: int
    used: int
    free: int


@dataclass(frozen=True)
class Utilization:
    gpu: int
    memory: int


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    name: str
    memory_mib: int


class _Load:
    """The container's CPU (cores used since the last reading, against its limit) and
    memory, from its cgroup; a missing file reads as no load."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or CGROUP
        self._last: tuple[float, int] | None = None
        self._percent = 0
        self._lock = threading.Lock()

    def _read(self, *names: str) -> str | None:
        for name in names:
            try:
                return (self.root / name).read_text().strip()
            except OSError:
                continue
        return None

    def _usage_usec(self) -> int | None:
        stat = self._read("cpu.stat")
        if stat and "usage_usec" in stat:
            for line in stat.splitlines():
                k, _, v = line.partition(" ")
                if k == "usage_usec" and v.isdigit():
                    return int(v)
        ns = self._read("cpuacct/cpuacct.usage", "cpu,cpuacct/cpuacct.usage")
        return int(ns) // 1000 if ns and ns.isdigit() else None

    def _limit_cores(self) -> float:
        raw = self._read("cpu.max")
        if raw and not raw.startswith("max"):
            quota, _, period = raw.partition(" ")
            if quota.isdigit() and period.isdigit() and int(period):
                return int(quota) / int(period)
        quota = self._read("cpu/cpu.cfs_quota_us", "cpu,cpuacct/cpu.cfs_quota_us")
        period = self._read("cpu/cpu.cfs_period_us", "cpu,cpuacct/cpu.cfs_period_us")
        if quota and period and quota.isdigit() and period.isdigit() and int(period):
            return int(quota) / int(period)
        return float(os.cpu_count() or 1)

    def percent(self) -> int:
        """CPU used since the last call (at least a second apart), in % of the limit."""
        with self._lock:
            now, used = time.monotonic(), self._usage_usec()
            if used is None:
                return 0
            if self._last is None or now - self._last[0] >= 1.0:
                if self._last is not None:
                    cores = max(0, used - self._last[1]) / 1e6 / (now - self._last[0])
                    self._percent = min(100, round(100 * cores / max(self._limit_cores(), 0.01)))
                self._last = (now, used)
            return self._percent

    def memory_mib(self) -> int:
        raw = self._read("memory.current", "memory/memory.usage_in_bytes")
        return int(raw) // MIB if raw and raw.isdigit() else 0


def _gpus_from_env() -> list[Gpu]:
    try:
        raw = json.loads(os.environ.get("GPUPOOL_GPUS") or "[]")
    except ValueError:
        raw = []
    out = []
    for i, g in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(g, dict) or not isinstance(g.get("uuid"), str):
            continue
        model = str(g.get("model") or "GPU")[:64]
        out.append(
            Gpu(
                index=i,
                uuid=g["uuid"][:96],
                name=f"{model} (simulated)",
                memory_mib=max(1, int(g.get("memory_mib") or 1024)),
            )
        )
    return out


_state: dict[str, Any] = {"gpus": None, "load": None, "energy": 0.0, "at": None}


def _need() -> list[Gpu]:
    if _state["gpus"] is None:
        raise NVMLError(NVML_ERROR_UNINITIALIZED, "Uninitialized")
    return _state["gpus"]


def nvmlInit() -> None:
    _state["gpus"] = _gpus_from_env()
    _state["load"] = _Load()


def nvmlShutdown() -> None:
    _state["gpus"] = None


def nvmlSystemGetDriverVersion() -> str:
    return "simulated"


def nvmlSystemGetCudaDriverVersion() -> int:
    return 0


def nvmlDeviceGetCount() -> int:
    return len(_need())


def nvmlDeviceGetHandleByIndex(i: int) -> Gpu:
    gpus = _need()
    if not 0 <= i < len(gpus):
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT, "Invalid Argument")
    return gpus[i]


def nvmlDeviceGetName(h: Gpu) -> str:
    return h.name


def nvmlDeviceGetUUID(h: Gpu) -> str:
    return h.uuid


def nvmlDeviceGetMemoryInfo(h: Gpu, version: Any = None) -> Memory:
    total = h.memory_mib * MIB
    used = min(total, _state["load"].memory_mib() * MIB) if _state["load"] else 0
    return Memory(total=total, used=used, free=total - used)


def nvmlDeviceGetUtilizationRates(h: Gpu) -> Utilization:
    pct = _state["load"].percent() if _state["load"] else 0
    mem = nvmlDeviceGetMemoryInfo(h)
    return Utilization(gpu=pct, memory=round(100 * mem.used / max(mem.total, 1)))


def nvmlDeviceGetTemperature(h: Gpu, sensor: int = 0) -> int:
    return 30 + nvmlDeviceGetUtilizationRates(h).gpu // 2


def nvmlDeviceGetPowerUsage(h: Gpu) -> int:  # mW
    return 60_000 + 3_000 * nvmlDeviceGetUtilizationRates(h).gpu


def nvmlDeviceGetTotalEnergyConsumption(h: Gpu) -> int:  # mJ, from the power over time
    now = time.monotonic()
    if _state["at"] is not None:
        _state["energy"] += nvmlDeviceGetPowerUsage(h) * (now - _state["at"])
    _state["at"] = now
    return int(_state["energy"])


def nvmlDeviceGetComputeRunningProcesses(h: Gpu) -> list[Any]:
    return []


nvmlDeviceGetGraphicsRunningProcesses = nvmlDeviceGetComputeRunningProcesses


def nvmlDeviceGetMigMode(h: Gpu) -> tuple[int, int]:
    return (NVML_DEVICE_MIG_DISABLE, NVML_DEVICE_MIG_DISABLE)


def nvmlDeviceGetPciInfo(h: Gpu) -> Any:
    raise NVMLError(NVML_ERROR_NOT_SUPPORTED, "Not Supported")


def nvmlEventSetCreate() -> Any:
    raise NVMLError(NVML_ERROR_NOT_SUPPORTED, "Not Supported")


def nvmlDeviceRegisterEvents(*args: Any) -> None:
    raise NVMLError(NVML_ERROR_NOT_SUPPORTED, "Not Supported")


def nvmlEventSetWait(*args: Any) -> Any:
    raise NVMLError(NVML_ERROR_NOT_SUPPORTED, "Not Supported")


def load(seconds: float = 20.0) -> float:
    """Keep one core busy for ``seconds`` (a notebook cell that "loads the GPU" in a
    simulated pool); returns the seconds spent. Run it in several processes or threads of
    numpy work to load more cores."""
    end = time.monotonic() + max(0.0, min(float(seconds), 600.0))
    x = 0
    while time.monotonic() < end:
        for i in range(10_000):
            x ^= i
    return float(seconds)
