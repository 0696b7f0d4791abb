"""The GPUs node agents report: kept in the ledger's database in place of the catalog's
declared ones, and compared with those.

The SQL is functions on an open connection: the ledger holds the transaction (and its
lock) they run in, and rebuilds its state from what ``load`` gives.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection

from gpupool.catalog.models import Gpu, Node

from .tables import node_gpus


def load(conn: Connection) -> dict[str, tuple[Gpu, ...]]:
    """Node -> the GPUs its agent last reported (nodes never reported are left out)."""
    inventory: dict[str, list[Gpu]] = {}
    for row in conn.execute(select(node_gpus).order_by(node_gpus.c.gpu_index)):
        gpus = inventory.setdefault(row.node, [])
        if row.uuid:  # "" marks a node whose agent reported no GPU
            gpus.append(Gpu(row.gpu_index, row.uuid, row.model, row.memory_mib))
    return {k: tuple(v) for k, v in inventory.items()}


def store(conn: Connection, node: str, gpus: tuple[Gpu, ...], now: dt.datetime) -> None:
    """Replace what ``node`` reported before with ``gpus``."""
    conn.execute(delete(node_gpus).where(node_gpus.c.node == node))
    if gpus:
        conn.execute(
            insert(node_gpus),
            [
                {
                    "node": node,
                    "uuid": g.uuid,
                    "gpu_index": g.index,
                    "model": g.model,
                    "memory_mib": g.memory_mib,
                    "reported_at": now,
                }
                for g in gpus
            ],
        )
    else:
        # an agent that sees no GPU replaces the declared list with an empty one
        conn.execute(
            insert(node_gpus).values(
                node=node, uuid="", gpu_index=-1, model="", memory_mib=0, reported_at=now
            )
        )


def overlay(nodes: Iterable[Node], inventory: dict[str, tuple[Gpu, ...]]) -> list[Node]:
    """The nodes with the GPUs their agents reported in place of the declared."""
    return [
        dataclasses.replace(n, gpus=inventory[n.name]) if n.name in inventory else n for n in nodes
    ]


def clashes(nodes: Iterable[Node], node: str, gpus: tuple[Gpu, ...]) -> list[str]:
    """The GPUs of ``gpus`` that another of ``nodes`` holds, in words."""
    elsewhere = {g.uuid: n.name for n in nodes if n.name != node for g in n.gpus}
    return [f"{g.uuid} (also on {elsewhere[g.uuid]})" for g in gpus if g.uuid in elsewhere]


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
