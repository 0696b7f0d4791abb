"""Alerts: what an admin of a GPU pool wants to hear about, kept, logged and sent.

An alert has a stable key (``node-down:node-b``, ``xid:node-a:GPU-…:79``); raising it
again only updates it, clearing it ends it. Some are conditions that clear themselves
when the condition ends (a node comes back, a GPU cools down); others are events (an Xid
error, a reservation whose container vanished) that expire after ``hold`` seconds.
Every raise and clear is logged and, when the catalog names a webhook, posted to it as
JSON by a background sender that retries and never holds the pool up.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")

# Xid codes that mean the GPU or its memory is in trouble (NVIDIA's Xid catalog):
# 48 double-bit ECC, 63/64 row remapping, 74 NVLink, 79 fallen off the bus,
# 92 high single-bit ECC rate, 94/95 contained/uncontained ECC, 119/120 GSP.
CRITICAL_XIDS = frozenset({48, 63, 64, 74, 79, 92, 94, 95, 119, 120})


@dataclass
class Alert:
    key: str
    kind: str
    severity: Severity
    message: str
    node: str | None = None
    gpu: str | None = None
    reservation: str | None = None
    since: float = 0.0
    updated: float = 0.0
    count: int = 1
    expires: float | None = None  # events end by themselves
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("expires")
        return out


class Alerts:
    """The active alerts and the recent history of raises and clears."""

    def __init__(
        self,
        *,
        webhook: str | None = None,
        log: logging.Logger | None = None,
        clock: Callable[[], float] = time.time,
        history: int = 500,
    ):
        self.active: dict[str, Alert] = {}
        self.history: collections.deque[dict[str, Any]] = collections.deque(maxlen=history)
        self.webhook = webhook
        self.log = log or logging.getLogger("gpupool.alerts")
        self.clock = clock
        self._outbox: asyncio.Queue[dict[str, Any]] | None = None
        self._sender: asyncio.Task[None] | None = None
        self.delivered = 0
        self.failed = 0

    # -- raising and clearing -----------------------------------------------------
    def raise_(
        self,
        key: str,
        kind: str,
        severity: Severity,
        message: str,
        *,
        hold: float | None = None,
        **where: Any,
    ) -> Alert:
        """Raise or refresh an alert. ``hold``: seconds after which it ends by itself."""
        now = self.clock()
        a = self.active.get(key)
        if a is not None:
            a.updated = now
            a.count += 1
            if hold is not None:
                a.expires = now + hold
            if a.message != message or a.severity != severity:
                a.message, a.severity = message, severity
                self._record("updated", a)
            return a
        a = Alert(
            key=key,
            kind=kind,
            severity=severity,
            message=message,
            since=now,
            updated=now,
            expires=now + hold if hold is not None else None,
            node=where.pop("node", None),
            gpu=where.pop("gpu", None),
            reservation=where.pop("reservation", None),
            details=where,
        )
        self.active[key] = a
        self._record("raised", a)
        return a

    def clear(self, key: str, why: str = "") -> Alert | None:
        a = self.active.pop(key, None)
        if a is not None:
            a.updated = self.clock()
            if why:
                a.details["cleared_because"] = why
            self._record("cleared", a)
        return a

    def clear_matching(self, prefix: str, keep: set[str] | frozenset[str] = frozenset()) -> None:
        """Clear every alert whose key starts with ``prefix``, except those in ``keep``."""
        for key in [k for k in self.active if k.startswith(prefix) and k not in keep]:
            self.clear(key)

    def expire(self) -> None:
        now = self.clock()
        for key, a in list(self.active.items()):
            if a.expires is not None and a.expires <= now:
                self.clear(key, "expired")

    def list(self, node: str | None = None) -> list[Alert]:
        self.expire()
        out = [a for a in self.active.values() if node is None or a.node == node]
        rank = {s: i for i, s in enumerate(reversed(SEVERITIES))}
        return sorted(out, key=lambda a: (rank[a.severity], -a.since))

    def _record(self, event: str, a: Alert) -> None:
        level = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.ERROR}[
            a.severity
        ]
        self.log.log(
            level if event != "cleared" else logging.INFO,
            "alert %s [%s] %s: %s",
            event,
            a.severity,
            a.key,
            a.message,
        )
        entry = {"event": event, "time": a.updated, "alert": a.to_json()}
        self.history.append(entry)
        if self.webhook and self._outbox is not None:
            try:
                self._outbox.put_nowait(entry)
            except asyncio.QueueFull:
                self.failed += 1
                self.log.warning("alert webhook queue full; dropped %s %s", event, a.key)

    # -- webhook --------------------------------------------------------------------
    def start(self) -> None:
        """Start the webhook sender on the running loop (no-op without a webhook)."""
        if self.webhook and self._sender is None:
            self._outbox = asyncio.Queue(maxsize=1000)
            self._sender = asyncio.ensure_future(self._send_loop())

    async def stop(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            try:
                await self._sender
            except asyncio.CancelledError:
                pass
            self._sender = None

    async def _send_loop(self) -> None:
        assert self._outbox is not None
        while True:
            entry = await self._outbox.get()
            await self._deliver(entry)

    async def _deliver(self, entry: dict[str, Any], tries: int = 4) -> None:
        body = json.dumps({"source": "gpupool", **entry})
        delay = 1.0
        for attempt in range(1, tries + 1):
            try:
                await AsyncHTTPClient().fetch(
                    HTTPRequest(
                        self.webhook or "",
                        method="POST",
                        body=body,
                        headers={"Content-Type": "application/json"},
                        request_timeout=5,
                        follow_redirects=False,
                    )
                )
                self.delivered += 1
                return
            except (HTTPClientError, OSError) as e:
                if attempt == tries:
                    self.failed += 1
                    self.log.warning(
                        "alert webhook %s failed %d times (%s); dropped %s",
                        self.webhook,
                        tries,
                        e,
                        entry["alert"]["key"],
                    )
                    return
                await asyncio.sleep(delay)
                delay *= 2
