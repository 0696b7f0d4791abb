"""A running training's output read by the dispatcher: the new lines of its container's
log (at most output.MAX_READ_BYTES a pass; metrics checked, the runner's error, plain text
for the log) and a new checkpoint copied out of the container into the pool's own store.

What a training prints is its user's: a failure in reading one stays with that training
(logged once until a read works), and stopping or settling it never waits on its output.
"""

from __future__ import annotations

import tarfile
from typing import Any

from docker.errors import APIError, NotFound

from gpupool.engines import UNREACHABLE, EngineUnreachable
from gpupool.job import CHECKPOINT_RE, OUTPUT_ROOT

from . import output
from .context import DispatchContext
from .store import Training


class LogReader:
    """Reads the output of the trainings it is given (see the module's docstring)."""

    def __init__(self, ctx: DispatchContext):
        self.ctx = ctx
        self._checkpoints_checked: set[str] = set()  # trainings read since this start
        self._unreadable: set[str] = set()  # trainings whose read failed (logged once)

    def _log_text(self, tid: str, lines: list[str]) -> None:
        if not lines:
            return
        path = self.ctx.folder(tid) / "log.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        limit = self.ctx.settings.max_log_mib * 1024 * 1024
        size = path.stat().st_size if path.exists() else 0
        if size >= limit:
            return
        text = "\n".join(lines) + "\n"
        if size + len(text) >= limit:
            text = text[: max(0, limit - size - 80)] + "\n[log truncated: the pool keeps the first "
            text += f"{self.ctx.settings.max_log_mib} MiB]\n"
        with path.open("a") as f:
            f.write(text)

    async def read_contained(self, t: Training, node: Any, *, ended: bool = False) -> None:
        """read, whose failure stays with this training (logged once until a read works):
        stopping it and settling it do not depend on its output."""
        try:
            await self.read(t, node, ended=ended)
        except Exception:
            if t.id not in self._unreadable:
                self._unreadable.add(t.id)
                self.ctx.log.exception("training %s: its output could not be read", t.id)
        else:
            self._unreadable.discard(t.id)

    async def _logs(self, node: Any, container: str | None, **kwargs: Any) -> tuple[bytes, bool]:
        """At most output.MAX_READ_BYTES of a container's log, with docker's timestamps;
        True when there was more. (A stream, not followed: docker-py follows a stream
        unless told not to, and that one would not end while the training runs.)"""
        args = {k: v for k, v in kwargs.items() if v is not None}
        stream = await self.ctx.engines.call(
            node,
            "logs",
            container,
            stdout=True,
            stderr=True,
            timestamps=True,
            stream=True,
            follow=False,
            **args,
        )
        return await self.ctx.engines.run(lambda: output.read_capped(stream), node)

    async def read(self, t: Training, node: Any, *, ended: bool = False) -> None:
        """New log lines: metrics stored, checkpoints copied out, text appended. Of an
        ended training whose output this pass did not catch up with, its last lines are
        read too (its result is there): what lies between is skipped."""
        unread = (NotFound, EngineUnreachable, APIError, *UNREACHABLE)
        try:
            raw, cut = await self._logs(node, t.container, since=output.since(t.log_cursor))
        except unread:
            return
        if t.id not in self._checkpoints_checked:
            # the first read since this pool started: a checkpoint whose record was stored
            # when the pool stopped, before its copy was done, is copied now
            self._checkpoints_checked.add(t.id)
            last = await self.ctx.run(self.ctx.store.last_event, t.id, "checkpoint")
            epoch = last.get("epoch") if last else None
            if last and last["attempt"] == t.attempt and isinstance(epoch, int):
                if epoch > (t.checkpoint_epoch or 0):
                    await self._copy_checkpoint(t, node, last)
        batch = output.read_log(raw, t.log_cursor)
        if cut and ended:
            try:
                tail, _ = await self._logs(node, t.container, tail=output.TAIL_LINES)
            except unread:
                tail = b""
            batch.follow(output.read_log(tail, batch.cursor))
        elif cut and batch.cursor == t.log_cursor:
            batch.skip(t.log_cursor)  # more than a pass reads, all within a millisecond
        if batch.cursor == t.log_cursor:
            return
        records = batch.records
        warning = batch.warning()
        if warning:
            batch.text.append(f"[gpupool] {warning}")
            records = [*records, {"kind": "warning", "time": self.ctx.clock(), "message": warning}]
        await self.ctx.run(self._log_text, t.id, batch.text)
        await self.ctx.run(
            self.ctx.store.add_events, t.id, t.attempt, records, log_cursor=batch.cursor
        )
        # only the newest checkpoint of the batch, and only if newer than the one kept: a
        # training printing checkpoint records without end costs one copy a pass at most
        newest = max(
            (r for r in batch.records if r.get("kind") == "checkpoint"),
            key=lambda r: r["epoch"],
            default=None,
        )
        if newest is not None and newest["epoch"] > (t.checkpoint_epoch or 0):
            await self._copy_checkpoint(t, node, newest)

    async def _copy_checkpoint(self, t: Training, node: Any, rec: dict[str, Any]) -> None:
        """The checkpoint into the pool's store: it outlives the node. Only under the
        training's folder, by the name its record gives (output.save_checkpoint)."""
        rel, epoch = rec.get("file"), rec.get("epoch")
        if not isinstance(rel, str) or not CHECKPOINT_RE.fullmatch(rel):
            return
        if not isinstance(epoch, int):
            return
        limit = self.ctx.settings.max_checkpoint_mib * 1024 * 1024
        folder = self.ctx.folder(t.id) / "checkpoints"
        client = self.ctx.engines.client(node)

        def fetch() -> str | None:
            stream, stat = client.get_archive(t.container, f"{OUTPUT_ROOT}/{t.id}/{rel}")
            return output.save_checkpoint(stream, stat, folder / rel.split("/")[-1], limit)

        try:
            why = await self.ctx.engines.run(fetch, node)
        except (NotFound, APIError, EngineUnreachable, OSError, tarfile.TarError) as e:
            self.ctx.log.warning("training %s: checkpoint %s not copied: %s", t.id, rel, e)
            return
        if why is None:
            await self.ctx.run(self.ctx.store.update, t.id, checkpoint_epoch=epoch)
        else:
            if why == output.TOO_LARGE:
                why = f"it is over the pool's {self.ctx.settings.max_checkpoint_mib} MiB limit"
            await self.ctx.event(
                t, "warning", message=f"checkpoint {rel}: not kept by the pool: {why}"
            )
