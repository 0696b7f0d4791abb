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

Its parts, one module each (dispatch_base.py: what they share): 1. watching.py, with
reading.py (log and checkpoints) and settling.py (endings, requeue, and 3.'s cleanup);
2. queue_pass.py, with starting.py (an attempt's container, through gpupool.launcher).
"""

from __future__ import annotations

import asyncio

from gpupool.job import ACTIVE

from .queue_pass import QueuePass
from .watching import Watching


class Dispatcher(QueuePass, Watching):
    """The pool service's one dispatcher: a pass every ``poll_interval``, or when woken."""

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
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.tick()
            except Exception:
                self.log.exception("trainings: dispatch pass failed")

    async def tick(self) -> None:
        active = await self.run(self.store.list, None, ACTIVE)
        await asyncio.gather(
            *(self._bounded(self._contained(f"training {t.id}", self.watch(t))) for t in active)
        )
        await self._contained("the queue", self.schedule())
        await self._contained("the cleanup", self.cleanup())
