"""What a node agent reports, acted on: its GPUs recorded in the ledger, its HAMi-core
check, its samples passed to the history, the culler and the slice watchdog, and the
alerts all of these raise.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gpupool.catalog.models import Catalog, Gpu, Node

from .alerts import CRITICAL_XIDS, Alerts
from .history import History
from .idle import IdleCuller
from .inventory import inventory_mismatch
from .ledger import Ledger, LedgerError
from .probes import LedgerCall, NodeHealth
from .watchdog import SliceWatchdog

INVENTORY_EVERY = 60.0  # seconds between inventory reads while nothing changes
EVENT_HOLD = 3600.0  # how long event alerts (Xid, vanished container) stay listed


class AgentReports:
    """Asks one node's agent for its sample (and its inventory, now and then) at each
    probe, and acts on the answers."""

    def __init__(
        self,
        catalog: Catalog,
        ledger: Ledger,
        ledger_call: LedgerCall,
        alerts: Alerts,
        history: History,
        *,
        agent: Callable[[Node, str, float], Awaitable[dict[str, Any]]],
        clock: Callable[[], float],
        log: logging.Logger,
        culler: IdleCuller | None = None,
        watchdog: SliceWatchdog | None = None,
    ):
        self.catalog = catalog
        self.settings = catalog.pool.health
        self.ledger = ledger
        self.ledger_call = ledger_call
        self.alerts = alerts
        self.history = history
        self.agent = agent
        self.clock = clock
        self.log = log
        self.culler = culler
        self.watchdog = watchdog

    async def read(self, node: Node, h: NodeHealth) -> None:
        """One probe of the node's agent; raises when the agent does not answer."""
        timeout = self.settings.probe_timeout
        sample = await self.agent(node, "/api/sample", timeout)
        uuids = tuple(g.get("uuid", "") for g in sample.get("gpus") or ())
        now = self.clock()
        if now - h.inventory_at >= INVENTORY_EVERY or uuids != h.inventory_uuids:
            inventory = await self.agent(node, "/api/inventory", timeout)
            await self._inventory(node, h, inventory)
            h.inventory_at = now
            h.inventory_uuids = uuids
        await self._hami_core(node, sample)  # checked at every probe: a fix counts at once
        if sample.get("seq") != h.sample_seq:
            h.sample, h.sample_seq = sample, sample.get("seq")
            self.history.add(sample, self.ledger.state.placements, node.name)
            self.history.prune(set(self.ledger.state.placements))
            self._sample_alerts(node, h, sample)
            if self.culler is not None:
                self.culler.observe(sample)
            if self.watchdog is not None:
                try:
                    await self.watchdog.observe(node.name, sample)
                except Exception:  # contained: the probe and the other nodes go on
                    self.log.exception("slice watchdog on %s failed", node.name)

    async def _hami_core(self, node: Node, inv: dict[str, Any]) -> None:
        """The agent's check of HAMi-core on the node (when it is told where the library
        is): a node that fails it takes no sliced spec, and an alert says what is wrong."""
        check = inv.get("hami_core")
        if not isinstance(check, dict):
            return
        problems = [str(p) for p in check.get("problems") or () if p][:5]
        key = f"hami-core:{node.name}"
        known = self.ledger.unsliceable.get(node.name)
        if check.get("ok") is True and not problems:
            self.alerts.clear(key, "HAMi-core installed")
            if known is not None:
                await self.ledger_call(self.ledger.set_sliceable, node.name, None)
            return
        why = "; ".join(problems) or "the agent's check failed"
        self.alerts.raise_(
            key,
            "hami-core-missing",
            "critical",
            f"node {node.name} takes no sliced specs: {why}. Install HAMi-core as "
            "docs/install.md (step 2) says: the library, an ld.so.preload naming it, and "
            "/tmp/vgpulock with mode 1777 (then restart gpupool-agent where it runs under "
            "systemd: its private /tmp sees the folder as it was at its start)",
            node=node.name,
            problems=problems,
        )
        if known != why[:500]:
            await self.ledger_call(self.ledger.set_sliceable, node.name, why[:500])

    async def _inventory(self, node: Node, h: NodeHealth, inv: dict[str, Any]) -> None:
        await self._hami_core(node, inv)
        nvml = inv.get("nvml") or {}
        h.nvml_ok, h.nvml_error = nvml.get("ok"), nvml.get("error")
        h.driver_version, h.cuda_version = nvml.get("driver_version"), nvml.get("cuda_version")
        key = f"nvml:{node.name}"
        if not h.nvml_ok:
            # keep the GPUs we knew: an agent that cannot read NVML has not seen them go
            self.alerts.raise_(
                key,
                "nvml-unavailable",
                "warning",
                f"node {node.name}: the agent cannot read NVML ({h.nvml_error}); "
                "its GPUs are kept as last known",
                node=node.name,
            )
            return
        self.alerts.clear(key, "NVML readable")
        pkey = f"nvml-partial:{node.name}"
        if h.nvml_error:  # NVML runs, but some GPU could not be read (left out by the agent)
            self.alerts.raise_(
                pkey,
                "nvml-unavailable",
                "warning",
                f"node {node.name}: {h.nvml_error}",
                node=node.name,
            )
        else:
            self.alerts.clear(pkey, "every GPU readable")
        gpus = tuple(
            Gpu(int(g["index"]), str(g["uuid"]), str(g["model"]), int(g["memory_mib"]))
            for g in inv.get("gpus") or ()
        )
        declared = node.gpus
        h.mismatch = inventory_mismatch(declared, gpus)
        mkey = f"inventory-mismatch:{node.name}"
        if h.mismatch:
            self.alerts.raise_(
                mkey,
                "inventory-mismatch",
                "warning",
                f"node {node.name}: the GPUs its agent reports differ from nodes.yaml "
                f"({'; '.join(h.mismatch)}); the reported GPUs are used",
                node=node.name,
                declared=[g.uuid for g in declared],
                reported=[g.uuid for g in gpus],
            )
        else:
            self.alerts.clear(mkey, "matches nodes.yaml")
        before = self.ledger.inventory.get(node.name)
        now_uuids = {g.uuid for g in gpus}
        missing = [g for g in before or () if g.uuid not in now_uuids]
        for g in missing:
            self.alerts.raise_(
                f"gpu-missing:{node.name}:{g.uuid}",
                "gpu-missing",
                "critical",
                f"node {node.name}: GPU {g.index} ({g.uuid}, {g.model}) is no longer "
                "reported by the agent; reservations on it are kept, none is placed on it",
                node=node.name,
                gpu=g.uuid,
            )
        for uuid in now_uuids:
            self.alerts.clear(f"gpu-missing:{node.name}:{uuid}", "reported again")
        try:
            changed = await self.ledger_call(self.ledger.set_inventory, node.name, gpus)
        except LedgerError as e:
            self.alerts.raise_(
                f"inventory-conflict:{node.name}",
                "inventory-conflict",
                "critical",
                f"node {node.name}: {e}; the report is not used",
                node=node.name,
            )
            return
        self.alerts.clear(f"inventory-conflict:{node.name}")
        if changed:
            self.log.info(
                "node %s: inventory from its agent: %s",
                node.name,
                ", ".join(f"{g.index}:{g.model}:{g.memory_mib}MiB" for g in gpus) or "no GPU",
            )

    def _sample_alerts(self, node: Node, h: NodeHealth, sample: dict[str, Any]) -> None:
        limit = self.catalog.pool.alerts.gpu_temperature
        for g in sample.get("gpus") or ():
            temp, uuid = g.get("temperature_c"), g.get("uuid")
            key = f"gpu-temperature:{node.name}:{uuid}"
            if temp is not None and temp >= limit:
                self.alerts.raise_(
                    key,
                    "gpu-temperature",
                    "critical" if temp >= limit + 5 else "warning",
                    f"node {node.name}: GPU {g.get('index')} is at {temp} °C (limit {limit} °C)",
                    node=node.name,
                    gpu=uuid,
                    temperature_c=temp,
                )
            elif temp is not None and temp < limit - 5:
                self.alerts.clear(key, f"down to {temp} °C")
        now = self.clock()
        for ev in sample.get("xid_events") or ():
            seq = int(ev.get("seq", -1))
            if seq <= h.xid_seq:
                continue
            h.xid_seq = seq
            if now - float(ev.get("time") or now) > EVENT_HOLD:
                continue
            xid = int(ev.get("xid", 0))
            self.alerts.raise_(
                f"xid:{node.name}:{ev.get('uuid')}:{xid}",
                "xid",
                "critical" if xid in CRITICAL_XIDS else "warning",
                f"node {node.name}: GPU {ev.get('index')} reported Xid {xid}",
                hold=EVENT_HOLD,
                node=node.name,
                gpu=ev.get("uuid"),
                xid=xid,
            )
