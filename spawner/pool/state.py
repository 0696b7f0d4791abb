"""Cluster state in memory: what every GPU, node and reservation holds right now.

Pure data, no I/O. The ledger (SQL) is the truth; this is its working copy, kept in
numpy arrays so that a decision over 1,000 nodes of 8 GPUs is a handful of vector
operations rather than 8,000 Python comparisons.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from gpupool.catalog.models import Node, Spec
from gpupool.catalog.units import format_mib

NodeStatus = Literal["up", "draining", "down"]
UNLIMITED = np.iinfo(np.int64).max // 4


@dataclass(frozen=True)
class GpuShare:
    """One GPU's part of a placement: HAMi's (uuid, usedmem, usedcores)."""

    uuid: str
    index: int
    memory_mib: int
    sm_percent: int
    whole: bool

    def to_json(self) -> dict[str, object]:
        return {
            "uuid": self.uuid,
            "index": self.index,
            "memory_mib": self.memory_mib,
            "sm": self.sm_percent,
            "whole": self.whole,
        }


@dataclass(frozen=True)
class Placement:
    node: str
    gpus: tuple[GpuShare, ...]
    cpu_millicores: int
    memory_mib: int
    disk_mib: int

    def to_json(self) -> dict[str, object]:
        return {
            "node": self.node,
            "gpus": [g.to_json() for g in self.gpus],
            "cpu_millicores": self.cpu_millicores,
            "memory_mib": self.memory_mib,
            "disk_mib": self.disk_mib,
        }


@dataclass(frozen=True)
class Request:
    """What a placement must satisfy; built from a spec (HAMi: gpu, gpumem, gpucores)."""

    gpus: int
    gpu_models: tuple[str, ...]
    gpu_memory_mib: int | None  # None = whole cards
    gpu_sm_percent: int  # 0 = no compute share reserved
    cpu_millicores: int  # reserved: the spec's guarantee
    memory_mib: int  # reserved: the spec's guarantee
    disk_mib: int
    cpu_limit_millicores: int = 0  # a node needs at least this many CPUs (0: the reserved)

    @property
    def whole(self) -> bool:
        return self.gpus > 0 and self.gpu_memory_mib is None

    @classmethod
    def from_spec(cls, spec: Spec) -> Request:
        return cls(
            gpus=spec.gpus,
            gpu_models=spec.gpu_models,
            gpu_memory_mib=spec.gpu_memory_mib,
            gpu_sm_percent=spec.gpu_sm_percent or 0,
            cpu_millicores=spec.cpu_reserved,
            memory_mib=spec.memory_reserved,
            disk_mib=spec.disk_mib or 0,
            cpu_limit_millicores=spec.cpu_millicores,
        )


class ClusterState:
    """Free and used resources per node and per GPU, with the placements that use them."""

    def __init__(self, nodes: Sequence[Node]):
        self.nodes = list(nodes)
        self.index = {n.name: i for i, n in enumerate(self.nodes)}
        n = len(self.nodes)
        g = max((len(x.gpus) for x in self.nodes), default=0) or 1
        self.models: list[str] = sorted({gpu.model for x in self.nodes for gpu in x.gpus})
        model_id = {m: i for i, m in enumerate(self.models)}
        self.valid = np.zeros((n, g), dtype=bool)
        self.mem_total = np.ones((n, g), dtype=np.int64)  # 1 avoids 0/0 on padding
        self.mem_used = np.zeros((n, g), dtype=np.int64)
        self.sm_used = np.zeros((n, g), dtype=np.int64)
        self.holders = np.zeros((n, g), dtype=np.int32)
        self.whole = np.zeros((n, g), dtype=bool)
        self.model_id = np.full((n, g), -1, dtype=np.int32)
        self.gpu_at: dict[str, tuple[int, int]] = {}
        self.uuids: list[list[str]] = []
        self.gpu_index: list[list[int]] = []
        for i, node in enumerate(self.nodes):
            self.uuids.append([gpu.uuid for gpu in node.gpus])
            self.gpu_index.append([gpu.index for gpu in node.gpus])
            for j, gpu in enumerate(node.gpus):
                self.valid[i, j] = True
                self.mem_total[i, j] = gpu.memory_mib
                self.model_id[i, j] = model_id[gpu.model]
                self.gpu_at[gpu.uuid] = (i, j)
        self.gpu_count = self.valid.sum(axis=1)
        # each node's main GPU model (most of its cards), -1 for a node without GPUs
        self.node_model = np.array(
            [
                int(np.bincount(row[row >= 0]).argmax()) if (row >= 0).any() else -1
                for row in self.model_id
            ],
            dtype=np.int32,
        )
        # what guarantees may add up to (the node's CPU and RAM times its overcommit); a
        # container's CPU limit is bounded by the node's real cores
        self.cpu_total = np.array([x.cpu_schedulable for x in self.nodes], dtype=np.int64)
        self.ram_total = np.array([x.memory_schedulable for x in self.nodes], dtype=np.int64)
        self.cpu_cores = np.array([x.cpu_millicores for x in self.nodes], dtype=np.int64)
        self.disk_total = np.array(
            [x.disk_mib if x.disk_mib is not None else UNLIMITED for x in self.nodes],
            dtype=np.int64,
        )
        self.cpu_used = np.zeros(n, dtype=np.int64)
        self.ram_used = np.zeros(n, dtype=np.int64)
        self.disk_used = np.zeros(n, dtype=np.int64)
        self.status: list[NodeStatus] = ["up"] * n
        self.schedulable = np.ones(n, dtype=bool)
        # HAMi-core installed as sliced containers need it (the agent checks; issue 18)
        self.sliceable = np.ones(n, dtype=bool)
        self.placements: dict[str, Placement] = {}
        self._model_masks: dict[tuple[str, ...], np.ndarray] = {}

    # -- queries -------------------------------------------------------------------
    def model_mask(self, filters: tuple[str, ...]) -> np.ndarray:
        """Boolean (N, G): GPUs whose model matches any filter (case-insensitive substring)."""
        mask = self._model_masks.get(filters)
        if mask is None:
            ok = np.array(
                [not filters or any(f.lower() in m.lower() for f in filters) for m in self.models]
                + [False],
                dtype=bool,
            )
            mask = ok[self.model_id] & self.valid  # model_id -1 indexes the trailing False
            self._model_masks[filters] = mask
        return mask

    def gpu_usage(self) -> np.ndarray:
        """Per GPU, how full it is: mean of its memory share and SM share in use (0..1)."""
        return (self.mem_used / self.mem_total + self.sm_used / 100.0) * 0.5 * self.valid

    def node_usage(self) -> np.ndarray:
        return self.gpu_usage().sum(axis=1) / np.maximum(self.gpu_count, 1)

    # -- changes -------------------------------------------------------------------
    def set_status(self, node: str, status: NodeStatus) -> None:
        i = self.index[node]
        self.status[i] = status
        self.schedulable[i] = status == "up"

    def set_sliceable(self, node: str, ok: bool) -> None:
        self.sliceable[self.index[node]] = ok

    def apply(self, reservation_id: str, p: Placement) -> None:
        if reservation_id in self.placements:
            raise ValueError(f"reservation {reservation_id} is already placed")
        i = self.index[p.node]
        for share in p.gpus:
            _, j = self.gpu_at[share.uuid]
            self.mem_used[i, j] += share.memory_mib
            self.sm_used[i, j] += share.sm_percent
            self.holders[i, j] += 1
            self.whole[i, j] |= share.whole
        self.cpu_used[i] += p.cpu_millicores
        self.ram_used[i] += p.memory_mib
        self.disk_used[i] += p.disk_mib
        self.placements[reservation_id] = p

    def remove(self, reservation_id: str) -> Placement | None:
        p = self.placements.pop(reservation_id, None)
        if p is None:
            return None
        i = self.index[p.node]
        for share in p.gpus:
            _, j = self.gpu_at[share.uuid]
            self.mem_used[i, j] -= share.memory_mib
            self.sm_used[i, j] -= share.sm_percent
            self.holders[i, j] -= 1
            if share.whole:
                self.whole[i, j] = False
        self.cpu_used[i] -= p.cpu_millicores
        self.ram_used[i] -= p.memory_mib
        self.disk_used[i] -= p.disk_mib
        return p

    def knows(self, p: Placement) -> bool:
        """Whether a placement (e.g. read back from the ledger) refers to nodes and GPUs we have."""
        return p.node in self.index and all(
            s.uuid in self.gpu_at and self.gpu_at[s.uuid][0] == self.index[p.node] for s in p.gpus
        )

    def violations(self) -> list[str]:
        """Every broken invariant, in words (empty when all hold)."""
        out = []
        for i, node in enumerate(self.nodes):
            for j, uuid in enumerate(self.uuids[i]):
                if self.mem_used[i, j] > self.mem_total[i, j]:
                    out.append(
                        f"{node.name} {uuid}: {self.mem_used[i, j]} MiB reserved of {self.mem_total[i, j]}"
                    )
                if self.sm_used[i, j] > 100:
                    out.append(f"{node.name} {uuid}: {self.sm_used[i, j]} % SM reserved")
                if self.whole[i, j] and self.holders[i, j] > 1:
                    out.append(
                        f"{node.name} {uuid}: whole card shared by {self.holders[i, j]} reservations"
                    )
        return out


def invariant_violations(
    nodes: Iterable[Node], holdings: Iterable[tuple[str, GpuShare]]
) -> list[str]:
    """Check DESIGN.md's GPU invariants from raw (reservation id, share) rows, independent of
    ClusterState's bookkeeping (used by tests against what the database holds)."""
    cap = {g.uuid: g.memory_mib for n in nodes for g in n.gpus}
    mem: dict[str, int] = {}
    sm: dict[str, int] = {}
    holders: dict[str, set[str]] = {}
    whole: dict[str, bool] = {}
    for rid, s in holdings:
        mem[s.uuid] = mem.get(s.uuid, 0) + s.memory_mib
        sm[s.uuid] = sm.get(s.uuid, 0) + s.sm_percent
        holders.setdefault(s.uuid, set()).add(rid)
        whole[s.uuid] = whole.get(s.uuid, False) or s.whole
    out = []
    for uuid in holders:
        if uuid not in cap:
            out.append(f"{uuid}: reserved but not in the pool")
            continue
        if mem[uuid] > cap[uuid]:
            out.append(f"{uuid}: {mem[uuid]} MiB reserved of {cap[uuid]}")
        if sm[uuid] > 100:
            out.append(f"{uuid}: {sm[uuid]} % SM reserved")
        if whole[uuid] and len(holders[uuid]) > 1:
            out.append(f"{uuid}: whole card shared by {len(holders[uuid])} reservations")
    return out


def describe_shares(gpus: Sequence[GpuShare], sm: int | None) -> str:
    """'GPU 1 (20 GiB, 30 % SM)', 'GPUs 0, 1 (whole)', 'no GPU': a placement in words, for
    spawn progress and trainings' messages."""
    if not gpus:
        return "no GPU"
    idx = ", ".join(str(g.index) for g in gpus)
    word = "GPU" if len(gpus) == 1 else "GPUs"
    if gpus[0].whole:
        return f"{word} {idx} (whole)"
    share = format_mib(gpus[0].memory_mib) + (f", {sm} % SM" if sm else "")
    return f"{word} {idx} ({share})"
