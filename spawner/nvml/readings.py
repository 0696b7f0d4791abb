"""What NVML readings are: a node's GPUs and NVML's state, one reading per GPU and per
process on it, Xid events, and the sample that holds them (the agent serves them as JSON).

Plain data, no NVML calls: ``reader`` fills them in, ``sampler`` and ``xid`` gather them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class GpuInfo:
    index: int
    uuid: str
    model: str
    memory_mib: int
    mig_mode: str  # enabled | disabled | unsupported
    pci_bus_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "uuid": self.uuid,
            "model": self.model,
            "memory_mib": self.memory_mib,
            "mig_mode": self.mig_mode,
            "pci_bus_id": self.pci_bus_id,
        }


@dataclass(frozen=True)
class NvmlStatus:
    ok: bool
    error: str | None
    driver_version: str | None
    cuda_version: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "error": self.error,
            "driver_version": self.driver_version,
            "cuda_version": self.cuda_version,
        }


@dataclass
class ProcessReading:
    pid: int
    memory_mib: int | None
    container_id: str | None = None
    owner: str | None = None
    reservation: str | None = None
    server: str | None = None
    kind: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "memory_mib": self.memory_mib,
            "container_id": self.container_id,
            "owner": self.owner,
            "reservation": self.reservation,
            "server": self.server,
            "kind": self.kind,
        }


@dataclass
class GpuReading:
    index: int
    uuid: str
    utilization_gpu: int | None = None
    utilization_memory: int | None = None
    memory_used_mib: int | None = None
    memory_total_mib: int | None = None
    memory_free_mib: int | None = None  # for DCGM_FI_DEV_FB_FREE; not in the JSON contract
    temperature_c: int | None = None
    power_w: float | None = None
    energy_mj: int | None = None
    processes: list[ProcessReading] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "uuid": self.uuid,
            "utilization_gpu": self.utilization_gpu,
            "utilization_memory": self.utilization_memory,
            "memory_used_mib": self.memory_used_mib,
            "memory_total_mib": self.memory_total_mib,
            "temperature_c": self.temperature_c,
            "power_w": self.power_w,
            "energy_mj": self.energy_mj,
            "processes": [p.to_json() for p in self.processes],
        }


@dataclass(frozen=True)
class XidEvent:
    seq: int
    time: float
    uuid: str
    index: int
    xid: int

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "uuid": self.uuid,
            "index": self.index,
            "xid": self.xid,
        }


@dataclass
class Sample:
    time: float
    seq: int
    hostname: str
    node: str
    nvml: NvmlStatus
    gpus: list[GpuReading]
    xid_events: list[XidEvent]
    inventory: tuple[GpuInfo, ...] = ()  # what the readings were taken against
    duration: float = 0.0  # seconds the sample took

    def to_json(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "seq": self.seq,
            "hostname": self.hostname,
            "node": self.node,
            "nvml": self.nvml.to_json(),
            "gpus": [g.to_json() for g in self.gpus],
            "xid_events": [x.to_json() for x in self.xid_events],
        }
