"""The dispatcher's queue pass: the queued trainings ranked (queue.py), each reserved
through the same ledger and scheduler as notebook servers while one fits, and those
reserved started (starting.py); the others told their place and what they wait for.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt

from gpupool.job import ACTIVE
from gpupool.pool import accounting
from gpupool.pool.ledger import Reservation
from gpupool.pool.scheduler import Rejection
from gpupool.pool.tables import utcnow

from .context import DispatchContext, epoch_seconds
from .launch import training_container_name
from .queue import Policy, Use, Waiting, explain, order, walk
from .starting import AttemptStarter


class QueuePass:
    """Walks the queue, starts what it reserved (the starter) and keeps the queue's places."""

    def __init__(self, ctx: DispatchContext, starter: AttemptStarter):
        self.ctx = ctx
        self.starter = starter
        s = ctx.settings
        self.policy = Policy(s.aging_seconds, s.per_user_running, s.hold_after)
        self.positions: dict[str, int] = {}  # queued trainings' places, as the last pass found
        self._use: tuple[float, dict[str, Use]] = (0.0, {})  # (when, users' recent use)

    def _recent_use(self) -> dict[str, Use]:
        now = self.ctx.clock()
        at, cached = self._use
        if now - at < 30:
            return cached
        end = utcnow()
        start = end - dt.timedelta(days=self.ctx.settings.fair_share_days)
        cards = self.ctx.ledger.card_memory()
        use: dict[str, Use] = {}
        for r in self.ctx.ledger.between(start, end):
            u = accounting.usage(r, start, end, end, cards)
            old = use.get(r.owner, Use())
            use[r.owner] = Use(old.gpu_hours + u.gpu_hours, old.cost + u.cost)
        self._use = (now, use)
        return use

    async def schedule(self) -> None:
        queued = await self.ctx.run(self.ctx.store.list, None, ["queued"])
        if not queued:
            self.positions = {}
            return
        active = await self.ctx.run(self.ctx.store.list, None, ACTIVE)
        running = collections.Counter(t.owner for t in active)
        use = await self.ctx.run(self._recent_use)
        now = self.ctx.clock()
        by_id = {t.id: t for t in queued}
        ranked = order(
            [
                Waiting(t.id, t.owner, t.priority, epoch_seconds(t.submitted_at), t.spec)
                for t in queued
            ],
            now=now,
            policy=self.policy,
            use=use,
        )
        reserved: dict[str, Reservation] = {}

        def attempt(w: Waiting) -> str | None:
            t = by_id[w.id]
            spec = self.ctx.catalog.spec(t.spec)
            if spec is None:
                return f"its spec {t.spec!r} is no longer in the catalog"
            groups = frozenset(t.body.get("groups") or ())
            quota, source = self.ctx.catalog.pool.quotas.for_user(t.owner, groups)
            res = self.ctx.ledger.reserve(
                spec,
                t.owner,
                kind="training",
                server_name=t.id,
                container=training_container_name(t.id, t.attempt + 1),
                quota=quota,
                quota_source=source,
            )
            if isinstance(res, Rejection):
                if res.reason == "quota":
                    return f"waits for quota: {res.message}"
                return f"waits for capacity: {res.message}"
            reserved[w.id] = res
            return None

        outcome = await self.ctx.run(
            lambda: walk(ranked, running=running, policy=self.policy, now=now, attempt=attempt)
        )
        waiting = [r for r in ranked if r.training.id not in reserved]
        self.positions = {r.training.id: i + 1 for i, r in enumerate(waiting)}
        for i, r in enumerate(waiting):
            t = by_id[r.training.id]
            pos = r.__class__(r.training, i + 1, r.effective_priority, r.owner_rank, r.use)
            msg = explain(pos, len(waiting), outcome.why.get(t.id, ""))
            if msg != t.message:
                await self.ctx.run(self.ctx.store.update, t.id, only_from=["queued"], message=msg)
        starts = []
        for tid in outcome.started:
            t, res = by_id[tid], reserved[tid]
            ok = await self.ctx.run(
                self.ctx.store.update,
                tid,
                only_from=["queued"],
                state="starting",
                attempt=t.attempt + 1,
                reservation_id=res.id,
                node=res.node,
                container=training_container_name(tid, t.attempt + 1),
                started_at=utcnow(),
                log_cursor=0,
                message=f"starting on {res.node}",
            )
            if not ok:  # cancelled meanwhile
                await self.ctx.run(
                    self.ctx.ledger.release, res.id, "training cancelled before it started"
                )
                continue
            fresh = await self.ctx.run(self.ctx.store.get, tid)
            starts.append(
                self.ctx.bounded(
                    self.ctx.contained(f"training {tid}", self.starter.start(fresh, res))
                )
            )
        await asyncio.gather(*starts)
