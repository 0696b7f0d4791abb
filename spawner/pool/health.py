"""Pool health: the monitor that runs the pool's watch on its schedules: probes of every
node's engine and agent, reconcile passes, and the GPU-idle culler's passes.

What a probe does and how a node is judged up or down is in ``probes``; what an agent's
reports lead to (the ledger's GPUs, the metrics history, alerts) in ``agent_reports``.
Nodes that are down are not reconciled: an engine that does not answer is never taken
as proof that its containers are gone. A node that comes back is reconciled at once.

Probes run with bounded fan-out (``fan_out`` at a time); blocking Docker calls go
through a thread pool, agents are asked over HTTP with Tornado's client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gpupool.catalog.models import Catalog, Node
from gpupool.engines import Engines, EngineUnreachable

from .agent_client import AgentError, fetch_agent
from .agent_reports import EVENT_HOLD, AgentReports
from .alerts import Alerts
from .history import History
from .idle import IdleCuller
from .inventory import inventory_mismatch
from .ledger import Ledger, Reservation
from .probes import LedgerCall, NodeHealth, Prober
from .reconcile import Container, Reconciler
from .watchdog import SliceWatchdog

# names callers import from here; their homes are agent_client, inventory and probes
__all__ = ["AgentError", "Monitor", "NodeHealth", "fetch_agent", "inventory_mismatch"]


class Monitor:
    """Watches the pool's nodes; one instance lives in the pool service."""

    def __init__(
        self,
        catalog: Catalog,
        ledger: Ledger,
        ledger_call: LedgerCall,
        alerts: Alerts,
        *,
        engines: Engines | None = None,
        agent: Callable[[Node, str, float], Awaitable[dict[str, Any]]] = fetch_agent,
        clock: Callable[[], float] = time.time,
        log: logging.Logger | None = None,
        culler: IdleCuller | None = None,
        watchdog: SliceWatchdog | None = None,
    ):
        self.catalog = catalog
        self.culler = culler
        self.settings = catalog.pool.health
        self.ledger = ledger
        self.alerts = alerts
        hs = self.settings
        self.engines = engines or Engines(
            max_workers=hs.fan_out, timeout=max(1, round(hs.probe_timeout))
        )
        self.clock = clock
        self.log = log or logging.getLogger("gpupool.health")
        self.nodes = {n.name: NodeHealth(n.name, n.agent is not None) for n in catalog.nodes}
        self.history = History(hs.history)
        self.reports = AgentReports(
            catalog,
            ledger,
            ledger_call,
            alerts,
            self.history,
            agent=agent,
            clock=clock,
            log=self.log,
            culler=culler,
            watchdog=watchdog,
        )
        self.prober = Prober(
            hs,
            ledger,
            ledger_call,
            alerts,
            self.engines,
            self.reports.read,
            clock=clock,
            log=self.log,
            on_back=self._schedule_reconcile,
        )
        # listing and stopping containers may take longer than a probe is allowed to
        self.slow_engines = Engines(max_workers=4, timeout=30) if engines is None else engines
        self.reconciler = Reconciler(
            self.slow_engines.call,
            ledger_call,
            ledger,
            start_grace=hs.start_grace,
            orphan_grace=hs.orphan_grace,
            clock=clock,
            on_release=self._released,
            on_orphan=self._orphan,
        )
        self._sem = asyncio.Semaphore(hs.fan_out)
        self._tasks: list[asyncio.Task[None]] = []
        self._reconcile_now = asyncio.Event()
        self.probe_count = 0

    # -- lifecycle --------------------------------------------------------------------
    @property
    def watching(self) -> bool:
        """Probing and reconciling its nodes (off for catalogs whose nodes do not exist)."""
        return bool(self._tasks)

    def start(self) -> None:
        self.alerts.start()
        self._tasks = [
            asyncio.ensure_future(self._probe_loop()),
            asyncio.ensure_future(self._reconcile_loop()),
        ]
        if self.culler is not None and self.culler.settings.enabled:
            self._tasks.append(asyncio.ensure_future(self._cull_loop()))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks = []
        await self.alerts.stop()

    # -- probes -----------------------------------------------------------------------
    async def _probe_loop(self) -> None:
        tick = min(0.5, self.settings.probe_interval / 2)
        while True:
            try:
                await self.probe_due()
            except Exception:
                self.log.exception("health probe pass failed")
            await asyncio.sleep(tick)

    async def probe_due(self) -> None:
        now = self.clock()
        due = [n for n in self.catalog.nodes if self.nodes[n.name].next_probe <= now]
        if due:
            await asyncio.gather(*(self._bounded(self.probe(n)) for n in due))

    async def probe_all(self) -> None:
        await asyncio.gather(*(self._bounded(self.probe(n)) for n in self.catalog.nodes))

    async def _bounded(self, coro: Awaitable[Any]) -> Any:
        async with self._sem:
            return await coro

    async def probe(self, node: Node) -> NodeHealth:
        h = self.nodes[node.name]
        self.probe_count += 1
        await self.prober.probe(node, h)
        return h

    # -- reconciling ------------------------------------------------------------------
    async def _cull_loop(self) -> None:
        assert self.culler is not None
        while True:
            await asyncio.sleep(self.culler.interval)
            try:
                await self.culler.tick()
            except Exception:
                self.log.exception("GPU-idle culling pass failed")

    def _schedule_reconcile(self) -> None:
        self._reconcile_now.set()

    async def _reconcile_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._reconcile_now.wait(), self.settings.reconcile_interval)
            except asyncio.TimeoutError:
                pass
            self._reconcile_now.clear()
            try:
                await self.reconcile()
            except Exception:
                self.log.exception("reconcile pass failed")

    async def reconcile(self, only: str | None = None) -> list[dict[str, Any]]:
        """Reconcile every node that is up (or just ``only``); nodes down are skipped."""
        nodes = [n for n in self.catalog.nodes if only in (None, n.name)]
        results = await asyncio.gather(*(self._bounded(self._reconcile_node(n)) for n in nodes))
        return [r for r in results if r is not None]

    async def _reconcile_node(self, node: Node) -> dict[str, Any] | None:
        h = self.nodes[node.name]
        if h.state == "down":
            return {"node": node.name, "skipped": "node is down; its reservations are kept"}
        try:
            result = await self.reconciler.node(node)
        except (EngineUnreachable, Exception) as e:
            # not proof of anything: the next probe decides whether the node is down
            self.log.warning("reconcile %s: %s", node.name, e)
            return {"node": node.name, "error": str(e)}
        h.reconciled_at = result.time
        h.reconcile = result.to_json()
        keep = {f"orphan:{node.name}:{o['id']}" for o in result.orphans}
        self.alerts.clear_matching(f"orphan:{node.name}:", keep)
        return result.to_json()

    def _released(self, r: Reservation, why: str) -> None:
        self.alerts.raise_(
            f"container-gone:{r.id}",
            "container-gone",
            "warning",
            f"reservation {r.id} of {r.owner} on {r.node} was freed: {why}",
            hold=EVENT_HOLD,
            node=r.node,
            reservation=r.id,
            owner=r.owner,
        )

    def _orphan(self, node: Node, c: Container, since: float, stopping: bool) -> None:
        grace = self.settings.orphan_grace
        left = max(0.0, grace - (self.clock() - since))
        what = "being stopped" if stopping else f"stopped in {left:.0f} s unless it is claimed"
        self.alerts.raise_(
            f"orphan:{node.name}:{c.id[:12]}",
            "orphan-container",
            "warning",
            f"node {node.name}: container {c.name} (owner {c.owner}, reservation "
            f"{c.reservation or '-'}) runs without an active reservation; {what}",
            node=node.name,
            container=c.name,
            owner=c.owner,
        )

    # -- views ------------------------------------------------------------------------
    def node_json(self, name: str) -> dict[str, Any]:
        return self.nodes[name].to_json()
