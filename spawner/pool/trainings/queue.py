"""The trainings queue's order: pure code, no I/O, no clock of its own.

Rank, highest first:

1. **effective priority**: the priority asked for, plus one level for every
   ``aging_seconds`` spent waiting, so that nothing waits forever behind newer work of
   higher priority;
2. **fair share**: among equal effective priority, each user's first waiting training
   comes before anyone's second (round robin), and between users the one with the least
   recent use (GPU-hours in the fair-share window, then cost) goes first;
3. submission time, then id (reproducible).

The dispatcher walks this order. A training whose owner already runs
``per_user_running`` trainings is passed over. One that does not fit now is passed over
too (smaller work behind it may start: backfill), until it has waited ``hold_after``
seconds: from then on nothing ranked behind it starts until it has started, so that a
large training is not starved by a stream of small ones. :func:`explain` says, for each
waiting training, where it stands and why it waits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Waiting:
    """A queued training as the queue sees it."""

    id: str
    owner: str
    priority: int
    submitted: float  # seconds since the epoch
    spec: str = ""


@dataclass(frozen=True)
class Policy:
    aging_seconds: float = 1800.0
    per_user_running: int = 2
    hold_after: float = 900.0


@dataclass(frozen=True)
class Use:
    """A user's recent use, for fair share."""

    gpu_hours: float = 0.0
    cost: float = 0.0


@dataclass(frozen=True)
class Ranked:
    training: Waiting
    position: int  # 1 = next
    effective_priority: int
    owner_rank: int  # 0 for the owner's first waiting training, 1 for the second, ...
    use: Use


def effective_priority(w: Waiting, now: float, aging_seconds: float) -> int:
    waited = max(0.0, now - w.submitted)
    bonus = math.floor(waited / aging_seconds) if aging_seconds > 0 else 0
    return w.priority + bonus


def order(
    waiting: Iterable[Waiting],
    *,
    now: float,
    policy: Policy,
    use: Mapping[str, Use] | None = None,
) -> list[Ranked]:
    use = use or {}
    items = [(w, effective_priority(w, now, policy.aging_seconds)) for w in waiting]
    # the owner's own order: their higher priority first, then older first
    per_owner: dict[str, list[Waiting]] = {}
    for w, _eff in sorted(items, key=lambda x: (-x[1], x[0].submitted, x[0].id)):
        per_owner.setdefault(w.owner, []).append(w)
    owner_rank = {w.id: i for ws in per_owner.values() for i, w in enumerate(ws)}
    zero = Use()

    def key(item: tuple[Waiting, int]) -> tuple[float, ...]:
        w, eff = item
        u = use.get(w.owner, zero)
        return (-eff, owner_rank[w.id], u.gpu_hours, u.cost, w.submitted)

    ranked = sorted(items, key=lambda x: (*key(x), x[0].id))  # type: ignore[arg-type]
    return [
        Ranked(w, i + 1, eff, owner_rank[w.id], use.get(w.owner, zero))
        for i, (w, eff) in enumerate(ranked)
    ]


Attempt = Callable[[Waiting], "str | None"]  # reserve now: None if it did, else why not


@dataclass(frozen=True)
class Outcome:
    started: list[str]  # ids reserved, in order
    why: dict[str, str]  # id -> why it still waits


def walk(
    ranked: list[Ranked],
    *,
    running: Mapping[str, int],
    policy: Policy,
    now: float,
    attempt: Attempt,
) -> Outcome:
    """Walk the order, trying to reserve for each training that may start: passed over
    for its owner's concurrency, held behind a training that waits too long for capacity
    (see the module's doc). ``attempt`` reserves (or says why it cannot); ``running``:
    trainings running per owner before the walk."""
    running = dict(running)
    started: list[str] = []
    why: dict[str, str] = {}
    holder: Waiting | None = None
    for r in ranked:
        w = r.training
        if holder is not None:
            mins = (now - holder.submitted) / 60
            why[w.id] = (
                f"held: {holder.id}, ahead of it in the queue, has waited {mins:.0f} min "
                "for capacity; nothing behind it starts until it does"
            )
            continue
        n = running.get(w.owner, 0)
        if n >= policy.per_user_running:
            why[w.id] = (
                f"{w.owner} has {n} training(s) running; at most {policy.per_user_running} "
                "at a time: it starts when one of them ends"
            )
            continue
        refused = attempt(w)
        if refused is None:
            started.append(w.id)
            running[w.owner] = n + 1
            continue
        why[w.id] = refused
        if refused.startswith("waits for capacity") and now - w.submitted >= policy.hold_after:
            holder = w
    return Outcome(started, why)


def explain(r: Ranked, total: int, why: str) -> str:
    """'2nd of 5 in the queue (priority 0, +1 for waiting); waits for capacity: ...'."""
    aged = r.effective_priority - r.training.priority
    prio = f"priority {r.training.priority}" + (f", +{aged} for waiting" if aged else "")
    head = f"{_ordinal(r.position)} of {total} in the queue ({prio})"
    return f"{head}; {why}" if why else head


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
