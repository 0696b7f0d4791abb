"""The dispatcher: queued trainings onto the pool, running ones watched to their end.

Every ``poll_interval`` (and at once when woken by a submit or a cancel) it

1. watches each starting or running training: stops it when it was cancelled or ran
   past its maximum run time, reads the new lines of its container's log from the engine
   (at most output.MAX_READ_BYTES a pass; metrics checked, the runner's error, plain
   text for the log), copies a new checkpoint out of the container into the pool's own
   store, and settles it when its container ended:
   succeeded (the runner's ``done``), failed (the runner's error), or lost (no result:
   the container died or vanished, or its node has been down ``requeue_after`` seconds)
   and then requeued, to resume from its last checkpoint, up to ``max_attempts``;
2. walks the queue (see queue.py) and reserves through the same ledger and scheduler as
   notebook servers, then creates the trainer container on the chosen node with the
   job document (and the checkpoint to resume from) put into the user's home;
3. cleans up attempts given up while their node was down, once it answers again: their
   container is removed and their reservation freed (until then the reservation stays,
   as for any reservation on a down node: its GPU may still be in use).

Everything it knows is in the database, so a restarted pool service carries on. What a
training prints is its user's: a failure in watching one training is logged and stays
with it, and the pass goes on with the others and the queue.

Its parts, one class each in its own module, each given the shared context
(context.py, DispatchContext: settings, store, ledger, engines, clock, log, the wake-up,
the bound on concurrent steps, small helpers) and only the parts whose steps it calls:

- Watcher (watching.py, step 1) -> LogReader, Settler;
- LogReader (reading.py: a running training's log and checkpoints);
- Settler (settling.py: endings, requeue, and step 3's cleanup) -> LogReader, for an
  ended attempt's last lines;
- QueuePass (queue_pass.py, step 2; the queue's places) -> AttemptStarter;
- AttemptStarter (starting.py: an attempt's container, through gpupool.launcher) ->
  Settler, for a start that failed.

The Dispatcher builds them and runs the loop, and passes on what the API and the
release of a training use (store, positions, wake, folder).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpupool.engines import Engines
from gpupool.job import ACTIVE
from gpupool.pool.ledger import Ledger, LedgerCall

from .context import DispatchContext, NodeHealth
from .queue_pass import QueuePass
from .reading import LogReader
from .settling import Settler
from .starting import AttemptStarter
from .store import Training, TrainingStore
from .watching import Watcher


class Dispatcher:
    """The pool service's one dispatcher: a pass every ``poll_interval``, or when woken."""

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
        self.context = DispatchContext(
            catalog,
            ledger,
            store,
            run,
            artifacts=artifacts,
            engines=engines,
            node_health=node_health,
            hami_cache_root=hami_cache_root,
            clock=clock,
            log=log,
        )
        self.reader = LogReader(self.context)
        self.settler = Settler(self.context, self.reader)
        self.watcher = Watcher(self.context, self.reader, self.settler)
        self.starter = AttemptStarter(self.context, self.settler)
        self.queue = QueuePass(self.context, self.starter)
        self._task: asyncio.Task[None] | None = None

    # -- what the API and the release of a training use ------------------------------
    @property
    def store(self) -> TrainingStore:
        return self.context.store

    @property
    def positions(self) -> dict[str, int]:
        """Each queued training's place, as the last queue pass found it."""
        return self.queue.positions

    def wake(self) -> None:
        self.context.wake()

    def folder(self, tid: str) -> Path:
        return self.context.folder(tid)

    async def watch(self, t: Training) -> None:
        await self.watcher.watch(t)

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None

    async def _loop(self) -> None:
        ctx = self.context
        while True:
            try:
                await asyncio.wait_for(ctx.woken.wait(), ctx.settings.poll_interval)
            except asyncio.TimeoutError:
                pass
            ctx.woken.clear()
            try:
                await self.tick()
            except Exception:
                ctx.log.exception("trainings: dispatch pass failed")

    async def tick(self) -> None:
        ctx = self.context
        active = await ctx.run(ctx.store.list, None, ACTIVE)
        await asyncio.gather(
            *(ctx.bounded(ctx.contained(f"training {t.id}", self.watcher.watch(t))) for t in active)
        )
        await ctx.contained("the queue", self.queue.schedule())
        await ctx.contained("the cleanup", self.settler.cleanup())
