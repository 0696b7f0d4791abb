"""The node's samples, taken in a thread: NVML readings, each GPU process's container from
its cgroup and that container's gpupool labels, and the recent Xid errors (watched in a
second thread); the latest is kept for whoever serves it.

``NodeSampler`` puts ``reader``, ``cgroups`` and ``xid`` together for the node agent. It
needs neither Tornado nor traitlets, so it runs on a bare GPU machine (tests/gpu).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

from .cgroups import LabelCache, container_of_pid
from .reader import NvmlReader
from .readings import ProcessReading, Sample
from .xid import XidLog, XidWatcher

# the agent's logger, as before NVML reading left the agent: its app sends it to the console
log = logging.getLogger("gpupool.agent")


class NodeSampler:
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
