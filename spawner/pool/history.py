"""Short metrics history per GPU and per reservation, from the agents' samples, for the
pages and widgets."""

from __future__ import annotations

import collections
import time
from typing import Any


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
