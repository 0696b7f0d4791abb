"""What counts as work on an SSH session, and telling the pool which sessions are open
(``PUT api/reservations/{id}/ssh``: the dashboard lists them, the GPU-idle culler counts
their work).

SSH's bytes are encrypted, so the server cannot tell a keystroke from a keepalive by
content. It can by volume: an open but idle connection exchanges a keepalive now and then
(sshd's ``ClientAliveInterval`` here is 30 s, clients' ``ServerAliveInterval`` is usually
15 s or more), a handful of small messages a minute; typing a command and reading its
output, a copy, or an editor's remote session sends more within seconds. So a session
works when, within ``WINDOW`` seconds, the client sent more than ``MESSAGES`` messages or
more than ``BYTES`` bytes; only then is it activity (the hub's idle culling through
jupyter-server's last activity, and the pool's GPU-idle culling). Only what the client
sends counts: a forgotten ``htop`` or ``tail -f`` prints for ever, and an idle VS Code
window's keepalives (every 5 s, both ways) would pass the bar if both directions counted.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from collections.abc import Callable
from typing import Any

WINDOW = 10.0  # seconds
MESSAGES = 6  # more than this many messages in WINDOW is work
BYTES = 2048  # or more than this many bytes
REPORT_EVERY = 30.0  # seconds between reports while a session is open (the pool's figure)
REPORT_GAP = 5.0  # seconds at least between two reports (they count in the user's write limit)
MAX_SESSIONS = 32  # sessions in one report, those that worked last first (the pool's figure)
KEPT = 64  # messages one meter remembers: past MESSAGES it is work anyway


class ActivityMeter:
    """One session's traffic over the last ``WINDOW`` seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.recent: collections.deque[tuple[float, int]] = collections.deque()
        self.total = 0
        self.last_work: float | None = None  # clock time of the last message that was work

    def record(self, size: int) -> bool:
        """One message of ``size`` bytes went through; True when the session works now."""
        now = self.clock()
        self.recent.append((now, size))
        self.total += size
        while self.recent and (now - self.recent[0][0] > WINDOW or len(self.recent) > KEPT):
            self.total -= self.recent.popleft()[1]
        if len(self.recent) > MESSAGES or self.total > BYTES:  # (a full memory is > MESSAGES)
            self.last_work = now
            return True
        return False

    def idle_for(self) -> float | None:
        """Seconds since the session last worked; None when it has not yet."""
        return None if self.last_work is None else max(0.0, self.clock() - self.last_work)


class SessionReporter:
    """Sends the open sessions to the pool when one opens or closes, and every
    ``REPORT_EVERY`` seconds while any is open; once more, empty, after the last closes.
    A pool that does not answer is tried again at the next report (the sessions go on)."""

    def __init__(
        self,
        sessions: dict[str, dict[str, Any]],
        send: Callable[[list[dict[str, Any]]], Any] | None = None,
        *,
        every: float = REPORT_EVERY,
        gap: float = REPORT_GAP,
        log: logging.Logger | None = None,
    ) -> None:
        self.sessions = sessions
        self.send = send if send is not None else _send_to_pool()
        self.every = every
        self.gap = gap
        self.log = log or logging.getLogger("gpupool.ssh")
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.failures = 0

    def poke(self) -> None:
        """A session opened or closed: report soon (and start reporting, the first time)."""
        if self.send is None:
            return
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._run())
        self.wake.set()

    def report(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        out = []
        # the pool takes MAX_SESSIONS: those that worked last, so their work counts
        latest = sorted(
            self.sessions.items(),
            key=lambda item: item[1]["meter"].last_work or float("-inf"),
            reverse=True,
        )
        for sid, s in latest[:MAX_SESSIONS]:
            meter: ActivityMeter = s["meter"]
            out.append(
                {
                    "id": sid,
                    "from": s["from"],
                    "open_s": round(max(0.0, now - s["opened"]), 1),
                    "idle_s": None if meter.idle_for() is None else round(meter.idle_for(), 1),
                }
            )
        return out

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await asyncio.wait_for(self.wake.wait(), self.every)
            except asyncio.TimeoutError:
                pass
            self.wake.clear()
            # sessions opening together are one report, and reports stay REPORT_GAP apart
            await asyncio.sleep(self.gap)
            body = self.report()
            try:
                await loop.run_in_executor(None, self.send, body)
                self.failures = 0
            except Exception as e:  # the pool is away or refuses: the sessions go on
                self.failures += 1
                if self.failures in (1, 10) or self.failures % 100 == 0:
                    self.log.warning("gpupool: reporting SSH sessions to the pool: %s", e)
            if not body and not self.sessions:
                # the last closed (and none opened while that was said); the next open
                # starts reporting again
                return


def _send_to_pool() -> Callable[[list[dict[str, Any]]], Any] | None:
    """A sender to this server's reservation, with the server's own token; None outside a
    gpupool server (no pool to tell)."""
    rid = os.environ.get("GPUPOOL_RESERVATION")
    if not rid or not os.environ.get("GPUPOOL_API_URL"):
        return None
    from .client import PoolApi

    def send(sessions: list[dict[str, Any]]) -> Any:
        return PoolApi.from_env(timeout=10).report_ssh_sessions(rid, sessions)

    return send
