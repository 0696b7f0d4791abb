"""The server's own metrics, read inside its container: each reserved GPU through NVML
and the container's cgroup (v2) for CPU and memory.

Under HAMi-core (preloaded in every process of a sliced server, this one included) NVML
answers from inside the slice: ``memory_total_mib`` is the slice, ``memory_used_mib``
what this container's processes hold. Utilization is the card's: NVML has no per-slice
figure, so a neighbour's work shows too; the panel says so.

The slice itself comes from the spawner's environment: ``GPUPOOL_GPUS`` (UUID, memory
and SM share of each GPU), ``GPUPOOL_SPEC``, ``GPUPOOL_NODE``, ``GPUPOOL_RESERVATION``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpupool.nvml.binding import load_nvml
from gpupool.nvml.reader import NvmlReader

MIB = 1024 * 1024


@dataclass(frozen=True)
class SliceGpu:
    index: int
    uuid: str
    memory_mib: int
    sm_percent: int
    whole: bool
    model: str = ""  # as the catalog declares it ("" where the spawner did not say)


@dataclass(frozen=True)
class Slice:
    """What the pool gave this server (empty for a CPU-only spec or outside the pool)."""

    reservation: str | None = None
    spec: str | None = None
    node: str | None = None
    gpus: tuple[SliceGpu, ...] = ()

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Slice:
        env = dict(os.environ if env is None else env)
        try:
            raw = json.loads(env.get("GPUPOOL_GPUS") or "[]")
        except ValueError:
            raw = []
        gpus = tuple(
            SliceGpu(
                index=int(g.get("index", i)),
                uuid=str(g.get("uuid", "")),
                memory_mib=int(g.get("memory_mib") or 0),
                sm_percent=int(g.get("sm", g.get("sm_percent")) or 0),  # the pool says "sm"
                whole=bool(g.get("whole")),
                model=str(g.get("model") or ""),
            )
            for i, g in enumerate(raw)
            if isinstance(g, dict)
        )
        return cls(
            reservation=env.get("GPUPOOL_RESERVATION") or None,
            spec=env.get("GPUPOOL_SPEC") or None,
            node=env.get("GPUPOOL_NODE") or None,
            gpus=gpus,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "reservation": self.reservation,
            "spec": self.spec,
            "node": self.node,
            "gpus": [g.__dict__ for g in self.gpus],
        }


class Cgroup:
    """CPU and memory of the container from its cgroup: v2 (``cpu.max``, ``cpu.stat``,
    ``memory.current``, ``memory.max``) or v1 (``cpu/cpu.cfs_quota_us``,
    ``cpuacct/cpuacct.usage``, ``memory/memory.usage_in_bytes``, ``memory.limit_in_bytes``)
    under ``/sys/fs/cgroup``."""

    NO_LIMIT_V1 = 1 << 60  # v1 writes "no limit" as a huge page-rounded number

    def __init__(
        self, root: str | Path = "/sys/fs/cgroup", clock: Callable[[], float] = time.monotonic
    ):
        self.root = Path(root)
        self.clock = clock
        self._last: tuple[float, int] | None = None
        self.v1 = not (self.root / "cpu.max").exists() and (self.root / "cpu").is_dir()

    def _read(self, name: str) -> str | None:
        try:
            return (self.root / name).read_text().strip()
        except OSError:
            return None

    def _int(self, *names: str) -> int | None:
        for name in names:
            raw = self._read(name)
            if raw is not None and raw.lstrip("-").isdigit():
                return int(raw)
        return None

    def cpu_limit_cores(self) -> float | None:
        if self.v1:
            quota = self._int("cpu/cpu.cfs_quota_us", "cpu,cpuacct/cpu.cfs_quota_us")
            period = self._int("cpu/cpu.cfs_period_us", "cpu,cpuacct/cpu.cfs_period_us")
            if quota is None or quota < 0 or not period:
                return None
            return quota / period
        raw = self._read("cpu.max")  # "max 100000" or "150000 100000"
        if not raw:
            return None
        quota_s, _, period_s = raw.partition(" ")
        if quota_s == "max" or not period_s:
            return None
        return int(quota_s) / int(period_s)

    def cpu_usage_usec(self) -> int | None:
        if self.v1:
            ns = self._int("cpuacct/cpuacct.usage", "cpu,cpuacct/cpuacct.usage")
            return None if ns is None else ns // 1000
        for line in (self._read("cpu.stat") or "").splitlines():
            k, _, v = line.partition(" ")
            if k == "usage_usec":
                return int(v)
        return None

    def memory_mib(self) -> tuple[int | None, int | None]:
        if self.v1:
            used = self._int("memory/memory.usage_in_bytes")
            limit = self._int("memory/memory.limit_in_bytes")
            if limit is not None and limit >= self.NO_LIMIT_V1:
                limit = None
        else:
            used, limit = self._int("memory.current"), self._int("memory.max")
        return (
            None if used is None else used // MIB,
            None if limit is None else limit // MIB,
        )

    def sample(self) -> dict[str, Any]:
        now, used = self.clock(), self.cpu_usage_usec()
        cores = None
        if used is not None:
            if self._last is not None and now > self._last[0]:
                cores = round(max(0, used - self._last[1]) / 1e6 / (now - self._last[0]), 3)
            self._last = (now, used)
        mem_used, mem_limit = self.memory_mib()
        return {
            "cpu": {"used_cores": cores, "limit_cores": self.cpu_limit_cores()},
            "memory": {"used_mib": mem_used, "limit_mib": mem_limit},
        }


@dataclass
class LocalMetrics:
    """Samples of this server: its GPUs (only the reserved ones) and its cgroup; keeps the
    last ``keep`` samples. ``sample()`` blocks (NVML, files): call it from a thread."""

    slice: Slice = field(default_factory=Slice.from_env)
    nvml: Any = None
    cgroup: Cgroup = field(default_factory=Cgroup)
    keep: int = 300
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self.history: deque[dict[str, Any]] = deque(maxlen=self.keep)
        self.reader: NvmlReader | None = None
        self.nvml_error: str | None = None
        self.simulated = False  # gpupool.nvml.simulated: a demo node's GPUs
        self._lock = threading.Lock()
        if self.slice.gpus:
            try:
                module = self.nvml or load_nvml()
                self.simulated = bool(getattr(module, "SIMULATED", False))
                self.reader = NvmlReader(module, retry_interval=30)
            except ImportError as e:
                self.nvml_error = f"NVML is not available here: {e}"

    def _gpus(self) -> list[dict[str, Any]]:
        if self.reader is None or not self.reader.ensure():
            if self.reader is not None:
                self.nvml_error = self.reader.status.error
            return []
        self.nvml_error = None
        mine = {g.uuid: g for g in self.slice.gpus}
        models = {info.uuid: info.model for info, _ in self.reader.devices}
        out = []
        for r in self.reader.read():
            g = mine.get(r.uuid)
            if g is None:
                continue
            out.append(
                {
                    "index": g.index,
                    "uuid": r.uuid,
                    "model": models.get(r.uuid),
                    "utilization_gpu": r.utilization_gpu,
                    "memory_used_mib": r.memory_used_mib,
                    "memory_total_mib": r.memory_total_mib,
                    "memory_limit_mib": g.memory_mib,
                    "sm_percent": g.sm_percent or None,
                    "whole": g.whole,
                }
            )
        return out

    def sample(self) -> dict[str, Any]:
        with self._lock:
            s = {"time": self.clock(), "gpus": self._gpus(), **self.cgroup.sample()}
            if self.nvml_error:
                s["nvml_error"] = self.nvml_error
            if self.simulated:
                s["simulated"] = True
            self.history.append(s)
            return s

    def close(self) -> None:
        if self.reader is not None:
            self.reader.shutdown()
