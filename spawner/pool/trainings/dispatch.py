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
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json
import logging
import tarfile
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from docker.errors import APIError, NotFound

from ...container import build_container, open_dir_tar
from ...engines import UNREACHABLE, Engines, EngineUnreachable
from ...lab.train.job import CHECKPOINT_RE, OUTPUT_ROOT, job_document
from ...networks import ensure_user_network
from ...owners import NotYours, home_for, remove_own_container
from .. import accounting
from ..ledger import Ledger, Reservation
from ..scheduler import Rejection
from ..state import describe_shares
from ..tables import utcnow
from . import launch, output
from .queue import Policy, Use, Waiting, explain, order, walk
from .store import ACTIVE, Training, TrainingStore

LedgerCall = Callable[..., Awaitable[Any]]
NodeHealth = Callable[[str], tuple[str, float | None]]  # node -> (state, down since)


class Dispatcher:
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

    def wake(self) -> None:
        self._wake.set()

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

    def _log_text(self, tid: str, lines: list[str]) -> None:
        if not lines:
            return
        path = self.folder(tid) / "log.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        limit = self.settings.max_log_mib * 1024 * 1024
        size = path.stat().st_size if path.exists() else 0
        if size >= limit:
            return
        text = "\n".join(lines) + "\n"
        if size + len(text) >= limit:
            text = text[: max(0, limit - size - 80)] + "\n[log truncated: the pool keeps the first "
            text += f"{self.settings.max_log_mib} MiB]\n"
        with path.open("a") as f:
            f.write(text)

    async def _event(self, t: Training, kind: str, **fields: Any) -> None:
        await self.run(
            self.store.add_events, t.id, t.attempt, [{"kind": kind, "time": self.clock(), **fields}]
        )

    # -- the queue -------------------------------------------------------------------
    def _recent_use(self) -> dict[str, Use]:
        now = self.clock()
        at, cached = self._use
        if now - at < 30:
            return cached
        end = utcnow()
        start = end - dt.timedelta(days=self.settings.fair_share_days)
        cards = self.ledger.card_memory()
        use: dict[str, Use] = {}
        for r in self.ledger.between(start, end):
            u = accounting.usage(r, start, end, end, cards)
            old = use.get(r.owner, Use())
            use[r.owner] = Use(old.gpu_hours + u.gpu_hours, old.cost + u.cost)
        self._use = (now, use)
        return use

    async def schedule(self) -> None:
        queued = await self.run(self.store.list, None, ["queued"])
        if not queued:
            self.positions = {}
            return
        active = await self.run(self.store.list, None, ACTIVE)
        running = collections.Counter(t.owner for t in active)
        use = await self.run(self._recent_use)
        now = self.clock()
        by_id = {t.id: t for t in queued}
        ranked = order(
            [Waiting(t.id, t.owner, t.priority, _ts(t.submitted_at), t.spec) for t in queued],
            now=now,
            policy=self.policy,
            use=use,
        )
        reserved: dict[str, Reservation] = {}

        def attempt(w: Waiting) -> str | None:
            t = by_id[w.id]
            spec = self.catalog.spec(t.spec)
            if spec is None:
                return f"its spec {t.spec!r} is no longer in the catalog"
            groups = frozenset(t.body.get("groups") or ())
            quota, source = self.catalog.pool.quotas.for_user(t.owner, groups)
            res = self.ledger.reserve(
                spec,
                t.owner,
                kind="training",
                server_name=t.id,
                container=launch.container_name(t.id, t.attempt + 1),
                quota=quota,
                quota_source=source,
            )
            if isinstance(res, Rejection):
                if res.reason == "quota":
                    return f"waits for quota: {res.message}"
                return f"waits for capacity: {res.message}"
            reserved[w.id] = res
            return None

        outcome = await self.run(
            lambda: walk(ranked, running=running, policy=self.policy, now=now, attempt=attempt)
        )
        waiting = [r for r in ranked if r.training.id not in reserved]
        self.positions = {r.training.id: i + 1 for i, r in enumerate(waiting)}
        for i, r in enumerate(waiting):
            t = by_id[r.training.id]
            pos = r.__class__(r.training, i + 1, r.effective_priority, r.owner_rank, r.use)
            msg = explain(pos, len(waiting), outcome.why.get(t.id, ""))
            if msg != t.message:
                await self.run(self.store.update, t.id, only_from=["queued"], message=msg)
        launches = []
        for tid in outcome.started:
            t, res = by_id[tid], reserved[tid]
            ok = await self.run(
                self.store.update,
                tid,
                only_from=["queued"],
                state="starting",
                attempt=t.attempt + 1,
                reservation_id=res.id,
                node=res.node,
                container=launch.container_name(tid, t.attempt + 1),
                started_at=utcnow(),
                log_cursor=0,
                message=f"starting on {res.node}",
            )
            if not ok:  # cancelled meanwhile
                await self.run(self.ledger.release, res.id, "training cancelled before it started")
                continue
            fresh = await self.run(self.store.get, tid)
            launches.append(
                self._bounded(self._contained(f"training {tid}", self.launch(fresh, res)))
            )
        await asyncio.gather(*launches)

    # -- starting ----------------------------------------------------------------------
    def _checkpoint(self, tid: str) -> Path | None:
        found = sorted((self.folder(tid) / "checkpoints").glob("epoch-*.pt"))
        return found[-1] if found else None

    async def launch(self, t: Training, res: Reservation) -> None:
        node = self.catalog.node(res.node)
        spec = self.catalog.spec(t.spec)
        image = next((i for i in self.catalog.images if i.name == t.image), None)
        body = t.body
        dataset = next((d for d in self.catalog.datasets if d.name == t.dataset), None)
        try:
            if node is None or spec is None or image is None:
                raise RuntimeError("its node, spec or image is no longer in the catalog")
            if t.dataset and dataset is None:
                raise RuntimeError(f"dataset {t.dataset!r} is no longer in the catalog")
            ckpt = self._checkpoint(t.id)
            resume = t.checkpoint_epoch if ckpt is not None else None
            dropped = await self.run(self.store.roll_back, t.id, resume or 0)
            job = job_document(
                training_id=t.id,
                name=t.name,
                graph=body.get("graph"),
                command=body.get("command"),
                dataset=(
                    {
                        "name": dataset.name,
                        "path": f"/datasets/{dataset.name}",
                        "format": dataset.format,
                    }
                    if dataset
                    else None
                ),
                hyper=body["hyperparameters"],
                processes=t.processes,
                attempt=t.attempt,
            )
            home = await home_for(self.engines, node, t.owner)
            if node.network == "bridge":
                await ensure_user_network(self.engines, node)
            plan = build_container(
                user=t.owner,
                server=t.id,
                spec=spec,
                image=image,
                node=node,
                reservation_id=res.id,
                gpus=res.gpus,
                hub_env={},
                port=res.port or 0,
                command=launch.command(t.id, t.processes),
                cache_root=self.hami_cache_root,
                datasets=(dataset,) if dataset else (),
                kind="training",
                name=launch.container_name(t.id, t.attempt),
                extra_labels={"io.gpupool.training": t.id, "io.gpupool.attempt": str(t.attempt)},
                read_only_datasets=True,
                home=home,
            )
            await self._create(node, plan, t, job, ckpt)
        except Exception as e:
            why = f"could not start on {res.node}: {e}"
            self.log.warning("training %s: %s", t.id, why)
            if node is not None:  # what this try may have made
                await self._remove(node, launch.container_name(t.id, t.attempt), t.owner)
            await self.run(self.ledger.release, res.id, f"training {t.id}: {why}"[:255])
            await self._requeue_or_fail(t, why)
            return
        await self.run(
            self.store.add_attempt,
            t.id,
            t.attempt,
            node=node.name,
            reservation_id=res.id,
            container=plan.name,
        )
        changed = await self.run(
            self.store.update,
            t.id,
            only_from=["starting"],
            state="running",
            message=f"running on {node.name}, {describe_shares(res.gpus, spec.gpu_sm_percent)}",
        )
        await self._event(
            t,
            "dispatched",
            node=node.name,
            gpus=[g.to_json() for g in res.gpus],
            resume_epoch=resume,
            rolled_back=dropped,
        )
        self.log.info(
            "training %s (attempt %d) runs on %s%s",
            t.id,
            t.attempt,
            node.name,
            f", resuming after epoch {resume}" if resume else "",
        )
        if not changed:  # cancelled while starting: the next watch stops it
            self.wake()

    async def _create(
        self, node: Any, plan: Any, t: Training, job: dict[str, Any], ckpt: Path | None
    ) -> None:
        call = self.engines.call
        # a container of this name left by an earlier try is removed only if it is this
        # training's owner's; the home mounted only if its label says it is theirs
        await remove_own_container(self.engines, node, plan.name, t.owner, kind="training")
        client = self.engines._client(node)
        host_config = await self.engines.run(
            lambda: client.create_host_config(**plan.host_config), node
        )
        obj = await call(node, "create_container", host_config=host_config, **plan.create_kwargs())
        cid = obj["Id"]
        for path in plan.writable:
            parent, tar = open_dir_tar(path)
            await call(node, "put_archive", cid, parent, tar)

        def put_job() -> None:
            with tempfile.TemporaryFile() as f:
                if ckpt is not None:
                    with ckpt.open("rb") as src:
                        launch.job_archive(t.id, job, f, (ckpt.name, src, ckpt.stat().st_size))
                else:
                    launch.job_archive(t.id, job, f)
                f.seek(0)
                client.put_archive(cid, "/home/jovyan", f)

        await self.engines.run(put_job, node)
        await call(node, "start", cid)

    async def _remove(self, node: Any, name: str | None, owner: str) -> None:
        """The training's container, if it is one of ``owner``'s trainings (owners.py)."""
        if not name:
            return
        try:
            await remove_own_container(self.engines, node, name, owner, kind="training")
        except (NotFound, EngineUnreachable):
            pass
        except (APIError, NotYours) as e:
            self.log.warning("could not remove %s on %s: %s", name, node.name, e)

    # -- watching ----------------------------------------------------------------------
    async def watch(self, t: Training) -> None:
        node = self.catalog.node(t.node or "")
        if node is None:
            await self._lost(t, f"node {t.node!r} is no longer in the catalog", supersede=False)
            return
        # A pass watches, then schedules and awaits its launches: no launch runs while
        # trainings are watched. One still "starting" here had its launch cut short (the
        # pool service stopped): it is adopted if its container runs, else started again.
        interrupted = t.state == "starting"
        state, since = self.node_health(node.name)
        if state == "down":  # not asked: a pass never waits on a node known to be down
            await self._requeue_if_down_long(t, node.name, since)
            return
        try:
            info = await self.engines.call(node, "inspect_container", t.container)
        except NotFound:
            if t.cancel_requested:
                await self._finish(t, node, "cancelled", self._cancel_message(t))
            else:
                await self._lost(t, "its container is gone without a result", supersede=False)
            return
        except (EngineUnreachable, APIError) as e:
            state, since = self.node_health(node.name)
            if state == "down":
                await self._requeue_if_down_long(t, node.name, since)
            else:
                self.log.info("training %s: engine of %s: %s", t.id, node.name, e)
            return
        st = info.get("State") or {}
        if st.get("Running"):
            # first: a cancel or the run-time limit must not wait on reading its output
            await self._stop_if_due(node, t)
        ended = not st.get("Running") and st.get("Status") != "created"
        await self._read_contained(t, node, ended=ended)
        if interrupted and st.get("Running"):
            await self.run(
                self.store.update,
                t.id,
                only_from=["starting"],
                state="running",
                message=f"running on {node.name}",
            )
        elif interrupted and st.get("Status") == "created":
            await self._lost(t, "its start was interrupted", supersede=False)
            return
        if st.get("Running"):
            return
        if st.get("Status") == "created" and not t.cancel_requested:
            return
        t = await self.run(self.store.get, t.id)
        code = st.get("ExitCode")
        done = await self.run(self.store.last_event, t.id, "done")
        error = await self.run(self.store.last_event, t.id, "error")
        done = done if done and done["attempt"] == t.attempt else None
        error = error if error and error["attempt"] == t.attempt else None
        if t.cancel_requested:
            await self._finish(t, node, "cancelled", self._cancel_message(t), exit_code=code)
        elif code == 0 and done is not None:
            result = {k: v for k, v in done.items() if k not in ("seq", "attempt", "kind", "time")}
            msg = "finished" + (
                f": test accuracy {result['test_accuracy']:.3f}"
                if isinstance(result.get("test_accuracy"), float)
                else ""
            )
            await self._finish(t, node, "succeeded", msg, exit_code=0, result=result)
        elif error is not None:
            await self._finish(t, node, "failed", str(error.get("message")), exit_code=code)
        elif code == 0:
            await self._finish(t, node, "failed", "exited without a result", exit_code=0)
        else:
            await self._lost(
                t, f"its container died (exit code {code}) without a result", supersede=False
            )

    async def _requeue_if_down_long(self, t: Training, node: str, since: float | None) -> None:
        """A training on a down node: started again elsewhere once the node has been down
        for ``requeue_after`` (its container may still run: superseded, not removed)."""
        if since is None:
            return
        down_for = self.clock() - since
        if down_for >= self.settings.requeue_after:
            await self._lost(t, f"node {node} has been down for {down_for:.0f} s", supersede=True)

    def _cancel_message(self, t: Training) -> str:
        if t.cancelled_by == "max_run_time":
            return f"stopped: it ran past its maximum run time of {_duration(t.max_run_seconds)}"
        return f"cancelled by {t.cancelled_by or t.owner}"

    async def _stop_if_due(self, node: Any, t: Training) -> None:
        if not t.cancel_requested:
            ran = t.run_seconds + (self.clock() - _ts(t.started_at) if t.started_at else 0)
            if ran <= t.max_run_seconds:
                return
            await self.run(
                self.store.update, t.id, cancel_requested=True, cancelled_by="max_run_time"
            )
        await self._stop(node, t)

    async def _stop(self, node: Any, t: Training) -> None:
        try:
            await self.engines.call(node, "stop", t.container, timeout=10)
        except NotFound:
            pass
        self.wake()

    async def _read_contained(self, t: Training, node: Any, *, ended: bool = False) -> None:
        """_read, whose failure stays with this training (logged once until a read works):
        stopping it and settling it do not depend on its output."""
        try:
            await self._read(t, node, ended=ended)
        except Exception:
            if t.id not in self._unreadable:
                self._unreadable.add(t.id)
                self.log.exception("training %s: its output could not be read", t.id)
        else:
            self._unreadable.discard(t.id)

    async def _logs(self, node: Any, container: str | None, **kwargs: Any) -> tuple[bytes, bool]:
        """At most output.MAX_READ_BYTES of a container's log, with docker's timestamps;
        True when there was more. (A stream, not followed: docker-py follows a stream
        unless told not to, and that one would not end while the training runs.)"""
        args = {k: v for k, v in kwargs.items() if v is not None}
        stream = await self.engines.call(
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
        return await self.engines.run(lambda: output.read_capped(stream), node)

    async def _read(self, t: Training, node: Any, *, ended: bool = False) -> None:
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
            last = await self.run(self.store.last_event, t.id, "checkpoint")
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
            records = [*records, {"kind": "warning", "time": self.clock(), "message": warning}]
        await self.run(self._log_text, t.id, batch.text)
        await self.run(self.store.add_events, t.id, t.attempt, records, log_cursor=batch.cursor)
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
        limit = self.settings.max_checkpoint_mib * 1024 * 1024
        folder = self.folder(t.id) / "checkpoints"
        client = self.engines._client(node)

        def fetch() -> str | None:
            stream, stat = client.get_archive(t.container, f"{OUTPUT_ROOT}/{t.id}/{rel}")
            return output.save_checkpoint(stream, stat, folder / rel.split("/")[-1], limit)

        try:
            why = await self.engines.run(fetch, node)
        except (NotFound, APIError, EngineUnreachable, OSError, tarfile.TarError) as e:
            self.log.warning("training %s: checkpoint %s not copied: %s", t.id, rel, e)
            return
        if why is None:
            await self.run(self.store.update, t.id, checkpoint_epoch=epoch)
        else:
            if why == output.TOO_LARGE:
                why = f"it is over the pool's {self.settings.max_checkpoint_mib} MiB limit"
            await self._event(
                t, "warning", message=f"checkpoint {rel}: not kept by the pool: {why}"
            )

    # -- endings -------------------------------------------------------------------------
    async def _finish(
        self,
        t: Training,
        node: Any,
        state: str,
        message: str,
        *,
        exit_code: int | None = None,
        result: dict[str, Any] | None = None,
    ) -> None:
        ran = t.run_seconds + (self.clock() - _ts(t.started_at) if t.started_at else 0)
        ok = await self.run(
            self.store.update,
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
        await self._event(t, state, message=message)
        await self._remove(node, t.container, t.owner)
        if t.reservation_id:
            await self.run(self.ledger.release, t.reservation_id, f"training {state}")
        await self.run(self.store.end_attempt, t.id, t.attempt, "ended", message)
        self.log.info("training %s %s: %s", t.id, state, message)
        self.wake()

    async def _lost(self, t: Training, why: str, *, supersede: bool) -> None:
        node = self.catalog.node(t.node or "")
        if supersede:
            # the node is down: its reservation stays until it answers (cleanup())
            await self.run(self.store.end_attempt, t.id, t.attempt, "superseded", why)
        else:
            if node is not None:
                await self._read_contained(t, node, ended=True)
                await self._remove(node, t.container, t.owner)
            if t.reservation_id:
                await self.run(self.ledger.release, t.reservation_id, f"training lost: {why}"[:255])
            await self.run(self.store.end_attempt, t.id, t.attempt, "ended", why)
        await self._requeue_or_fail(t, why)

    async def _requeue_or_fail(self, t: Training, why: str) -> None:
        t = await self.run(self.store.get, t.id)
        ran = t.run_seconds + (self.clock() - _ts(t.started_at) if t.started_at else 0)
        if t.cancel_requested:
            state, msg = "cancelled", self._cancel_message(t)
        elif t.attempt >= t.max_attempts:
            state, msg = "failed", f"gave up after {t.attempt} attempt(s): {why}"
        else:
            state = "queued"
            ckpt = t.checkpoint_epoch if self._checkpoint(t.id) else None
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
        ok = await self.run(self.store.update, t.id, only_from=ACTIVE, **values)
        if ok:
            await self._event(t, "requeued" if state == "queued" else state, message=msg)
            self.log.warning("training %s: %s", t.id, msg)
            self.wake()

    async def cleanup(self) -> None:
        for a in await self.run(self.store.superseded):
            node = self.catalog.node(a.node)
            state, _ = self.node_health(a.node) if node is not None else ("up", None)
            if state != "up":
                continue
            if node is not None:
                try:
                    await remove_own_container(
                        self.engines, node, a.container, a.owner, kind="training"
                    )
                except NotFound:
                    pass
                except (EngineUnreachable, APIError):
                    continue
                except NotYours as e:  # not the training's: left, said, and its attempt ended
                    self.log.warning("training %s: %s", a.training_id, e)
            if a.reservation_id:
                await self.run(self.ledger.release, a.reservation_id, "training resumed elsewhere")
            await self.run(
                self.store.end_attempt,
                a.training_id,
                a.attempt,
                "ended",
                f"{a.reason}; cleaned up when {a.node} answered again",
            )


def _ts(t: dt.datetime | None) -> float:
    return accounting.aware(t).timestamp() if t is not None else 0.0


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
