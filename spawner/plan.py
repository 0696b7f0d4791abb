"""``gpupool plan``: replay a trace of reservation events for capacity planning.

The trace runs against the real scheduler and ledger code, on an in-memory database
and no engines, so what it prints is what the pool would have done.

Input (JSON lines)::

    {"op": "reserve", "id": "r1", "spec": "a100-20g", "owner": "u1"}
    {"op": "release", "id": "r1"}

Output (JSON lines): one per event, then a summary with placed, rejected, decision
latency p50/p99 in microseconds and per-GPU peak use.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from .catalog import Catalog
from .pool.ledger import Ledger
from .pool.scheduler import Rejection

OPS = ("reserve", "release")
FIELDS = {"reserve": {"op", "id", "spec", "owner"}, "release": {"op", "id"}}


class TraceError(ValueError):
    pass


@dataclass(frozen=True)
class Event:
    line: int
    op: str
    id: str
    spec: str = ""
    owner: str = ""


def parse_trace(lines: Iterable[str], catalog: Catalog) -> list[Event]:
    """Check the whole trace before anything runs; every problem names its line."""
    events: list[Event] = []
    problems: list[str] = []
    slugs = [s.slug for s in catalog.specs]
    for n, raw in enumerate(lines, start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            problems.append(f"line {n}: not JSON ({e.msg})")
            continue
        if not isinstance(obj, dict):
            problems.append(f"line {n}: must be a JSON object")
            continue
        op = obj.get("op")
        if op not in OPS:
            problems.append(f"line {n}: op {op!r} is not allowed; allowed: {', '.join(OPS)}")
            continue
        extra = sorted(set(obj) - FIELDS[op])
        if extra:
            problems.append(
                f"line {n}: unknown field(s) {', '.join(extra)} for {op}; allowed: {', '.join(sorted(FIELDS[op]))}"
            )
        rid = obj.get("id")
        if not isinstance(rid, str) or not rid:
            problems.append(f"line {n}: id must be a non-empty string")
            continue
        if op == "reserve":
            spec = obj.get("spec")
            if spec not in slugs:
                problems.append(
                    f"line {n}: spec {spec!r} is not in the catalog; specs: {', '.join(slugs)}"
                )
                continue
            owner = obj.get("owner", "planner")
            if not isinstance(owner, str) or not owner:
                problems.append(f"line {n}: owner must be a non-empty string")
                continue
            events.append(Event(n, op, rid, spec, owner))
        else:
            events.append(Event(n, op, rid))
    if problems:
        raise TraceError("\n".join(problems))
    return events


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


def replay(
    events: list[Event],
    catalog: Catalog,
    *,
    node_policy: str | None = None,
    gpu_policy: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Run the events; yield one result per event and the summary last."""
    ledger = Ledger("sqlite://", catalog, node_policy=node_policy, gpu_policy=gpu_policy)
    peak_mem = ledger.state.mem_used.copy()
    peak_sm = ledger.state.sm_used.copy()
    latencies: list[float] = []
    placed = rejected = released = 0
    placed_before_first_rejection: int | None = None
    try:
        for ev in events:
            if ev.op == "release":
                if ledger.get(ev.id) is None:
                    yield {
                        "id": ev.id,
                        "released": False,
                        "message": f"no reservation {ev.id!r} (line {ev.line})",
                    }
                    continue
                ledger.release(ev.id, "trace")
                released += 1
                yield {"id": ev.id, "released": True}
                continue
            spec = catalog.spec(ev.spec)
            assert spec is not None  # parse_trace checked it
            if ledger.get(ev.id) is not None:
                rejected += 1
                yield {
                    "id": ev.id,
                    "placed": False,
                    "reason": "duplicate",
                    "message": f"id {ev.id!r} is already used (line {ev.line})",
                }
                continue
            result = ledger.reserve(spec, ev.owner, reservation_id=ev.id, kind="manual")
            latencies.append(ledger.last_decision_ns / 1000)
            if isinstance(result, Rejection):
                rejected += 1
                if placed_before_first_rejection is None:
                    placed_before_first_rejection = placed
                yield {
                    "id": ev.id,
                    "placed": False,
                    "reason": result.reason,
                    "message": result.message,
                }
                continue
            placed += 1
            np.maximum(peak_mem, ledger.state.mem_used, out=peak_mem)
            np.maximum(peak_sm, ledger.state.sm_used, out=peak_sm)
            yield {
                "id": ev.id,
                "placed": True,
                "node": result.node,
                "gpus": [
                    {"uuid": g.uuid, "memory_mib": g.memory_mib, "sm": g.sm_percent}
                    for g in result.gpus
                ],
            }
        lat = sorted(latencies)
        st = ledger.state
        gpus = [
            {
                "node": node.name,
                "uuid": uuid,
                "memory_mib": int(st.mem_total[i, j]),
                "peak_memory_mib": int(peak_mem[i, j]),
                "peak_memory_percent": round(
                    100 * int(peak_mem[i, j]) / int(st.mem_total[i, j]), 1
                ),
                "peak_sm_percent": int(peak_sm[i, j]),
            }
            for i, node in enumerate(st.nodes)
            for j, uuid in enumerate(st.uuids[i])
        ]
        yield {
            "summary": True,
            "placed": placed,
            "rejected": rejected,
            "released": released,
            "placed_before_first_rejection": placed
            if placed_before_first_rejection is None
            else placed_before_first_rejection,
            "decision_us_p50": round(_percentile(lat, 0.50), 1),
            "decision_us_p99": round(_percentile(lat, 0.99), 1),
            "node_policy": ledger.node_policy,
            "gpu_policy": ledger.gpu_policy,
            "gpus": gpus,
        }
    finally:
        ledger.close()


def run(catalog: Catalog, trace: TextIO, out: TextIO, **policies: str | None) -> int:
    events = parse_trace(trace, catalog)
    for result in replay(events, catalog, **policies):
        out.write(json.dumps(result) + "\n")
    return 0
