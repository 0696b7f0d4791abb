#!/usr/bin/env python
"""Node agent benchmark: the CPU one sample costs, against the bare NVML calls it makes.

Run from the repository root::

    .venv/bin/python -m tests.bench.bench_agent                 # 8 GPUs x 4 processes
    .venv/bin/python -m tests.bench.bench_agent --gpus 2 --procs 1 --rounds 5

No GPU here: NVML is ``tests.support.fake_nvml`` (in-process world, no file), with N GPUs
and P processes per GPU. Each process has a ``/proc/<pid>/cgroup`` file under a temporary
proc root naming a Docker container (systemd scope, cgroup v2), and the container's
labels come from an in-memory stub of the engine through the agent's ``LabelCache`` (after
the first sample every lookup is a cache hit, as on a node whose containers run for hours).

Measured with ``time.process_time`` (CPU of this process), per sample, in alternating
rounds of ``--samples`` samples:

- baseline: the fake NVML calls a sample makes and nothing else (utilization, memory,
  temperature, power, energy, compute and graphics processes of each GPU);
- reader: ``NvmlReader.read()`` alone: the same calls with optional fields, units and
  de-duplication of processes;
- agent: ``NodeSampler.take_sample()``: the reader, the container of every process from its
  cgroup file, the labels, the Xid list, the ``Sample`` object;
- then, on the last sample: its JSON document (``json.dumps(sample.to_json())``, what
  ``/api/sample`` sends) and the ``/metrics`` text (``render_metrics``).

Reported: median CPU per sample over the rounds, the ratio agent / baseline (the agent's
own overhead; the fake answers far faster than a real driver, whose calls take tens of
microseconds each, so on a GPU node the ratio is much closer to 1), and the share of one
core the agent takes at its default interval of 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from gpupool.agent.prometheus import render_metrics  # noqa: E402
from gpupool.nvml.cgroups import LabelCache  # noqa: E402
from gpupool.nvml.sampler import NodeSampler  # noqa: E402
from tests.support import fake_nvml  # noqa: E402


class StubEngineLabels:
    """A stub of the Docker engine's label lookup (in memory, instant)."""

    def __init__(self, labels: dict[str, dict[str, str]]) -> None:
        self.labels = labels
        self.calls = 0

    def __call__(self, container_id: str) -> dict[str, str] | None:
        self.calls += 1
        return self.labels.get(container_id)


def make_world(gpus: int, procs: int, proc_root: Path) -> dict[str, dict[str, str]]:
    """The fake's world and the proc root; returns the engine's labels per container."""
    os.environ.pop(fake_nvml.ENV, None)
    labels: dict[str, dict[str, str]] = {}
    world = fake_nvml.world.reset(
        gpus=[
            {
                "name": "NVIDIA H100 80GB HBM3",
                "memory_total_mib": 81559,
                "utilization_gpu": 60 + i,
                "memory_used_mib": 20000 + i,
                "power_mw": 350_000 + i,
                "energy_mj": 10**9 + i,
            }
            for i in range(gpus)
        ]
    )
    pid = 10_000
    for g in range(gpus):
        for k in range(procs):
            pid += 1
            cid = f"{pid:064x}"
            (proc_root / str(pid)).mkdir(parents=True)
            (proc_root / str(pid) / "cgroup").write_text(f"0::/system.slice/docker-{cid}.scope\n")
            labels[cid] = {
                "io.gpupool.owner": f"user{k}",
                "io.gpupool.reservation": f"r-{g}-{k}",
                "io.gpupool.server": f"user{k}/",
                "io.gpupool.kind": "notebook",
            }
            world.gpus[g].processes.append(fake_nvml.Proc(pid=pid, used_mib=1024 + k))
    return labels


def bare_calls(nv: Any, handles: list[Any]) -> None:
    """What one sample asks of NVML, as plain calls."""
    for h in handles:
        nv.nvmlDeviceGetUtilizationRates(h)
        nv.nvmlDeviceGetMemoryInfo(h)
        nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)
        nv.nvmlDeviceGetPowerUsage(h)
        nv.nvmlDeviceGetTotalEnergyConsumption(h)
        nv.nvmlDeviceGetComputeRunningProcesses(h)
        nv.nvmlDeviceGetGraphicsRunningProcesses(h)


def cpu_per_call(fn: Callable[[], Any], n: int) -> float:
    t0 = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t0) / n


def run(gpus: int, procs: int, samples: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="gpupool-bench-agent-") as tmp:
        labels = make_world(gpus, procs, Path(tmp))
        stub = StubEngineLabels(labels)
        agent = NodeSampler(fake_nvml, node="bench", proc_root=tmp, labels=LabelCache(stub))
        first = agent.take_sample()
        assert first.nvml.ok and len(first.gpus) == gpus
        got = [p for g in first.gpus for p in g.processes]
        assert len(got) == gpus * procs and all(p.owner and p.container_id for p in got), got
        nv = fake_nvml
        handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(gpus)]
        base, reads, ours = [], [], []
        for _ in range(rounds):
            base.append(cpu_per_call(lambda: bare_calls(nv, handles), samples))
            reads.append(cpu_per_call(agent.reader.read, samples))
            ours.append(cpu_per_call(agent.take_sample, samples))
        sample = agent.latest
        assert sample is not None
        to_json = cpu_per_call(lambda: json.dumps(sample.to_json()), samples)
        metrics = cpu_per_call(lambda: render_metrics(sample, agent.xids.last_by_uuid()), samples)
        body = render_metrics(sample)
        doc = json.dumps(sample.to_json())
    b, r, a = statistics.median(base), statistics.median(reads), statistics.median(ours)
    return {
        "gpus": gpus,
        "procs_per_gpu": procs,
        "samples_per_round": samples,
        "rounds": rounds,
        "baseline_cpu_us": round(1e6 * b, 1),
        "reader_cpu_us": round(1e6 * r, 1),
        "agent_cpu_us": round(1e6 * a, 1),
        "ratio": round(a / b, 2),
        "agent_cpu_us_min": round(1e6 * min(ours), 1),
        "agent_cpu_us_max": round(1e6 * max(ours), 1),
        "sample_json_us": round(1e6 * to_json, 1),
        "sample_json_bytes": len(doc),
        "metrics_render_us": round(1e6 * metrics, 1),
        "metrics_bytes": len(body),
        "metrics_lines": body.count("\n"),
        "core_share_at_1s": round(a, 5),
        "engine_lookups": stub.calls,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--procs", type=int, default=4, help="processes per GPU")
    ap.add_argument("--samples", type=int, default=200, help="samples per round")
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    res = run(args.gpus, args.procs, args.samples, args.rounds)
    print(f"# node agent, fake NVML, Python {platform.python_version()}, {os.cpu_count()} CPUs")
    print(f"{'GPUs':>5} {'procs':>6} {'bare NVML calls':>16} {'agent sample':>13} {'ratio':>6} "
          f"{'core @1 Hz':>10} {'sample JSON':>12} {'/metrics':>10}")  # fmt: skip
    print(
        f"{res['gpus']:>5} {res['gpus'] * res['procs_per_gpu']:>6} "
        f"{res['baseline_cpu_us']:>13.1f} µs {res['agent_cpu_us']:>10.1f} µs {res['ratio']:>6.2f} "
        f"{100 * res['core_share_at_1s']:>9.3f}% {res['sample_json_us']:>9.1f} µs "
        f"{res['metrics_render_us']:>7.1f} µs"
    )
    print(
        f"(agent per sample over {res['rounds']} rounds: min {res['agent_cpu_us_min']} µs, "
        f"max {res['agent_cpu_us_max']} µs; /metrics {res['metrics_lines']} lines, "
        f"{res['metrics_bytes']} bytes; sample JSON {res['sample_json_bytes']} bytes; "
        f"{res['engine_lookups']} engine lookups in all)"
    )
    print(
        f"(of which NvmlReader.read alone: {res['reader_cpu_us']} µs; the rest is each "
        "process's cgroup file, the labels and the Sample)"
    )
    print("--- json ---")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
