"""The SSH sessions open on users' servers, as each server reports them: kept in memory,
shown on the dashboard, and counted as activity by the GPU-idle culler (issue 23).

A server's lab extension runs the sessions (gpupool.lab.ssh) and sends the whole list
with ``PUT api/reservations/{id}/ssh`` when one opens or closes and every
``REPORT_EVERY`` seconds while any is open. A report replaces the last one of its
reservation; one older than ``stale_after`` is forgotten (the server stopped, or its
extension stopped reporting), so nothing here outlives what it describes and a restart of
the pool loses at most a report interval.

Times arrive as ages in seconds (``open_s``, ``idle_s``) and are placed on the pool's own
clock, so a node's clock that is off moves nothing, and no one can report activity from
the future. What a user may report is about their own server only: activity they invent
keeps their own server from GPU-idle culling, as a busy loop on its GPU would.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

REPORT_EVERY = 30.0  # seconds between a server's reports while sessions are open
REPORT_GAP = 5.0  # seconds at least between two reports of one server (the lab keeps it)
STALE_AFTER = 4 * REPORT_EVERY  # a report older than this describes nothing any more
MAX_SESSIONS = 32  # per report: more than anyone opens on one server
MAX_AGE = 366 * 86400.0  # seconds: a session's age or idle time, at most


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat()


@dataclass(frozen=True)
class SshSession:
    id: str
    source: str  # where the client connected from, as the server saw it (X-Forwarded-For)
    opened: float  # epoch seconds on the pool's clock
    last_activity: float | None

    def to_dt(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.opened, dt.timezone.utc)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "from": self.source,
            "opened": _iso(self.opened),
            "last_activity": _iso(self.last_activity),
        }


@dataclass(frozen=True)
class SshReport:
    reservation: str
    owner: str
    reported_at: float
    sessions: tuple[SshSession, ...]

    @property
    def last_activity(self) -> float | None:
        times = [s.last_activity for s in self.sessions if s.last_activity is not None]
        return max(times) if times else None

    def to_json(self) -> dict[str, Any]:
        return {
            "reservation": self.reservation,
            "reported_at": _iso(self.reported_at),
            "last_activity": _iso(self.last_activity),
            "sessions": [s.to_json() for s in self.sessions],
        }


def duplicate_id(sessions: list[dict[str, Any]]) -> str | None:
    """The first session id that appears twice in a report, if any."""
    seen: set[str] = set()
    for s in sessions:
        if s["id"] in seen:
            return str(s["id"])
        seen.add(s["id"])
    return None


class SshSessions:
    """The last report of each reservation's server, while it is fresh."""

    def __init__(
        self, stale_after: float = STALE_AFTER, clock: Callable[[], float] = time.time
    ) -> None:
        self.stale_after = stale_after
        self.clock = clock
        self._reports: dict[str, SshReport] = {}

    def report(self, reservation: str, owner: str, sessions: list[dict[str, Any]]) -> SshReport:
        """Replace ``reservation``'s report with ``sessions`` (checked against the API's
        schema by the handler: ``id``, ``from``, ``open_s``, ``idle_s``)."""
        now = self.clock()
        self._prune(now)
        # the handler refuses NaN and Infinity; a caller that did not is cut off here
        sessions = [
            s
            for s in sessions
            if math.isfinite(float(s["open_s"]))
            and (s.get("idle_s") is None or math.isfinite(float(s["idle_s"])))
        ]
        kept = tuple(
            SshSession(
                id=s["id"],
                source=s.get("from", ""),
                opened=now - float(s["open_s"]),
                # activity before the session opened is a confused client: the open counts
                last_activity=None
                if s.get("idle_s") is None
                else now - min(float(s["idle_s"]), float(s["open_s"])),
            )
            for s in sessions[:MAX_SESSIONS]
        )
        report = SshReport(reservation, owner, now, kept)
        if kept:
            self._reports[reservation] = report
        else:
            self._reports.pop(reservation, None)
        return report

    def get(self, reservation: str) -> SshReport | None:
        """The fresh report of ``reservation``, None when there is none."""
        r = self._reports.get(reservation)
        if r is not None and self.clock() - r.reported_at > self.stale_after:
            del self._reports[reservation]
            return None
        return r

    def last_activity(self, reservation: str) -> float | None:
        """When any SSH session on ``reservation``'s server last carried work (epoch)."""
        r = self.get(reservation)
        return r.last_activity if r is not None else None

    def _prune(self, now: float) -> None:
        for rid in [k for k, r in self._reports.items() if now - r.reported_at > self.stale_after]:
            del self._reports[rid]
