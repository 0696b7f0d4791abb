"""The slice watchdog: HAMi-core limits only processes that load it, the pool checks them all.

Inside a container HAMi-core is cooperative: a process started with
``CUDA_DISABLE_CONTROL=true``, with a shared cache of its own, or as a static binary is not
limited, and can take a whole card from its neighbours. So every agent sample (the
processes on each GPU, with the memory NVML counts for them and the gpupool labels of
their container) is checked here, per reservation and GPU: the memory its processes use
against its share of that GPU. A container's process on a GPU its reservation holds no
share of is held to a share of 0 (whole-card use by a container with no reservation on
that card). Over the share by more than ``tolerance_mib``:

1. at once: an alert naming the user, the container and the figures, and a notice in the
   lab saying when the pool stops the workload;
2. still over after ``grace`` seconds: the workload is stopped (a server through the hub,
   a training through the dispatcher), with the reason kept as the release reason;
3. back under before then: the alert and the notice are withdrawn.

The detection delay is the agent's sampling period plus the pool's probe interval.
:func:`find_overuse` is the pure part; :class:`SliceWatchdog` keeps the clock and acts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gpupool.catalog.models import SliceSettings
from gpupool.catalog.units import format_mib

from .alerts import Alerts
from .ledger import Ledger, Reservation
from .state import Placement

KIND = "over-slice"
log = logging.getLogger("gpupool.watchdog")


@dataclass(frozen=True)
class Overuse:
    """Processes of one reservation (or one unlabelled container) over their share of one GPU."""

    node: str
    gpu: str  # uuid
    gpu_index: int | None
    reservation: str
    container: str  # its container id (12 hex)
    owner: str | None
    used_mib: int
    limit_mib: int  # 0: it holds no share of this GPU

    @property
    def key(self) -> str:
        return f"{KIND}:{self.node}:{self.reservation or self.container}:{self.gpu}"

    def describe(self) -> str:
        who = f"{self.owner}'s " if self.owner else ""
        what = f"reservation {self.reservation}" if self.reservation else "a container"
        gpu = f"GPU {self.gpu_index}" if self.gpu_index is not None else self.gpu
        share = (
            f"its slice of {format_mib(self.limit_mib)}"
            if self.limit_mib
            else "no share of that GPU"
        )
        return (
            f"{who}{what} (container {self.container or 'unknown'}) uses "
            f"{format_mib(self.used_mib)} on {gpu} of node {self.node}, over {share}"
        )


def find_overuse(
    sample: Mapping[str, Any],
    node: str,
    placements: Mapping[str, Placement],
    tolerance_mib: int,
) -> list[Overuse]:
    """Every (reservation or container, GPU) of ``sample`` whose processes use more memory
    than its share plus ``tolerance_mib``. Processes in no container (the node's own) and
    readings without a memory figure are not judged; whole cards are not limited; nor
    are processes without a reservation label (not gpupool's, or labels the agent could
    not read) and reservations not placed now."""
    used: dict[tuple[str, str, str], int] = {}  # (reservation, container, uuid) -> MiB
    meta: dict[tuple[str, str, str], tuple[int | None, str | None, str]] = {}
    for g in sample.get("gpus") or ():
        uuid = g.get("uuid")
        if not isinstance(uuid, str) or not uuid:
            continue
        index = g.get("index") if isinstance(g.get("index"), int) else None
        for p in g.get("processes") or ():
            mib, cid = p.get("memory_mib"), p.get("container_id")
            if not isinstance(mib, int) or isinstance(mib, bool) or not cid:
                continue
            rid = p.get("reservation")
            if not isinstance(rid, str) or not rid:
                # not gpupool's, or its labels unknown (the agent could not ask the
                # engine): nothing to hold it to
                continue
            k = (rid, "", uuid)  # a reservation's containers are judged together
            used[k] = used.get(k, 0) + max(0, mib)
            owner = p.get("owner") if isinstance(p.get("owner"), str) else None
            meta.setdefault(k, (index, owner, str(cid)[:12]))
    out = []
    for k, mib in sorted(used.items()):
        rid, _, uuid = k
        placement = placements.get(rid)
        if placement is None or placement.node != node:
            continue  # not placed now (released, or its GPU gone): not judged here
        share = next((s for s in placement.gpus if s.uuid == uuid), None)
        if share is not None and share.whole:
            continue
        limit = share.memory_mib if share is not None else 0
        if mib <= limit + tolerance_mib:
            continue
        index, owner, container = meta[k]
        out.append(Overuse(node, uuid, index, rid, container, owner, mib, limit))
    return out


@dataclass
class _Seen:
    since: float
    last: Overuse
    message: str  # the alert's text, kept: a changing text is an "updated" event each time
    stopped: bool = False


Stop = Callable[[Reservation, str, str], Awaitable[Any]]


class SliceWatchdog:
    """Acts on :func:`find_overuse` for each agent sample; one lives in the pool service.

    ``stop(reservation, by, reason)``: stop its workload and free it (True when done or
    under way; an exception when it cannot be now, and it is tried again)."""

    def __init__(
        self,
        settings: SliceSettings,
        ledger: Ledger,
        ledger_call: Callable[..., Awaitable[Any]],
        alerts: Alerts,
        stop: Stop,
        *,
        clock: Callable[[], float] = time.time,
    ):
        self.settings = settings
        self.ledger = ledger
        self.ledger_call = ledger_call
        self.alerts = alerts
        self.stop = stop
        self.clock = clock
        self.seen: dict[str, dict[str, _Seen]] = {}  # node -> key -> since
        self.stopping: dict[str, asyncio.Task[None]] = {}  # reservation -> its stop

    async def observe(self, node: str, sample: Mapping[str, Any]) -> list[Overuse]:
        """Judge one new sample of ``node``; returns what is over now."""
        if not self.settings.enforce:
            return []
        now = self.clock()
        found = find_overuse(
            sample, node, self.ledger.state.placements, self.settings.tolerance_mib
        )
        mine = self.seen.setdefault(node, {})
        for gone in set(mine) - {o.key for o in found}:
            s = mine.pop(gone)
            self.alerts.clear(gone, "back within its slice")
            if not s.stopped:
                await self.ledger_call(self.ledger.clear_notice, s.last.reservation, KIND)
            log.info("%s: back within its share", s.last.describe())
        for o in found:
            s = mine.get(o.key)
            if s is None:
                s = mine[o.key] = _Seen(since=now, last=o, message=self._alert_text(o, now))
                await self._warn(o, now)
            s.last = o
            figures = {"used_mib": o.used_mib, "limit_mib": o.limit_mib}
            alert = self.alerts.raise_(
                o.key,
                KIND,
                "critical",
                s.message,
                node=node,
                gpu=o.gpu,
                reservation=o.reservation,
                owner=o.owner,
                container=o.container,
                **figures,
            )
            alert.details.update(figures)  # the latest figures on a refreshed alert
            due = now - s.since >= self.settings.grace
            if due and not s.stopped and o.reservation not in self.stopping:
                # in the background: a slow hub or engine must not hold the probes up
                task = asyncio.ensure_future(self._stop_in_background(o, s, now - s.since))
                self.stopping[o.reservation] = task
        return found

    async def _stop_in_background(self, o: Overuse, s: _Seen, over_for: float) -> None:
        try:
            s.stopped = await self._stop(o, over_for)
        finally:
            self.stopping.pop(o.reservation, None)

    async def settle(self) -> None:
        """Wait for the stops under way (tests, and the service's shutdown)."""
        while self.stopping:
            await asyncio.gather(*list(self.stopping.values()), return_exceptions=True)

    def _alert_text(self, o: Overuse, since: float) -> str:
        at = dt.datetime.fromtimestamp(since + self.settings.grace, dt.timezone.utc)
        return f"{o.describe()}; its workload is stopped at {at:%H:%M:%S} UTC unless it drops"

    async def _warn(self, o: Overuse, now: float) -> None:
        log.warning("%s", o.describe())
        at = dt.datetime.fromtimestamp(now + self.settings.grace, dt.timezone.utc)
        share = f"its slice of {format_mib(o.limit_mib)}" if o.limit_mib else "nothing"
        msg = (
            f"Your processes use {format_mib(o.used_mib)} of GPU memory where your spec gives "
            f"{share} on that GPU. The pool stops this workload at {at:%H:%M} UTC unless "
            "they use less by then (HAMi-core's limits were bypassed or switched off)."
        )
        await self.ledger_call(self.ledger.set_notice, o.reservation, KIND, msg, at)

    async def _stop(self, o: Overuse, over_for: float) -> bool:
        r = await self.ledger_call(self.ledger.get, o.reservation)
        if r is None or r.state != "active":
            return True
        share = format_mib(o.limit_mib) if o.limit_mib else "no share"
        reason = (
            f"over-slice: used {format_mib(o.used_mib)} of GPU memory on {o.gpu} "
            f"({share}) for {over_for:.0f} s; stopped by the pool"
        )[:255]
        msg = f"This workload is being stopped: it used more GPU memory than its slice ({reason})."
        if not await self.ledger_call(self.ledger.set_notice, r.id, KIND, msg, None, reason):
            return True  # released meanwhile, or a stop is pending already
        log.warning("reservation %s of %s: %s", r.id, r.owner, reason)
        try:
            return bool(await self.stop(r, "the pool (slice watchdog)", reason))
        except Exception as e:  # the hub is away: tried again at the next sample
            log.error("stopping %s's workload %s: %s", r.owner, r.id, e)
            return False
