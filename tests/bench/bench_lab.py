#!/usr/bin/env python
"""Lab server extension benchmark: what its metrics cost and how fast a change shows.

Run from the repository root::

    .venv/bin/python -m tests.bench.bench_lab                  # 1 GPU slice, 1 Hz
    .venv/bin/python -m tests.bench.bench_lab --gpus 4 --trials 20

No GPU here: NVML is ``tests.support.fake_nvml`` (in-process world); the cgroup is this
machine's own (/sys/fs/cgroup, v1 or v2). Measured with ``time.process_time``:

- baseline: the NVML reads of the slice's GPUs (``NvmlReader.read()``) and the raw reads
  of the cgroup files, nothing else;
- sample: ``LocalMetrics.sample()``, what the server extension does once per interval,
  plus the JSON message it sends on the WebSocket;
- the share of one core that takes at 1 Hz;
- latency: the server extension's sampler running at ``--interval`` on an event loop with
  a socket stand-in; a GPU's utilization changes at a random point of the interval, and
  the time until a message carrying the new value is sent is taken, ``--trials`` times.
  (The browser adds its WebSocket hop and one render: tests/integration/
  test_lab_extension.py sees CPU work in the panel 1.3-1.8 s after it starts, the CPU
  rate needing one full interval.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import time
from pathlib import Path

from gpupool.lab.metrics import Cgroup, LocalMetrics, Slice
from gpupool.lab.serverext import Sampler
from gpupool.nvml.reader import NvmlReader
from tests.support import fake_nvml


def world(gpus: int) -> Slice:
    specs = [
        {"memory_total_mib": 81920, "memory_used_mib": 3000, "utilization_gpu": 5}
        for _ in range(gpus)
    ]
    fake_nvml.world.reset(gpus=specs)
    r = NvmlReader(fake_nvml)
    r.ensure()
    env = {
        "GPUPOOL_RESERVATION": "r-bench",
        "GPUPOOL_SPEC": "bench",
        "GPUPOOL_GPUS": json.dumps(
            [
                {"index": i.index, "uuid": i.uuid, "memory_mib": 20480, "sm": 30, "whole": False}
                for i, _ in r.devices
            ]
        ),
    }
    r.shutdown()
    return Slice.from_env(env)


def cpu_per_call(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    t0 = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t0) / n


class Socket:
    def __init__(self) -> None:
        self.seen: list[tuple[float, dict]] = []

    def write_message(self, text: str) -> None:
        self.seen.append((time.monotonic(), json.loads(text)))


async def latency(metrics: LocalMetrics, interval: float, trials: int) -> list[float]:
    sampler = Sampler(metrics, interval=interval)
    sock = Socket()
    sampler.sockets.add(sock)  # type: ignore[arg-type]
    sampler.start()
    out = []
    await asyncio.sleep(interval * 1.5)
    for k in range(trials):
        await asyncio.sleep(random.uniform(0, interval))
        value = 10 + k % 80
        changed = time.monotonic()
        fake_nvml.world.gpus[0].utilization_gpu = value
        while True:
            hit = [
                t
                for t, m in sock.seen
                if t >= changed and m["sample"]["gpus"][0]["utilization_gpu"] == value
            ]
            if hit:
                out.append(hit[0] - changed)
                break
            await asyncio.sleep(0.005)
    sampler.sockets.clear()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpus", type=int, default=1)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--trials", type=int, default=10)
    a = ap.parse_args()
    sl = world(a.gpus)
    metrics = LocalMetrics(slice=sl, nvml=fake_nvml, cgroup=Cgroup())
    reader = NvmlReader(fake_nvml)
    reader.ensure()
    cg = Cgroup()
    root = Path("/sys/fs/cgroup")
    files = (
        [
            "cpu/cpu.cfs_quota_us",
            "cpu/cpu.cfs_period_us",
            "cpuacct/cpuacct.usage",
            "memory/memory.usage_in_bytes",
            "memory/memory.limit_in_bytes",
        ]
        if cg.v1
        else ["cpu.max", "cpu.stat", "memory.current", "memory.max"]
    )

    def baseline() -> None:
        reader.read()
        for f in files:
            try:
                (root / f).read_text()
            except OSError:
                pass

    def sample() -> None:
        json.dumps({"type": "sample", "sample": metrics.sample()})

    base, full = [], []
    for _ in range(a.rounds):
        base.append(cpu_per_call(baseline, a.samples))
        full.append(cpu_per_call(sample, a.samples))
    b, f = statistics.median(base), statistics.median(full)
    lat = asyncio.run(latency(metrics, a.interval, a.trials))
    print(
        f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}, cgroup {'v1' if cg.v1 else 'v2'}"
    )
    print(f"{a.gpus} GPU(s), fake NVML, {a.rounds} rounds x {a.samples} samples")
    print(f"baseline (NVML reads + cgroup files): {b * 1e6:8.1f} us CPU per sample")
    print(
        f"server extension sample + JSON:        {f * 1e6:8.1f} us CPU per sample  (ratio {f / b:.2f})"
    )
    print(f"share of one core at 1 Hz:             {100 * f:8.4f} %")
    print(
        f"change -> WebSocket message at {a.interval:g} s interval, {a.trials} trials: "
        f"median {statistics.median(lat) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
