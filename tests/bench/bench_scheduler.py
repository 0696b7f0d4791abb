#!/usr/bin/env python
"""Scheduler benchmark: decision latency and packing quality against two baselines.

Run from the repository root::

    .venv/bin/python tests/bench/bench_scheduler.py            # full run (10, 100, 1,000 nodes)
    .venv/bin/python tests/bench/bench_scheduler.py --quick    # smaller, for a smoke test
    .venv/bin/python tests/bench/bench_scheduler.py --sizes 10,100

Two measurements, each on clusters of N nodes x 8 GPUs (3 in 4 nodes A100 80 GB, 1 in 4
H100 80 GB, 128 CPU, 1 TiB RAM, 4 TiB disk), with a mixed trace of requests (GPU slices of
10/20/40 GiB with 10-50 % SM, 2 x 20 GiB slices, whole single cards, 2- and 4-card
requests, CPU-only work; some requests restricted to A100 or H100):

1. latency: the cluster is pre-filled to the steady state of an M/M/inf system whose
   offered load is ``--load`` of its bottleneck resource (prefill is not timed, and a
   prefill request that fits nowhere is counted as rejected without a decision), then
   ``--decisions`` arrivals are decided one by one with departures interleaved (every
   request has an exponential lifetime). Each decision (``place`` for ours, the function
   for a baseline) is timed with ``time.perf_counter_ns``; rejections are timed too, as
   they include the scheduler's explanation. Reported: decisions per second (decisions /
   summed decision time, i.e. one core), p50 and p99 over all decisions, p99 of placed
   decisions only, p50 of rejected ones.

2. fill-up: from an empty cluster, the same trace (no releases, about 1.25x what the
   cluster holds) is offered to every strategy; reported are the requests placed before
   the first rejection and the total placed over the whole trace. Once a strategy has
   been rejected, a request that fits nowhere (independent oracle, ``baselines.feasible``)
   is counted as rejected without calling the strategy, except every ``--verify-every``-th
   such request, which is still decided and must be rejected; this keeps the run short
   (a rejection costs the scheduler ~10 ms at 1,000 nodes) and does not change a count.

``--no-model-filters`` runs the same traces with every GPU request accepting any model,
which isolates what the A100/H100 filters do to packing.

Every decision is checked (untimed): a placement must honour the request (model filter,
distinct GPUs on one node, whole-card/slice semantics, CPU/RAM/disk), else the benchmark
aborts; so does placing a request the oracle says fits nowhere, or any ``state.violations()``
or ``invariant_violations`` after a run. Rejecting a request that fits somewhere is counted
(``false_rejections``), printed as a warning, and makes the exit status 1.

Results go to stdout as tables, then one JSON object per measurement line (after a line
``--- json ---``).
"""

from __future__ import annotations

import argparse
import functools
import gc
import heapq
import json
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from gpupool.catalog.models import Gpu, Node
from gpupool.pool.scheduler import place
from gpupool.pool.state import ClusterState, Placement, Request, invariant_violations

try:
    from .baselines import emptiest, feasible, first_fit
except ImportError:  # run as a script: tests/bench is sys.path[0]
    from baselines import emptiest, feasible, first_fit  # type: ignore[no-redef]

GIB = 1024
A100 = ("NVIDIA A100-SXM4-80GB", 81920)
H100 = ("NVIDIA H100 80GB HBM3", 81559)
GPUS_PER_NODE = 8
NODE_CPU = 128_000
NODE_RAM = 1024 * GIB
NODE_DISK = 4 * 1024 * GIB

Decide = Callable[[ClusterState, Request], object]


# -- cluster and trace ---------------------------------------------------------------------
def make_nodes(n: int) -> list[Node]:
    """n nodes of 8 GPUs; every 4th node is H100, the rest A100."""
    nodes = []
    for i in range(n):
        model, mem = H100 if i % 4 == 3 else A100
        nodes.append(
            Node(
                name=f"node{i:04d}",
                engine="unix:///var/run/docker.sock",
                cpu_millicores=NODE_CPU,
                memory_mib=NODE_RAM,
                disk_mib=NODE_DISK,
                gpus=tuple(
                    Gpu(index=j, uuid=f"GPU-{i:04d}-{j}", model=model, memory_mib=mem)
                    for j in range(GPUS_PER_NODE)
                ),
            )
        )
    return nodes


# (weight, kind, gpus, slice GiB or None for whole cards, SM choices, CPU cores, RAM GiB)
MIX: tuple[
    tuple[float, str, int, int | None, tuple[int, ...], tuple[int, int], tuple[int, int]], ...
] = (
    (0.22, "slice-10G", 1, 10, (10, 15, 20), (1, 4), (4, 32)),
    (0.17, "slice-20G", 1, 20, (20, 25, 30), (2, 6), (8, 64)),
    (0.10, "slice-40G", 1, 40, (30, 40, 50), (4, 8), (16, 96)),
    (0.05, "slice-2x20G", 2, 20, (25,), (4, 12), (16, 128)),
    (0.15, "whole-1", 1, None, (), (8, 16), (32, 128)),
    (0.08, "whole-2", 2, None, (), (16, 32), (64, 256)),
    (0.05, "whole-4", 4, None, (), (32, 64), (128, 512)),
    (0.18, "cpu-only", 0, None, (), (1, 8), (2, 32)),
)
_CUM = list(np.cumsum([m[0] for m in MIX]))


def make_request(rng: random.Random, filters: bool = True) -> Request:
    x = rng.random() * _CUM[-1]
    k = next(i for i, c in enumerate(_CUM) if x < c)
    _, _kind, gpus, slice_gib, sms, cpu, ram = MIX[k]
    models: tuple[str, ...] = ()
    if gpus:
        m = rng.random()  # drawn either way, so the rest of the trace stays the same
        if filters:
            models = ("H100",) if m < 0.12 else ("A100",) if m < 0.27 else ()
    return Request(
        gpus=gpus,
        gpu_models=models,
        gpu_memory_mib=None if slice_gib is None or not gpus else slice_gib * GIB,
        gpu_sm_percent=rng.choice(sms) if sms else 0,
        cpu_millicores=rng.randint(*cpu) * 1000,
        memory_mib=rng.randint(*ram) * GIB,
        disk_mib=rng.choice((0, 0, 10 * GIB, 50 * GIB, 100 * GIB)),
    )


def gpu_equiv(req: Request) -> float:
    """GPU-equivalents a request holds: a whole card counts 1, a slice its larger share (memory
    or SM) of an 80 GB card; summed over requests this can slightly exceed the cards used."""
    if not req.gpus:
        return 0.0
    if req.gpu_memory_mib is None:
        return float(req.gpus)
    return req.gpus * max(req.gpu_memory_mib / A100[1], req.gpu_sm_percent / 100)


def demand_ratios(n_nodes: int, sample: list[Request]) -> dict[str, float]:
    """Mean demand of one request as a fraction of the cluster, per resource."""
    k = len(sample)
    return {
        "gpu": sum(map(gpu_equiv, sample)) / k / (n_nodes * GPUS_PER_NODE),
        "cpu": sum(r.cpu_millicores for r in sample) / k / (n_nodes * NODE_CPU),
        "ram": sum(r.memory_mib for r in sample) / k / (n_nodes * NODE_RAM),
    }


# -- strategies ----------------------------------------------------------------------------
STRATEGIES: dict[str, Decide] = {
    "ours binpack/binpack": functools.partial(place, node_policy="binpack", gpu_policy="binpack"),
    "ours spread/spread": functools.partial(place, node_policy="spread", gpu_policy="spread"),
    "first-fit": first_fit,
    "emptiest": emptiest,
}
OURS = "ours binpack/binpack"
BASELINE_NAMES = ("first-fit", "emptiest")


class BenchFailure(AssertionError):
    pass


def check_placement(state: ClusterState, req: Request, p: Placement, who: str) -> None:
    """Raise unless placement ``p`` honours ``req`` on the current (not yet applied) state."""
    i = state.index.get(p.node)
    if i is None or not state.schedulable[i]:
        raise BenchFailure(f"{who}: placed on unknown or unschedulable node {p.node}")
    if (p.cpu_millicores, p.memory_mib, p.disk_mib) != (
        req.cpu_millicores,
        req.memory_mib,
        req.disk_mib,
    ):
        raise BenchFailure(f"{who}: placement resources differ from the request: {p} vs {req}")
    if state.cpu_total[i] - state.cpu_used[i] < req.cpu_millicores:
        raise BenchFailure(f"{who}: CPU over-committed on {p.node} by {req}")
    if state.ram_total[i] - state.ram_used[i] < req.memory_mib:
        raise BenchFailure(f"{who}: RAM over-committed on {p.node} by {req}")
    if state.disk_total[i] - state.disk_used[i] < req.disk_mib:
        raise BenchFailure(f"{who}: disk over-committed on {p.node} by {req}")
    if len(p.gpus) != req.gpus or len({s.uuid for s in p.gpus}) != req.gpus:
        raise BenchFailure(f"{who}: {len(p.gpus)} GPUs (distinct?) for {req.gpus}: {p}")
    node = state.nodes[i]
    by_uuid = {g.uuid: g for g in node.gpus}
    for s in p.gpus:
        gpu = by_uuid.get(s.uuid)
        if gpu is None or gpu.index != s.index:
            raise BenchFailure(f"{who}: GPU {s.uuid}/{s.index} is not on {p.node}")
        if req.gpu_models and not any(f.lower() in gpu.model.lower() for f in req.gpu_models):
            raise BenchFailure(f"{who}: {gpu.model} does not match {req.gpu_models}")
        _, j = state.gpu_at[s.uuid]
        if req.whole:
            if not (s.whole and s.sm_percent == 100 and s.memory_mib == gpu.memory_mib):
                raise BenchFailure(f"{who}: whole-card share is wrong: {s}")
            if state.holders[i, j] != 0:
                raise BenchFailure(f"{who}: whole card {s.uuid} already has holders")
        else:
            if s.whole or s.memory_mib != req.gpu_memory_mib or s.sm_percent != req.gpu_sm_percent:
                raise BenchFailure(f"{who}: slice share is wrong: {s} for {req}")
            if state.whole[i, j]:
                raise BenchFailure(f"{who}: slice on a card held whole: {s.uuid}")


def check_state(state: ClusterState, who: str) -> None:
    problems = state.violations()
    problems += invariant_violations(
        state.nodes, [(rid, s) for rid, p in state.placements.items() for s in p.gpus]
    )
    for name, used, total in (
        ("CPU", state.cpu_used, state.cpu_total),
        ("RAM", state.ram_used, state.ram_total),
        ("disk", state.disk_used, state.disk_total),
    ):
        over = np.flatnonzero(used > total)
        problems += [f"{state.nodes[i].name}: {name} over-committed" for i in over]
    if problems:
        raise BenchFailure(f"{who}: {len(problems)} violations, e.g. {problems[:3]}")


@dataclass
class Checker:
    """Cross-checks each decision against the oracle; collects disagreements."""

    who: str
    false_rejections: list[Request] = field(default_factory=list)

    def decided(self, state: ClusterState, req: Request, d: object, fits: bool) -> bool:
        if isinstance(d, Placement):
            if not fits:
                raise BenchFailure(f"{self.who}: placed {req} that the oracle says fits nowhere")
            check_placement(state, req, d, self.who)
            return True
        if fits:
            self.false_rejections.append(req)
        return False


def used_fraction(state: ClusterState) -> dict[str, float]:
    v = state.valid
    return {
        "gpu_mem": float((state.mem_used * v).sum() / (state.mem_total * v).sum()),
        "gpus_touched": float(((state.holders > 0) & v).sum() / v.sum()),
        "cpu": float(state.cpu_used.sum() / state.cpu_total.sum()),
        "ram": float(state.ram_used.sum() / state.ram_total.sum()),
    }


# -- 1. latency ----------------------------------------------------------------------------
def run_latency(
    n_nodes: int, seed: int, n_decisions: int, load: float, names: list[str], filters: bool = True
) -> list[dict[str, object]]:
    nodes = make_nodes(n_nodes)
    rng = random.Random(seed * 1_000_003 + n_nodes)
    sample = random.Random(seed * 1_000_003 + 999_983)
    ratios = demand_ratios(n_nodes, [make_request(sample, filters) for _ in range(20_000)])
    bottleneck = max(ratios, key=lambda k: ratios[k])
    mean_life = load / ratios[bottleneck]  # Little: in system = arrivals/step x lifetime
    n_prefill = round(mean_life)
    trace = [make_request(rng, filters) for _ in range(n_prefill + n_decisions)]
    lives = [max(1, round(rng.expovariate(1 / mean_life))) for _ in trace]
    results = []
    for name in names:
        decide = STRATEGIES[name]
        state = ClusterState(nodes)
        check = Checker(f"{name} @ {n_nodes} nodes (latency, seed {seed})")
        leaving: list[tuple[int, str]] = []
        for k in range(n_prefill):  # steady state at step 0; not timed
            req = trace[k]
            fits = feasible(state, req)
            d = decide(state, req) if fits else None
            if check.decided(state, req, d, fits):
                state.apply(f"r{k}", d)  # type: ignore[arg-type]
                heapq.heappush(leaving, (lives[k], f"r{k}"))
        before = used_fraction(state)
        times = np.zeros(n_decisions, dtype=np.int64)
        placed = np.zeros(n_decisions, dtype=bool)
        gc.collect()
        for t in range(n_decisions):
            while leaving and leaving[0][0] <= t:
                state.remove(heapq.heappop(leaving)[1])
            k = n_prefill + t
            req = trace[k]
            t0 = time.perf_counter_ns()
            d = decide(state, req)
            times[t] = time.perf_counter_ns() - t0
            fits = feasible(state, req)
            if check.decided(state, req, d, fits):
                placed[t] = True
                state.apply(f"r{k}", d)  # type: ignore[arg-type]
                heapq.heappush(leaving, (t + lives[k], f"r{k}"))
        check_state(state, check.who)
        us = times / 1000.0
        rej = us[~placed]
        results.append(
            {
                "bench": "latency",
                "nodes": n_nodes,
                "gpus": n_nodes * GPUS_PER_NODE,
                "strategy": name,
                "seed": seed,
                "load": load,
                "bottleneck": bottleneck,
                "prefill": n_prefill,
                "decisions": n_decisions,
                "rejected": int((~placed).sum()),
                "false_rejections": len(check.false_rejections),
                "decisions_per_s": round(n_decisions / (times.sum() / 1e9), 1),
                "mean_us": round(float(us.mean()), 1),
                "p50_us": round(float(np.percentile(us, 50)), 1),
                "p99_us": round(float(np.percentile(us, 99)), 1),
                "max_us": round(float(us.max()), 1),
                "p99_placed_us": round(float(np.percentile(us[placed], 99)), 1)
                if placed.any()
                else None,
                "p50_rejected_us": round(float(np.percentile(rej, 50)), 1) if rej.size else None,
                "used_after_prefill": {k: round(v, 3) for k, v in before.items()},
            }
        )
    return results


# -- 2. fill-up ----------------------------------------------------------------------------
def fill_trace(n_nodes: int, seed: int, factor: float, filters: bool = True) -> list[Request]:
    """Requests until their demand is ``factor`` x the cluster in some resource."""
    rng = random.Random(seed * 1_000_003 + n_nodes * 17 + 1)
    cap = {"gpu": n_nodes * GPUS_PER_NODE, "cpu": n_nodes * NODE_CPU, "ram": n_nodes * NODE_RAM}
    tot = dict.fromkeys(cap, 0.0)
    out = []
    while all(tot[k] < factor * cap[k] for k in cap):
        r = make_request(rng, filters)
        out.append(r)
        tot["gpu"] += gpu_equiv(r)
        tot["cpu"] += r.cpu_millicores
        tot["ram"] += r.memory_mib
    return out


def run_fillup(
    n_nodes: int,
    seed: int,
    factor: float,
    verify_every: int,
    names: list[str],
    filters: bool = True,
) -> list[dict[str, object]]:
    nodes = make_nodes(n_nodes)
    trace = fill_trace(n_nodes, seed, factor, filters)
    results = []
    for name in names:
        decide = STRATEGIES[name]
        state = ClusterState(nodes)
        check = Checker(f"{name} @ {n_nodes} nodes (fill-up, seed {seed})")
        first_rejection: int | None = None
        equiv = 0.0
        at_first: dict[str, float] = {}
        skipped = rejected = 0
        for k, req in enumerate(trace):
            fits = feasible(state, req)
            if not fits and first_rejection is not None and rejected % verify_every:
                rejected += 1
                skipped += 1
                continue
            d = decide(state, req)
            if check.decided(state, req, d, fits):
                state.apply(f"r{k}", d)  # type: ignore[arg-type]
                equiv += gpu_equiv(req)
                continue
            rejected += 1
            if first_rejection is None:
                first_rejection = k
                at_first = used_fraction(state)
        check_state(state, check.who)
        results.append(
            {
                "bench": "fillup",
                "nodes": n_nodes,
                "gpus": n_nodes * GPUS_PER_NODE,
                "strategy": name,
                "seed": seed,
                "trace": len(trace),
                "placed_before_first_rejection": first_rejection
                if first_rejection is not None
                else len(trace),
                "placed_total": len(state.placements),
                "placed_gpu_equiv": round(equiv, 2),
                "false_rejections": len(check.false_rejections),
                "rejections_not_decided": skipped,
                "used_at_first_rejection": {k: round(v, 3) for k, v in at_first.items()},
                "used_at_end": {k: round(v, 3) for k, v in used_fraction(state).items()},
            }
        )
    return results


# -- output --------------------------------------------------------------------------------
def fmt(x: object, width: int) -> str:
    if x is None:
        return "-".rjust(width)
    if isinstance(x, float):
        return f"{x:,.1f}".rjust(width)
    if isinstance(x, int):
        return f"{x:,}".rjust(width)
    return str(x).rjust(width)


def print_latency(rows: list[dict[str, object]]) -> None:
    cols = (
        ("nodes", 6),
        ("strategy", 21),
        ("decisions", 10),
        ("rejected", 9),
        ("decisions_per_s", 11),
        ("p50_us", 9),
        ("p99_us", 9),
        ("p99_placed_us", 10),
        ("p50_rejected_us", 11),
        ("max_us", 10),
    )
    heads = {
        "decisions_per_s": "dec/s",
        "p50_us": "p50 us",
        "p99_us": "p99 us",
        "p99_placed_us": "p99 plc us",
        "p50_rejected_us": "p50 rej us",
        "max_us": "max us",
    }
    print("  ".join(heads.get(c, c).rjust(w) for c, w in cols))
    for r in rows:
        print("  ".join(fmt(r[c], w) for c, w in cols))


def print_fillup(rows: list[dict[str, object]], names: list[str], seeds: list[int]) -> list[dict]:
    summaries = []
    sizes = sorted({int(r["nodes"]) for r in rows})  # type: ignore[call-overload]
    for n in sizes:
        print(f"\n{n} nodes x {GPUS_PER_NODE} GPUs")
        head = "  ".join(["strategy".ljust(21)] + [f"seed {s}".rjust(13) for s in seeds])
        print(head + "  " + "mean".rjust(13))
        by = {(r["strategy"], r["seed"]): r for r in rows if r["nodes"] == n}
        means: dict[str, dict[str, float]] = {}
        for name in names:
            cells = []
            firsts, totals = [], []
            for s in seeds:
                r = by[(name, s)]
                firsts.append(int(r["placed_before_first_rejection"]))  # type: ignore[call-overload]
                totals.append(int(r["placed_total"]))  # type: ignore[call-overload]
                cells.append(f"{firsts[-1]:,} / {totals[-1]:,}".rjust(13))
            means[name] = {"first": float(np.mean(firsts)), "total": float(np.mean(totals))}
            mean_cell = f"{means[name]['first']:,.0f} / {means[name]['total']:,.0f}".rjust(13)
            print("  ".join([name.ljust(21), *cells]) + "  " + mean_cell)
        print("(placed before first rejection / placed over the whole trace)")
        print(
            "GPU-equivalents placed over the whole trace (mean; cards x max(memory, SM) share): "
            + ", ".join(
                f"{name} {np.mean([by[(name, s)]['placed_gpu_equiv'] for s in seeds]):,.1f}"
                for name in names
            )
            + f" of {n * GPUS_PER_NODE:,}"
        )
        for name in names:
            if not name.startswith("ours"):
                continue
            for b in BASELINE_NAMES:
                if b not in means:
                    continue
                per_seed = [
                    by[(name, s)]["placed_before_first_rejection"]
                    / max(1, by[(b, s)]["placed_before_first_rejection"])  # type: ignore[operator]
                    for s in seeds
                ]
                ratio_first = means[name]["first"] / max(means[b]["first"], 1)
                ratio_total = means[name]["total"] / max(means[b]["total"], 1)
                wins = sum(
                    by[(name, s)]["placed_before_first_rejection"]
                    >= by[(b, s)]["placed_before_first_rejection"]  # type: ignore[operator]
                    for s in seeds
                )
                print(
                    f"  {name} vs {b}: first-rejection ratio {ratio_first:.3f}"
                    f" (per seed {', '.join(f'{x:.3f}' for x in per_seed)};"
                    f" >= in {wins}/{len(seeds)} seeds), total ratio {ratio_total:.3f}"
                )
                summaries.append(
                    {
                        "bench": "fillup-summary",
                        "nodes": n,
                        "strategy": name,
                        "baseline": b,
                        "seeds": seeds,
                        "mean_placed_before_first_rejection": means[name]["first"],
                        "baseline_mean_placed_before_first_rejection": means[b]["first"],
                        "ratio_first_rejection": round(ratio_first, 4),
                        "mean_placed_total": means[name]["total"],
                        "baseline_mean_placed_total": means[b]["total"],
                        "ratio_total": round(ratio_total, 4),
                        "seeds_at_least_baseline": wins,
                    }
                )
    return summaries


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10,100,1000", help="node counts, comma-separated")
    ap.add_argument("--quick", action="store_true", help="fewer decisions and seeds")
    ap.add_argument("--seed", type=int, default=1, help="seed of the latency trace")
    ap.add_argument("--seeds", type=int, default=5, help="fill-up seeds (seed .. seed+N-1)")
    ap.add_argument("--decisions", type=int, default=None, help="timed decisions per size")
    ap.add_argument("--load", type=float, default=0.85, help="offered load, bottleneck resource")
    ap.add_argument("--fill-factor", type=float, default=1.25, help="fill-up trace x capacity")
    ap.add_argument("--verify-every", type=int, default=20)
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument(
        "--no-model-filters",
        action="store_true",
        help="every GPU request accepts any model (to see what the A100/H100 filters cost)",
    )
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-fillup", action="store_true")
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    names = [x.strip() for x in args.strategies.split(",") if x.strip()]
    for nm in names:
        if nm not in STRATEGIES:
            ap.error(f"unknown strategy {nm!r}; known: {', '.join(STRATEGIES)}")
    n_seeds = min(args.seeds, 2) if args.quick else args.seeds
    seeds = list(range(args.seed, args.seed + n_seeds))

    def decisions_for(n: int) -> int:
        if args.decisions:
            return args.decisions
        if args.quick:
            return 1000
        return 20_000 if n <= 100 else 6_000

    meta = {
        "bench": "meta",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpus": os.cpu_count(),
        "sizes": sizes,
        "latency_seed": args.seed,
        "fillup_seeds": seeds,
        "load": args.load,
        "fill_factor": args.fill_factor,
        "quick": args.quick,
        "model_filters": not args.no_model_filters,
        "mix": {m[1]: m[0] for m in MIX},
    }
    print(
        f"gpupool scheduler benchmark: python {meta['python']}, numpy {meta['numpy']},"
        f" {meta['cpus']} CPUs; nodes of {GPUS_PER_NODE} GPUs (3/4 A100 80 GB, 1/4 H100 80 GB),"
        f" 128 CPU, 1 TiB RAM"
    )
    print(f"seeds: latency {args.seed}, fill-up {seeds}; mix: {meta['mix']}")
    started = time.perf_counter()
    out: list[dict[str, object]] = [meta]

    if not args.skip_latency:
        print(
            f"\n== Decision latency (steady state at offered load {args.load}, releases interleaved,"
            f" seed {args.seed}, one core) =="
        )
        lat: list[dict[str, object]] = []
        for n in sizes:
            rows = run_latency(
                n, args.seed, decisions_for(n), args.load, names, not args.no_model_filters
            )
            r0 = rows[0]
            print(
                f"-- {n} nodes: prefill {r0['prefill']:,} requests (bottleneck {r0['bottleneck']}),"
                f" used after prefill {r0['used_after_prefill']}"
            )
            lat += rows
        print()
        print_latency(lat)
        out += lat
        ours_big = [r for r in lat if r["strategy"] == OURS and r["nodes"] == max(sizes)]
        for r in ours_big:
            verdict = "UNDER" if float(r["p99_us"]) < 1000 else "NOT under"  # type: ignore[arg-type]
            print(
                f"\n{OURS} at {r['nodes']:,} nodes: p99 {r['p99_us']} us ({verdict} 1 ms);"
                f" placed-only p99 {r['p99_placed_us']} us; {r['rejected']} of {r['decisions']}"
                f" decisions were rejections (median {r['p50_rejected_us']} us each)"
            )

    if not args.skip_fillup:
        print(
            f"\n== Fill-up from empty, no releases (trace {args.fill_factor}x capacity),"
            f" seeds {seeds} =="
        )
        fill: list[dict[str, object]] = []
        for n in sizes:
            for s in seeds:
                fill += run_fillup(
                    n, s, args.fill_factor, args.verify_every, names, not args.no_model_filters
                )
        out += fill
        out += print_fillup(fill, names, seeds)

    bad = [r for r in out if r.get("false_rejections")]
    for r in bad:
        print(
            f"\nWARNING: {r['strategy']} rejected {r['false_rejections']} requests that fitted"
            f" somewhere ({r['bench']}, {r['nodes']} nodes, seed {r['seed']})"
        )
    print(
        f"\nall placements checked, no invariant violations; {time.perf_counter() - started:.0f} s"
    )
    print("--- json ---")
    for r in out:
        print(json.dumps(r, sort_keys=False))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
