"""What every part of the dispatcher shares: its settings, store, ledger, engines, clock
and log, the bound on its concurrent steps, its wake-up, and the small helpers they all
use (a training's folder and last checkpoint, its run time, an event stored for it).

The dispatcher (dispatch.py) is built from parts, one module each, each given this
context and the parts whose steps it calls: reading a running training's output
(reading.py), settling an attempt that ended (settling.py), watching the started ones
(watching.py), starting an attempt (starting.py) and walking the queue (queue_pass.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gpupool.catalog.models import TrainingSettings
from gpupool.engines import Engines
from gpupool.pool import accounting
from gpupool.pool.ledger import Ledger, LedgerCall

from .store import Training, TrainingStore

NodeHealth = Callable[[str], tuple[str, float | None]]  # node -> (state, down since)


class DispatchContext:
    """The dispatcher's shared state, made once with it by the pool service."""

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
        self.settings: TrainingSettings = catalog.pool.trainings
        self.ledger = ledger
        self.store = store
        self.run = run
        self.artifacts = artifacts
        self.engines = engines or Engines(max_workers=8, timeout=60)
        self.node_health: NodeHealth = node_health or (lambda name: ("unknown", None))
        self.hami_cache_root = hami_cache_root
        self.clock = clock
        self.log = log or logging.getLogger("gpupool.trainings")
        self.woken = asyncio.Event()  # set by wake(): the loop's next pass starts at once
        self._sem = asyncio.Semaphore(8)

    def wake(self) -> None:
        self.woken.set()

    async def bounded(self, coro: Awaitable[Any]) -> Any:
        async with self._sem:
            return await coro

    async def contained(self, what: str, coro: Awaitable[Any]) -> None:
        """``coro``'s failure logged and kept to it: one training's (or the queue's) error
        must not keep the rest of the pass from running."""
        try:
            await coro
        except Exception:
            self.log.exception("trainings: %s: dispatch failed", what)

    def folder(self, tid: str) -> Path:
        return self.artifacts / tid

    def checkpoint(self, tid: str) -> Path | None:
        found = sorted((self.folder(tid) / "checkpoints").glob("epoch-*.pt"))
        return found[-1] if found else None

    def ran(self, t: Training) -> float:
        """Seconds ``t`` ran: its earlier attempts' and the current one's so far."""
        return t.run_seconds + (self.clock() - epoch_seconds(t.started_at) if t.started_at else 0)

    async def event(self, t: Training, kind: str, **fields: Any) -> None:
        await self.run(
            self.store.add_events, t.id, t.attempt, [{"kind": kind, "time": self.clock(), **fields}]
        )


def epoch_seconds(t: dt.datetime | None) -> float:
    """A stored time as seconds since 1970 (0 for none)."""
    return accounting.aware(t).timestamp() if t is not None else 0.0
