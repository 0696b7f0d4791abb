"""Placement decisions: request + cluster state -> placement, or a rejection that says why.

Pure code: no I/O, no clock, no randomness. Policies mean what they mean in HAMi:

- node policy ``binpack`` puts work on the busiest node that fits (keeping other nodes
  empty for large requests), ``spread`` on the emptiest;
- GPU policy ``binpack`` picks the busiest fitting cards on that node (keeping whole
  cards free), ``spread`` the emptiest.

"Busy" is the mean of a GPU's reserved memory share and reserved SM share. Ties go to
the earlier node / lower GPU index, so decisions are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..catalog.units import format_mib
from .state import ClusterState, GpuShare, Placement, Request

POLICIES = ("binpack", "spread")
EXPLAIN_NODES = 5


@dataclass(frozen=True)
class Rejection:
    """Why a request does not fit: a headline and one reason per node (the closest first)."""

    message: str
    nodes: tuple[tuple[str, str], ...] = field(default=())
    reason: str = "capacity"

    def to_json(self) -> dict[str, object]:
        return {
            "reason": self.reason,
            "message": self.message,
            "nodes": [{"node": n, "why": w} for n, w in self.nodes],
        }


def _gpu_fit(state: ClusterState, req: Request) -> np.ndarray:
    """Boolean (N, G): GPUs that could take one share of this request now."""
    ok = state.model_mask(req.gpu_models)
    if req.whole:
        return ok & (state.holders == 0)
    free_mem = state.mem_total - state.mem_used
    return (
        ok
        & ~state.whole
        & (free_mem >= req.gpu_memory_mib)
        & (100 - state.sm_used >= req.gpu_sm_percent)
    )


def _node_resources_fit(state: ClusterState, req: Request) -> np.ndarray:
    return (
        (state.cpu_total - state.cpu_used >= req.cpu_millicores)
        & (state.ram_total - state.ram_used >= req.memory_mib)
        & (state.disk_total - state.disk_used >= req.disk_mib)
    )


def place(
    state: ClusterState, req: Request, node_policy: str = "binpack", gpu_policy: str = "binpack"
) -> Placement | Rejection:
    """Choose a node and GPUs for ``req``; state is not changed (the caller applies)."""
    if node_policy not in POLICIES or gpu_policy not in POLICIES:
        raise ValueError(f"policies must be one of {POLICIES}, got {node_policy!r}, {gpu_policy!r}")
    node_ok = state.schedulable & _node_resources_fit(state, req)
    if req.gpus:
        gpu_ok = _gpu_fit(state, req)
        node_ok &= gpu_ok.sum(axis=1) >= req.gpus
        usage = state.gpu_usage()
        node_score = usage.sum(axis=1) / np.maximum(state.gpu_count, 1)
    else:
        node_score = (
            state.cpu_used / np.maximum(state.cpu_total, 1)
            + state.ram_used / np.maximum(state.ram_total, 1)
        ) * 0.5
    candidates = np.flatnonzero(node_ok)
    if candidates.size == 0:
        return explain(state, req)
    scores = node_score[candidates]
    pick = candidates[np.argmax(scores) if node_policy == "binpack" else np.argmin(scores)]
    i = int(pick)
    shares: tuple[GpuShare, ...] = ()
    if req.gpus:
        cols = np.flatnonzero(gpu_ok[i])
        u = usage[i, cols]
        # stable sort keeps lower GPU index first among equals
        order = np.argsort(-u if gpu_policy == "binpack" else u, kind="stable")[: req.gpus]
        shares = tuple(
            GpuShare(
                uuid=state.uuids[i][j],
                index=state.gpu_index[i][j],
                memory_mib=int(state.mem_total[i, j])
                if req.whole
                else int(req.gpu_memory_mib or 0),
                sm_percent=100 if req.whole else req.gpu_sm_percent,
                whole=req.whole,
            )
            for j in (int(cols[k]) for k in order)
        )
    return Placement(
        node=state.nodes[i].name,
        gpus=shares,
        cpu_millicores=req.cpu_millicores,
        memory_mib=req.memory_mib,
        disk_mib=req.disk_mib,
    )


def fits_now(state: ClusterState, req: Request, gpu_policy: str = "binpack") -> int:
    """How many more placements of ``req`` fit right now, all nodes together: exactly the
    number of successive ``place`` calls that would succeed."""
    if not state.nodes:
        return 0
    big = np.int64(1 << 40)
    k_res = np.minimum(
        (state.cpu_total - state.cpu_used) // max(req.cpu_millicores, 1)
        if req.cpu_millicores
        else big,
        (state.ram_total - state.ram_used) // max(req.memory_mib, 1) if req.memory_mib else big,
    )
    if req.disk_mib:
        k_res = np.minimum(k_res, (state.disk_total - state.disk_used) // req.disk_mib)
    k_res = np.where(state.schedulable, np.maximum(k_res, 0), 0)
    if not req.gpus:
        return int(np.minimum(k_res, big).sum())
    ok = _gpu_fit(state, req)
    if req.whole:
        # any empty cards will do: k placements need gpus * k of them
        k_gpu = ok.sum(axis=1) // req.gpus
    elif req.gpus == 1:
        # single slices: each card independently holds as many as its memory and SMs allow
        free_mem = state.mem_total - state.mem_used
        slots = free_mem // max(req.gpu_memory_mib or 1, 1)
        if req.gpu_sm_percent:
            slots = np.minimum(slots, (100 - state.sm_used) // req.gpu_sm_percent)
        k_gpu = np.where(ok, slots, 0).sum(axis=1)
    else:
        k_gpu = _greedy_multi_slice(state, req, gpu_policy, k_res)
    return int(np.minimum(k_gpu, k_res).sum())


def _greedy_multi_slice(
    state: ClusterState, req: Request, gpu_policy: str, limit: np.ndarray
) -> np.ndarray:
    """Count multi-GPU slice placements per node by replaying ``place``'s card choice.

    A closed formula would count the best packing, but GPU binpack deliberately keeps
    the emptiest cards whole (a 3-card node takes two 2 x half-card slices, not three),
    so the count must follow the policy. All nodes advance together, one placement a step.
    """
    mem = state.mem_used.copy()
    sm = state.sm_used.copy()
    static = state.model_mask(req.gpu_models) & ~state.whole
    m, s, c = int(req.gpu_memory_mib or 0), req.gpu_sm_percent, req.gpus
    k = np.zeros(len(state.nodes), dtype=np.int64)
    while True:
        elig = static & (state.mem_total - mem >= m) & (100 - sm >= s)
        can = np.flatnonzero((elig.sum(axis=1) >= c) & (k < limit))
        if can.size == 0:
            return k
        usage = (mem[can] / state.mem_total[can] + sm[can] / 100.0) * 0.5
        key = np.where(elig[can], -usage if gpu_policy == "binpack" else usage, np.inf)
        cols = np.argsort(key, axis=1, kind="stable")[:, :c]
        rows = can[:, None]
        mem[rows, cols] += m
        sm[rows, cols] += s
        k[can] += 1


def describe_request(req: Request) -> str:
    """'a free A100 with 20 GiB and 30 % SM', '2 empty A100s', '8 CPU and 32 GiB RAM'."""
    model = "/".join(req.gpu_models) if req.gpu_models else "GPU"
    if not req.gpus:
        return f"{req.cpu_millicores / 1000:g} CPU and {format_mib(req.memory_mib)} RAM free"
    if req.whole:
        return f"{req.gpus} empty {model} card{'s' if req.gpus > 1 else ''}"
    sm = f" and {req.gpu_sm_percent} % SM" if req.gpu_sm_percent else ""
    many = f"{req.gpus} free {model}s" if req.gpus > 1 else f"a free {model}"
    return f"{many} with {format_mib(req.gpu_memory_mib or 0)}{sm}"


def explain(state: ClusterState, req: Request) -> Rejection:
    """Say, node by node, why ``req`` does not fit (closest nodes first, the rest counted)."""
    if not state.nodes:
        return Rejection("no nodes in the pool")
    model_ok = state.model_mask(req.gpu_models)
    gpu_ok = _gpu_fit(state, req) if req.gpus else None
    free_mem = state.mem_total - state.mem_used
    cpu_free = state.cpu_total - state.cpu_used
    ram_free = state.ram_total - state.ram_used
    disk_free = state.disk_total - state.disk_used
    model = "/".join(req.gpu_models) if req.gpu_models else "GPU"
    rows: list[tuple[float, str, str, str]] = []  # (closeness, category, node, why)
    for i, node in enumerate(state.nodes):
        status = state.status[i]
        if status != "up":
            rows.append((-1.0, status, node.name, status))
            continue
        if req.gpus:
            matching = int(model_ok[i].sum())
            have = int(gpu_ok[i].sum()) if gpu_ok is not None else 0
            if matching < req.gpus:
                has = ", ".join(sorted({g.model for g in node.gpus})) or "no GPUs"
                rows.append((0.0, "no matching GPU", node.name, f"has {matching} {model} ({has})"))
                continue
            if have < req.gpus:
                if req.whole:
                    why = (
                        f"no empty {model} card"
                        if req.gpus == 1
                        else f"{have} of {req.gpus} {model} cards empty"
                    )
                else:
                    cand = np.where(model_ok[i] & ~state.whole[i], free_mem[i], -1)
                    j = int(np.argmax(cand))
                    if cand[j] < 0:
                        why = f"every {model} is held whole"
                    else:
                        why = f"{format_mib(int(free_mem[i, j]))} and {100 - int(state.sm_used[i, j])} % SM free on its best card"
                        if req.gpus > 1:
                            why = f"{have} of {req.gpus} cards fit; {why}"
                rows.append((0.5 + have / (2 * req.gpus), "full", node.name, why))
                continue
        short = []
        if cpu_free[i] < req.cpu_millicores:
            short.append(f"{cpu_free[i] / 1000:g} of {req.cpu_millicores / 1000:g} CPU free")
        if ram_free[i] < req.memory_mib:
            short.append(
                f"{format_mib(int(max(ram_free[i], 0)))} of {format_mib(req.memory_mib)} RAM free"
            )
        if disk_free[i] < req.disk_mib:
            short.append(
                f"{format_mib(int(max(disk_free[i], 0)))} of {format_mib(req.disk_mib)} disk free"
            )
        rows.append((0.9, "full", node.name, "; ".join(short) or "does not fit"))
    rows.sort(key=lambda r: -r[0])
    shown = rows[:EXPLAIN_NODES]
    parts = [
        f"{name} {why}" if why in ("down", "draining") else f"{name}: {why}"
        for _, _, name, why in shown
    ]
    if len(rows) > len(shown):
        counts: dict[str, int] = {}
        for _, cat, _, _ in rows[len(shown) :]:
            counts[cat] = counts.get(cat, 0) + 1
        parts.append(
            f"{len(rows) - len(shown)} more node{'s' if len(rows) - len(shown) > 1 else ''} ("
            + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
            + ")"
        )
    message = f"no node has {describe_request(req)}: " + ", ".join(parts)
    return Rejection(message=message, nodes=tuple((name, why) for _, _, name, why in rows))
