"""Reading NVML: the node's GPUs (inventory), one reading of each, and what went wrong.

NVML is reached through a module object with pynvml's API (``import pynvml`` from
nvidia-ml-py in production, ``gpupool.nvml.simulated`` on demo nodes,
``tests.support.fake_nvml`` in CI). Strings may come back as bytes or str depending on
the pynvml version; both are accepted.

Failure rules, so that one unreadable field never costs a whole sample:

- an optional reading (utilization, temperature, power, energy, processes, MIG mode,
  PCI bus id) that raises ``NVMLError`` (NOT_SUPPORTED, NO_PERMISSION, GPU_IS_LOST ...)
  becomes None;
- a GPU whose handle, UUID, name or memory size cannot be read is left out of the
  inventory, and the reason is reported in the NVML status;
- when ``nvmlInit`` fails (no driver, library not found, no permission) or NVML stops
  answering, the status says why and what to check, the inventory is empty, and init is
  tried again every ``retry_interval`` seconds.

No HTTP here, and neither Tornado nor traitlets: it runs on a bare GPU machine (tests/gpu).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .readings import GpuInfo, GpuReading, NvmlStatus, ProcessReading

# the agent's logger, as before NVML reading left the agent: its app sends it to the console
log = logging.getLogger("gpupool.agent")

MIB = 1024 * 1024
INVENTORY_EVERY = 60.0  # seconds between re-reads of the inventory while NVML works

# NVML return codes (the same in every pynvml); the module's own are used when present.
_NOT_SUPPORTED = 3
_NO_PERMISSION = 4
_DRIVER_NOT_LOADED = 9
_LIBRARY_NOT_FOUND = 12
_LIB_RM_VERSION_MISMATCH = 18

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


class NvmlReader:
    """NVML for one process (the node agent, a lab server): started lazily, restarted
    after failures, read from threads.

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
