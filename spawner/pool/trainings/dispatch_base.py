"""What every part of the dispatcher shares: its settings, store, ledger, engines, clock
and log, and the small helpers they all use.

The dispatcher (dispatch.py) is built from parts, one module each, every part on top of
those whose steps it calls: reading a running training's output (reading.py), settling
an attempt that ended (settling.py), watching the started ones (watching.py), starting an
attempt (starting.py) and walking the queue (queue_pass.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gpupool.engines import Engines
from gpupool.pool import accounting
from gpupool.pool.ledger import Ledger, LedgerCall

from .queue import Policy, Use
from .store import Training, TrainingStore

NodeHealth = Callable[[str], tuple[str, float | None]]  # node -> (state, down since)


class DispatchBase:
    """The dispatcher's state, made once by the pool service (see Dispatcher)."""

    def __init__(
        self,
        catalog: Any,
        ledger: Ledger,
        store: TrainingStore,
        run: LedgerCall,
        *,
        artifacts: Path,
        engines: Engines | None = None,
        node_health: NodeHealth | None = None,
        hami_cache_root: str | None = None,
        clock: Callable[[], float] = time.time,
        log: logging.Logger | None = None,
    ):
        self.catalog = catalog
        self.settings = catalog.pool.trainings
        self.ledger = ledger
        self.store = store
        self.run = run
        self.artifacts = artifacts
        self.engines = engines or Engines(max_workers=8, timeout=60)
        self.node_health = node_health or (lambda name: ("unknown", None))
        self.hami_cache_root = hami_cache_root
        self.clock = clock
        self.log = log or logging.getLogger("gpupool.trainings")
        s = self.settings
        self.policy = Policy(s.aging_seconds, s.per_user_running, s.hold_after)
        self.positions: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sem = asyncio.Semaphore(8)
        self._use: tuple[float, dict[str, Use]] = (0.0, {})
        self._checkpoints_checked: set[str] = set()  # trainings read since this start
        self._unreadable: set[str] = set()  # trainings whose read failed (logged once)

    def wake(self) -> None:
        self._wake.set()

    async def _bounded(self, coro: Awaitable[Any]) -> Any:
        async with self._sem:
            return await coro

    async def _contained(self, what: str, coro: Awaitable[Any]) -> None:
        """``coro``'s failure logged and kept to it: one training's (or the queue's) error
        must not keep the rest of the pass from running."""
        try:
            await coro
        except Exception:
            self.log.exception("trainings: %s: dispatch failed", what)

    def folder(self, tid: str) -> Path:
        return self.artifacts / tid

    def _checkpoint(self, tid: str) -> Path | None:
        found = sorted((self.folder(tid) / "checkpoints").glob("epoch-*.pt"))
        return found[-1] if found else None

    def _ran(self, t: Training) -> float:
        """Seconds ``t`` ran: its earlier attempts' and the current one's so far."""
        return t.run_seconds + (self.clock() - epoch_seconds(t.started_at) if t.started_at else 0)

    async def _event(self, t: Training, kind: str, **fields: Any) -> None:
        await self.run(
            self.store.add_events, t.id, t.attempt, [{"kind": kind, "time": self.clock(), **fields}]
        )


def epoch_seconds(t: dt.datetime | None) -> float:
    """A stored time as seconds since 1970 (0 for none)."""
    return accounting.aware(t).timestamp() if t is not None else 0.0
