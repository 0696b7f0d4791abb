"""Probing one node: its engine and its agent asked, the node judged up or down.

A node is ``up`` while its engine (and its agent, where the catalog names one) answers.
After ``down_after`` probes in a row that did not answer it is ``down``: it keeps its
reservations, receives no new work (the scheduler skips it) and its probes back off up to
``max_backoff``. When it answers again it is ``up`` and reconciled at once. An engine
that does not answer is never taken as proof that its containers are gone.

Blocking Docker calls go through the engines' thread pool.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from gpupool.catalog.models import HealthSettings, Node
from gpupool.engines import Engines, EngineUnreachable

from .agent_client import AgentError
from .alerts import Alerts
from .ledger import Ledger, LedgerCall

Health = Literal["unknown", "up", "down"]


@dataclass
class NodeHealth:
    name: str
    has_agent: bool
    state: Health = "unknown"
    engine_ok: bool | None = None
    engine_error: str | None = None
    engine_version: str | None = None
    engine_ms: float | None = None
    agent_ok: bool | None = None
    agent_error: str | None = None
    nvml_ok: bool | None = None
    nvml_error: str | None = None
    driver_version: str | None = None
    cuda_version: str | None = None
    failures: int = 0
    last_ok: float | None = None
    down_since: float | None = None
    next_probe: float = 0.0
    inventory_at: float = 0.0
    inventory_uuids: tuple[str, ...] = ()
    mismatch: list[str] = field(default_factory=list)
    sample: dict[str, Any] | None = None
    sample_seq: int | None = None
    xid_seq: int = -1
    reconciled_at: float | None = None
    reconcile: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out = {
            k: v
            for k, v in self.__dict__.items()
            if k not in ("sample", "next_probe", "inventory_at", "inventory_uuids", "sample_seq")
        }
        out["agent"] = self.has_agent
        del out["has_agent"]
        return out


class Prober:
    """Probes a node, records what it found in the node's ``NodeHealth`` and tells the
    ledger (through ``ledger_call``) when the node goes down or comes back."""

    def __init__(
        self,
        settings: HealthSettings,
        ledger: Ledger,
        ledger_call: LedgerCall,
        alerts: Alerts,
        engines: Engines,
        read_agent: Callable[[Node, NodeHealth], Awaitable[None]],
        *,
        clock: Callable[[], float],
        log: logging.Logger,
        on_back: Callable[[], None],
    ):
        self.settings = settings
        self.ledger = ledger
        self.ledger_call = ledger_call
        self.alerts = alerts
        self.engines = engines
        self.read_agent = read_agent  # asks the node's agent and acts on what it says
        self.clock = clock
        self.log = log
        self.on_back = on_back  # a node that was down answers again

    async def probe(self, node: Node, h: NodeHealth) -> None:
        t0 = time.perf_counter()
        try:
            if h.engine_version is None:
                v = await asyncio.wait_for(
                    self.engines.call(node, "version"), self.settings.probe_timeout
                )
                h.engine_version = v.get("Version")
            else:
                await asyncio.wait_for(self.engines.call(node, "ping"), self.settings.probe_timeout)
            h.engine_ok, h.engine_error = True, None
            h.engine_ms = round(1000 * (time.perf_counter() - t0), 1)
        except (EngineUnreachable, asyncio.TimeoutError, Exception) as e:
            h.engine_ok = False
            h.engine_error = str(e) or type(e).__name__
            if isinstance(e, asyncio.TimeoutError):
                h.engine_error = f"no answer within {self.settings.probe_timeout:g} s"
        if node.agent is not None:
            try:
                await self.read_agent(node, h)
                h.agent_ok, h.agent_error = True, None
            except AgentError as e:
                h.agent_ok, h.agent_error = False, str(e)
            except Exception as e:
                h.agent_ok, h.agent_error = False, f"{type(e).__name__}: {e}"
                self.log.exception("agent of %s", node.name)
        ok = bool(h.engine_ok) and (h.agent_ok is not False)
        await self._judge(node, h, ok)

    async def _judge(self, node: Node, h: NodeHealth, ok: bool) -> None:
        now = self.clock()
        hs = self.settings
        if ok:
            h.failures = 0
            h.last_ok = now
            h.next_probe = now + hs.probe_interval
            was = h.state
            if was != "up":
                h.state, h.down_since = "up", None
                await self.ledger_call(self.ledger.set_down, node.name, False)
                self.alerts.clear(f"node-down:{node.name}", "answers again")
                if was == "down":
                    self.log.info("node %s is up again; reconciling it", node.name)
                    self.on_back()
            return
        h.failures += 1
        why = "; ".join(
            x
            for x in (
                f"engine: {h.engine_error}" if h.engine_ok is False else "",
                f"agent: {h.agent_error}" if h.agent_ok is False else "",
            )
            if x
        )
        # a node never seen answering (the pool just started) is down at its first
        # silent probe: no spawn should be sent to an engine that was never reached
        if h.failures >= hs.down_after or h.state == "unknown":
            if h.state != "down":
                h.state, h.down_since = "down", now
                await self.ledger_call(self.ledger.set_down, node.name, True)
            held = sum(1 for p in self.ledger.state.placements.values() if p.node == node.name)
            self.alerts.raise_(
                f"node-down:{node.name}",
                "node-down",
                "critical",
                f"node {node.name} is down ({why}); it gets no new work and keeps its "
                f"{held} reservation(s) until it answers again",
                node=node.name,
            )
            backoff = hs.probe_interval * 2 ** (h.failures - hs.down_after)
            h.next_probe = now + min(backoff, max(hs.max_backoff, hs.probe_interval))
        else:
            h.next_probe = now + hs.probe_interval
