#!/usr/bin/env python
"""Pool polling benchmark: the pool service's CPU cost of watching 100 agents.

Run from the repository root::

    .venv/bin/python tests/bench/bench_polling.py               # 100 nodes x 8 GPUs
    .venv/bin/python tests/bench/bench_polling.py --nodes 20 --rounds 5   # smoke test

Simulated agents (no GPU here): one separate process serves, for each of N nodes, the
agent's JSON contract (``/api/inventory`` and ``/api/sample`` with 8 GPUs, 4 processes
each, a new ``seq`` every second) on loopback, each node under its own URL prefix and
token. Its CPU is not counted. Engines are stand-ins that answer at once, so the figure
is the cost of the agent side of a probe.

Measured in the pool's process (``time.process_time``), per probe round over all nodes:

- baseline: the same HTTP GETs of the sample documents with Tornado's client and
  ``json.loads``, nothing else (what any poller pays);
- monitor: ``Monitor.probe_all()`` (HTTP, JSON, health state, inventory check, history
  per GPU and per reservation, alert checks), with 2 reservations per node in the ledger.

Reported: CPU ms per round for both, the ratio monitor / baseline, the wall time of a
round, and the share of one core at the default probe interval (2 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

GPUS = 8
PROCS = 4
TOKEN = "b" * 40


def uuid(node: int, gpu: int) -> str:
    return f"GPU-{node:08x}-0000-4000-8000-{gpu:012d}"


def serve_agents(port: int, nodes: int, ready: Any) -> None:
    """The simulated agents, in their own process."""
    from tornado import web
    from tornado.ioloop import IOLoop

    t0 = time.time()

    def inventory(n: int) -> dict[str, Any]:
        return {
            "hostname": f"node-{n}",
            "node": f"node-{n}",
            "agent_version": "bench",
            "nvml": {"ok": True, "error": None, "driver_version": "580", "cuda_version": "13.0"},
            "gpus": [
                {
                    "index": g,
                    "uuid": uuid(n, g),
                    "model": "NVIDIA A100-SXM4-80GB",
                    "memory_mib": 81920,
                    "mig_mode": "disabled",
                    "pci_bus_id": None,
                }
                for g in range(GPUS)
            ],
        }

    def sample(n: int) -> dict[str, Any]:
        seq = int(time.time() - t0)
        return {
            "time": time.time(),
            "seq": seq,
            "hostname": f"node-{n}",
            "node": f"node-{n}",
            "nvml": {"ok": True, "error": None},
            "gpus": [
                {
                    "index": g,
                    "uuid": uuid(n, g),
                    "utilization_gpu": (seq * 7 + g) % 100,
                    "utilization_memory": 10,
                    "memory_used_mib": 1000 + g,
                    "memory_total_mib": 81920,
                    "temperature_c": 50,
                    "power_w": 250.5,
                    "energy_mj": 10**9,
                    "processes": [
                        {
                            "pid": 1000 + p,
                            "memory_mib": 500,
                            "container_id": "c" * 64,
                            "owner": f"user{p}",
                            "reservation": f"r-{n}-{p % 2}",
                            "server": "",
                            "kind": "notebook",
                        }
                        for p in range(PROCS)
                    ],
                }
                for g in range(GPUS)
            ],
            "xid_events": [],
        }

    class H(web.RequestHandler):
        def get(self, n: str, what: str) -> None:
            if self.request.headers.get("Authorization") != f"token {TOKEN}":
                raise web.HTTPError(401)
            doc = inventory(int(n)) if what == "inventory" else sample(int(n))
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(doc))

    app = web.Application([(r"/n(\d+)/api/(inventory|sample)", H)])
    app.listen(port, "127.0.0.1")
    ready.set()
    IOLoop.current().start()


async def run(nodes: int, rounds: int, port: int) -> dict[str, Any]:
    from tornado.httpclient import AsyncHTTPClient

    from gpupool.catalog import load_catalog
    from gpupool.pool.alerts import Alerts
    from gpupool.pool.health import Monitor
    from gpupool.pool.ledger import Ledger
    from tests.unit.test_health import StandInEngines

    AsyncHTTPClient.configure(None, max_clients=64)
    d = Path(tempfile.mkdtemp(prefix="bench-poll-"))
    (d / "token").write_text(TOKEN)
    os.chmod(d / "token", 0o600)
    (d / "nodes.yaml").write_text(
        yaml.safe_dump(
            {
                "nodes": [
                    {
                        "name": f"node-{n}",
                        "engine": f"unix:///nonexistent/{n}.sock",
                        "gpu_runtime": "none",
                        "cpu": 64,
                        "memory": "512GiB",
                        "agent": {"url": f"http://127.0.0.1:{port}/n{n}", "token_file": "token"},
                        "gpus": [
                            {
                                "index": g,
                                "uuid": uuid(n, g),
                                "model": "NVIDIA A100-SXM4-80GB",
                                "memory": "80GiB",
                            }
                            for g in range(GPUS)
                        ],
                    }
                    for n in range(nodes)
                ]
            }
        )
    )
    (d / "specs.yaml").write_text(
        yaml.safe_dump(
            {
                "specs": [
                    {
                        "slug": "s",
                        "display_name": "s",
                        "gpus": 1,
                        "gpu_memory": "20GiB",
                        "cpu": 1,
                        "memory": "1GiB",
                    }
                ]
            }
        )
    )
    (d / "pool.yaml").write_text(yaml.safe_dump({"health": {"fan_out": 16}}))
    catalog = load_catalog(d)
    ledger = Ledger(f"sqlite:///{d / 'l.sqlite'}", catalog, node_policy="spread")
    spec = catalog.spec("s")
    assert spec is not None
    for i in range(2 * nodes):
        ledger.reserve(spec, f"user{i}", reservation_id=f"r-{i % nodes}-{i // nodes}")

    async def call(fn: Any, *a: Any, **k: Any) -> Any:
        return fn(*a, **k)

    mon = Monitor(catalog, ledger, call, Alerts(), engines=StandInEngines())  # type: ignore[arg-type]
    client = AsyncHTTPClient()
    sem = asyncio.Semaphore(16)

    async def bare(n: int) -> None:
        async with sem:
            r = await client.fetch(
                f"http://127.0.0.1:{port}/n{n}/api/sample",
                headers={"Authorization": f"token {TOKEN}"},
            )
            json.loads(r.body)

    async def baseline_round() -> None:
        await asyncio.gather(*(bare(n) for n in range(nodes)))

    async def monitor_round() -> None:
        for h in mon.nodes.values():
            h.sample_seq = None  # every round is new data, as at a 1 s agent / 2 s probe
        await mon.probe_all()

    await mon.probe_all()  # first contact: inventories (not timed)
    await baseline_round()
    out: dict[str, list[float]] = {"baseline_cpu": [], "monitor_cpu": [], "monitor_wall": []}
    for _ in range(rounds):  # alternate, so drift hits both alike
        c0 = time.process_time()
        await baseline_round()
        out["baseline_cpu"].append(time.process_time() - c0)
        c0, w0 = time.process_time(), time.perf_counter()
        await monitor_round()
        out["monitor_cpu"].append(time.process_time() - c0)
        out["monitor_wall"].append(time.perf_counter() - w0)
    states = {h.state for h in mon.nodes.values()}
    assert states == {"up"}, states
    hist = sum(len(v) for v in mon.history.reservations.values())
    assert hist >= 2 * nodes, "reservation history was not kept"
    ledger.close()
    med = {k: statistics.median(v) for k, v in out.items()}
    return {
        "nodes": nodes,
        "gpus": nodes * GPUS,
        "rounds": rounds,
        "baseline_cpu_ms": round(1000 * med["baseline_cpu"], 1),
        "monitor_cpu_ms": round(1000 * med["monitor_cpu"], 1),
        "ratio": round(med["monitor_cpu"] / med["baseline_cpu"], 2),
        "monitor_wall_ms": round(1000 * med["monitor_wall"], 1),
        "core_share_at_2s": round(med["monitor_cpu"] / 2.0, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    from tests.support.ports import free_base_port

    port = free_base_port((0,))
    ready = multiprocessing.Event()
    agents = multiprocessing.Process(target=serve_agents, args=(port, args.nodes, ready))
    agents.start()
    try:
        if not ready.wait(30):
            raise SystemExit("the simulated agents did not start")
        res = asyncio.run(run(args.nodes, args.rounds, port))
    finally:
        agents.terminate()
        agents.join(5)
    print(f"# pool polling, {platform.python_version()}, {os.cpu_count()} CPUs")
    print(f"{'nodes':>6} {'GPUs':>5} {'bare GETs CPU':>14} {'monitor CPU':>12} {'ratio':>6} "
          f"{'round wall':>11} {'core @2s':>9}")  # fmt: skip
    print(
        f"{res['nodes']:>6} {res['gpus']:>5} {res['baseline_cpu_ms']:>11.1f} ms "
        f"{res['monitor_cpu_ms']:>9.1f} ms {res['ratio']:>6.2f} {res['monitor_wall_ms']:>8.1f} ms "
        f"{100 * res['core_share_at_2s']:>8.1f}%"
    )
    print("--- json ---")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
