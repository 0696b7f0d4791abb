"""Reading NVML for the node agent: inventory, samples and Xid events. No HTTP here.

NVML is reached through a module object with pynvml's API (``import pynvml`` from
nvidia-ml-py in production, ``tests.support.fake_nvml`` in CI). Strings may come back as
bytes or str depending on the pynvml version; both are accepted.

Failure rules, so that one unreadable field never costs a whole sample:

- an optional reading (utilization, temperature, power, energy, processes, MIG mode,
  PCI bus id) that raises ``NVMLError`` (NOT_SUPPORTED, NO_PERMISSION, GPU_IS_LOST ...)
  becomes None;
- a GPU whose handle, UUID, name or memory size cannot be read is left out of the
  inventory, and the reason is reported in the NVML status;
- when ``nvmlInit`` fails (no driver, library not found, no permission) or NVML stops
  answering, the status says why and what to check, the inventory is empty, and init is
  tried again every ``retry_interval`` seconds.

``Agent`` puts it together: a sampler thread (NVML readings, each process's container
from its cgroup, the container's gpupool labels, the Xid list) and an Xid thread. It
needs neither Tornado nor traitlets, so it runs on a bare GPU machine (tests/gpu).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .cgroups import LabelCache, container_of_pid

log = logging.getLogger("gpupool.agent")

MIB = 1024 * 1024
XID_KEEP = 100
INVENTORY_EVERY = 60.0  # seconds between re-reads of the inventory while NVML works

# NVML return codes (the same in every pynvml); the module's own are used when present.
_NOT_SUPPORTED = 3
_NO_PERMISSION = 4
_DRIVER_NOT_LOADED = 9
_TIMEOUT = 10
_LIBRARY_NOT_FOUND = 12
_LIB_RM_VERSION_MISMATCH = 18
_XID_CRITICAL = 0x8

_HINTS = {
    _LIBRARY_NOT_FOUND: "libnvidia-ml.so.1 was not found: is the NVIDIA driver installed, and "
    "in a container, do the NVIDIA runtime or CDI give it the driver's libraries?",
    _DRIVER_NOT_LOADED: "the NVIDIA kernel driver is not loaded: check `nvidia-smi` and "
    "`lsmod | grep nvidia` on the node",
    _NO_PERMISSION: "no permission to open /dev/nvidia*: run the agent in the group that owns "
    "them (often 'video') or as root",
    _LIB_RM_VERSION_MISMATCH: "the NVML library and the loaded kernel driver differ in version: "
    "reboot the node (or reload the nvidia modules) after a driver upgrade",
}
_HINT_DEFAULT = "check that `nvidia-smi` works on this node"


def text(v: Any) -> str:
    """A string from NVML, whether the binding returned bytes or str."""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace").rstrip("\x00")
    return str(v)


def cuda_version_text(v: int) -> str:
    """``nvmlSystemGetCudaDriverVersion``'s 12040 as "12.4"."""
    return f"{v // 1000}.{(v % 1000) // 10}"


def describe_error(e: BaseException) -> str:
    """NVML's text for an error plus what to check."""
    code = getattr(e, "value", None)
    hint = _HINTS.get(code, _HINT_DEFAULT) if isinstance(code, int) else _HINT_DEFAULT
    return f"{e or type(e).__name__} ({hint})"


# -- the data model (what the HTTP side serves) ------------------------------------------------
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


# -- NVML ----------------------------------------------------------------------------------------
class NvmlReader:
    """NVML for one agent: started lazily, restarted after failures, read from threads.

    ``ensure()`` starts NVML when it is not running (at most every ``retry_interval``
    seconds) and re-reads the inventory when it is due; ``read()`` takes one reading of
    every GPU. Both block (NVML calls) and belong in a worker thread. The published state
    (``status``, ``devices``, ``generation``) is replaced whole, never mutated, so other
    threads may read it without a lock.
    """

    def __init__(
        self,
        nvml: Any,
        *,
        retry_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.nvml = nvml
        self.retry_interval = retry_interval
        self.clock = clock
        self.status = NvmlStatus(False, "NVML has not been started yet", None, None)
        self.devices: tuple[tuple[GpuInfo, Any], ...] = ()  # (info, handle) per GPU
        self.generation = 0  # +1 at every successful start
        self._started = False  # nvmlInit succeeded and no nvmlShutdown since
        self._next_try = float("-inf")
        self._inventory_at = float("-inf")
        self._lock = threading.Lock()
        self._error_cls: type[BaseException] = getattr(nvml, "NVMLError", Exception)

    @property
    def ok(self) -> bool:
        return self.status.ok

    @property
    def inventory(self) -> tuple[GpuInfo, ...]:
        return tuple(info for info, _ in self.devices)

    def _code(self, name: str, default: int) -> int:
        return int(getattr(self.nvml, name, default))

    def _opt(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except self._error_cls:
            return None

    # -- start, stop, inventory ----------------------------------------------------------
    def ensure(self) -> bool:
        """True when NVML is running; starts it or refreshes the inventory when due."""
        with self._lock:
            now = self.clock()
            if self.status.ok:
                if now - self._inventory_at >= INVENTORY_EVERY:
                    self._refresh(now)
                return self.status.ok
            if now < self._next_try:
                return False
            self._next_try = now + self.retry_interval
            if not self._started:
                try:
                    self.nvml.nvmlInit()
                except Exception as e:  # NVMLError, or OSError from a broken library
                    self._fail(f"nvmlInit failed: {describe_error(e)}")
                    return False
                self._started = True
            self._refresh(now)
            return self.status.ok

    def _fail(self, why: str) -> None:
        why = f"{why}; retrying every {self.retry_interval:g} s"
        if why != self.status.error:
            log.warning("NVML: %s", why)
        self.status = NvmlStatus(False, why, None, None)
        self.devices = ()

    def _refresh(self, now: float) -> None:
        nv = self.nvml
        try:
            count = nv.nvmlDeviceGetCount()
        except self._error_cls as e:
            self._lost(f"nvmlDeviceGetCount failed: {describe_error(e)}")
            return
        driver = self._opt(nv.nvmlSystemGetDriverVersion)
        cuda = self._opt(nv.nvmlSystemGetCudaDriverVersion)
        devices, problems = [], []
        for i in range(count):
            try:
                h = nv.nvmlDeviceGetHandleByIndex(i)
                info = GpuInfo(
                    index=i,
                    uuid=text(nv.nvmlDeviceGetUUID(h)),
                    model=text(nv.nvmlDeviceGetName(h)),
                    memory_mib=int(nv.nvmlDeviceGetMemoryInfo(h).total) // MIB,
                    mig_mode=self._mig_mode(h),
                    pci_bus_id=self._pci_bus_id(h),
                )
            except self._error_cls as e:
                problems.append(f"GPU {i} left out: {e}")
                continue
            devices.append((info, h))
        was = self.status
        self.status = NvmlStatus(
            True,
            "; ".join(problems) or None,
            None if driver is None else text(driver),
            None if cuda is None else cuda_version_text(int(cuda)),
        )
        self._inventory_at = now
        old = [i for i, _ in self.devices]
        self.devices = tuple(devices)
        if not was.ok:
            self.generation += 1
        if not was.ok or old != [i for i, _ in devices]:
            log.info(
                "NVML: driver %s, CUDA %s, %d GPU(s): %s",
                self.status.driver_version,
                self.status.cuda_version,
                len(devices),
                ", ".join(f"{g.index}:{g.model}:{g.memory_mib}MiB:{g.uuid}" for g, _ in devices)
                or "none",
            )
        if problems and self.status.error != was.error:
            log.warning("NVML: %s", self.status.error)

    def _lost(self, why: str) -> None:
        """NVML stopped answering: shut it down, so that the next try starts it afresh."""
        self._fail(why)
        self._next_try = self.clock() + self.retry_interval
        if self._started:
            self._started = False
            try:
                self.nvml.nvmlShutdown()
            except Exception:
                pass

    def _mig_mode(self, h: Any) -> str:
        try:
            current = self.nvml.nvmlDeviceGetMigMode(h)[0]
        except self._error_cls:
            return "unsupported"
        enabled = self._code("NVML_DEVICE_MIG_ENABLE", 1)
        return "enabled" if current == enabled else "disabled"

    def _pci_bus_id(self, h: Any) -> str | None:
        pci = self._opt(self.nvml.nvmlDeviceGetPciInfo, h)
        if pci is None:
            return None
        bus = getattr(pci, "busId", None)
        return None if bus is None else text(bus) or None

    def shutdown(self) -> None:
        with self._lock:
            if self._started:
                self._started = False
                try:
                    self.nvml.nvmlShutdown()
                except Exception as e:
                    log.debug("nvmlShutdown: %s", e)

    # -- readings ----------------------------------------------------------------------------
    def read(self) -> list[GpuReading]:
        """One reading of every GPU in the inventory (an empty list when NVML is down)."""
        nv = self.nvml
        opt = self._opt
        out = []
        for info, h in self.devices:
            r = GpuReading(index=info.index, uuid=info.uuid)
            util = opt(nv.nvmlDeviceGetUtilizationRates, h)
            if util is not None:
                r.utilization_gpu, r.utilization_memory = int(util.gpu), int(util.memory)
            mem = self._memory(h)
            if mem is not None:
                r.memory_used_mib = int(mem.used) // MIB
                r.memory_total_mib = int(mem.total) // MIB
                r.memory_free_mib = int(mem.free) // MIB
            temp = opt(nv.nvmlDeviceGetTemperature, h, self._code("NVML_TEMPERATURE_GPU", 0))
            r.temperature_c = None if temp is None else int(temp)
            power = opt(nv.nvmlDeviceGetPowerUsage, h)  # mW
            r.power_w = None if power is None else int(power) / 1000
            energy = opt(nv.nvmlDeviceGetTotalEnergyConsumption, h)  # mJ
            r.energy_mj = None if energy is None else int(energy)
            r.processes = self._processes(h)
            out.append(r)
        return out

    def _memory(self, h: Any) -> Any:
        """Memory as nvidia-smi counts it: v2 leaves the driver's reservation out of `used`
        (about 480 MiB on an H100, which v1 counts as used); v1 where v2 is missing."""
        v2 = getattr(self.nvml, "nvmlMemory_v2", None)
        if v2 is not None:
            try:
                return self.nvml.nvmlDeviceGetMemoryInfo(h, version=v2)
            except Exception as e:  # an old driver without nvmlDeviceGetMemoryInfo_v2
                log.debug("NVML memory info v2: %s; v1 instead", e)
        return self._opt(self.nvml.nvmlDeviceGetMemoryInfo, h)

    def _processes(self, h: Any) -> list[ProcessReading]:
        procs: dict[int, ProcessReading] = {}
        for fn in (
            self.nvml.nvmlDeviceGetComputeRunningProcesses,
            self.nvml.nvmlDeviceGetGraphicsRunningProcesses,
        ):
            for p in self._opt(fn, h) or ():
                pid = int(p.pid)
                used = getattr(p, "usedGpuMemory", None)
                mib = None if used is None else int(used) // MIB
                have = procs.get(pid)
                if have is None:
                    procs[pid] = ProcessReading(pid=pid, memory_mib=mib)
                elif mib is not None:  # in both lists: counted once, the larger figure
                    have.memory_mib = mib if have.memory_mib is None else max(have.memory_mib, mib)
        return sorted(procs.values(), key=lambda p: p.pid)


# -- Xid errors ------------------------------------------------------------------------------
class XidLog:
    """The last ``keep`` Xid events, each with a number that only grows. Thread-safe."""

    def __init__(self, keep: int = XID_KEEP) -> None:
        self._events: deque[XidEvent] = deque(maxlen=keep)
        self._seq = 0
        self._last: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, uuid: str, index: int, xid: int, when: float) -> XidEvent:
        with self._lock:
            self._seq += 1
            e = XidEvent(self._seq, when, uuid, index, xid)
            self._events.append(e)
            self._last[uuid] = xid
            return e

    def events(self) -> list[XidEvent]:
        with self._lock:
            return list(self._events)

    def last_by_uuid(self) -> dict[str, int]:
        """The value of the last Xid seen on each GPU since the agent started."""
        with self._lock:
            return dict(self._last)


class XidWatcher:
    """Waits for Xid critical errors on every GPU that supports them, into an ``XidLog``.

    Runs in its own thread (``run(stop)``); each wait lasts at most ``wait_ms``, so the
    thread notices ``stop`` within about that time. When NVML is restarted (a new
    ``generation``) or the inventory changes, the event set is made again for the new
    handles.
    """

    def __init__(
        self,
        reader: NvmlReader,
        xids: XidLog,
        *,
        wait_ms: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.reader = reader
        self.xids = xids
        self.wait_ms = wait_ms
        self.clock = clock
        self.watched: list[str] = []  # UUIDs registered
        self._said: set[str] = set()  # skipped devices already logged
        self._last_error = ""
        self._handles: list[tuple[GpuInfo, Any]] = []

    def run(self, stop: threading.Event) -> None:
        nv = self.reader.nvml
        error_cls = self.reader._error_cls
        timeout = int(getattr(nv, "NVML_ERROR_TIMEOUT", _TIMEOUT))
        event_set: Any = None
        registered: tuple[int, tuple[str, ...]] | None = None
        try:
            while not stop.is_set():
                now = (self.reader.generation, tuple(i.uuid for i, _ in self.reader.devices))
                if not self.reader.ok or now != registered:
                    event_set = self._free(event_set)
                    registered = None
                    if not self.reader.ok:
                        stop.wait(0.2)  # NVML starting (or down): a cheap check
                        continue
                    registered = now
                    event_set = self._register()
                if event_set is None:
                    stop.wait(1.0)
                    continue
                try:
                    data = nv.nvmlEventSetWait(event_set, self.wait_ms)
                except error_cls as e:
                    if getattr(e, "value", None) != timeout:
                        self._warn(f"nvmlEventSetWait failed: {e}")
                        stop.wait(1.0)
                    continue
                self._record(data)
        finally:
            self._free(event_set)

    def _warn(self, msg: str) -> None:
        if msg != self._last_error:
            log.warning("Xid events: %s", msg)
            self._last_error = msg

    def _free(self, event_set: Any) -> None:
        if event_set is not None:
            try:
                self.reader.nvml.nvmlEventSetFree(event_set)
            except Exception as e:
                log.debug("nvmlEventSetFree: %s", e)
        return None

    def _register(self) -> Any:
        nv = self.reader.nvml
        error_cls = self.reader._error_cls
        devices = self.reader.devices
        if not devices:
            return None
        try:
            event_set = nv.nvmlEventSetCreate()
        except error_cls as e:
            self._warn(f"nvmlEventSetCreate failed ({e}); Xid errors are not watched")
            return None
        kind = int(getattr(nv, "nvmlEventTypeXidCriticalError", _XID_CRITICAL))
        self.watched, self._handles = [], []
        for info, h in devices:
            try:
                nv.nvmlDeviceRegisterEvents(h, kind, event_set)
            except error_cls as e:
                if info.uuid not in self._said:
                    self._said.add(info.uuid)
                    log.info(
                        "Xid events: GPU %d (%s) skipped (nvmlDeviceRegisterEvents: %s)",
                        info.index,
                        info.uuid,
                        e,
                    )
                continue
            self.watched.append(info.uuid)
            self._handles.append((info, h))
        if not self.watched:
            return self._free(event_set)
        log.info("Xid events: watching %d GPU(s)", len(self.watched))
        return event_set

    def _record(self, data: Any) -> None:
        kind = int(getattr(self.reader.nvml, "nvmlEventTypeXidCriticalError", _XID_CRITICAL))
        if not int(getattr(data, "eventType", kind)) & kind:
            return
        xid = int(data.eventData)
        uuid: str | None = None
        try:  # pynvml's handles are ctypes pointers; equal devices need not be equal objects
            uuid = text(self.reader.nvml.nvmlDeviceGetUUID(data.device))
        except Exception:
            pass
        info = next(
            (
                i
                for i, h in self._handles
                if (uuid is not None and i.uuid == uuid) or h is data.device
            ),
            None,
        )
        index = info.index if info else -1
        uuid = uuid or (info.uuid if info else "unknown")
        self.xids.add(uuid, index, xid, self.clock())
        log.warning("Xid %d on GPU %d (%s)", xid, index, uuid)


# -- the agent's working part: samples in a thread ----------------------------------------------
class Agent:
    """Takes samples in a thread and keeps the latest; watches Xid errors in another."""

    def __init__(
        self,
        nvml: Any,
        *,
        node: str,
        hostname: str | None = None,
        interval: float = 1.0,
        proc_root: str = "/proc",
        labels: LabelCache | None = None,
        retry_interval: float = 30.0,
        xid_wait_ms: int = 1000,
    ) -> None:
        self.reader = NvmlReader(nvml, retry_interval=retry_interval)
        self.xids = XidLog()
        self.watcher = XidWatcher(self.reader, self.xids, wait_ms=xid_wait_ms)
        self.node = node
        self.hostname = hostname or socket.gethostname()
        self.interval = interval
        self.proc_root = proc_root
        self.labels = labels
        self.latest: Sample | None = None
        self.first = threading.Event()  # set once the first sample was tried
        self._seq = 0
        self._pruned = time.monotonic()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def take_sample(self) -> Sample:
        """One sample of every GPU; blocking (NVML, /proc, the engine), for a worker thread."""
        t0 = time.perf_counter()
        when = time.time()
        self.reader.ensure()
        gpus = self.reader.read()
        for g in gpus:
            for p in g.processes:
                self._attach(p)
        if self.labels is not None and time.monotonic() - self._pruned > 60:
            self.labels.prune()
            self._pruned = time.monotonic()
        self._seq += 1
        sample = Sample(
            time=when,
            seq=self._seq,
            hostname=self.hostname,
            node=self.node,
            nvml=self.reader.status,
            gpus=gpus,
            xid_events=self.xids.events(),
            inventory=self.reader.inventory,
        )
        sample.duration = time.perf_counter() - t0
        self.latest = sample
        return sample

    def _attach(self, p: ProcessReading) -> None:
        p.container_id = container_of_pid(p.pid, self.proc_root)
        if p.container_id is None or self.labels is None:
            return
        found = self.labels.get(p.container_id)
        if found is not None:
            p.owner, p.reservation = found.owner, found.reservation
            p.server, p.kind = found.server, found.kind

    def _sample_loop(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                self.take_sample()
            except Exception:
                log.exception("sample failed")
            finally:
                self.first.set()
            next_at += self.interval
            now = time.monotonic()
            if next_at < now:  # fell behind (a slow engine): skip, do not burst
                next_at = now
            self._stop.wait(next_at - now)

    def start(self) -> None:
        for name, target in (
            ("gpupool-agent-sampler", self._sample_loop),
            ("gpupool-agent-xid", lambda: self.watcher.run(self._stop)),
        ):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop both threads (an Xid wait ends within a second) and shut NVML down."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads.clear()
        self.reader.shutdown()
