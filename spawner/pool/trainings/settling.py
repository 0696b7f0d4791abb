"""An attempt that ended settled by the dispatcher: a training finished (succeeded,
failed or cancelled), or its attempt lost (no result: the container died or vanished, or
its node has been down ``requeue_after`` seconds) and the training requeued, to resume
from its last checkpoint, up to ``max_attempts``; and attempts given up while their node
was down cleaned up once it answers again: their container removed and their reservation
freed (until then the reservation stays, as for any reservation on a down node: its GPU
may still be in use).
"""

from __future__ import annotations

import json
from typing import Any

from docker.errors import APIError, NotFound

from gpupool.engines import EngineUnreachable
from gpupool.job import ACTIVE
from gpupool.owners import NotYours, remove_own_container
from gpupool.pool.tables import utcnow

from .context import DispatchContext
from .reading import LogReader
from .store import Training


class Settler:
    """Ends, requeues and cleans up attempts; reads an ended one's last output first."""

    def __init__(self, ctx: DispatchContext, reader: LogReader):
        self.ctx = ctx
        self.reader = reader

    async def remove(self, node: Any, name: str | None, owner: str) -> None:
        """The training's container, if it is one of ``owner``'s trainings (owners.py)."""
        if not name:
            return
        try:
            await remove_own_container(self.ctx.engines, node, name, owner, kind="training")
        except (NotFound, EngineUnreachable):
            pass
        except (APIError, NotYours) as e:
            self.ctx.log.warning("could not remove %s on %s: %s", name, node.name, e)

    def cancel_message(self, t: Training) -> str:
        if t.cancelled_by == "max_run_time":
            return f"stopped: it ran past its maximum run time of {_duration(t.max_run_seconds)}"
        return f"cancelled by {t.cancelled_by or t.owner}"

    async def finish(
        self,
        t: Training,
        node: Any,
        state: str,
        message: str,
        *,
        exit_code: int | None = None,
        result: dict[str, Any] | None = None,
    ) -> None:
        ran = self.ctx.ran(t)
        ok = await self.ctx.run(
            self.ctx.store.update,
            t.id,
            only_from=ACTIVE,
            state=state,
            message=message,
            finished_at=utcnow(),
            run_seconds=round(ran, 3),
            exit_code=exit_code,
            result=json.dumps(result) if result is not None else None,
        )
        if not ok:
            return
        await self.ctx.event(t, state, message=message)
        await self.remove(node, t.container, t.owner)
        if t.reservation_id:
            await self.ctx.run(self.ctx.ledger.release, t.reservation_id, f"training {state}")
        await self.ctx.run(self.ctx.store.end_attempt, t.id, t.attempt, "ended", message)
        self.ctx.log.info("training %s %s: %s", t.id, state, message)
        self.ctx.wake()

    async def lost(self, t: Training, why: str, *, supersede: bool) -> None:
        node = self.ctx.catalog.node(t.node or "")
        if supersede:
            # the node is down: its reservation stays until it answers (cleanup())
            await self.ctx.run(self.ctx.store.end_attempt, t.id, t.attempt, "superseded", why)
        else:
            if node is not None:
                await self.reader.read_contained(t, node, ended=True)
                await self.remove(node, t.container, t.owner)
            if t.reservation_id:
                await self.ctx.run(
                    self.ctx.ledger.release, t.reservation_id, f"training lost: {why}"[:255]
                )
            await self.ctx.run(self.ctx.store.end_attempt, t.id, t.attempt, "ended", why)
        await self.requeue_or_fail(t, why)

    async def requeue_or_fail(self, t: Training, why: str) -> None:
        t = await self.ctx.run(self.ctx.store.get, t.id)
        ran = self.ctx.ran(t)
        if t.cancel_requested:
            state, msg = "cancelled", self.cancel_message(t)
        elif t.attempt >= t.max_attempts:
            state, msg = "failed", f"gave up after {t.attempt} attempt(s): {why}"
        else:
            state = "queued"
            ckpt = t.checkpoint_epoch if self.ctx.checkpoint(t.id) else None
            where = f"resumes after epoch {ckpt}" if ckpt else "starts over"
            msg = f"requeued: attempt {t.attempt} of {t.max_attempts} ended ({why}); {where}"
        values: dict[str, Any] = {
            "state": state,
            "message": msg,
            "run_seconds": round(ran, 3),
            "reservation_id": None,
            "started_at": None,
        }
        if state != "queued":
            values["finished_at"] = utcnow()
        ok = await self.ctx.run(self.ctx.store.update, t.id, only_from=ACTIVE, **values)
        if ok:
            await self.ctx.event(t, "requeued" if state == "queued" else state, message=msg)
            self.ctx.log.warning("training %s: %s", t.id, msg)
            self.ctx.wake()

    async def cleanup(self) -> None:
        for a in await self.ctx.run(self.ctx.store.superseded):
            node = self.ctx.catalog.node(a.node)
            state, _ = self.ctx.node_health(a.node) if node is not None else ("up", None)
            if state != "up":
                continue
            if node is not None:
                try:
                    await remove_own_container(
                        self.ctx.engines, node, a.container, a.owner, kind="training"
                    )
                except NotFound:
                    pass
                except (EngineUnreachable, APIError):
                    continue
                except NotYours as e:  # not the training's: left, said, and its attempt ended
                    self.ctx.log.warning("training %s: %s", a.training_id, e)
            if a.reservation_id:
                await self.ctx.run(
                    self.ctx.ledger.release, a.reservation_id, "training resumed elsewhere"
                )
            await self.ctx.run(
                self.ctx.store.end_attempt,
                a.training_id,
                a.attempt,
                "ended",
                f"{a.reason}; cleaned up when {a.node} answered again",
            )


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
