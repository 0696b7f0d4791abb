"""Pool health: probes of every node's engine and agent, the metrics history, the
reconciler's schedule and the alerts that come out of them.

A node is ``up`` while its engine (and its agent, where the catalog names one) answers.
After ``down_after`` probes in a row that did not answer it is ``down``: it keeps its
reservations, receives no new work (the scheduler skips it) and its probes back off up to
``max_backoff``. When it answers again it is ``up`` and reconciled at once. An engine
that does not answer is never taken as proof that its containers are gone.

Probes run with bounded fan-out (``fan_out`` at a time); blocking Docker calls go
through a thread pool, agents are asked over HTTP with Tornado's client.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from ..catalog.models import Catalog, Gpu, Node
from ..engines import Engines, EngineUnreachable
from .alerts import CRITICAL_XIDS, Alerts
from .idle import IdleCuller
from .ledger import Ledger, LedgerError, Reservation
from .reconcile import Container, Reconciler
from .watchdog import SliceWatchdog

Health = Literal["unknown", "up", "down"]
LedgerCall = Callable[..., Awaitable[Any]]
INVENTORY_EVERY = 60.0  # seconds between inventory reads while nothing changes
EVENT_HOLD = 3600.0  # how long event alerts (Xid, vanished container) stay listed


class AgentError(RuntimeError):
    pass


async def fetch_agent(node: Node, path: str, timeout: float) -> dict[str, Any]:
    """GET a JSON document from the node's agent with its token."""
    assert node.agent is not None
    try:
        token = node.agent.token()
    except OSError as e:
        raise AgentError(f"cannot read the agent token file: {e}") from None
    req = HTTPRequest(
        f"{node.agent.url}{path}",
        headers={"Authorization": f"token {token}"},
        connect_timeout=timeout,
        request_timeout=timeout,
        ca_certs=node.agent.ca,
        follow_redirects=False,
    )
    try:
        resp = await AsyncHTTPClient().fetch(req)
    except HTTPClientError as e:
        raise AgentError(f"agent {node.agent.url} answered {e.code}") from None
    except (OSError, asyncio.TimeoutError) as e:
        raise AgentError(f"agent {node.agent.url} did not answer: {e}") from None
    try:
        return json.loads(resp.body)
    except ValueError:
        raise AgentError(f"agent {node.agent.url} sent something that is not JSON") from None


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


class History:
    """Short metrics history per GPU and per reservation, for pages and widgets."""

    def __init__(self, size: int):
        self.size = size
        self.gpus: dict[str, collections.deque[dict[str, Any]]] = {}
        self.reservations: dict[str, collections.deque[dict[str, Any]]] = {}

    def add(self, sample: dict[str, Any], placements: dict[str, Any], node: str) -> None:
        t = sample.get("time") or time.time()
        by_uuid = {}
        for g in sample.get("gpus") or ():
            uuid = g.get("uuid")
            if not uuid:
                continue
            by_uuid[uuid] = g
            self.gpus.setdefault(uuid, collections.deque(maxlen=self.size)).append(
                {
                    "t": t,
                    "util": g.get("utilization_gpu"),
                    "mem_used_mib": g.get("memory_used_mib"),
                    "mem_total_mib": g.get("memory_total_mib"),
                    "temp_c": g.get("temperature_c"),
                    "power_w": g.get("power_w"),
                }
            )
        for rid, p in placements.items():
            if p.node != node or not p.gpus:
                continue
            point = []
            for share in p.gpus:
                g = by_uuid.get(share.uuid)
                if g is None:
                    continue
                used = sum(
                    pr.get("memory_mib") or 0
                    for pr in g.get("processes") or ()
                    if pr.get("reservation") == rid
                )
                point.append(
                    {
                        "uuid": share.uuid,
                        "util": g.get("utilization_gpu"),  # of the whole card
                        "mem_used_mib": used,  # by this reservation's processes
                        "mem_limit_mib": share.memory_mib,
                    }
                )
            if point:
                self.reservations.setdefault(rid, collections.deque(maxlen=self.size)).append(
                    {"t": t, "gpus": point}
                )

    def prune(self, active: set[str]) -> None:
        for rid in [r for r in self.reservations if r not in active]:
            del self.reservations[rid]


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
        self.watchdog = watchdog
        self.settings = catalog.pool.health
        self.ledger = ledger
        self.ledger_call = ledger_call
        self.alerts = alerts
        hs = self.settings
        self.engines = engines or Engines(
            max_workers=hs.fan_out, timeout=max(1, round(hs.probe_timeout))
        )
        self.agent = agent
        self.clock = clock
        self.log = log or logging.getLogger("gpupool.health")
        self.nodes = {n.name: NodeHealth(n.name, n.agent is not None) for n in catalog.nodes}
        self.history = History(hs.history)
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
                await self._agent_probe(node, h)
                h.agent_ok, h.agent_error = True, None
            except AgentError as e:
                h.agent_ok, h.agent_error = False, str(e)
            except Exception as e:
                h.agent_ok, h.agent_error = False, f"{type(e).__name__}: {e}"
                self.log.exception("agent of %s", node.name)
        ok = bool(h.engine_ok) and (h.agent_ok is not False)
        await self._judge(node, h, ok)
        return h

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
                    self._schedule_reconcile()
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

    # -- agents -----------------------------------------------------------------------
    async def _agent_probe(self, node: Node, h: NodeHealth) -> None:
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


def inventory_mismatch(declared: tuple[Gpu, ...], reported: tuple[Gpu, ...]) -> list[str]:
    """How the reported GPUs differ from the declared ones, in words (empty: they agree).
    Memory may differ by 2 % (NVML reports what the card exposes, catalogs round)."""
    if not declared:
        return []
    out = []
    if len(declared) != len(reported):
        out.append(f"{len(declared)} GPU(s) declared, {len(reported)} reported")
    rep = {g.uuid: g for g in reported}
    for d in declared:
        r = rep.get(d.uuid)
        if r is None:
            out.append(f"declared {d.uuid} not reported")
            continue
        if d.model.lower() not in r.model.lower() and r.model.lower() not in d.model.lower():
            out.append(f"{d.uuid}: declared {d.model!r}, reported {r.model!r}")
        if abs(d.memory_mib - r.memory_mib) > 0.02 * d.memory_mib:
            out.append(f"{d.uuid}: declared {d.memory_mib} MiB, reported {r.memory_mib} MiB")
    known = {d.uuid for d in declared}
    extra = [g.uuid for g in reported if g.uuid not in known]
    if extra:
        out.append(f"not declared: {', '.join(extra)}")
    return out
