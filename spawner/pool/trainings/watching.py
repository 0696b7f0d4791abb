"""Each started training watched by the dispatcher: stopped when it was cancelled or ran
past its maximum run time, its output read (reading.py), and settled when its container
ended (settling.py): succeeded (the runner's ``done``), failed (the runner's error), or
lost and requeued (no result: the container died or vanished, or its node has been down
``requeue_after`` seconds). A pass never waits on a node known to be down.
"""

from __future__ import annotations

from typing import Any

from docker.errors import APIError, NotFound

from gpupool.engines import EngineUnreachable

from .context import DispatchContext
from .reading import LogReader
from .settling import Settler
from .store import Training


class Watcher:
    """Watches started trainings: stops, reads (the reader) and settles (the settler)."""

    def __init__(self, ctx: DispatchContext, reader: LogReader, settler: Settler):
        self.ctx = ctx
        self.reader = reader
        self.settler = settler

    async def watch(self, t: Training) -> None:
        node = self.ctx.catalog.node(t.node or "")
        if node is None:
            await self.settler.lost(
                t, f"node {t.node!r} is no longer in the catalog", supersede=False
            )
            return
        # A pass watches, then schedules and awaits its launches: no launch runs while
        # trainings are watched. One still "starting" here had its launch cut short (the
        # pool service stopped): it is adopted if its container runs, else started again.
        interrupted = t.state == "starting"
        state, since = self.ctx.node_health(node.name)
        if state == "down":  # not asked: a pass never waits on a node known to be down
            await self._requeue_if_down_long(t, node.name, since)
            return
        try:
            info = await self.ctx.engines.call(node, "inspect_container", t.container)
        except NotFound:
            if t.cancel_requested:
                await self.settler.finish(t, node, "cancelled", self.settler.cancel_message(t))
            else:
                await self.settler.lost(
                    t, "its container is gone without a result", supersede=False
                )
            return
        except (EngineUnreachable, APIError) as e:
            state, since = self.ctx.node_health(node.name)
            if state == "down":
                await self._requeue_if_down_long(t, node.name, since)
            else:
                self.ctx.log.info("training %s: engine of %s: %s", t.id, node.name, e)
            return
        st = info.get("State") or {}
        if st.get("Running"):
            # first: a cancel or the run-time limit must not wait on reading its output
            await self._stop_if_due(node, t)
        ended = not st.get("Running") and st.get("Status") != "created"
        await self.reader.read_contained(t, node, ended=ended)
        if interrupted and st.get("Running"):
            await self.ctx.run(
                self.ctx.store.update,
                t.id,
                only_from=["starting"],
                state="running",
                message=f"running on {node.name}",
            )
        elif interrupted and st.get("Status") == "created":
            await self.settler.lost(t, "its start was interrupted", supersede=False)
            return
        if st.get("Running"):
            return
        if st.get("Status") == "created" and not t.cancel_requested:
            return
        t = await self.ctx.run(self.ctx.store.get, t.id)
        code = st.get("ExitCode")
        done = await self.ctx.run(self.ctx.store.last_event, t.id, "done")
        error = await self.ctx.run(self.ctx.store.last_event, t.id, "error")
        done = done if done and done["attempt"] == t.attempt else None
        error = error if error and error["attempt"] == t.attempt else None
        if t.cancel_requested:
            await self.settler.finish(
                t, node, "cancelled", self.settler.cancel_message(t), exit_code=code
            )
        elif code == 0 and done is not None:
            result = {k: v for k, v in done.items() if k not in ("seq", "attempt", "kind", "time")}
            msg = "finished" + (
                f": test accuracy {result['test_accuracy']:.3f}"
                if isinstance(result.get("test_accuracy"), float)
                else ""
            )
            await self.settler.finish(t, node, "succeeded", msg, exit_code=0, result=result)
        elif error is not None:
            await self.settler.finish(t, node, "failed", str(error.get("message")), exit_code=code)
        elif code == 0:
            await self.settler.finish(t, node, "failed", "exited without a result", exit_code=0)
        else:
            await self.settler.lost(
                t, f"its container died (exit code {code}) without a result", supersede=False
            )

    async def _requeue_if_down_long(self, t: Training, node: str, since: float | None) -> None:
        """A training on a down node: started again elsewhere once the node has been down
        for ``requeue_after`` (its container may still run: superseded, not removed)."""
        if since is None:
            return
        down_for = self.ctx.clock() - since
        if down_for >= self.ctx.settings.requeue_after:
            await self.settler.lost(
                t, f"node {node} has been down for {down_for:.0f} s", supersede=True
            )

    async def _stop_if_due(self, node: Any, t: Training) -> None:
        if not t.cancel_requested:
            ran = self.ctx.ran(t)
            if ran <= t.max_run_seconds:
                return
            await self.ctx.run(
                self.ctx.store.update, t.id, cancel_requested=True, cancelled_by="max_run_time"
            )
        await self._stop(node, t)

    async def _stop(self, node: Any, t: Training) -> None:
        try:
            await self.ctx.engines.call(node, "stop", t.container, timeout=10)
        except NotFound:
            pass
        self.ctx.wake()
