"""Two reference placement strategies for the scheduler benchmark.

Both read the same ``ClusterState`` arrays as ``gpupool.pool.scheduler.place`` and return a
``Placement`` (to be applied by the caller) or ``None`` when nothing fits. The fit rules are
written out again here, on purpose, rather than imported from the scheduler, so that the
benchmark can cross-check the scheduler against an independent reading of the rules:

- a whole-card request takes only cards nobody holds (``holders == 0``) and reserves the
  card's full memory with ``sm_percent=100`` and ``whole=True``;
- a slice takes cards not held whole, with enough free memory and enough free SM
  (``100 - sm_used``);
- a multi-GPU request takes distinct GPUs on one node;
- the node must be schedulable and have the CPU, RAM and disk the request asks for.

``first_fit``  nodes in catalog order, the first GPUs by index that fit.
``emptiest``   the node with the most weighted free resources (0.5 x free GPU memory fraction
               + 0.25 x free CPU fraction + 0.25 x free RAM fraction), its emptiest GPUs first.

Because every share of a request is the same and GPUs are independent, a request can be
placed somewhere iff ``first_fit`` finds a place: ``feasible`` is that oracle.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from gpupool.pool.state import ClusterState, GpuShare, Placement, Request

Baseline = Callable[[ClusterState, Request], "Placement | None"]

W_GPU_MEM = 0.5
W_CPU = 0.25
W_RAM = 0.25


def gpu_fit(state: ClusterState, req: Request) -> np.ndarray:
    """Boolean (N, G): GPUs that could take one share of ``req`` now."""
    ok = state.model_mask(req.gpu_models) & state.valid
    if req.gpu_memory_mib is None:  # whole cards
        return ok & (state.holders == 0)
    return (
        ok
        & ~state.whole
        & (state.mem_total - state.mem_used >= req.gpu_memory_mib)
        & (100 - state.sm_used >= req.gpu_sm_percent)
    )


def node_fit(state: ClusterState, req: Request) -> tuple[np.ndarray, np.ndarray | None]:
    """Boolean (N,) nodes that can take ``req``, and the (N, G) GPU fit (None if no GPUs asked)."""
    ok = (
        state.schedulable
        & (state.cpu_total - state.cpu_used >= req.cpu_millicores)
        & (state.ram_total - state.ram_used >= req.memory_mib)
        & (state.disk_total - state.disk_used >= req.disk_mib)
    )
    if req.gpus <= 0:
        return ok, None
    g = gpu_fit(state, req)
    return ok & (g.sum(axis=1) >= req.gpus), g


def _placement(state: ClusterState, req: Request, i: int, cols: list[int]) -> Placement:
    whole = req.gpu_memory_mib is None
    shares = tuple(
        GpuShare(
            uuid=state.uuids[i][j],
            index=state.gpu_index[i][j],
            memory_mib=int(state.mem_total[i, j]) if whole else int(req.gpu_memory_mib or 0),
            sm_percent=100 if whole else int(req.gpu_sm_percent),
            whole=whole,
        )
        for j in cols
    )
    return Placement(
        node=state.nodes[i].name,
        gpus=shares,
        cpu_millicores=req.cpu_millicores,
        memory_mib=req.memory_mib,
        disk_mib=req.disk_mib,
    )


def first_fit(state: ClusterState, req: Request) -> Placement | None:
    """Nodes in catalog order; on the first node that fits, the first GPUs by index."""
    ok, g = node_fit(state, req)
    hits = np.flatnonzero(ok)
    if hits.size == 0:
        return None
    i = int(hits[0])
    cols: list[int] = []
    if g is not None:
        fitting = [int(j) for j in np.flatnonzero(g[i])]
        fitting.sort(key=lambda j: state.gpu_index[i][j])
        cols = fitting[: req.gpus]
    return _placement(state, req, i, cols)


def emptiest(state: ClusterState, req: Request) -> Placement | None:
    """The fitting node with the highest weighted free fraction; its emptiest GPUs first."""
    ok, g = node_fit(state, req)
    hits = np.flatnonzero(ok)
    if hits.size == 0:
        return None
    mem_total = (state.mem_total * state.valid).sum(axis=1)
    mem_free = ((state.mem_total - state.mem_used) * state.valid).sum(axis=1)
    gpu_free = np.where(mem_total > 0, mem_free / np.maximum(mem_total, 1), 0.0)
    cpu_free = (state.cpu_total - state.cpu_used) / np.maximum(state.cpu_total, 1)
    ram_free = (state.ram_total - state.ram_used) / np.maximum(state.ram_total, 1)
    score = W_GPU_MEM * gpu_free + W_CPU * cpu_free + W_RAM * ram_free
    i = int(hits[np.argmax(score[hits])])  # argmax: the earliest node among equals
    cols: list[int] = []
    if g is not None:
        fitting = np.flatnonzero(g[i])
        busy = (state.mem_used[i, fitting] / state.mem_total[i, fitting]) + (
            state.sm_used[i, fitting] / 100.0
        )
        # emptiest first; among equals the lower GPU index
        keyed = sorted(
            (float(b), state.gpu_index[i][int(j)], int(j))
            for b, j in zip(busy, fitting, strict=True)
        )
        cols = [j for _, _, j in keyed[: req.gpus]]
    return _placement(state, req, i, cols)


def feasible(state: ClusterState, req: Request) -> bool:
    """Whether ``req`` fits anywhere right now (independent of any strategy)."""
    ok, _ = node_fit(state, req)
    return bool(ok.any())


BASELINES: dict[str, Baseline] = {"first-fit": first_fit, "emptiest": emptiest}
