"""Pool health without engines: the monitor's state machine (up, down, back), inventory
from agents, alerts from samples, history, the ledger's down and inventory bookkeeping,
Prometheus gauges, and the alert webhook against a real HTTP server on loopback.

Engines and agents here are stand-ins (``StandInEngines``, ``StandInAgents``): the real
ones are exercised by tests/integration/test_health.py against real dockerd engines."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tornado import web
from tornado.httpserver import HTTPServer

from gpupool.catalog import load_catalog
from gpupool.catalog.models import Gpu, Node
from gpupool.engines import EngineUnreachable
from gpupool.exposition import render
from gpupool.pool.alerts import Alerts
from gpupool.pool.health import AgentError, Monitor, inventory_mismatch
from gpupool.pool.health_api import pool_families
from gpupool.pool.ledger import Ledger, LedgerError
from gpupool.pool.scheduler import Rejection
from tests.support.ports import free_base_port


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


class StandInEngines:
    """Stand-in for Docker engines: answers ping/version/containers per node, or not."""

    def __init__(self) -> None:
        self.down: set[str] = set()
        self.containers: dict[str, list[dict[str, Any]]] = {}
        self.stopped: list[str] = []

    async def call(self, node: Node, method: str, *args: Any, **kw: Any) -> Any:
        if node.name in self.down:
            raise EngineUnreachable(f"engine of node {node.name}: connection refused")
        if method == "version":
            return {"Version": "26.1.5"}
        if method == "ping":
            return True
        if method == "containers":
            return self.containers.get(node.name, [])
        if method == "stop":
            self.stopped.append(args[0])
            return None
        raise AssertionError(method)


class StandInAgents:
    """Stand-in for node agents: serves inventory and samples per node as the agent's
    JSON contract has them."""

    def __init__(self) -> None:
        self.inventory: dict[str, dict[str, Any]] = {}
        self.samples: dict[str, dict[str, Any]] = {}
        self.silent: set[str] = set()
        self.calls: list[tuple[str, str]] = []

    async def __call__(self, node: Node, path: str, timeout: float) -> dict[str, Any]:
        self.calls.append((node.name, path))
        if node.name in self.silent:
            raise AgentError(f"agent of {node.name} did not answer")
        return self.inventory[node.name] if path == "/api/inventory" else self.samples[node.name]


def gpus_json(node: Node, memory: int = 81559) -> list[dict[str, Any]]:
    return [
        {"index": g.index, "uuid": g.uuid, "model": "NVIDIA A100-SXM4-80GB", "memory_mib": memory}
        for g in node.gpus
    ]


@pytest.fixture
def cat(catalog_dir: Path) -> Path:
    """The test catalog with an agent on node-a."""
    (catalog_dir / "agent-token").write_text("t" * 32)
    doc = yaml.safe_load((catalog_dir / "nodes.yaml").read_text())
    doc["nodes"][0]["agent"] = {"url": "http://127.0.0.1:9445", "token_file": "agent-token"}
    (catalog_dir / "nodes.yaml").write_text(yaml.safe_dump(doc))
    return catalog_dir


@pytest.fixture
def world(cat: Path, tmp_path: Path) -> Any:
    catalog = load_catalog(cat)
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.sqlite'}", catalog)
    clock = Clock()
    engines, agents = StandInEngines(), StandInAgents()
    node_a = catalog.node("node-a")
    assert node_a is not None
    agents.inventory["node-a"] = {
        "nvml": {"ok": True, "error": None, "driver_version": "580.1", "cuda_version": "13.0"},
        "gpus": gpus_json(node_a),
    }
    agents.samples["node-a"] = {
        "time": clock.t,
        "seq": 1,
        "gpus": [
            {
                "index": g["index"],
                "uuid": g["uuid"],
                "utilization_gpu": 10 * g["index"],
                "memory_used_mib": 100,
                "memory_total_mib": g["memory_mib"],
                "temperature_c": 40,
                "processes": [],
            }
            for g in agents.inventory["node-a"]["gpus"]
        ],
        "xid_events": [],
    }

    async def call(fn: Any, *a: Any, **k: Any) -> Any:
        return fn(*a, **k)

    alerts = Alerts(clock=clock)
    mon = Monitor(catalog, ledger, call, alerts, engines=engines, agent=agents, clock=clock)  # type: ignore[arg-type]

    class W:
        pass

    w = W()
    w.__dict__.update(
        catalog=catalog, ledger=ledger, clock=clock, engines=engines, agents=agents, mon=mon
    )
    yield w
    ledger.close()


async def test_node_goes_down_after_two_silent_probes_and_keeps_reservations(world: Any) -> None:
    mon, ledger, engines = world.mon, world.ledger, world.engines
    await mon.probe_all()
    assert {n: h.state for n, h in mon.nodes.items()} == {"node-a": "up", "node-b": "up"}
    spec = world.catalog.spec("a100-1x")
    held = [ledger.reserve(spec, f"u{i}") for i in range(4)]
    assert all(r.node == "node-b" for r in held if r.node == "node-b")
    on_b = [r for r in held if r.node == "node-b"]
    engines.down.add("node-b")
    await mon.probe(world.catalog.node("node-b"))
    assert mon.nodes["node-b"].state == "up"  # one silent probe is not enough
    await mon.probe(world.catalog.node("node-b"))
    assert mon.nodes["node-b"].state == "down"
    assert ledger.state.status[ledger.state.index["node-b"]] == "down"
    assert {r.id for r in ledger.list()} == {r.id for r in held}  # nothing released
    alert = mon.alerts.active["node-down:node-b"]
    assert alert.severity == "critical" and "connection refused" in alert.message
    assert f"keeps its {len(on_b)} reservation" in alert.message
    # no new work goes to the down node
    for _ in range(8):
        r = ledger.reserve(spec, "late")
        if isinstance(r, Rejection):
            assert "node-b down" in r.message or "down" in r.message
            break
        assert r.node == "node-a"
    # it comes back
    engines.down.clear()
    await mon.probe(world.catalog.node("node-b"))
    assert mon.nodes["node-b"].state == "up" and "node-down:node-b" not in mon.alerts.active
    assert ledger.state.status[ledger.state.index["node-b"]] == "up"
    assert mon._reconcile_now.is_set()  # reconciled at once


async def test_down_node_probes_back_off(world: Any) -> None:
    mon, engines, clock = world.mon, world.engines, world.clock
    node = world.catalog.node("node-b")
    await mon.probe_all()
    engines.down.add("node-b")
    gaps = []
    for _ in range(6):
        await mon.probe(node)
        gaps.append(mon.nodes["node-b"].next_probe - clock.t)
    assert gaps[:2] == [2.0, 2.0]
    assert gaps[2:] == [4.0, 8.0, 15.0, 15.0]  # doubling, capped by max_backoff


async def test_a_node_never_reached_is_down_at_its_first_silent_probe(world: Any) -> None:
    world.engines.down.add("node-b")
    await world.mon.probe(world.catalog.node("node-b"))
    assert world.mon.nodes["node-b"].state == "down"
    assert world.ledger.state.status[world.ledger.state.index["node-b"]] == "down"


async def test_drained_and_down_are_independent(world: Any) -> None:
    mon, ledger, engines = world.mon, world.ledger, world.engines
    ledger.set_drained("node-b", True, "admin")
    engines.down.add("node-b")
    for _ in range(2):
        await mon.probe(world.catalog.node("node-b"))
    i = ledger.state.index["node-b"]
    assert ledger.state.status[i] == "down"
    engines.down.clear()
    await mon.probe(world.catalog.node("node-b"))
    assert ledger.state.status[i] == "draining"  # still drained once it answers
    assert ledger.drained() == {"node-a": False, "node-b": True}


async def test_silent_agent_also_takes_the_node_down(world: Any) -> None:
    mon, agents = world.mon, world.agents
    agents.silent.add("node-a")
    for _ in range(2):
        await mon.probe(world.catalog.node("node-a"))
    h = mon.nodes["node-a"]
    assert h.state == "down" and h.engine_ok and h.agent_ok is False
    assert "agent:" in mon.alerts.active["node-down:node-a"].message


async def test_agent_inventory_replaces_declared_and_reports_mismatch(world: Any) -> None:
    mon, ledger, agents = world.mon, world.ledger, world.agents
    inv = agents.inventory["node-a"]
    new = {
        "index": 3,
        "uuid": "GPU-new-card",
        "model": "NVIDIA H100 80GB HBM3",
        "memory_mib": 81559,
    }
    inv["gpus"] = [*inv["gpus"][:3], new]
    await mon.probe_all()
    node = ledger.state.nodes[ledger.state.index["node-a"]]
    assert [g.uuid for g in node.gpus][-1] == "GPU-new-card"
    assert ledger.state.mem_total[ledger.state.index["node-a"], 0] == 81559
    a = mon.alerts.active["inventory-mismatch:node-a"]
    assert "not reported" in a.message and "not declared: GPU-new-card" in a.message
    # kept across a restart of the pool (the ledger holds the last report)
    again = Ledger(ledger.url, world.catalog)
    assert [g.uuid for g in again.nodes()[0].gpus][-1] == "GPU-new-card"
    again.close()


async def test_gpu_missing_keeps_its_reservation_and_places_nothing_on_it(world: Any) -> None:
    mon, ledger, agents = world.mon, world.ledger, world.agents
    await mon.probe_all()
    spec = world.catalog.spec("a100-1x")
    rs = [ledger.reserve(spec, f"u{i}") for i in range(8)]
    lost = next(r for r in rs if r.node == "node-a")
    uuid = lost.gpus[0].uuid
    inv = agents.inventory["node-a"]
    inv["gpus"] = [g for g in inv["gpus"] if g["uuid"] != uuid]
    agents.samples["node-a"]["gpus"] = [
        g for g in agents.samples["node-a"]["gpus"] if g["uuid"] != uuid
    ]
    agents.samples["node-a"]["seq"] = 2
    await mon.probe(world.catalog.node("node-a"))
    assert mon.alerts.active[f"gpu-missing:node-a:{uuid}"].severity == "critical"
    assert lost.id in ledger.orphans and ledger.get(lost.id).state == "active"
    assert uuid not in ledger.state.gpu_at
    # the card comes back: its reservation is placed again, the alert clears
    agents.inventory["node-a"]["gpus"] = gpus_json(world.catalog.node("node-a"))
    agents.samples["node-a"]["gpus"].append({"index": 9, "uuid": uuid, "processes": []})
    agents.samples["node-a"]["seq"] = 3
    await mon.probe(world.catalog.node("node-a"))
    assert lost.id in ledger.state.placements and f"gpu-missing:node-a:{uuid}" not in (
        mon.alerts.active
    )
    assert ledger.state.violations() == []


async def test_nvml_failure_keeps_the_known_gpus(world: Any) -> None:
    mon, ledger, agents = world.mon, world.ledger, world.agents
    await mon.probe_all()
    before = ledger.nodes()[0].gpus
    agents.inventory["node-a"] = {
        "nvml": {"ok": False, "error": "NVML Shared Library Not Found"},
        "gpus": [],
    }
    mon.nodes["node-a"].inventory_at = 0
    await mon.probe(world.catalog.node("node-a"))
    assert ledger.nodes()[0].gpus == before
    assert "Library Not Found" in mon.alerts.active["nvml:node-a"].message


def test_inventory_conflict_is_refused(world: Any) -> None:
    node_b = world.catalog.node("node-b")
    with pytest.raises(LedgerError, match="another node holds"):
        world.ledger.set_inventory("node-a", (node_b.gpus[0],))


async def test_temperature_and_xid_alerts(world: Any) -> None:
    mon, agents, clock = world.mon, world.agents, world.clock
    s = agents.samples["node-a"]
    s["gpus"][1]["temperature_c"] = 91
    s["xid_events"] = [
        {"seq": 0, "time": clock.t - 7200, "uuid": s["gpus"][0]["uuid"], "index": 0, "xid": 13},
        {"seq": 1, "time": clock.t, "uuid": s["gpus"][2]["uuid"], "index": 2, "xid": 79},
    ]
    await mon.probe(world.catalog.node("node-a"))
    kinds = {a.kind: a for a in mon.alerts.list()}
    assert (
        kinds["gpu-temperature"].severity == "critical"
        and "91 °C" in kinds["gpu-temperature"].message
    )
    xids = [a for a in mon.alerts.list() if a.kind == "xid"]
    assert [a.details["xid"] for a in xids] == [79]  # the 2-hour-old one is not raised
    assert xids[0].severity == "critical"
    # cooling down clears it; the Xid event expires after an hour
    s["gpus"][1]["temperature_c"] = 60
    s["seq"] = 2
    await mon.probe(world.catalog.node("node-a"))
    assert not [a for a in mon.alerts.list() if a.kind == "gpu-temperature"]
    clock.t += 3601
    assert not [a for a in mon.alerts.list() if a.kind == "xid"]


async def test_history_per_gpu_and_per_reservation(world: Any) -> None:
    mon, ledger, agents = world.mon, world.ledger, world.agents
    await mon.probe_all()
    r = ledger.reserve(world.catalog.spec("a100-40g"), "alice")
    assert r.node == "node-a"
    s = agents.samples["node-a"]
    for seq in range(2, 5):
        s["seq"] = seq
        for g in s["gpus"]:
            g["processes"] = (
                [{"pid": 7, "memory_mib": 1000 * seq, "reservation": r.id}]
                if g["uuid"] == r.gpus[0].uuid
                else [{"pid": 8, "memory_mib": 5, "reservation": "someone-else"}]
            )
        await mon.probe(world.catalog.node("node-a"))
    await mon.probe(world.catalog.node("node-a"))  # same seq again: not a new point
    hist = list(mon.history.reservations[r.id])
    assert [p["gpus"][0]["mem_used_mib"] for p in hist] == [2000, 3000, 4000]
    assert hist[0]["gpus"][0]["mem_limit_mib"] == 40 * 1024
    assert len(mon.history.gpus[r.gpus[0].uuid]) == 4
    ledger.release(r.id)
    s["seq"] = 9
    await mon.probe(world.catalog.node("node-a"))
    assert r.id not in mon.history.reservations


async def test_reconcile_frees_gone_and_stops_orphans_after_grace(world: Any) -> None:
    mon, ledger, engines, clock = world.mon, world.ledger, world.engines, world.clock
    await mon.probe_all()
    r = ledger.reserve(world.catalog.spec("a100-40g"), "alice", container="jupyter-alice")

    def listing(rid: str, cid: str, name: str, state: str = "running") -> dict[str, Any]:
        return {
            "Id": cid,
            "Names": [f"/{name}"],
            "State": state,
            "Status": "Up 1 minute",
            "Labels": {"io.gpupool.reservation": rid, "io.gpupool.owner": "alice"},
        }

    engines.containers[r.node] = [listing(r.id, "c1", "jupyter-alice")]
    await mon.reconcile()
    assert ledger.seen() == {r.id: "c1"}
    engines.containers[r.node] = [listing("r-unknown", "c9", "stray")]  # rm -f, and a stray
    out = await mon.reconcile(r.node)
    assert out[0]["released"][0]["reason"] == "container gone"
    assert ledger.get(r.id).state == "released"
    assert "reconciler: container gone" in ledger.get(r.id).release_reason
    assert mon.alerts.active[f"container-gone:{r.id}"].reservation == r.id
    assert "orphan:node-a:c9" in mon.alerts.active and engines.stopped == []
    clock.t += 301
    await mon.reconcile(r.node)
    assert engines.stopped == ["c9"]
    engines.containers[r.node] = [listing("r-unknown", "c9", "stray", "exited")]
    await mon.reconcile(r.node)
    assert "orphan:node-a:c9" not in mon.alerts.active


async def test_reconcile_skips_a_down_node(world: Any) -> None:
    mon, ledger, engines = world.mon, world.ledger, world.engines
    await mon.probe_all()
    r = ledger.reserve(world.catalog.spec("a100-1x"), "alice")
    ledger.mark_seen({r.id: "c1"})
    engines.down.add(r.node)
    for _ in range(2):
        await mon.probe(world.catalog.node(r.node))
    out = await mon.reconcile(r.node)
    assert "down" in out[0]["skipped"] and ledger.get(r.id).state == "active"


def test_inventory_mismatch_words() -> None:
    d = (Gpu(0, "GPU-a", "NVIDIA A100-SXM4-80GB", 81920),)
    assert inventory_mismatch(d, (Gpu(0, "GPU-a", "NVIDIA A100-SXM4-80GB", 81559),)) == []
    assert inventory_mismatch((), (Gpu(0, "GPU-x", "H100", 1),)) == []
    out = inventory_mismatch(d, (Gpu(0, "GPU-a", "NVIDIA H100 80GB HBM3", 40000),))
    assert any("declared 'NVIDIA A100" in x for x in out) and any("40000 MiB" in x for x in out)


def test_pool_gauges_in_prometheus_text(world: Any) -> None:
    ledger, mon = world.ledger, world.mon
    ledger.reserve(world.catalog.spec("a100-40g"), "alice")
    text = render(pool_families(ledger, mon))
    assert "# TYPE gpupool_gpu_memory_reserved_mib gauge" in text
    assert 'gpupool_reservations{node="node-a",kind="notebook"} 1' in text
    assert 'gpupool_gpus{node="node-b",modelName="NVIDIA A100-SXM4-80GB"} 4' in text
    reserved = [
        line
        for line in text.splitlines()
        if line.startswith("gpupool_gpu_memory_reserved_mib{") and line.endswith(" 40960")
    ]
    assert len(reserved) == 1


async def test_webhook_gets_raises_and_clears_as_json() -> None:
    got: list[dict[str, Any]] = []
    fails = {"n": 1}

    class Hook(web.RequestHandler):
        def post(self) -> None:
            if fails["n"]:
                fails["n"] -= 1
                raise web.HTTPError(503)  # the first delivery fails: retried
            got.append(json.loads(self.request.body))

    port = free_base_port((0,))
    server = HTTPServer(web.Application([(r"/hook", Hook)]))
    server.listen(port, "127.0.0.1")
    alerts = Alerts(webhook=f"http://127.0.0.1:{port}/hook")
    alerts.start()
    try:
        alerts.raise_("node-down:n1", "node-down", "critical", "node n1 is down", node="n1")
        alerts.clear("node-down:n1", "answers again")
        for _ in range(300):  # 15 s at most: one retry after a delay
            # the hook has the post before the sender has the answer: wait for both
            if len(got) == 2 and alerts.delivered == 2:
                break
            await asyncio.sleep(0.05)
    finally:
        await alerts.stop()
        server.stop()
    assert [(g["event"], g["alert"]["key"]) for g in got] == [
        ("raised", "node-down:n1"),
        ("cleared", "node-down:n1"),
    ]
    assert got[0]["source"] == "gpupool" and got[0]["alert"]["node"] == "n1"
    assert alerts.delivered == 2
