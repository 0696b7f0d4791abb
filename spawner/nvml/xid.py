"""Xid errors: a watcher thread that waits for NVML's Xid critical-error events on every
GPU that supports them, and the log of the last ones, which samples carry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .reader import NvmlReader, text
from .readings import GpuInfo, XidEvent

# the agent's logger, as before NVML reading left the agent: its app sends it to the console
log = logging.getLogger("gpupool.agent")

XID_KEEP = 100
# NVML's codes (the same in every pynvml); the module's own are used when present.
_TIMEOUT = 10
_XID_CRITICAL = 0x8


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
