"""Idle culling that knows GPUs: a notebook server whose reserved GPUs showed no
utilization for ``culling.gpu_idle_timeout`` seconds is stopped by the pool (the hub's
jupyterhub-idle-culler handles the cheap kind of idle: no activity in the lab).

From each agent sample the culler keeps, per GPU, the last utilization and when it was
read. A reservation is busy when any of its GPUs is above ``busy_percent``; its idle
time counts from the last busy reading. Conservative where unsure:

- no fresh reading of all its GPUs (agent silent, node without agent): nothing is
  decided, and when readings come back after a gap the gap counts as busy;
- a slice shares its card's utilization with the card's other tenants: a busy neighbour
  keeps it alive (NVML has no per-process SM figure the agent can trust);
- the clock starts when the service starts (idle time is not persisted).

With ``count_ssh`` (the default), an SSH session on the server that carried work
(``ssh_sessions``: the server's own report) counts as a busy reading at that time.

``warn_before`` seconds ahead, a notice goes to the ledger (the lab fetches it from
``GET api/notices``); a busy reading withdraws it. At the timeout the notice's stop
reason is set (it becomes the reservation's release reason) and the hub is asked to
stop the server; the spawner's stop then frees the reservation.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gpupool.catalog.models import CullingSettings

from .ledger import Ledger, LedgerCall, Reservation

KIND = "gpu-idle"


def minutes(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    m = round(seconds / 60)
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else f"{m} min"


@dataclass
class Tracked:
    last_busy: float
    seen_at: float
    warned: bool = False
    stop_asked: float | None = None


class IdleCuller:
    def __init__(
        self,
        settings: CullingSettings,
        ledger: Ledger,
        ledger_call: LedgerCall,
        stop_server: Callable[[str, str], Awaitable[bool]],
        *,
        stale_after: float = 30.0,
        clock: Callable[[], float] = time.time,
        log: logging.Logger | None = None,
        ssh_activity: Callable[[str], float | None] | None = None,
    ):
        self.settings = settings
        self.ledger = ledger
        self.ledger_call = ledger_call
        self.stop_server = stop_server
        self.stale_after = stale_after
        self.clock = clock
        self.log = log or logging.getLogger("gpupool.idle")
        # when an SSH session on a reservation's server last carried work (ssh_sessions)
        self.ssh_activity = ssh_activity if settings.count_ssh else None
        self.util: dict[str, tuple[float, int | None]] = {}  # GPU uuid -> (read at, %)
        self.tracked: dict[str, Tracked] = {}
        self.stopped: list[tuple[str, str]] = []  # (reservation, reason), for tests and logs

    @property
    def interval(self) -> float:
        """How often ``tick`` runs: often enough to warn and stop on time."""
        s = self.settings
        return max(0.5, min(15.0, s.warn_before / 4, s.gpu_idle_timeout / 8))

    def observe(self, sample: dict[str, Any]) -> None:
        """One agent sample: remember each GPU's utilization."""
        now = self.clock()
        for g in sample.get("gpus") or ():
            if g.get("uuid"):
                self.util[g["uuid"]] = (now, g.get("utilization_gpu"))

    def _busy(self, r: Reservation, now: float) -> bool | None:
        """True/False from fresh readings of every GPU of ``r``; None when unsure."""
        readings = [self.util.get(g.uuid) for g in r.gpus]
        if not readings or any(
            x is None or x[1] is None or now - x[0] > self.stale_after for x in readings
        ):
            return None
        return any(x[1] > self.settings.busy_percent for x in readings if x and x[1] is not None)

    async def tick(self) -> None:
        if not self.settings.enabled:
            return
        now = self.clock()
        s = self.settings
        active = [
            r for r in await self.ledger_call(self.ledger.list) if r.kind == "notebook" and r.gpus
        ]
        ids = {r.id for r in active}
        for rid in set(self.tracked) - ids:
            del self.tracked[rid]
        for r in active:
            busy = self._busy(r, now)
            t = self.tracked.get(r.id)
            if t is None:
                t = self.tracked[r.id] = Tracked(last_busy=now, seen_at=now)
            ssh = self.ssh_activity(r.id) if self.ssh_activity is not None else None
            if ssh is not None and ssh > t.last_busy:
                # someone works on the server over SSH: as good as a busy reading
                t.last_busy = min(ssh, now)
                await self._withdraw(r, t, "SSH session active")
            if busy is None:
                continue
            if now - t.seen_at > self.stale_after:  # readings came back after a gap
                t.last_busy = now
            t.seen_at = now
            if busy:
                t.last_busy = now
                await self._withdraw(r, t, "GPU busy again")
                continue
            idle = now - t.last_busy
            stop_at = t.last_busy + s.gpu_idle_timeout
            if idle >= s.gpu_idle_timeout:
                await self._stop(r, t, idle, now)
            elif idle >= s.gpu_idle_timeout - s.warn_before and not t.warned:
                at = dt.datetime.fromtimestamp(stop_at, dt.timezone.utc)
                msg = (
                    f"The GPUs of your server ({r.spec} on {r.node}) have been idle for "
                    f"{minutes(idle)}. The pool stops this server at {at:%H:%M} UTC unless they "
                    f"are used{' (or the server over SSH)' if self.ssh_activity else ''} before "
                    "then. Save your work; your home folder is kept."
                )
                if await self.ledger_call(self.ledger.set_notice, r.id, KIND, msg, at):
                    t.warned = True
                    self.log.info(
                        "reservation %s of %s: GPU idle %s, warned", r.id, r.owner, minutes(idle)
                    )

    async def _withdraw(self, r: Reservation, t: Tracked, why: str) -> None:
        """Take back the idle notice of ``r``, unless its stop was asked already."""
        if t.warned and t.stop_asked is None:
            await self.ledger_call(self.ledger.clear_notice, r.id, KIND)
            t.warned = False
            self.log.info("reservation %s of %s: %s, notice withdrawn", r.id, r.owner, why)

    async def _stop(self, r: Reservation, t: Tracked, idle: float, now: float) -> None:
        if t.stop_asked is not None and now - t.stop_asked < 60:
            return  # asked already; the spawner's stop frees the reservation
        reason = (
            f"gpu-idle: no GPU utilization for {minutes(idle)} "
            f"(limit {minutes(self.settings.gpu_idle_timeout)}); stopped by the pool"
        )
        msg = f"This server is being stopped: its GPUs were idle for {minutes(idle)}."
        if not await self.ledger_call(self.ledger.set_notice, r.id, KIND, msg, None, reason):
            return  # released meanwhile
        t.stop_asked = now
        self.log.warning("reservation %s of %s: %s", r.id, r.owner, reason)
        try:
            found = await self.stop_server(r.owner, r.server_name)
        except Exception as e:  # the hub is away: try again next minute
            self.log.error("stopping %s's server %r for GPU idle: %s", r.owner, r.server_name, e)
            return
        self.stopped.append((r.id, reason))
        if not found:  # the hub has no such server: nothing will release it but us
            await self.ledger_call(self.ledger.release, r.id, reason)
