"""A FAKE NVML for CI, where no GPU exists. It is not a GPU and measures nothing.

It has the names of pynvml (nvidia-ml-py) that gpupool's node agent uses, with the same
calling conventions: ``nvmlInit`` before anything else, device handles, memory info in
bytes, power in mW, energy in mJ, ``NVMLError`` with ``.value`` and the ``NVML_ERROR_*``
codes (same numbers as pynvml), ``nvmlEventSetWait`` raising ``NVML_ERROR_TIMEOUT`` when
no event came. Point the agent at it with ``--AgentApp.nvml_module=tests.support.fake_nvml``.

In-process control, through ``world``::

    from tests.support import fake_nvml
    fake_nvml.world.reset(gpus=2)                 # 2 x A100 80GB, idle
    fake_nvml.world.reset(gpus=[{"name": "NVIDIA H100 80GB HBM3", "mig": "enabled"}])
    g = fake_nvml.world.gpus[0]
    g.utilization_gpu = 87; g.memory_used_mib = 4096
    g.processes = [fake_nvml.Proc(pid=1234, used_mib=4000)]
    fake_nvml.world.fail("nvmlDeviceGetPowerUsage", fake_nvml.NVML_ERROR_NOT_SUPPORTED, gpu=0)
    fake_nvml.world.init_error = fake_nvml.NVML_ERROR_DRIVER_NOT_LOADED   # nvmlInit raises
    fake_nvml.world.bytes_strings = True          # names, UUIDs, versions come back as bytes
    fake_nvml.world.emit_xid(0, 79)               # an Xid critical error on GPU 0

From another process: when the environment variable ``GPUPOOL_FAKE_NVML_WORLD`` names a
JSON file, the world is read from it, and read again whenever its modification time or
size changes (checked on every call). Write it atomically (a temporary file, then
``os.replace``); a file that does not parse is ignored and the last world kept. Shape
(every key optional; the defaults are those of ``reset``)::

    {
      "driver_version": "550.54.15",
      "cuda_version": 12040,                  # as nvmlSystemGetCudaDriverVersion returns it
      "init_error": null,                     # or an NVML_ERROR_* number or name, e.g.
                                              # "DRIVER_NOT_LOADED": nvmlInit raises it
      "bytes_strings": false,
      "gpus": [                               # or a number: that many default GPUs
        {
          "uuid": "GPU-...", "name": "NVIDIA A100-SXM4-80GB",
          "memory_total_mib": 81920, "memory_used_mib": 0,
          "utilization_gpu": 0, "utilization_memory": 0,
          "temperature_c": 30, "power_mw": 60000, "energy_mj": 0,
          "mig": "disabled",                  # "enabled" | "disabled" | "unsupported"
          "pci_bus_id": "00000000:07:00.0",   # null: nvmlDeviceGetPciInfo raises
          "xid_supported": true,              # false: nvmlDeviceRegisterEvents raises
          "processes": [{"pid": 1234, "used_mib": 4000, "graphics": false}],
          "fail": {"nvmlDeviceGetPowerUsage": "NOT_SUPPORTED"}
        }
      ],
      "xids": [{"gpu": 0, "xid": 79}]         # appended entries are emitted once each,
                                              # kept until a watcher has registered
    }
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

# -- constants, same values as pynvml ------------------------------------------------------
NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_ALREADY_INITIALIZED = 5
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_INSUFFICIENT_POWER = 8
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_IRQ_ISSUE = 11
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_CORRUPTED_INFOROM = 14
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_OPERATING_SYSTEM = 17
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_IN_USE = 19
NVML_ERROR_MEMORY = 20
NVML_ERROR_NO_DATA = 21
NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25
NVML_ERROR_UNKNOWN = 999
nvmlMemory_v2 = 0x02000028

NVML_TEMPERATURE_GPU = 0
NVML_DEVICE_MIG_DISABLE = 0
NVML_DEVICE_MIG_ENABLE = 1
nvmlEventTypeXidCriticalError = 0x0000000000000008

_ERROR_TEXT = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH: "Argument Version Mismatch",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_ALREADY_INITIALIZED: "Already Initialized",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_INSUFFICIENT_SIZE: "Insufficient Size",
    NVML_ERROR_INSUFFICIENT_POWER: "Insufficient External Power",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_TIMEOUT: "Timeout",
    NVML_ERROR_IRQ_ISSUE: "Interrupt Request Issue",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
    NVML_ERROR_CORRUPTED_INFOROM: "Corrupted infoROM",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_RESET_REQUIRED: "GPU requires restart",
    NVML_ERROR_OPERATING_SYSTEM: "The operating system has blocked the request.",
    NVML_ERROR_LIB_RM_VERSION_MISMATCH: "RM has detected an NVML/RM version mismatch.",
    NVML_ERROR_MEMORY: "Insufficient Memory",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}
MIB = 1024 * 1024
ENV = "GPUPOOL_FAKE_NVML_WORLD"


class NVMLError(Exception):
    """As pynvml's: ``.value`` is the NVML return code, ``str()`` its text."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _ERROR_TEXT.get(self.value, f"NVML Error with code {self.value}")


def _code(v: int | str) -> int:
    if isinstance(v, int):
        return v
    name = v.upper()
    return int(globals()[name if name.startswith("NVML_ERROR_") else f"NVML_ERROR_{name}"])


# -- the objects NVML returns ----------------------------------------------------------------
@dataclass
class c_nvmlMemory_t:
    total: int
    free: int
    used: int


@dataclass
class c_nvmlMemory_v2_t:
    version: int
    total: int
    reserved: int
    free: int
    used: int


@dataclass
class c_nvmlUtilization_t:
    gpu: int
    memory: int


@dataclass
class nvmlPciInfo_t:
    busId: Any


@dataclass
class ProcessInfo:
    pid: int
    usedGpuMemory: int | None  # bytes; None where the driver cannot tell


@dataclass
class c_nvmlEventData_t:
    device: Any
    eventType: int
    eventData: int
    gpuInstanceId: int = 0xFFFFFFFF
    computeInstanceId: int = 0xFFFFFFFF


@dataclass(eq=False)
class Handle:
    """A device handle; compared by identity, like pynvml's pointers."""

    index: int


@dataclass(eq=False)
class EventSet:
    devices: set[int] = field(default_factory=set)
    queue: deque[c_nvmlEventData_t] = field(default_factory=deque)
    freed: bool = False


# -- the world ---------------------------------------------------------------------------------
@dataclass
class Proc:
    pid: int
    used_mib: int | None = 0
    graphics: bool = False


A100 = "NVIDIA A100-SXM4-80GB"


@dataclass
class Gpu:
    index: int
    uuid: str = ""
    name: str = A100
    memory_total_mib: int = 81920
    memory_used_mib: int = 0
    memory_reserved_mib: int = 0  # the driver's own; v2 reports it apart from used
    utilization_gpu: int = 0
    utilization_memory: int = 0
    temperature_c: int = 30
    power_mw: int = 60000
    energy_mj: int = 0
    mig: str = "disabled"
    pci_bus_id: str | None = ""
    xid_supported: bool = True
    processes: list[Proc] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)  # function name -> NVML error code

    def __post_init__(self) -> None:
        if not self.uuid:
            self.uuid = f"GPU-fa4e0000-0000-4000-8000-{self.index:012d}"
        if self.pci_bus_id == "":
            self.pci_bus_id = f"00000000:{0x07 + self.index:02X}:00.0"

    @classmethod
    def from_json(cls, index: int, d: dict[str, Any]) -> Gpu:
        d = dict(d)
        procs = [Proc(**p) for p in d.pop("processes", [])]
        fail = {k: _code(v) for k, v in d.pop("fail", {}).items()}
        return cls(index=index, processes=procs, fail=fail, **d)


class World:
    """What the fake NVML reports; change it between calls (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.reset()
        self._file_stamp: tuple[str, int, int] | None = None
        self._file_xids = 0

    def reset(
        self,
        gpus: int | list[dict[str, Any]] = 2,
        *,
        driver_version: str = "550.54.15",
        cuda_version: int = 12040,
        init_error: int | str | None = None,
        bytes_strings: bool = False,
    ) -> World:
        with self.lock:
            specs = [{} for _ in range(gpus)] if isinstance(gpus, int) else gpus
            self.gpus = [Gpu.from_json(i, s) for i, s in enumerate(specs)]
            self.handles = [Handle(i) for i in range(len(self.gpus))]
            self.driver_version = driver_version
            self.cuda_version = cuda_version
            self.init_error: int | None = None if init_error is None else _code(init_error)
            self.bytes_strings = bytes_strings
            self.failures: dict[str, int] = {}  # function -> code, for every GPU and system calls
            self.initialized = 0  # nvmlInit minus nvmlShutdown
            self.calls: dict[str, int] = {}
            self.event_sets: list[EventSet] = []
            self.pending_xids: list[c_nvmlEventData_t] = []
            return self

    def fail(self, function: str, code: int | str | None, gpu: int | None = None) -> None:
        """Make ``function`` raise NVMLError(code) (on one GPU, or everywhere); None heals."""
        with self.lock:
            where = self.failures if gpu is None else self.gpus[gpu].fail
            if code is None:
                where.pop(function, None)
            else:
                where[function] = _code(code)

    def emit_xid(self, gpu: int, xid: int) -> None:
        """An Xid critical error on GPU ``gpu``. Unlike NVML, which drops an event nobody
        waits for, the fake keeps it until an event set registers that GPU, so that a test
        need not know when the agent's watcher got ready."""
        with self.lock:
            data = c_nvmlEventData_t(self.handles[gpu], nvmlEventTypeXidCriticalError, xid)
            sets = [s for s in self.event_sets if gpu in s.devices and not s.freed]
            for s in sets:
                s.queue.append(data)
            if not sets:
                self.pending_xids.append(data)
            self.changed.notify_all()

    # -- the JSON file of another process -------------------------------------------------
    def sync(self) -> None:
        path = os.environ.get(ENV)
        if not path:
            return
        try:
            st = os.stat(path)
        except OSError:
            return
        stamp = (path, st.st_mtime_ns, st.st_size)
        if stamp == self._file_stamp:
            return
        try:
            with open(path) as f:
                d = json.load(f)
        except (OSError, ValueError):
            return
        with self.lock:
            self._file_stamp = stamp
            self._load(d)

    def _load(self, d: dict[str, Any]) -> None:
        gpus = d.get("gpus", 2)
        specs = [{} for _ in range(gpus)] if isinstance(gpus, int) else gpus
        self.gpus = [Gpu.from_json(i, s) for i, s in enumerate(specs)]
        while len(self.handles) < len(self.gpus):  # handles stay valid across reloads
            self.handles.append(Handle(len(self.handles)))
        del self.handles[len(self.gpus) :]
        self.driver_version = d.get("driver_version", "550.54.15")
        self.cuda_version = d.get("cuda_version", 12040)
        err = d.get("init_error")
        self.init_error = None if err is None else _code(err)
        self.bytes_strings = bool(d.get("bytes_strings", False))
        xids = d.get("xids", [])
        for x in xids[self._file_xids :]:
            if 0 <= x["gpu"] < len(self.gpus):
                self.emit_xid(x["gpu"], x["xid"])
        self._file_xids = len(xids)


world = World()


# -- the API -----------------------------------------------------------------------------------
def _enter(name: str) -> None:
    world.sync()
    world.calls[name] = world.calls.get(name, 0) + 1
    if name not in ("nvmlInit", "nvmlInitWithFlags") and world.initialized <= 0:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)
    code = world.failures.get(name)
    if code is not None:
        raise NVMLError(code)


def _gpu(name: str, handle: Handle) -> Gpu:
    _enter(name)
    if not isinstance(handle, Handle) or handle.index >= len(world.gpus):
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    g = world.gpus[handle.index]
    code = g.fail.get(name)
    if code is not None:
        raise NVMLError(code)
    return g


def _s(v: str) -> str | bytes:
    return v.encode() if world.bytes_strings else v


def nvmlInit() -> None:
    with world.lock:
        _enter("nvmlInit")
        if world.init_error is not None:
            raise NVMLError(world.init_error)
        world.initialized += 1


def nvmlInitWithFlags(flags: int) -> None:
    nvmlInit()


def nvmlShutdown() -> None:
    with world.lock:
        _enter("nvmlShutdown")
        world.initialized -= 1


def nvmlSystemGetDriverVersion() -> str | bytes:
    with world.lock:
        _enter("nvmlSystemGetDriverVersion")
        return _s(world.driver_version)


def nvmlSystemGetCudaDriverVersion() -> int:
    with world.lock:
        _enter("nvmlSystemGetCudaDriverVersion")
        return world.cuda_version


def nvmlDeviceGetCount() -> int:
    with world.lock:
        _enter("nvmlDeviceGetCount")
        return len(world.gpus)


def nvmlDeviceGetHandleByIndex(index: int) -> Handle:
    with world.lock:
        _enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(world.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return world.handles[index]


def nvmlDeviceGetIndex(handle: Handle) -> int:
    with world.lock:
        return _gpu("nvmlDeviceGetIndex", handle).index


def nvmlDeviceGetUUID(handle: Handle) -> str | bytes:
    with world.lock:
        return _s(_gpu("nvmlDeviceGetUUID", handle).uuid)


def nvmlDeviceGetName(handle: Handle) -> str | bytes:
    with world.lock:
        return _s(_gpu("nvmlDeviceGetName", handle).name)


def nvmlDeviceGetMemoryInfo(handle: Handle, version: int | None = None) -> c_nvmlMemory_t:
    """v1 counts the driver's reservation as used, v2 (version=nvmlMemory_v2) apart, as a
    real driver does (an H100 reserves about 480 MiB)."""
    with world.lock:
        g = _gpu("nvmlDeviceGetMemoryInfo", handle)
        total, used = g.memory_total_mib * MIB, g.memory_used_mib * MIB
        reserved = g.memory_reserved_mib * MIB
        if version is None:
            return c_nvmlMemory_t(total=total, free=total - used - reserved, used=used + reserved)
        if version != nvmlMemory_v2:
            raise NVMLError(NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        return c_nvmlMemory_v2_t(
            version=version, total=total, reserved=reserved, free=total - used - reserved, used=used
        )


def nvmlDeviceGetMigMode(handle: Handle) -> list[int]:
    with world.lock:
        g = _gpu("nvmlDeviceGetMigMode", handle)
        if g.mig == "unsupported":
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        mode = NVML_DEVICE_MIG_ENABLE if g.mig == "enabled" else NVML_DEVICE_MIG_DISABLE
        return [mode, mode]


def nvmlDeviceGetPciInfo(handle: Handle) -> nvmlPciInfo_t:
    with world.lock:
        g = _gpu("nvmlDeviceGetPciInfo", handle)
        if g.pci_bus_id is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return nvmlPciInfo_t(busId=_s(g.pci_bus_id))


def nvmlDeviceGetUtilizationRates(handle: Handle) -> c_nvmlUtilization_t:
    with world.lock:
        g = _gpu("nvmlDeviceGetUtilizationRates", handle)
        return c_nvmlUtilization_t(gpu=g.utilization_gpu, memory=g.utilization_memory)


def nvmlDeviceGetTemperature(handle: Handle, sensor: int) -> int:
    with world.lock:
        g = _gpu("nvmlDeviceGetTemperature", handle)
        if sensor != NVML_TEMPERATURE_GPU:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return g.temperature_c


def nvmlDeviceGetPowerUsage(handle: Handle) -> int:
    with world.lock:
        return _gpu("nvmlDeviceGetPowerUsage", handle).power_mw


def nvmlDeviceGetTotalEnergyConsumption(handle: Handle) -> int:
    with world.lock:
        return _gpu("nvmlDeviceGetTotalEnergyConsumption", handle).energy_mj


def _procs(name: str, handle: Handle, graphics: bool) -> list[ProcessInfo]:
    with world.lock:
        g = _gpu(name, handle)
        return [
            ProcessInfo(p.pid, None if p.used_mib is None else p.used_mib * MIB)
            for p in g.processes
            if p.graphics == graphics
        ]


def nvmlDeviceGetComputeRunningProcesses(handle: Handle) -> list[ProcessInfo]:
    return _procs("nvmlDeviceGetComputeRunningProcesses", handle, False)


def nvmlDeviceGetGraphicsRunningProcesses(handle: Handle) -> list[ProcessInfo]:
    return _procs("nvmlDeviceGetGraphicsRunningProcesses", handle, True)


def nvmlEventSetCreate() -> EventSet:
    with world.lock:
        _enter("nvmlEventSetCreate")
        s = EventSet()
        world.event_sets.append(s)
        return s


def nvmlDeviceRegisterEvents(handle: Handle, event_types: int, event_set: EventSet) -> None:
    with world.lock:
        g = _gpu("nvmlDeviceRegisterEvents", handle)
        if not g.xid_supported:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        if event_types & nvmlEventTypeXidCriticalError:
            event_set.devices.add(g.index)
            for data in [d for d in world.pending_xids if d.device is handle]:
                world.pending_xids.remove(data)
                event_set.queue.append(data)


def nvmlEventSetWait(event_set: EventSet, timeoutms: int) -> c_nvmlEventData_t:
    deadline = time.monotonic() + timeoutms / 1000
    with world.lock:
        _enter("nvmlEventSetWait")
        while True:
            world.sync()
            if event_set.freed:
                raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
            if event_set.queue:
                return event_set.queue.popleft()
            left = deadline - time.monotonic()
            if left <= 0:
                raise NVMLError(NVML_ERROR_TIMEOUT)
            # woken by emit_xid; a file world is polled 10 times a second
            world.changed.wait(min(left, 0.1))


def nvmlEventSetFree(event_set: EventSet) -> None:
    with world.lock:
        _enter("nvmlEventSetFree")
        event_set.freed = True
        if event_set in world.event_sets:
            world.event_sets.remove(event_set)
